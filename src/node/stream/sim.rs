//! The async face in a simulated world: the node's executor, on the world's virtual clock.
//!
//! A simulated node runs as a coroutine on the world's thread, and only that coroutine may
//! wait for the node's events, so the waiter thread of the native stream has no place here.
//! Instead [`World::node_async`](crate::sim::World::node_async) runs the application's future
//! under [`run`], a small executor inside the node's coroutine:
//!
//! - it polls the future; while something woke it during that poll, it polls again;
//! - when the future is pending and nothing woke it, the node waits, as a callback node's
//!   `for_each` does: if the stream went pending (it wants events) the executor runs one turn
//!   of the node's loop that gathers the next events (network events, signals, a signal
//!   timer, or the stream's earliest [`Delay`](super::Delay) deadline as its timeout), which
//!   yields to the world until one of them is due in virtual time; otherwise (nobody waits on
//!   the stream) it yields until something wakes the node or the earliest delay is due;
//! - a [`Waker`] of the node makes the world run the node again at the current virtual time
//!   (from another node, from the world telling a `writable` future that a queue drained),
//!   or, woken by the node itself, makes the executor poll again.
//!
//! No thread, no real clock: the order of everything is the world's, fixed by its seed.

use super::{Delays, NodeStream, lock};
use crate::node::{NodeHandler, NodeListener, StoredNodeEvent};
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// Polls in a row (each woken by the node itself) after which the executor lets the world run
/// the other nodes at the same instant: a future that keeps waking itself does not stall the
/// world's thread, and a world that never idles then says so (`run_until_idle`'s step limit).
const POLLS_BEFORE_YIELD: u32 = 1024;

/// A simulated stream's side: the listener, and whether the stream waits for events.
pub(crate) struct SimState<S> {
    inner: Mutex<Inner<S>>,
}

struct Inner<S> {
    /// `None` only once [`NodeStream::into_listener`] took it.
    listener: Option<NodeListener<S>>,
    /// The task that polled the stream (or its `connected` future) last and went pending.
    waker: Option<Waker>,
    /// The stream went pending: when the future waits, the executor gathers events for it.
    wants_events: bool,
    delays: Arc<Delays>,
}

/// What a simulated node's handler tells its executor and its streams.
#[derive(Default)]
pub(crate) struct AsyncSlot(Mutex<Slot>);

#[derive(Default)]
struct Slot {
    /// The node runs under [`run`] (made with `World::node_async`).
    executor: bool,
    /// The node's latest stream: the one to gather events for.
    stream: Option<Weak<dyn Park>>,
}

/// A stream the executor can wait for.
trait Park: Send + Sync {
    /// Waits, in virtual time: if the stream is pending, for the node's next events (it
    /// gathers them and wakes the stream's task), else until something wakes the node; and
    /// at most until the stream's earliest delay, which it completes.
    fn park(&self);
}

/// A simulated stream for `listener`, if its node runs under [`run`].
pub(super) fn attach<S: Send + 'static>(
    listener: NodeListener<S>,
    delays: Arc<Delays>,
) -> io::Result<Arc<SimState<S>>> {
    let handler = listener.handler.clone();
    let mut slot = lock(&handler.0.async_slot.0);
    if !slot.executor {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "NodeListener::into_stream: in a simulated world only a node made with \
             World::node_async has an executor to poll the stream",
        ));
    }
    let state = Arc::new(SimState {
        inner: Mutex::new(Inner {
            listener: Some(listener),
            waker: None,
            wants_events: false,
            delays,
        }),
    });
    let weak: Weak<dyn Park> = Arc::downgrade(&state) as Weak<dyn Park>;
    slot.stream = Some(weak);
    drop(slot);
    Ok(state)
}

