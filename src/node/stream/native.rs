//! The async face natively: a waiter thread in the node's poll.
//!
//! Only a thread blocked in the system poll (epoll, kqueue) sees readiness, and the executor
//! knows nothing of the node's poll. So the stream keeps one waiter thread, the thread
//! `for_each_async` would have used. It waits in the poll only while the stream is pending
//! (polled, nothing to hand out) and otherwise sleeps on a condition variable (until the next
//! delay, if one is pending); when the poll reports something, or a signal or `stop()` wakes
//! it, it gathers that turn's events, hands the listener back and wakes the task. The task then
//! takes the events on its own thread, one per `poll_next`. No polling loop: every wake-up
//! comes from the backend (mio's waker, a socket's readiness, a timer of the node's signals) or
//! from a delay's deadline.

use super::{Delays, Driver, NodeListener, NodeStream, StoredNodeEvent, lock, sim};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

/// The native side of a [`NodeStream`]: the waiter thread and what it shares with the task.
pub(super) struct Waiter<S> {
    shared: Arc<Shared<S>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared<S> {
    state: Mutex<State<S>>,
    delays: Arc<Delays>,
    /// Signalled when the listener changes hands, on closing, or for a new delay.
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
    /// The node's events as a [`Stream`](futures_core::Stream) for async code, on any executor
    /// (see [`NodeStream`]).
    ///
    /// Natively this starts one waiter thread for the node, which waits in the system poll
    /// whenever the stream is pending.
    ///
    /// In a simulated world it works inside a node made with
    /// [`World::node_async`](crate::sim::World::node_async) (whose executor waits for the
    /// node's events in virtual time), for example to make a stream again after
    /// [`NodeStream::into_listener`]; elsewhere in a world (a callback node's `for_each`
    /// application) it returns an error of kind `Unsupported`.
    ///
    /// In the browser it installs the stream's loop on the page's event loop instead (no
    /// thread; `S` need not be `Send` there).
    pub fn into_stream(self) -> io::Result<NodeStream<S>> {
        NodeStream::new(self, |listener, delays| {
            if listener.handler.network().is_simulated() {
                return Ok(Driver::Sim(sim::attach(listener, delays)?));
            }
            Ok(Driver::Waiter(Waiter::start(listener, delays)?))
        })
    }
}

impl<S: Send + 'static> Waiter<S> {
    fn start(listener: NodeListener<S>, delays: Arc<Delays>) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            delays,
            state: Mutex::new(State {
                at_rest: Some(listener),
                to_wait: None,
                waker: None,
                closing: false,
            }),
            handed: Condvar::new(),
        });
        let for_waiter = shared.clone();
        let thread = std::thread::Builder::new()
            .name("portnet-node-stream".into())
            .spawn(move || wait_for_events(&for_waiter))?;
        Ok(Waiter { shared, thread: Some(thread) })
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
            // the same (a new, earlier delay wakes this wait: see `on_new_delay`).
            state = shared.handed.wait_timeout(state, timeout).unwrap_or_else(|e| e.into_inner()).0;
            drop(state);
            shared.delays.fire_due();
            state = shared.lock();
        } else {
            state = shared.handed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl<S> Waiter<S> {
    /// `poll_next`: hands out a gathered event, or the listener to the waiter.
    pub(super) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<StoredNodeEvent<S>>> {
        let shared = &self.shared;
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

    /// Runs `check` on the listener, first on what is gathered, then after a turn that takes
    /// what is ready now; if it decides nothing, the waiter waits for more and wakes the task.
    pub(super) fn poll_with<T>(
        &self,
        cx: &mut Context<'_>,
        mut check: impl FnMut(&NodeListener<S>) -> Option<T>,
    ) -> Poll<T> {
        let shared = &self.shared;
        let mut state = shared.lock();
        let Some(listener) = state.at_rest.as_mut() else {
            // With the waiter: it wakes this task when it hands the listener back.
            state.waker = Some(cx.waker().clone());
            return Poll::Pending;
        };
        if let Some(outcome) = check(listener) {
            return Poll::Ready(outcome);
        }
        listener.gather(Some(Duration::ZERO));
        if let Some(outcome) = check(listener) {
            return Poll::Ready(outcome);
        }
        state.waker = Some(cx.waker().clone());
        state.to_wait = state.at_rest.take();
        shared.handed.notify_all();
        Poll::Pending
    }

    /// A waiter at rest waits for the old deadline: make it look at a new delay's. (Under the
    /// lock: it reads the deadline under it, so it cannot miss this.)
    pub(super) fn on_new_delay(&self) {
        let _state = self.shared.lock();
        self.shared.handed.notify_all();
    }

    /// Makes the waiter hand the listener back and exit, waits for it, and gives the listener.
    pub(super) fn close(&mut self) -> Option<NodeListener<S>> {
        if let Some(thread) = self.thread.take() {
            {
                let mut state = self.shared.lock();
                state.closing = true;
                if state.to_wait.is_none() && state.at_rest.is_none() {
                    // In the poll: wake it (the extra wake-up does no harm later).
                    self.shared.delays.network.wake();
                }
                self.shared.handed.notify_all();
            }
            if let Err(panic) = thread.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
        self.shared.lock().at_rest.take()
    }
}
