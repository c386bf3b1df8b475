//! The node's async face: its events as a [`futures_core::Stream`], and futures for "writable
//! again", for a connect and for a delay on the node's clock, on any executor.
//!
//! One public face; who waits for the backend while the stream is pending depends on where
//! the node runs, one module each, mirrored name for name (`poll_next`, `poll_with`,
//! `on_new_delay`, `close`):
//! - natively ([`native`]) a waiter thread blocks in the system poll;
//! - in a simulated world ([`sim`]) the world's executor for the node
//!   ([`crate::sim::World::node_async`]) gathers the node's events on the virtual clock;
//! - in the browser ([`browser`]) the page's event loop calls the stream's loop, which gathers
//!   what the sockets reported and wakes the task.
//!
//! Nothing is lost by dropping: an event leaves the node only when `poll_next` returns it.
//! See `docs/async.md`.

#[cfg(all(target_family = "wasm", target_os = "unknown"))]
mod browser;
mod connect;
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
mod native;
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
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
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Natively, the most events a [`NodeStream`]'s waiter thread gathers ahead of the task
/// (then it waits for the task to take half, and the node's sockets are not read meanwhile).
pub const MAX_GATHERED_EVENTS: usize = 1024;

/// Natively, the most bytes of messages a [`NodeStream`]'s waiter gathers ahead of the task
/// (a bigger message is gathered alone), as [`MAX_GATHERED_EVENTS`].
pub const MAX_GATHERED_BYTES: usize = 4 << 20;

/// A node's events as a [`Stream`] (see [`NodeListener::into_stream`]): network events, owned,
/// and signals, in the order `try_next` gives them. It ends after [`NodeHandler::stop`].
///
/// Cancellation safety: `poll_next` takes an event out of the node only when it returns it, so
/// dropping a pending `next()` future, or the stream between events, loses nothing; after
/// [`into_listener`](Self::into_listener) the listener (or a new stream) carries on from the
/// first event not yet handed out. Dropping the stream drops the listener with it, as
/// dropping a [`NodeListener`] does.
///
/// Natively the stream's waiter thread runs the node and queues its events for the stream, at
/// most [`MAX_GATHERED_EVENTS`] (or [`MAX_GATHERED_BYTES`]) ahead: a stream nobody polls for
/// long stops the node there, and send queues stop draining, so poll it on its own task, or
/// beside the futures that wait on the node (`select!`). (In the browser the page's event loop
/// runs the sockets whether or not the stream is polled.)
pub struct NodeStream<S> {
    handler: NodeHandler<S>,
    delays: Arc<Delays>,
    driver: Driver<S>,
}

/// Who waits for the node's events while the stream is pending.
enum Driver<S> {
    /// Natively: a waiter thread, in the node's poll.
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    Waiter(native::Waiter<S>),
    /// In a simulated world: the node's executor, on the world's virtual clock.
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    Sim(Arc<sim::SimState<S>>),
    /// In the browser: a loop on the page's event loop.
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    Browser(browser::PageLoop<S>),
}

impl<S> NodeStream<S> {
    /// A stream over `listener`, its driver made by `start` (one per platform: `into_stream`).
    fn new(
        listener: NodeListener<S>,
        start: impl FnOnce(NodeListener<S>, Arc<Delays>) -> io::Result<Driver<S>>,
    ) -> io::Result<Self> {
        let handler = listener.handler.clone();
        let delays = Arc::new(Delays {
            clock: listener.signals.clock(),
            network: handler.network().clone(),
            timers: Mutex::new(TimerQueue::default()),
        });
        let driver = start(listener, delays.clone())?;
        Ok(NodeStream { handler, delays, driver })
    }

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
        match &self.driver {
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Driver::Waiter(waiter) => waiter.on_new_delay(),
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Driver::Sim(_) => (),
            // The page's loop looks at the deadlines when it runs: the wake-up above runs it.
            #[cfg(all(target_family = "wasm", target_os = "unknown"))]
            Driver::Browser(_) => (),
        }
        Delay { slot, deadline, id, delays: delays.clone() }
    }

    /// Gives the listener back, with every event not handed out yet: `try_next`, `for_each` or
    /// a new stream carry on from there. Natively it blocks only until the waiter leaves the
    /// poll, which it is woken to do; in the browser it takes the stream's loop off the page's
    /// event loop.
    pub fn into_listener(mut self) -> NodeListener<S> {
        let listener = match &mut self.driver {
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Driver::Waiter(waiter) => waiter.close(),
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Driver::Sim(state) => state.take_listener(),
            #[cfg(all(target_family = "wasm", target_os = "unknown"))]
            Driver::Browser(page) => page.close(),
        };
        listener.unwrap_or_else(|| unreachable!("the listener is with the stream until it goes"))
    }
}

impl<S> Drop for NodeStream<S> {
    /// The listener goes with the stream: natively the waiter hands it back and exits, in the
    /// browser the stream's loop comes off the page's event loop. (A simulated stream's state
    /// belongs to the node's executor.)
    fn drop(&mut self) {
        match &mut self.driver {
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Driver::Waiter(waiter) => drop(waiter.close()),
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Driver::Sim(_) => (),
            #[cfg(all(target_family = "wasm", target_os = "unknown"))]
            Driver::Browser(page) => drop(page.close()),
        }
    }
}

impl<S> Stream for NodeStream<S> {
    type Item = StoredNodeEvent<S>;

    /// Hands out the next event if one is gathered or ready now; otherwise returns `Pending`,
    /// and the driver wakes the task once it has events.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Delays due while events kept the stream from going pending (no clock read if none).
        this.delays.fire_due();
        match &this.driver {
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Driver::Waiter(waiter) => waiter.poll_next(cx),
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Driver::Sim(state) => state.poll_next(cx),
            #[cfg(all(target_family = "wasm", target_os = "unknown"))]
            Driver::Browser(page) => page.poll_next(cx),
        }
    }
}

impl<S> NodeHandler<S> {
    /// A future that completes once `endpoint`'s send queue has room again: at once if it has
    /// room now or the endpoint is gone (then `send` says why). Use it after
    /// [`SendStatus::QueueFull`](crate::network::SendStatus::QueueFull); it is registered
    /// when made, so make it right after the refused send.
    ///
    /// Natively the node's [`NodeStream`] (within its bound) or loop must be running for the
    /// queue to drain.
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