impl<S> SimState<S> {
    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        lock(&self.inner)
    }

    pub(super) fn take_listener(&self) -> Option<NodeListener<S>> {
        let mut inner = self.lock();
        inner.wants_events = false;
        inner.listener.take()
    }

    /// `poll_next`: an event gathered already, the end after `stop()`, or pending until the
    /// executor has gathered more.
    pub(super) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<StoredNodeEvent<S>>> {
        let mut inner = self.lock();
        let Some(listener) = inner.listener.as_mut() else { return Poll::Ready(None) };
        // Not `try_next`: its non-blocking turn would yield to the world once more. The
        // executor's turn gathers instead, as a callback node's loop turn does.
        if let Some(event) = listener.pop_pending() {
            return Poll::Ready(Some(event));
        }
        if !listener.handler.is_running() {
            return Poll::Ready(None);
        }
        inner.waker = Some(cx.waker().clone());
        inner.wants_events = true;
        Poll::Pending
    }

    /// Runs `check` on the listener; if it decides nothing, the stream waits for events (as a
    /// pending `poll_next` does) and the task is woken once some are gathered.
    pub(super) fn poll_with<T>(
        &self,
        cx: &mut Context<'_>,
        check: impl FnOnce(&NodeListener<S>) -> Option<T>,
        gone: impl FnOnce() -> T,
    ) -> Poll<T> {
        let mut inner = self.lock();
        let Some(listener) = inner.listener.as_ref() else { return Poll::Ready(gone()) };
        if let Some(outcome) = check(listener) {
            return Poll::Ready(outcome);
        }
        inner.waker = Some(cx.waker().clone());
        inner.wants_events = true;
        Poll::Pending
    }
}

impl<S: Send> Park for SimState<S> {
    fn park(&self) {
        let (listener, delays) = {
            let mut inner = self.lock();
            let wants_events = std::mem::take(&mut inner.wants_events);
            (inner.listener.take_if(|_| wants_events), inner.delays.clone())
        };
        let Some(mut listener) = listener else {
            // Nobody waits on the stream: wait for a waker, or the earliest delay.
            delays.network.park_simulated(delays.time_to_next());
            delays.fire_due();
            return;
        };
        if listener.handler.is_running() {
            // One turn of the node's loop: yields to the world until an event, a signal, a
            // signal timer or the earliest delay is due (the world resumes the node then).
            listener.gather(delays.time_to_next());
        }
        let waker = {
            let mut inner = self.lock();
            inner.listener = Some(listener);
            inner.waker.take()
        };
        delays.fire_due();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The waker of a simulated async node's future.
struct NodeWake {
    /// Woken since the executor last polled.
    woken: AtomicBool,
    /// Makes the world run the node at the current virtual time (nothing if it runs now).
    wake_node: Arc<dyn Fn() + Send + Sync>,
}

impl Wake for NodeWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        (self.wake_node)();
    }
}

/// Runs a simulated node's async application: `app`'s future, polled on the node's
/// coroutine until it completes (see the module's doc). Returns when the future does.
pub(crate) fn run<S, F, Fut>(handler: NodeHandler<S>, listener: NodeListener<S>, app: &F)
where
    S: Send + 'static,
    F: Fn(NodeHandler<S>, NodeStream<S>) -> Fut,
    Fut: Future<Output = ()>,
{
    lock(&handler.0.async_slot.0).executor = true;
    let stream = listener
        .into_stream()
        .unwrap_or_else(|e| unreachable!("a node under the executor makes its stream: {e}"));
    let mut future = std::pin::pin!(app(handler.clone(), stream));
    let wake = Arc::new(NodeWake {
        woken: AtomicBool::new(false),
        wake_node: handler.network().weak_waker(),
    });
    let waker = Waker::from(wake.clone());
    let mut cx = Context::from_waker(&waker);
    let mut in_a_row = 0;
    loop {
        wake.woken.store(false, Ordering::Release);
        if future.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        if wake.woken.load(Ordering::Acquire) {
            in_a_row += 1;
            if in_a_row >= POLLS_BEFORE_YIELD {
                in_a_row = 0;
                handler.network().park_simulated(Some(Duration::ZERO));
            }
            continue;
        }
        in_a_row = 0;
        let stream = lock(&handler.0.async_slot.0).stream.as_ref().and_then(Weak::upgrade);
        match stream {
            Some(stream) => stream.park(),
            // No stream any more: wait for a waker (another node, a drained queue).
            None => handler.network().park_simulated(None),
        }
    }
}
