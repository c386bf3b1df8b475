//! The node's async face: its events as a [`futures_core::Stream`], and a future for
//! "writable again", on any executor.
//!
//! Who waits: natively only a thread blocked in the system poll (epoll, kqueue) sees
//! readiness, and the executor knows nothing of the node's poll. So a [`NodeStream`] keeps
//! one waiter thread, the thread `for_each_async` would have used. It waits only while the
//! stream is pending (polled, nothing to hand out) and sleeps on a condition variable
//! otherwise; when the poll reports something, or a signal or `stop()` wakes it, it gathers
//! that turn's events, hands the listener back and wakes the task. The task then takes the
//! events on its own thread, one per `poll_next`. No timer, no polling loop: every wake-up
//! comes from the backend (mio's waker, a socket's readiness, a timer of the node's signals).
//!
//! In a simulated world there is no waiter thread: the world's executor for the node
//! ([`crate::sim::World::node_async`]) gathers the node's events on the virtual clock when
//! the node's future is pending (see [`sim`]).
//!
//! Nothing is lost by dropping: an event leaves the node only when `poll_next` returns it.
//! See `docs/async.md`.

mod connect;
pub(crate) mod sim;

pub use connect::Connecting;

use super::{NodeHandler, NodeListener, StoredNodeEvent};
use crate::core::clock::{Clock, Time};
use crate::core::timers::TimerQueue;
use crate::network::{Endpoint, NetworkController};
use futures_core::Stream;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

/// A node's events as a [`Stream`] (see [`NodeListener::into_stream`]): network events, owned,
/// and signals, in the order `try_next` gives them. It ends after [`NodeHandler::stop`].
///
/// Cancellation safety: `poll_next` takes an event out of the node only when it returns it, so
/// dropping a pending `next()` future, or the stream between events, loses nothing; after
/// [`into_listener`](Self::into_listener) the listener (or a new stream) carries on from the
/// first event not yet handed out. Dropping the stream drops the listener with it, as
/// dropping a [`NodeListener`] does.
///
/// The stream drives the node: while nothing polls it, no network event is processed, so
/// send queues do not drain and [`Writable`] does not complete. Poll it on its own task, or
/// beside the futures that wait on the node (`select!`).
pub struct NodeStream<S> {
    handler: NodeHandler<S>,
    delays: Arc<Delays>,
    driver: Driver<S>,
}

/// Who waits for the node's events while the stream is pending.
enum Driver<S> {
    /// Natively: a waiter thread, in the node's poll.
    Waiter { shared: Arc<Shared<S>>, waiter: Option<JoinHandle<()>> },
    /// In a simulated world: the node's executor, on the world's virtual clock.
    Sim(Arc<sim::SimState<S>>),
}

struct Shared<S> {
    state: Mutex<State<S>>,
    delays: Arc<Delays>,
    /// Signalled when the listener changes hands, or on closing.
    handed: Condvar,
}

struct State<S> {
    /// The listener, when it is with the stream (not with the waiter).
    at_rest: Option<NodeListener<S>>,
    /// The listener, handed to the waiter to wait for the next event.
    to_wait: Option<NodeListener<S>>,
    /// The task to wake when the waiter hands the listener back.
    waker: Option<Waker>,
    /// The stream is going away: the waiter hands the listener back and exits.
    closing: bool,
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, State<S>> {
        lock(&self.state)
    }
}

impl<S: Send + 'static> NodeListener<S> {
    /// The node's events as a [`Stream`] for async code, on any executor (see [`NodeStream`]).
    ///
    /// Natively this starts one waiter thread for the node, which waits in the system poll
    /// whenever the stream is pending.
    ///
    /// In a simulated world it works inside a node made with
    /// [`World::node_async`](crate::sim::World::node_async) (whose executor waits for the
    /// node's events in virtual time), for example to make a stream again after
    /// [`NodeStream::into_listener`]; elsewhere in a world (a callback node's `for_each`
    /// application) it returns an error of kind `Unsupported`.
    pub fn into_stream(self) -> io::Result<NodeStream<S>> {
        let handler = self.handler.clone();
        let delays = Arc::new(Delays {
            clock: self.signals.clock(),
            network: handler.network().clone(),
            timers: Mutex::new(TimerQueue::default()),
        });
        if handler.network().is_simulated() {
            let state = sim::attach(self, delays.clone())?;
            return Ok(NodeStream { handler, delays, driver: Driver::Sim(state) });
        }
        let shared = Arc::new(Shared {
            delays: delays.clone(),
            state: Mutex::new(State {
                at_rest: Some(self),
                to_wait: None,
                waker: None,
                closing: false,
            }),
            handed: Condvar::new(),
        });
        let for_waiter = shared.clone();
        let waiter = std::thread::Builder::new()
            .name("portnet-node-stream".into())
            .spawn(move || wait_for_events(&for_waiter))?;
        Ok(NodeStream { handler, delays, driver: Driver::Waiter { shared, waiter: Some(waiter) } })
    }
}

