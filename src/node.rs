//! The node: a network and a signal queue behind one event loop.
//!
//! [`split`] gives a [`NodeHandler`] (act: network, signals, stop; clone it anywhere) and a
//! [`NodeListener`] (receive events: `for_each`, `for_each_async`, `enqueue`, or pump it
//! yourself with `try_next`/`poll_events`; natively, `into_stream` gives a
//! `NodeStream` for async code on any executor, see `docs/async.md`).
//!
//! The loop runs on the thread that calls `for_each` and sleeps until something happens: a
//! network event, a signal, a timer, or `stop()`. Within one turn it first delivers the
//! signals that are ready (priority first, then in order, timers at their deadline), then the
//! network events that are ready, in the order the system reported them. A signal sent before
//! what causes a network event (a signal, then a `connect`) is delivered before that event.

pub use crate::network::StoredNetEvent;
pub use rng::NodeRng;
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub(crate) use rng::time_entropy;
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub(crate) use stream::sim::run as run_simulated_async;
pub use stream::{
    Connecting, Delay, MAX_GATHERED_BYTES, MAX_GATHERED_EVENTS, NodeStream, Writable,
};

mod observer;
mod rng;
mod stream;

pub(crate) use observer::EventObserver;

use crate::events::{self, EventReceiver, EventSender};
use crate::network::{self, Endpoint, EventDetail, NetEvent, NetworkController, NetworkProcessor};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// An event of a node: from the network, or a signal it sent itself.
pub enum NodeEvent<'a, S> {
    /// A network event.
    Network(NetEvent<'a>),
    /// A signal sent with [`NodeHandler::signals`].
    Signal(S),
}

impl<S: std::fmt::Debug> std::fmt::Debug for NodeEvent<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeEvent::Network(event) => write!(f, "NodeEvent::Network({event:?})"),
            NodeEvent::Signal(signal) => write!(f, "NodeEvent::Signal({signal:?})"),
        }
    }
}

impl<'a, S> NodeEvent<'a, S> {
    /// The network event. Panics on a signal (as message-io's does): match when unsure.
    pub fn network(self) -> NetEvent<'a> {
        match self {
            NodeEvent::Network(event) => event,
            NodeEvent::Signal(_) => panic!("NodeEvent::network() called on a signal"),
        }
    }

    /// The signal. Panics on a network event (as message-io's does): match when unsure.
    pub fn signal(self) -> S {
        match self {
            NodeEvent::Signal(signal) => signal,
            NodeEvent::Network(_) => panic!("NodeEvent::signal() called on a network event"),
        }
    }
}

/// A [`NodeEvent`] that owns its data.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredNodeEvent<S> {
    /// A network event.
    Network(StoredNetEvent),
    /// A signal.
    Signal(S),
}

impl<S: std::fmt::Debug> std::fmt::Debug for StoredNodeEvent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredNodeEvent::Network(event) => write!(f, "StoredNodeEvent::Network({event:?})"),
            StoredNodeEvent::Signal(signal) => write!(f, "StoredNodeEvent::Signal({signal:?})"),
        }
    }
}

impl<S> StoredNodeEvent<S> {
    /// The network event. Panics on a signal.
    pub fn network(self) -> StoredNetEvent {
        match self {
            StoredNodeEvent::Network(event) => event,
            StoredNodeEvent::Signal(_) => panic!("StoredNodeEvent::network() called on a signal"),
        }
    }

    /// The signal. Panics on a network event.
    pub fn signal(self) -> S {
        match self {
            StoredNodeEvent::Signal(signal) => signal,
            StoredNodeEvent::Network(_) => {
                panic!("StoredNodeEvent::signal() called on a network event")
            }
        }
    }
}

impl<S> From<NodeEvent<'_, S>> for StoredNodeEvent<S> {
    fn from(event: NodeEvent<'_, S>) -> Self {
        match event {
            NodeEvent::Network(event) => StoredNodeEvent::Network(event.into()),
            NodeEvent::Signal(signal) => StoredNodeEvent::Signal(signal),
        }
    }
}

