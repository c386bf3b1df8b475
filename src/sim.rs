//! A deterministic simulated network with virtual time, behind the same node API.
//!
//! A [`World`] runs many nodes, each created by your own application function — the one that
//! calls `listen`, `connect`, `send`, `send_with_timer` and blocks in `for_each` — and hands
//! them the very same [`NodeHandler`]/[`NodeListener`] types as [`crate::node::split`]. Time is
//! virtual and jumps to the next event; one seed fixes everything random (latencies, losses,
//! which of two simultaneous events goes first), so a failing run replays exactly.
//!
//! ```
//! use portnet::network::{NetEvent, Transport};
//! use portnet::node::{NodeEvent, NodeHandler, NodeListener};
//! use portnet::sim::World;
//! use std::sync::{Arc, Mutex};
//!
//! fn server(handler: NodeHandler<()>, listener: NodeListener<()>) {
//!     handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
//!     listener.for_each(|event| {
//!         if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
//!             handler.network().send(endpoint, data);
//!         }
//!     });
//! }
//!
//! let echoed = Arc::new(Mutex::new(Vec::new()));
//! let mut world = World::with_seed(7);
//! world.node("server", server);
//! let got = echoed.clone();
//! world.node("client", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
//!     handler.network().connect(Transport::FramedTcp, "server:3000").unwrap();
//!     listener.for_each(|event| match event {
//!         NodeEvent::Network(NetEvent::Connected(endpoint, true)) => {
//!             handler.network().send(endpoint, b"hello");
//!         }
//!         NodeEvent::Network(NetEvent::Message(_, data)) => {
//!             got.lock().unwrap().push(data.to_vec());
//!             handler.stop();
//!         }
//!         _ => (),
//!     });
//! });
//! world.run_until_idle();
//! assert_eq!(*echoed.lock().unwrap(), vec![b"hello".to_vec()]);
//! ```
//!
//! Seeds: [`World::new`] takes `PORTNET_SIM_SEED` from the environment, or draws one; a failing
//! test prints it with the command that reruns exactly that case, the tail of the trace, and
//! where the whole trace was written.

mod addresses;
mod async_node;
mod determinism;

pub use crate::backend::sim::world::{
    Fault, Link, Packet, Spread, UDP_OVERHEAD_V4, UDP_OVERHEAD_V6, Verdict,
};
pub use determinism::check_determinism;

use crate::backend::sim::world::{Core, Ev, FaultEnd, NodeId, Status};
use crate::backend::sim::{self as driver, CURRENT, Shared, Yielded};
use crate::backend::{Controller, Processor};
use crate::core::clock::Clock;
use crate::node::{self, NodeHandler, NodeListener};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The environment variable that fixes a world's seed.
pub const SEED_VAR: &str = "PORTNET_SIM_SEED";

/// Each node's coroutine stack, in words (1 MiB): as deep as a typical thread's main work
/// needs. Memory is reserved, and only touched as the application uses it. Even: an odd size
/// would make generator touch every page to track usage.
const NODE_STACK_WORDS: usize = (1 << 20) / std::mem::size_of::<usize>();

/// Steps `run_until_idle` takes before it gives up on a world that never idles.
const MAX_STEPS: u64 = 50_000_000;

static NEXT_WORLD: AtomicU64 = AtomicU64::new(1);

/// A node's application, running or waiting: resumed by the world, yields back to it.
type Coroutine = generator::Generator<'static, (), Yielded>;
type Spawner = Box<dyn Fn(Arc<Shared>, NodeId) -> Coroutine + Send>;
type Action = Box<dyn FnOnce(&mut World) + Send>;

struct NodeSlot {
    spawn: Spawner,
    /// `None` once the application returned, panicked or crashed.
    coroutine: Option<Coroutine>,
}

/// Marks `node` as the one running on this thread while it lives.
struct Running(Option<(u64, NodeId)>);

impl Running {
    fn enter(world: u64, node: NodeId) -> Running {
        Running(CURRENT.replace(Some((world, node))))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        CURRENT.set(self.0);
    }
}

/// A simulated network of nodes, on virtual time.
pub struct World {
    seed: u64,
    shared: Arc<Shared>,
    nodes: Vec<NodeSlot>,
    actions: BTreeMap<u64, Action>,
    next_action: u64,
    failure: Option<String>,
    steps: u64,
    /// Nodes a shrinking replay restarted before the scenario's own `restart`.
    restarted_early: std::collections::BTreeSet<NodeId>,
}

