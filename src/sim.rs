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
mod faults;
mod seeds;

pub use crate::backend::sim::world::{
    Fault, Link, Packet, Spread, UDP_OVERHEAD_V4, UDP_OVERHEAD_V6, Verdict,
};
pub use determinism::check_determinism;
use seeds::random_seed;
pub use seeds::{Failure, Shrunk, run_seeds, shrink};

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