/// Creates a node on this target's backend.
///
/// ```
/// use portnet::node::{self, NodeEvent};
/// use portnet::network::{NetEvent, Transport};
/// use std::time::Duration;
///
/// let (handler, listener) = node::split();
/// let (_, addr) = handler.network().listen(Transport::FramedTcp, "127.0.0.1:0").unwrap();
/// let (server, _) = handler.network().connect(Transport::FramedTcp, addr).unwrap();
/// handler.signals().send_with_timer("give up", Duration::from_secs(10));
///
/// let mut echoed = None;
/// listener.for_each(|event| match event {
///     NodeEvent::Network(NetEvent::Connected(endpoint, true)) => {
///         handler.network().send(endpoint, b"hello");
///     }
///     NodeEvent::Network(NetEvent::Message(endpoint, data)) if endpoint == server => {
///         echoed = Some(data.to_vec());
///         handler.stop();
///     }
///     NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
///         handler.network().send(endpoint, data); // the server side echoes
///     }
///     NodeEvent::Network(_) => (),
///     NodeEvent::Signal(_) => handler.stop(),
/// });
/// assert_eq!(echoed.as_deref(), Some(&b"hello"[..]));
/// ```
pub fn split<S: Send>() -> (NodeHandler<S>, NodeListener<S>) {
    let (network, processor) = network::split();
    split_on(network, processor, crate::core::clock::Clock::system(), NodeRng::from_os(), None)
}

/// A node over the given network and clock: every backend's nodes are made here.
pub(crate) fn split_on<S>(
    network: NetworkController,
    processor: NetworkProcessor,
    clock: crate::core::clock::Clock,
    rng: NodeRng,
    observer: Option<EventObserver>,
) -> (NodeHandler<S>, NodeListener<S>) {
    let (signals, receiver) = events::split_with_clock(clock);
    signals.set_waker(network.weak_waker());
    let handler = NodeHandler(Arc::new(HandlerInner {
        network,
        signals,
        running: AtomicBool::new(true),
        rng,
        #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
        async_slot: Default::default(),
    }));
    let listener = NodeListener {
        processor,
        signals: receiver,
        handler: handler.clone(),
        pending: VecDeque::new(),
        observer,
    };
    (handler, listener)
}

struct HandlerInner<S> {
    network: NetworkController,
    signals: EventSender<S>,
    running: AtomicBool,
    rng: NodeRng,
    /// In a simulated world: the node's async executor and latest stream, if any.
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    async_slot: stream::sim::AsyncSlot,
}

/// Acts on a node: its network, its signals, stopping it. Clone it freely, use it from any
/// thread.
pub struct NodeHandler<S>(Arc<HandlerInner<S>>);

impl<S> Clone for NodeHandler<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S> NodeHandler<S> {
    /// The node's network.
    pub fn network(&self) -> &NetworkController {
        &self.0.network
    }

    /// The node's signal queue: events the node sends itself, now or on a timer.
    pub fn signals(&self) -> &EventSender<S> {
        &self.0.signals
    }

    /// Stops the node: the listener delivers no more events and `for_each` returns promptly
    /// (the loop is woken, not polled), after writing what `send` had queued for at most the
    /// network's linger ([`NetworkController::set_linger`], 1 s by default); what peers did not
    /// take by then is dropped, with a warning per connection.
    pub fn stop(&self) {
        self.0.running.store(false, Ordering::Release);
        self.0.network.wake();
    }

    /// The time on the node's clock: since the node was created natively, since the world
    /// began in a simulated world (virtual time).
    pub fn now(&self) -> Duration {
        self.0.signals.now()
    }

    /// The node's random source: draw the application's random choices from it (see
    /// [`NodeRng`]). OS-seeded natively; in a simulated world derived from the world's seed
    /// and the node's name, so a run that depends on these choices replays from the seed.
    ///
    /// ```
    /// use portnet::sim::World;
    /// use rand::RngCore;
    /// use std::sync::{Arc, Mutex};
    ///
    /// let draw = |seed| {
    ///     let drawn = Arc::new(Mutex::new(0));
    ///     let out = drawn.clone();
    ///     let mut world = World::with_seed(seed);
    ///     world.node::<(), _>("a", move |handler, _| {
    ///         *out.lock().unwrap() = handler.rng().next_u64();
    ///     });
    ///     world.run_until_idle();
    ///     let value = *drawn.lock().unwrap();
    ///     value
    /// };
    /// assert_eq!(draw(7), draw(7)); // the same seed, the same choices
    /// assert_ne!(draw(7), draw(8));
    /// ```
    pub fn rng(&self) -> NodeRng {
        self.0.rng.clone()
    }

    /// Whether the node is running (from creation until `stop`).
    pub fn is_running(&self) -> bool {
        self.0.running.load(Ordering::Acquire)
    }
}