impl World {
    /// A world seeded from `PORTNET_SIM_SEED`, or from a fresh random seed (printed if the test
    /// fails, so the case can be rerun).
    pub fn new() -> World {
        let seed = std::env::var(SEED_VAR)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(random_seed);
        World::with_seed(seed)
    }

    /// A world with this seed: the same seed gives the same run, event for event.
    pub fn with_seed(seed: u64) -> World {
        let (clock, now) = Clock::manual();
        drop(clock);
        let shared = Arc::new(Shared {
            id: NEXT_WORLD.fetch_add(1, Ordering::Relaxed),
            core: Mutex::new(Core::new(seed, now)),
            world_thread: std::thread::current().id(),
            seed,
            app_events: Mutex::new(None),
        });
        World {
            seed,
            shared,
            nodes: Vec::new(),
            actions: BTreeMap::new(),
            next_action: 0,
            failure: None,
            steps: 0,
            restarted_early: Default::default(),
        }
    }

    /// This world's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current virtual time (since the world began).
    pub fn now(&self) -> Duration {
        self.shared.core().now
    }

    /// Adds a node named `name` (other nodes reach it as `"name:port"`) running `app`, which
    /// gets the node's handler and listener exactly as from [`crate::node::split`]. `app`
    /// starts at the current virtual time; it runs again from the start after
    /// [`restart`](Self::restart).
    pub fn node<S, F>(&mut self, name: &str, app: F)
    where
        S: Send + 'static,
        F: Fn(NodeHandler<S>, NodeListener<S>) + Send + Sync + 'static,
    {
        let id = {
            let mut core = self.shared.core();
            assert!(core.node_id(name).is_none(), "portnet sim: two nodes named {name:?}");
            core.add_node(name)
        };
        let app = Arc::new(app);
        let spawn: Spawner = Box::new(move |shared, node| {
            let app = app.clone();
            generator::Gn::<()>::new_opt(NODE_STACK_WORDS, move || node_body(shared, node, app))
        });
        self.nodes.push(NodeSlot { spawn, coroutine: None });
        self.start(id);
    }

    fn start(&mut self, node: NodeId) {
        self.nodes[node].coroutine = Some((self.nodes[node].spawn)(self.shared.clone(), node));
        let mut core = self.shared.core();
        core.nodes[node].status = Status::Starting;
        let (now, life) = (core.now, core.nodes[node].life);
        core.schedule(now, Ev::Start(node, life));
        let name = core.nodes[node].name.clone();
        core.log(format_args!("{name} starts"));
    }

    fn id(&self, name: &str) -> NodeId {
        self.shared.core().node_id(name).unwrap_or_else(|| panic!("no simulated node {name:?}"))
    }

    /// Runs the next event (with every other packet due at the same instant: a node takes
    /// them in one run). Returns the trace lines it produced, or `None` if nothing is left.
    pub fn step(&mut self) -> Option<Vec<String>> {
        let before = self.shared.core().trace.len();
        self.advance().then(|| self.shared.core().trace.lines_from(before))
    }

    /// Runs the nodes that what the test did between runs (a reset, a crash) gave events, at
    /// the current time. Returns whether there were any.
    fn run_pending(&mut self) -> bool {
        if self.shared.core().to_run.is_empty() {
            return false;
        }
        self.steps += 1;
        self.run_ready_nodes();
        self.notify_drained();
        self.check();
        true
    }

    /// Runs the next event (and the packets due with it). Returns false if nothing is left.
    fn advance(&mut self) -> bool {
        if self.run_pending() {
            return true;
        }
        let Some((seq, event)) = self.shared.core().pop() else { return false };
        self.steps += 1;
        match event {
            Ev::Start(node, life) => {
                if self.shared.core().nodes[node].life == life {
                    self.run_node(node);
                }
            }
            Ev::Wake(node, life) => {
                let current = {
                    let mut core = self.shared.core();
                    let current = core.nodes[node].life == life && core.is_current_wake(node, seq);
                    if current {
                        core.nodes[node].wake = None;
                    }
                    current
                };
                if current {
                    self.run_node(node);
                }
            }
            Ev::Action(id) => {
                if let Some(action) = self.actions.remove(&id) {
                    action(self);
                }
            }
            Ev::EndFault(index) => self.end_fault_early(index),
            network => {
                let drained = {
                    let mut core = self.shared.core();
                    let unhandled = core.handle(network);
                    debug_assert!(unhandled.is_none());
                    // Every other packet due at this same instant too, before any node runs:
                    // a node then takes all that reached it at once (one run, not one each),
                    // which is what running it once per packet at this instant would do.
                    while let Some(network) = core.pop_network_due_now() {
                        let unhandled = core.handle(network);
                        debug_assert!(unhandled.is_none());
                    }
                    std::mem::take(&mut core.drained)
                };
                // Outside the lock: they send signals, which wake nodes.
                for notify in drained {
                    notify();
                }
            }
        }
        self.run_ready_nodes();
        self.notify_drained();
        self.check();
        true
    }

