//! Where packets meet faults: the rule hook and the links judge each packet, faults are
//! logged and remembered (for shrinking), lasting ones (holds, partitions) end, held packets
//! are released.

use super::{Core, Ev, Fault, FaultEnd, NodeId, Packet, RETRANSMIT, Verdict};
use crate::core::Transport;
use std::time::Duration;

impl Core {
    /// The rule's verdict on a packet (`over_mtu`: a datagram the path's MTU drops).
    pub(super) fn judge(
        &mut self,
        from: NodeId,
        to: NodeId,
        packet: (Transport, &[u8], bool),
    ) -> Verdict {
        let Some(mut rule) = self.rule.take() else { return Verdict::Pass };
        let (transport, payload, over_mtu) = packet;
        let (from_name, to_name) = (&self.nodes[from].name, &self.nodes[to].name);
        let verdict = rule(&Packet { from: from_name, to: to_name, transport, payload, over_mtu });
        self.rule = Some(rule);
        let len = payload.len();
        let void = match verdict {
            Verdict::Corrupt => !transport.is_udp() || len == 0,
            Verdict::Truncate(keep) => !transport.is_udp() || keep >= len,
            _ => false,
        };
        if verdict == Verdict::Pass
            || void
            || !self.fault(from, to, format_args!("rule: {verdict:?} {transport} {len} bytes"))
        {
            return Verdict::Pass;
        }
        match verdict {
            Verdict::Delay(delay) => {
                let index = self.tape.len() - 1;
                self.tape[index].duration = Some(delay);
                match self.soften.get(&index) {
                    Some(&cap) => {
                        self.tape[index].softened = Some(cap);
                        Verdict::Delay(delay.min(cap))
                    }
                    None => verdict,
                }
            }
            _ => verdict,
        }
    }

    /// Records a fault decision on the tape and says whether to apply it: a shrinking replay
    /// allows only some of them. Randomness is drawn before this, so suppressing a fault does
    /// not shift the draws that follow.
    pub fn fault(&mut self, from: NodeId, to: NodeId, what: std::fmt::Arguments<'_>) -> bool {
        let description = match (self.nodes.get(from), self.nodes.get(to)) {
            (Some(a), Some(b)) if from != to => format!("{} -> {}: {what}", a.name, b.name),
            (Some(a), _) => format!("{}: {what}", a.name),
            _ => what.to_string(),
        };
        self.fault_described(description)
    }

    /// [`fault`](Self::fault) with the description already made.
    pub fn fault_described(&mut self, description: String) -> bool {
        let index = self.tape.len();
        let applied = self.allowed.as_ref().is_none_or(|allowed| allowed.contains(&index));
        let verb = if applied { "fault" } else { "fault suppressed" };
        self.log(format_args!("{verb} #{index}: {description}"));
        self.tape.push(Fault { index, description, applied, duration: None, softened: None });
        applied
    }

    /// Records that the fault just taped (applied) lasts until `end`; a shrinking replay that
    /// softens it schedules its end.
    pub fn lasting(&mut self, end: FaultEnd) {
        let Some(index) = self.tape.len().checked_sub(1) else { return };
        self.open.insert(index, (end, self.now));
        if let Some(&cap) = self.soften.get(&index) {
            self.tape[index].softened = Some(cap);
            let at = self.now + cap;
            self.schedule(at, Ev::EndFault(index));
        }
    }

    /// The lasting faults that `matches` ends now (the application's heal, release, resume or
    /// restart): their durations go on the tape.
    pub fn end_faults(&mut self, matches: impl Fn(&FaultEnd) -> bool) {
        let ended: Vec<usize> =
            self.open.iter().filter(|(_, (end, _))| matches(end)).map(|(&i, _)| i).collect();
        for index in ended {
            if let Some((_, began)) = self.open.remove(&index) {
                self.tape[index].duration = Some(self.now - began);
            }
        }
    }

    /// Partitions and holds act when a packet arrives.
    pub(super) fn gate(&mut self, event: Ev) -> Option<Ev> {
        let Some((from, to)) = self.path(&event) else { return Some(event) };
        if self.held.contains(&(from, to)) {
            self.parked.push(event);
            return None;
        }
        if !self.blocked.contains(&(from, to)) {
            return Some(event);
        }
        match event {
            // A stream keeps trying, as TCP retransmits; sequence numbers keep it in order.
            Ev::Segment { conn, from: side, .. } | Ev::Fin { conn, from: side, .. } => {
                let at = self.now + RETRANSMIT;
                self.reschedule_in_order(conn, side, at, event);
            }
            Ev::SynAck { conn, .. } => {
                let at = self.now + RETRANSMIT;
                self.reschedule_in_order(conn, 1, at, event);
            }
            Ev::Syn(conn) => {
                self.schedule(self.now + RETRANSMIT, Ev::Syn(conn));
            }
            // Datagrams and refusals are simply lost.
            _ => (),
        }
        None
    }

    /// The nodes a packet travels between, if it is a packet.
    pub(super) fn path(&self, event: &Ev) -> Option<(NodeId, NodeId)> {
        let ends = |conn: &u64, from: usize| {
            let c = self.conns.get(conn)?;
            let (a, b) = (c.ends[from].node, c.ends[1 - from].node);
            (b != usize::MAX).then_some((a, b))
        };
        match event {
            Ev::Syn(conn) => {
                let c = self.conns.get(conn)?;
                Some((c.ends[0].node, self.route(c.ends[0].node, c.ends[1].addr.ip())?))
            }
            Ev::SynAck { conn, .. } | Ev::Refused(conn) => ends(conn, 1),
            Ev::Segment { conn, from, .. } | Ev::Fin { conn, from, .. } => ends(conn, *from),
            Ev::Datagram { from_node, to_node, .. } => Some((*from_node, *to_node)),
            _ => None,
        }
    }

    /// Lets held packets on `from → to` go (all pairs if `None`), in their order.
    pub fn release(&mut self, pair: Option<(NodeId, NodeId)>) {
        let parked = std::mem::take(&mut self.parked);
        // One nanosecond apart: released packets arrive in the order they were held.
        let mut at = self.now;
        for event in parked {
            let path = self.path(&event);
            if pair.is_none() || path == pair {
                at += Duration::from_nanos(1);
                match event {
                    Ev::Segment { conn, from, .. } | Ev::Fin { conn, from, .. } => {
                        self.reschedule_in_order(conn, from, at, event);
                    }
                    Ev::SynAck { conn, .. } => self.reschedule_in_order(conn, 1, at, event),
                    other => {
                        self.schedule(at, other);
                    }
                }
            } else {
                self.parked.push(event);
            }
        }
    }
}
