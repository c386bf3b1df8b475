//! The world's faults and controls: links, partitions, holds, resets, rules, crashes and
//! restarts, pauses. Each takes effect at the current virtual time and is logged in the trace.

use super::{Link, Packet, Verdict, World};
use crate::backend::sim::world::{Ev, FaultEnd, Status};

impl World {
    /// Sets the link from `from` to `to` (one direction).
    pub fn set_link(&mut self, from: &str, to: &str, link: Link) {
        let (a, b) = (self.id(from), self.id(to));
        self.shared.core().links.insert((a, b), link);
    }

    /// Sets the link between every pair not set with [`set_link`](Self::set_link).
    pub fn set_default_link(&mut self, link: Link) {
        self.shared.core().default_link = link;
    }

    /// Cuts both directions between `a` and `b`: datagrams are lost, stream bytes wait and
    /// retransmit (in order) until [`heal`](Self::heal).
    pub fn partition(&mut self, a: &str, b: &str) {
        self.partition_one_way(a, b);
        self.partition_one_way(b, a);
    }

    /// Cuts only what `from` sends to `to`.
    pub fn partition_one_way(&mut self, from: &str, to: &str) {
        let (a, b) = (self.id(from), self.id(to));
        let mut core = self.shared.core();
        if core.fault(a, b, format_args!("partition")) {
            core.blocked.insert((a, b));
            core.lasting(FaultEnd::Unblock(a, b));
        }
    }

    /// Cuts `node` off from every other node, both ways.
    pub fn isolate(&mut self, node: &str) {
        let names: Vec<String> =
            self.shared.core().nodes.iter().map(|n| n.name.clone()).filter(|n| n != node).collect();
        for other in names {
            self.partition(node, &other);
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        let mut core = self.shared.core();
        core.blocked.clear();
        core.end_faults(|end| matches!(end, FaultEnd::Unblock(..)));
        core.log(format_args!("heal"));
    }

    /// Holds what `from` sends to `to` until [`release`](Self::release): nothing is lost, it
    /// arrives all at once and in order then.
    pub fn hold(&mut self, from: &str, to: &str) {
        let (a, b) = (self.id(from), self.id(to));
        let mut core = self.shared.core();
        if core.fault(a, b, format_args!("hold")) {
            core.held.insert((a, b));
            core.lasting(FaultEnd::Release(a, b));
        }
    }

    /// Delivers what [`hold`](Self::hold) kept, now.
    pub fn release(&mut self, from: &str, to: &str) {
        let (a, b) = (self.id(from), self.id(to));
        let mut core = self.shared.core();
        core.held.remove(&(a, b));
        core.end_faults(|end| matches!(end, FaultEnd::Release(x, y) if (*x, *y) == (a, b)));
        core.log(format_args!("release {from} -> {to}"));
        core.release(Some((a, b)));
    }

    /// Resets every stream connection between `a` and `b`: both sides get `Disconnected`.
    pub fn reset(&mut self, a: &str, b: &str) {
        let (x, y) = (self.id(a), self.id(b));
        let mut core = self.shared.core();
        if core.fault(x, y, format_args!("reset the connections between them")) {
            core.reset_between(x, y);
        }
    }

    /// Decides the fate of every packet (after the link's own losses). Replaces any rule set
    /// before. A rule can target one application message by its payload.
    pub fn set_rule(&mut self, rule: impl FnMut(&Packet<'_>) -> Verdict + Send + 'static) {
        self.shared.core().rule = Some(Box::new(rule));
    }

    /// Crashes `node`: its application stops where it is, its connections reset, its sockets
    /// vanish. It stays down until [`restart`](Self::restart).
    pub fn crash(&mut self, node: &str) {
        let id = self.id(node);
        {
            let mut core = self.shared.core();
            if !core.fault(id, id, format_args!("crash")) {
                return;
            }
            core.reset_node(id);
            core.nodes[id].status = Status::Dead;
            core.lasting(FaultEnd::Restart(id));
        }
        self.kill(id);
    }

    /// Starts `node`'s application again from the beginning, with fresh sockets (crashing it
    /// first if it runs).
    pub fn restart(&mut self, node: &str) {
        let id = self.id(node);
        if self.restarted_early.remove(&id) {
            // A shrinking replay already restarted it, earlier than this.
            self.shared.core().log(format_args!("restart {node}: done earlier by the shrinker"));
            return;
        }
        if self.shared.core().nodes[id].status != Status::Dead {
            self.crash(node);
            if self.shared.core().nodes[id].status != Status::Dead {
                return; // the crash was suppressed by a shrinking replay
            }
        }
        let mut core = self.shared.core();
        core.end_faults(|end| matches!(end, FaultEnd::Restart(n) if *n == id));
        core.log(format_args!("restart {node}"));
        drop(core);
        self.start(id);
    }

    /// Freezes `node`: events wait for it until [`resume`](Self::resume).
    pub fn pause(&mut self, node: &str) {
        let id = self.id(node);
        let mut core = self.shared.core();
        if core.fault(id, id, format_args!("pause")) {
            core.nodes[id].paused = true;
            core.lasting(FaultEnd::Resume(id));
        }
    }

    /// Lets a paused node run again; what arrived meanwhile is delivered now.
    pub fn resume(&mut self, node: &str) {
        let id = self.id(node);
        let mut core = self.shared.core();
        core.nodes[id].paused = false;
        core.end_faults(|end| matches!(end, FaultEnd::Resume(n) if *n == id));
        core.log(format_args!("resume {node}"));
        let now = core.now;
        core.wake_at(id, now);
        if core.nodes[id].status == Status::Starting {
            let life = core.nodes[id].life;
            core.schedule(now, Ev::Start(id, life));
        }
    }
}