    /// Tells send-queue waiters whose queue drained or closed (outside the lock: they send
    /// signals, which wake nodes), until none is left.
    fn notify_drained(&mut self) {
        loop {
            let drained = std::mem::take(&mut self.shared.core().drained);
            if drained.is_empty() {
                return;
            }
            for notify in drained {
                notify();
            }
            self.run_ready_nodes();
        }
    }

    /// Runs the nodes that got events, at the current time, until none has any left.
    fn run_ready_nodes(&mut self) {
        loop {
            let next = {
                let mut core = self.shared.core();
                if core.to_run.is_empty() {
                    return;
                }
                core.to_run.remove(0)
            };
            let has_events = !self.shared.core().nodes[next].inbox.is_empty();
            if has_events {
                self.run_node(next);
            }
        }
    }

    /// Runs `node` until it waits again (or ends).
    fn run_node(&mut self, node: NodeId) {
        {
            let mut core = self.shared.core();
            let state = &mut core.nodes[node];
            if state.paused || !matches!(state.status, Status::Waiting | Status::Starting) {
                return;
            }
            state.status = Status::Running;
        }
        let Some(coroutine) = &mut self.nodes[node].coroutine else { return };
        let answer = {
            let _running = Running::enter(self.shared.id, node);
            coroutine.resume()
        };
        match answer {
            Some(Yielded::Waiting) => (),
            Some(Yielded::Finished) | None => {
                // Its sockets close as a process's do when it exits.
                self.nodes[node].coroutine = None;
                let mut core = self.shared.core();
                core.reset_node(node);
                core.nodes[node].status = Status::Finished;
            }
            Some(Yielded::Panicked(message)) => {
                self.nodes[node].coroutine = None;
                let name = self.name(node);
                self.shared.core().nodes[node].status = Status::Dead;
                self.fail(format!("node {name:?} panicked: {message}"));
            }
        }
    }

    /// Ends a node's application where it waits: its stack unwinds (destructors run) on this
    /// thread, as the node running.
    fn kill(&mut self, node: NodeId) {
        if let Some(mut coroutine) = self.nodes[node].coroutine.take() {
            let _running = Running::enter(self.shared.id, node);
            coroutine.cancel();
        }
    }

    /// Ends a lasting fault that a shrinking replay cut short.
    fn end_fault_early(&mut self, index: usize) {
        let end = {
            let mut core = self.shared.core();
            let Some((end, _)) = core.open.remove(&index) else { return };
            core.log(format_args!("fault #{index} cut short by the shrinker"));
            end
        };
        match end {
            FaultEnd::Unblock(a, b) => {
                self.shared.core().blocked.remove(&(a, b));
            }
            FaultEnd::Release(a, b) => {
                let mut core = self.shared.core();
                core.held.remove(&(a, b));
                core.release(Some((a, b)));
            }
            FaultEnd::Resume(node) => self.resume(&self.name(node)),
            FaultEnd::Restart(node) => {
                self.restart(&self.name(node));
                self.restarted_early.insert(node);
            }
        }
    }

    fn name(&self, node: NodeId) -> String {
        self.shared.core().nodes[node].name.clone()
    }

    fn fail(&mut self, message: String) {
        if self.failure.is_none() {
            self.failure = Some(message);
        }
    }

    fn check(&mut self) {
        if let Some(message) = self.failure.take() {
            panic!("{}", self.report(&message));
        }
    }

    /// Runs until no event is left.
    ///
    /// Panics after 50 million steps: a world with periodic timers never idles, so use
    /// [`run_for`](Self::run_for) or [`run_until`](Self::run_until) there.
    pub fn run_until_idle(&mut self) {
        let start = self.steps;
        while self.advance() {
            if self.steps - start > MAX_STEPS {
                let message = format!("not idle after {MAX_STEPS} steps");
                panic!("{}", self.report(&message));
            }
        }
    }