/// The waiter thread: waits in the node's poll whenever the stream hands it the listener.
fn wait_for_events<S>(shared: &Shared<S>) {
    let mut state = shared.lock();
    loop {
        if let Some(mut listener) = state.to_wait.take() {
            // Closing: the stream did not see the listener leave, so it woke nothing; waiting
            // now could last forever.
            let closing = state.closing;
            drop(state);
            if !closing && listener.handler.is_running() {
                // Blocks until the poll reports something, a signal is ready (or its timer
                // is due), the next delay is due, or something wakes the node (`stop()`,
                // closing the stream, a new delay).
                listener.gather(shared.delays.time_to_next());
            }
            shared.delays.fire_due();
            state = shared.lock();
            state.at_rest = Some(listener);
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
            shared.handed.notify_all();
        } else if state.closing {
            return;
        } else if let Some(timeout) = shared.delays.time_to_next() {
            // Nobody waits on the stream, but a delay is pending: it completes on time all
            // the same (a new, earlier delay wakes this wait: see `delay`).
            state = shared.handed.wait_timeout(state, timeout).unwrap_or_else(|e| e.into_inner()).0;
            drop(state);
            shared.delays.fire_due();
            state = shared.lock();
        } else {
            state = shared.handed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl<S> NodeStream<S> {
    /// The handler of the node, to send, signal and stop.
    pub fn handler(&self) -> &NodeHandler<S> {
        &self.handler
    }

    /// A future that completes once `duration` has passed on the node's clock, whether or not
    /// the stream is polled meanwhile (the stream's waiter, or in a simulated world its
    /// executor, wakes for it); its poll also checks the clock itself. Cancellation safe:
    /// dropping it cancels the timer.
    ///
    /// In a simulated world the duration is virtual: the world's clock jumps to the deadline
    /// when nothing comes before it.
    pub fn delay(&self, duration: Duration) -> Delay {
        let delays = &self.delays;
        let deadline = delays.clock.now().after(duration);
        let slot = Arc::new(Mutex::new(Slot { ready: false, waker: None }));
        let id = lock(&delays.timers).insert(deadline, Arc::downgrade(&slot));
        // A waiter in the poll waits for the old deadline: make it look again.
        delays.network.wake();
        if let Driver::Waiter { shared, .. } = &self.driver {
            // A waiter at rest waits for the old deadline too (under the lock: it reads the
            // deadline under it, so it cannot miss this).
            let _state = shared.lock();
            shared.handed.notify_all();
        }
        Delay { slot, deadline, id, delays: delays.clone() }
    }

    /// Stops the waiter and gives the listener back, with every event not handed out yet:
    /// `try_next`, `for_each` or a new stream carry on from there. Blocks only until the
    /// waiter leaves the poll, which it is woken to do.
    pub fn into_listener(mut self) -> NodeListener<S> {
        self.close();
        let listener = match &self.driver {
            Driver::Waiter { shared, .. } => shared.lock().at_rest.take(),
            Driver::Sim(state) => state.take_listener(),
        };
        listener.unwrap_or_else(|| unreachable!("the waiter hands the listener back on exit"))
    }

    /// Makes the waiter hand the listener back and exit, and waits for it.
    fn close(&mut self) {
        let Driver::Waiter { shared, waiter } = &mut self.driver else { return };
        let Some(waiter) = waiter.take() else { return };
        {
            let mut state = shared.lock();
            state.closing = true;
            if state.to_wait.is_none() && state.at_rest.is_none() {
                // The waiter is in the poll: wake it (the extra wake-up does no harm later).
                self.handler.network().wake();
            }
            shared.handed.notify_all();
        }
        if let Err(panic) = waiter.join() {
            if !std::thread::panicking() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl<S> Drop for NodeStream<S> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<S> Stream for NodeStream<S> {
    type Item = StoredNodeEvent<S>;

    /// Hands out the next event if one is gathered or ready now; otherwise hands the listener
    /// to the waiter and returns `Pending` (the waiter wakes the task once it has events).
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Delays due while events kept the stream from going pending (no clock read if none).
        this.delays.fire_due();
        match &this.driver {
            Driver::Waiter { shared, .. } => poll_waiter(shared, cx),
            Driver::Sim(state) => state.poll_next(cx),
        }
    }
}

/// `poll_next` natively: hands out a gathered event, or the listener to the waiter.
fn poll_waiter<S>(shared: &Shared<S>, cx: &mut Context<'_>) -> Poll<Option<StoredNodeEvent<S>>> {
    let mut state = shared.lock();
    let Some(listener) = state.at_rest.as_mut() else {
        // With the waiter: it wakes the latest task when it hands the listener back.
        state.waker = Some(cx.waker().clone());
        return Poll::Pending;
    };
    if let Some(event) = listener.try_next() {
        return Poll::Ready(Some(event));
    }
    if !listener.handler.is_running() {
        return Poll::Ready(None);
    }
    state.waker = Some(cx.waker().clone());
    // The poll keeps what became ready since `try_next` looked, so the waiter sees it.
    state.to_wait = state.at_rest.take();
    shared.handed.notify_all();
    Poll::Pending
}

impl<S> NodeHandler<S> {
    /// A future that completes once `endpoint`'s send queue has room again: at once if it has
    /// room now or the endpoint is gone (then `send` says why). Use it after
    /// [`SendStatus::QueueFull`](crate::network::SendStatus::QueueFull); it is registered
    /// when made, so make it right after the refused send.
    ///
    /// Natively the node's [`NodeStream`] (or loop) must be running for the queue to drain.
    /// Cancellation safe: dropping it only drops the notification.
    pub fn writable(&self, endpoint: Endpoint) -> Writable {
        let slot = Arc::new(Mutex::new(Slot { ready: false, waker: None }));
        let notified = Arc::downgrade(&slot);
        self.network().when_writable(endpoint, Box::new(move || notify_writable(&notified)));
        Writable { slot }
    }
}

/// A panic elsewhere while locked leaves the state, a slot or a timer queue consistent (no
/// invariant spans an unlock).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn notify(slot: &Mutex<Slot>) {
    let mut slot = lock(slot);
    slot.ready = true;
    if let Some(waker) = slot.waker.take() {
        waker.wake();
    }
}

fn notify_writable(slot: &Weak<Mutex<Slot>>) {
    if let Some(slot) = slot.upgrade() {
        notify(&slot);
    } // else the future was dropped
}

/// Completes once an endpoint's send queue has room again (see [`NodeHandler::writable`]).
#[must_use = "futures do nothing unless awaited"]
pub struct Writable {
    slot: Arc<Mutex<Slot>>,
}

/// Where a notification (writable again, a delay's deadline) meets the task that awaits it.
struct Slot {
    ready: bool,
    waker: Option<Waker>,
}

impl Future for Writable {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = lock(&self.slot);
        if slot.ready {
            return Poll::Ready(());
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The delays of a stream's node, on its clock; the waiter fires them.
struct Delays {
    clock: Clock,
    network: NetworkController,
    timers: Mutex<TimerQueue<Weak<Mutex<Slot>>>>,
}

impl Delays {
    /// How long until the next delay is due, if one is pending.
    fn time_to_next(&self) -> Option<Duration> {
        let next = lock(&self.timers).next_deadline()?;
        Some(self.clock.now().until(next))
    }

    /// Completes every delay that is due.
    fn fire_due(&self) {
        let mut timers = lock(&self.timers);
        if timers.next_deadline().is_none() {
            return; // the common case: no clock read
        }
        let now = self.clock.now();
        while let Some((_, slot)) = timers.pop_due(now) {
            if let Some(slot) = slot.upgrade() {
                notify(&slot);
            }
        }
    }
}

/// Completes once a duration has passed on the node's clock (see [`NodeStream::delay`]).
#[must_use = "futures do nothing unless awaited"]
pub struct Delay {
    slot: Arc<Mutex<Slot>>,
    deadline: Time,
    id: u64,
    delays: Arc<Delays>,
}

impl Future for Delay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = lock(&self.slot);
        if slot.ready || self.delays.clock.now() >= self.deadline {
            return Poll::Ready(());
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Delay {
    fn drop(&mut self) {
        lock(&self.delays.timers).cancel(self.id);
    }
}