impl<S: Send + 'static> NodeHandler<S> {
    /// Delivers `signal` once `endpoint`'s send queue has room again: at once if it has room
    /// now. Use it after [`SendStatus::QueueFull`](crate::network::SendStatus::QueueFull) to
    /// pace a sender by the peer's reading speed instead of by timers.
    pub fn signal_when_writable(&self, endpoint: Endpoint, signal: S) {
        let signals = self.0.signals.clone();
        self.0.network.when_writable(endpoint, Box::new(move || signals.send(signal)));
    }
}

/// Receives a node's events.
pub struct NodeListener<S> {
    processor: NetworkProcessor,
    signals: EventReceiver<S>,
    handler: NodeHandler<S>,
    /// Events gathered by `try_next` and not handed out yet.
    pending: Gathered<S>,
    /// Told of each event delivered (only in a simulated world that records them).
    observer: Option<EventObserver>,
}

impl<S> NodeListener<S> {
    /// Runs one turn of the loop: ready signals, then network events, waiting at most
    /// `timeout` (forever if `None`) when nothing is ready. Returns how many events it
    /// delivered.
    fn turn(
        &mut self,
        timeout: Option<Duration>,
        callback: &mut dyn FnMut(NodeEvent<'_, S>),
    ) -> usize {
        // Events of this turn are described live, not by what `try_next` handed out last.
        self.handler.network().hand_out(None, None);
        self.turn_keeping_hand_out(timeout, callback)
    }

    /// [`turn`](Self::turn) without resetting what `message_kind`/`ws_close` describe: for
    /// turns that only gather (a [`NodeStream`]'s waiter runs them while the application may
    /// still ask about the event it was handed last).
    fn turn_keeping_hand_out(
        &mut self,
        timeout: Option<Duration>,
        callback: &mut dyn FnMut(NodeEvent<'_, S>),
    ) -> usize {
        let handler = &self.handler;
        let signals = &mut self.signals;
        let mut observer = self.observer.as_mut();
        let mut delivered = deliver_ready_signals(handler, signals, &mut observer, callback);
        if !handler.is_running() {
            return delivered;
        }
        let wait = if delivered > 0 {
            Some(Duration::ZERO)
        } else {
            match (timeout, signals.time_to_next()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let mut first = true;
        self.processor.process(wait, &mut |event| {
            if first {
                // A signal sent while the poll waited may have been sent before what caused
                // these events (a signal, then a connect): it goes first, as in a world.
                first = false;
                let signalled = deliver_ready_signals(handler, signals, &mut observer, callback);
                delivered += signalled;
                // Those signals' handlers may have removed this event's resource (or the
                // listener of an `Accepted`).
                let removed = |id| handler.network().was_removed(id);
                if signalled > 0 && event_resources(&event).into_iter().flatten().any(removed) {
                    return;
                }
            }
            if handler.is_running() {
                delivered += 1;
                if let Some(observe) = observer.as_mut() {
                    observe(format_args!("{}", observer::Described(&event)));
                }
                callback(NodeEvent::Network(event));
            }
        });
        delivered
    }

    /// Delivers every event to `event_callback` on this thread until
    /// [`NodeHandler::stop`]; then returns. The callback may borrow locals.
    ///
    /// Events that happened before the call (connections accepted, data arrived) are delivered
    /// then; nothing is lost by calling it late.
    ///
    /// In the browser (`wasm32-unknown-unknown`) nothing may block, so there `for_each` takes a
    /// `'static` callback, installs it on the JS event loop and returns at once; events are
    /// delivered from the event loop until `stop()` (see `docs/browser.md`). This is the one
    /// difference between the targets, and the compiler points it out.
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    pub fn for_each(mut self, mut event_callback: impl FnMut(NodeEvent<'_, S>)) {
        while self.handler.is_running() {
            self.turn(None, &mut event_callback);
        }
    }

    /// Installs `event_callback` on the JS event loop and returns at once: a browser cannot
    /// block. Events are delivered from the event loop, in the same order as natively, until
    /// [`NodeHandler::stop`], which also closes the node's sockets, clears its timers and drops
    /// the callback.
    ///
    /// Natively `for_each` blocks instead, and its callback may borrow locals.
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    pub fn for_each(mut self, mut event_callback: impl FnMut(NodeEvent<'_, S>) + 'static)
    where
        S: 'static,
    {
        let network = self.handler.network().clone();
        network.install_loop(Box::new(move || {
            if self.handler.is_running() {
                self.turn(Some(Duration::ZERO), &mut event_callback);
            }
            if !self.handler.is_running() {
                return None;
            }
            Some(self.signals.time_to_next())
        }));
    }

    /// Delivers events for at most `timeout` and returns how many it delivered: a
    /// non-blocking pump for game loops with `Duration::ZERO`. In the browser it never waits,
    /// whatever the timeout (call it from `requestAnimationFrame`, say).
    pub fn poll_events(
        &mut self,
        timeout: Duration,
        mut event_callback: impl FnMut(NodeEvent<'_, S>),
    ) -> usize {
        let mut delivered = 0;
        while let Some(event) = self.pop_pending() {
            match event {
                StoredNodeEvent::Network(e) => event_callback(NodeEvent::Network(e.borrow())),
                StoredNodeEvent::Signal(s) => event_callback(NodeEvent::Signal(s)),
            }
            delivered += 1;
        }
        if self.handler.is_running() {
            delivered += self.turn(Some(timeout), &mut event_callback);
        }
        delivered
    }

    /// The next event if one is ready, without blocking. Owned, so it may be kept; prefer
    /// [`poll_events`](Self::poll_events) to avoid copying messages.
    pub fn try_next(&mut self) -> Option<StoredNodeEvent<S>> {
        if self.pending.is_empty() && self.handler.is_running() {
            // As `turn` does: the events of this turn are described live until handed out.
            self.handler.network().hand_out(None, None);
            self.gather(Some(Duration::ZERO));
        }
        self.pop_pending()
    }

    /// Runs one turn that keeps its events, owned, for `pop_pending`; waits at most `timeout`
    /// (forever if `None`) when nothing is ready.
    fn gather(&mut self, timeout: Option<Duration>) {
        let mut pending = std::mem::take(&mut self.pending);
        let network = self.handler.network().clone();
        self.turn_keeping_hand_out(timeout, &mut |event| {
            // What `message_kind`/`ws_close` say now, for when the event is handed out.
            let detail = match &event {
                NodeEvent::Network(event) => network.detail(event),
                NodeEvent::Signal(_) => None,
            };
            pending.push_back((event.into(), detail));
        });
        self.pending = pending;
    }

    /// The next gathered event, skipping those of resources removed since they were gathered.
    /// Also makes `message_kind`/`ws_close` describe the event handed out.
    fn pop_pending(&mut self) -> Option<StoredNodeEvent<S>> {
        pop_gathered(&self.handler, &mut self.pending)
    }
}

/// The resources a network event is about: its endpoint's, and an `Accepted`'s listener.
fn event_resources(event: &NetEvent<'_>) -> [Option<network::ResourceId>; 2] {
    match event {
        NetEvent::Accepted(e, listener) => [Some(e.resource_id()), Some(*listener)],
        NetEvent::Connected(e, _) | NetEvent::Message(e, _) | NetEvent::Disconnected(e) => {
            [Some(e.resource_id()), None]
        }
    }
}

/// Delivers the signals ready now (priority first, then in order, due timers), not those a
/// callback sends meanwhile: a callback that keeps signalling cannot starve the network.
/// Returns how many it delivered; stops early if the node stops.
fn deliver_ready_signals<S>(
    handler: &NodeHandler<S>,
    signals: &mut EventReceiver<S>,
    observer: &mut Option<&mut EventObserver>,
    callback: &mut dyn FnMut(NodeEvent<'_, S>),
) -> usize {
    let mut delivered = 0;
    for _ in 0..signals.ready_len() {
        if !handler.is_running() {
            break;
        }
        match signals.try_receive() {
            Some(signal) => {
                if let Some(observe) = observer.as_mut() {
                    observe(format_args!("signal"));
                }
                callback(NodeEvent::Signal(signal));
                delivered += 1;
            }
            None => break,
        }
    }
    delivered
}

/// Events gathered in a turn, not handed out yet, each with what `message_kind`/`ws_close`
/// say of it.
pub(crate) type Gathered<S> = VecDeque<(StoredNodeEvent<S>, Option<EventDetail>)>;

/// The next of `gathered` to hand out (see [`NodeListener::pop_pending`]): also from a
/// [`NodeStream`]'s queue, which its waiter fills away from the listener.
pub(crate) fn pop_gathered<S>(
    handler: &NodeHandler<S>,
    gathered: &mut Gathered<S>,
) -> Option<StoredNodeEvent<S>> {
    let network = handler.network();
    while let Some((event, detail)) = gathered.pop_front() {
        let endpoint = match &event {
            StoredNodeEvent::Network(
                StoredNetEvent::Connected(e, _)
                | StoredNetEvent::Accepted(e, _)
                | StoredNetEvent::Message(e, _)
                | StoredNetEvent::Disconnected(e),
            ) => Some(*e),
            StoredNodeEvent::Signal(_) => None,
        };
        if endpoint.is_some_and(|e| network.was_removed(e.resource_id())) {
            continue;
        }
        if !handler.is_running() {
            gathered.clear();
            return None;
        }
        network.hand_out(endpoint, detail);
        return Some(event);
    }
    None
}

impl<S: Send + 'static> NodeListener<S> {
    /// Runs [`for_each`](Self::for_each) on a new thread. The returned task waits for it
    /// (after `stop`) when dropped or on [`NodeTask::wait`].
    ///
    /// In a simulated world only the node's own thread may run its loop, so there the loop
    /// runs when the task is waited for (or dropped), on that thread, in virtual time.
    ///
    /// In the browser there are no threads: the callback is installed on the JS event loop as
    /// by [`for_each`](Self::for_each), and the task's `wait` returns at once.
    pub fn for_each_async(
        self,
        event_callback: impl FnMut(NodeEvent<'_, S>) + Send + 'static,
    ) -> NodeTask {
        #[cfg(all(target_family = "wasm", target_os = "unknown"))]
        if !self.handler.network().is_simulated() {
            self.for_each(event_callback);
            return NodeTask { run: None };
        }
        if self.handler.network().is_simulated() {
            return NodeTask {
                run: Some(Run::Deferred(Box::new(move || self.for_each(event_callback)))),
            };
        }
        let handler = self.handler.clone();
        let thread = std::thread::Builder::new()
            .name("portnet-node".into())
            .spawn(move || self.for_each(event_callback))
            .unwrap_or_else(|e| panic!("portnet: cannot spawn the node thread: {e}"));
        NodeTask { run: Some(Run::Thread(thread, Box::new(move || handler.stop()))) }
    }

    /// Runs the node on a new thread that puts every event, owned, into the returned queue.
    ///
    /// In the browser the node runs on the JS event loop instead, and the queue cannot wait:
    /// read it with [`EventReceiver::try_receive`].
    ///
    /// In a simulated world the queue runs the node's loop itself when asked for an event, on
    /// the asking thread, in virtual time.
    pub fn enqueue(mut self) -> (NodeTask, EventReceiver<StoredNodeEvent<S>>) {
        if self.handler.network().is_simulated() {
            let (_, receiver) = events::split_with_clock(self.signals.clock());
            receiver.set_pump(Box::new(move |timeout| {
                if !self.handler.is_running() {
                    return None;
                }
                let mut events = Vec::new();
                self.turn(Some(timeout), &mut |event| events.push(event.into()));
                Some(events)
            }));
            return (NodeTask { run: None }, receiver);
        }
        let (sender, receiver) = events::split::<StoredNodeEvent<S>>();
        let task = self.for_each_async(move |event| sender.send(event.into()));
        (task, receiver)
    }
}

/// A node running on its own thread (see [`NodeListener::for_each_async`]). Dropping it
/// waits for the node to stop.
///
/// Dropped by a thread that is panicking (unwinding past it before `stop()` was reached), it
/// stops the node first: the panic is reported instead of the thread waiting forever.
#[must_use = "dropping the task waits for the node to stop"]
pub struct NodeTask {
    run: Option<Run>,
}

/// How a [`NodeTask`]'s loop runs.
enum Run {
    /// On its own thread (native), with what stops it.
    Thread(JoinHandle<()>, Box<dyn Fn() + Send>),
    /// On the thread that waits for it (simulated).
    Deferred(Box<dyn FnOnce() + Send>),
}

impl NodeTask {
    /// Blocks until the node stops. Returns at once if it already has. A panic in the event
    /// callback is passed on here. In the browser it returns at once: nothing may block there.
    pub fn wait(&mut self) {
        match self.run.take() {
            Some(Run::Thread(thread, stop)) => {
                if std::thread::panicking() {
                    stop();
                }
                if let Err(panic) = thread.join() {
                    if !std::thread::panicking() {
                        std::panic::resume_unwind(panic);
                    }
                }
            }
            Some(Run::Deferred(run)) if !std::thread::panicking() => run(),
            Some(Run::Deferred(_)) | None => (),
        }
    }
}

impl Drop for NodeTask {
    fn drop(&mut self) {
        self.wait();
    }
}