    /// Runs every event due in the next `duration` of virtual time; the clock then reads
    /// `now + duration`.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now() + duration;
        self.run_pending();
        while self.shared.core().next_time().is_some_and(|at| at <= until) {
            self.advance();
        }
        let mut core = self.shared.core();
        core.now = until;
        *core.clock.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }

    /// Runs until `done` holds (checked before each step) or no event is left. Returns whether
    /// `done` held.
    pub fn run_until(&mut self, mut done: impl FnMut(&World) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if !self.advance() {
                return done(self);
            }
        }
    }

    /// Runs `action` on the world at virtual time `at` (or now, if that is past).
    pub fn at(&mut self, at: Duration, action: impl FnOnce(&mut World) + Send + 'static) {
        let id = self.next_action;
        self.next_action += 1;
        self.actions.insert(id, Box::new(action));
        self.shared.core().schedule(at, Ev::Action(id));
    }

    // ----- faults -----

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

    // ----- observing -----

    /// Everything that happened so far, one line per event, stamped with virtual time.
    pub fn trace(&self) -> Vec<String> {
        self.shared.core().trace.lines_from(0)
    }

    /// How many network events were delivered to nodes.
    pub fn deliveries(&self) -> u64 {
        self.shared.core().delivered
    }

    /// Whether `node`'s application function has returned (after `stop`).
    pub fn is_finished(&self, node: &str) -> bool {
        let id = self.id(node);
        self.shared.core().nodes[id].status == Status::Finished
    }

    /// A failure report: the seed, the command that reruns it, the tail of the trace, and the
    /// file the whole trace was written to.
    fn report(&self, message: &str) -> String {
        let trace = self.trace();
        let test = std::thread::current().name().unwrap_or("<test>").to_string();
        let dir = std::env::temp_dir().join("portnet-sim");
        let file = dir.join(format!("{}-{}.trace", test.replace("::", "-"), self.seed));
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&file, trace.join("\n") + "\n"))
            .map(|()| file.display().to_string())
            .unwrap_or_else(|e| format!("(not written: {e})"));
        let tail = trace.iter().rev().take(25).rev().cloned().collect::<Vec<_>>().join("\n");
        format!(
            "portnet sim: {message}\n  seed: {seed}\n  rerun: {SEED_VAR}={seed} cargo test {test}\n  \
             trace ({} lines) written to {written}; last lines:\n{tail}",
            trace.len(),
            seed = self.seed,
        )
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() && self.failure.is_none() {
            // The test failed on its own assertion: say how to replay it.
            eprintln!("{}", self.report("the test failed inside this world"));
        }
        if std::thread::panicking() {
            // Unwinding a node now would panic inside a panic: leave their stacks be.
            return;
        }
        for node in 0..self.nodes.len() {
            self.kill(node);
        }
    }
}

/// The body of a simulated node's coroutine: the application, with its handler and listener.
fn node_body<S, F>(shared: Arc<Shared>, node: NodeId, app: Arc<F>) -> Yielded
where
    S: Send + 'static,
    F: Fn(NodeHandler<S>, NodeListener<S>) + Send + Sync + 'static,
{
    let (clock, rng) = determinism::clock_and_rng(&shared, node);
    let observer = determinism::observer(&shared, node);
    let (controller, processor) = driver::split(shared, node);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let (network, processor) =
            crate::network::split_on(Controller::Sim(controller), Processor::Sim(processor));
        let (handler, listener) = node::split_on(network, processor, clock, rng, observer);
        app(handler, listener);
    }));
    match result {
        Ok(()) => Yielded::Finished,
        // A crash: generator's own unwinding must reach it, which ends the coroutine.
        Err(payload) if payload.is::<generator::Error>() => std::panic::resume_unwind(payload),
        Err(payload) => Yielded::Panicked(
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into()),
        ),
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish() % 1_000_000_000
}

/// A scenario run that failed.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The seed that reproduces it.
    pub seed: u64,
    /// What failed (the panic message, with the world's report when the world saw it).
    pub message: String,
    /// The faults that took effect in that run.
    pub faults: Vec<Fault>,
}

/// What [`shrink`] found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The seed of the failing run.
    pub seed: u64,
    /// The fewest of its faults that still make the scenario fail, lasting ones cut as short as
    /// still fails (see [`Fault::softened`]).
    pub faults: Vec<Fault>,
    /// How the minimal run failed.
    pub message: String,
    /// The minimal run's trace.
    pub trace: Vec<String>,
    /// How many runs shrinking took.
    pub runs: usize,
}

impl std::fmt::Display for Shrunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} still fails with {} fault(s):", self.seed, self.faults.len())?;
        for fault in &self.faults {
            writeln!(f, "  {fault}")?;
        }
        write!(f, "failure: {}", self.message.lines().next().unwrap_or(""))
    }
}

thread_local! {
    /// Set while a runner runs scenarios that are expected to fail: their panics are results,
    /// not news.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `scenario` in a fresh world; `allowed` restricts which fault decisions take effect.
fn run_once(
    seed: u64,
    allowed: Option<std::collections::BTreeSet<usize>>,
    soften: BTreeMap<usize, Duration>,
    scenario: &dyn Fn(&mut World),
) -> (Result<(), String>, Vec<Fault>, Vec<String>) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.get() {
                previous(info);
            }
        }));
    });
    let mut world = World::with_seed(seed);
    {
        let mut core = world.shared.core();
        core.allowed = allowed;
        core.soften = soften;
    }
    QUIET.set(true);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| scenario(&mut world)));
    QUIET.set(false);
    let (faults, trace) = {
        let mut core = world.shared.core();
        // Faults still in effect lasted as long as the run did.
        core.end_faults(|_| true);
        (core.tape.iter().filter(|f| f.applied).cloned().collect(), core.trace.lines_from(0))
    };
    let result = result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(a panic without a message)".into())
    });
    (result, faults, trace)
}

/// Runs `scenario` (which builds a world's nodes and faults, runs it, and panics when an
/// invariant breaks) once per seed, and returns the seeds that failed.
pub fn run_seeds(
    seeds: impl IntoIterator<Item = u64>,
    scenario: impl Fn(&mut World),
) -> Vec<Failure> {
    seeds
        .into_iter()
        .filter_map(|seed| {
            let (result, faults, _) = run_once(seed, None, BTreeMap::new(), &scenario);
            result.err().map(|message| Failure { seed, message, faults })
        })
        .collect()
}

/// Finds the fewest and mildest faults of a failing run that still make `scenario` fail.
///
/// First it replays the seed with faults removed (a chunk at a time, then one at a time) while
/// the run keeps failing. Then it softens what is left: each lasting fault (a partition, hold,
/// pause, crash or rule delay) is cut to half its length, and half again, while the run keeps
/// failing. Returns `None` if the seed does not fail.
pub fn shrink(seed: u64, scenario: impl Fn(&mut World)) -> Option<Shrunk> {
    const MAX_RUNS: usize = 400;
    /// Softening stops here: shorter makes no difference worth reporting.
    const SHORTEST: Duration = Duration::from_millis(1);
    let (result, faults, trace) = run_once(seed, None, BTreeMap::new(), &scenario);
    let mut message = result.err()?;
    let mut trace = trace;
    let lasted: BTreeMap<usize, Duration> =
        faults.iter().filter_map(|f| Some((f.index, f.duration?))).collect();
    let mut kept: Vec<usize> = faults.iter().map(|f| f.index).collect();
    let mut minimal = faults;
    let mut runs = 1;
    let mut chunk = kept.len().div_ceil(2).max(1);
    while !kept.is_empty() && runs < MAX_RUNS {
        let mut removed = false;
        let mut start = 0;
        while start < kept.len() && runs < MAX_RUNS {
            let candidate: Vec<usize> = kept[..start]
                .iter()
                .chain(&kept[(start + chunk).min(kept.len())..])
                .copied()
                .collect();
            runs += 1;
            let allowed = Some(candidate.iter().copied().collect());
            let (result, faults, candidate_trace) =
                run_once(seed, allowed, BTreeMap::new(), &scenario);
            match result {
                Err(failure) => {
                    kept = candidate;
                    minimal = faults;
                    message = failure;
                    trace = candidate_trace;
                    removed = true;
                }
                Ok(()) => start += chunk,
            }
        }
        if chunk == 1 && !removed {
            break;
        }
        if !removed {
            chunk = chunk.div_ceil(2);
        }
        chunk = chunk.min(kept.len()).max(1);
    }
    // Soften, one lasting fault at a time, keeping every cut that still fails.
    let allowed: std::collections::BTreeSet<usize> = kept.iter().copied().collect();
    let mut soften = BTreeMap::new();
    for &index in &kept {
        let Some(&full) = lasted.get(&index) else { continue };
        let mut cut = full / 2;
        while cut >= SHORTEST && runs < MAX_RUNS {
            let mut candidate = soften.clone();
            candidate.insert(index, cut);
            runs += 1;
            let (result, faults, candidate_trace) =
                run_once(seed, Some(allowed.clone()), candidate.clone(), &scenario);
            match result {
                Err(failure) => {
                    soften = candidate;
                    minimal = faults;
                    message = failure;
                    trace = candidate_trace;
                    cut /= 2;
                }
                Ok(()) => break,
            }
        }
    }
    // A cut fault's own run never saw its full length: report it from the first run.
    for fault in &mut minimal {
        if fault.duration.is_none() || fault.softened.is_some() {
            fault.duration = lasted.get(&fault.index).copied().or(fault.duration);
        }
    }
    Some(Shrunk { seed, faults: minimal, message, trace, runs })
}
