//! The async face natively: a waiter thread in the node's poll, a queue between it and the task.
//!
//! Only a thread blocked in the system poll (epoll, kqueue) sees readiness, and the executor
//! knows nothing of the node's poll. So the stream keeps one waiter thread, the thread
//! `for_each_async` would have used, which owns the listener: it waits in the poll, moves each
//! turn's events into the stream's queue and wakes the task if it waits. The task takes them
//! on its own thread, one per `poll_next`, and never waits for the waiter: a round trip pays
//! one thread wake-up more than `for_each` (the task's), not a hand-over per `Pending`.
//!
//! The waiter runs ahead of the task by at most [`MAX_GATHERED_EVENTS`] events or
//! [`MAX_GATHERED_BYTES`] bytes of messages; then it rests on a condition variable until the
//! task has taken half, so a stream nobody polls stops reading (and a TCP peer is pushed back
//! by flow control, as with `for_each`). No polling loop: every wake-up comes from the backend
//! (mio's waker, a socket's readiness, a timer of the node's signals), from a delay's deadline
//! or from the task making room.

use super::{
    Delays, Driver, MAX_GATHERED_BYTES, MAX_GATHERED_EVENTS, NodeListener, NodeStream,
    StoredNodeEvent, lock, sim,
};
use crate::network::StoredNetEvent;
use crate::node::{Gathered, NodeHandler, pop_gathered};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

/// The native side of a [`NodeStream`]: the waiter thread and what it shares with the task.
pub(super) struct Waiter<S> {
    shared: Arc<Shared<S>>,
    handler: NodeHandler<S>,
    thread: Option<JoinHandle<()>>,
}

struct Shared<S> {
    state: Mutex<State<S>>,
    delays: Arc<Delays>,
    /// Wakes a resting waiter: room in the queue, closing, a new delay, a check that waits.
    wake_waiter: Condvar,
}

struct State<S> {
    /// What the waiter gathered and the task has not taken yet, in order.
    gathered: Gathered<S>,
    /// The bytes of the messages in `gathered`.
    gathered_bytes: usize,
    /// The task to wake when the waiter gathers something.
    waker: Option<Waker>,
    /// The waiter rests (queue full, or the node stopped) instead of waiting in the poll.
    resting: bool,
    /// A `poll_with` check waits for an event the full queue would hold back: gather anyway.
    check_waits: bool,
    /// The stream is going away: the waiter leaves the listener here and exits.
    closing: bool,
    /// The listener, once the waiter has left.
    returned: Option<NodeListener<S>>,
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, State<S>> {
        lock(&self.state)
    }
}

impl<S> State<S> {
    fn is_full(&self) -> bool {
        self.gathered.len() >= MAX_GATHERED_EVENTS || self.gathered_bytes >= MAX_GATHERED_BYTES
    }

    fn is_below_half(&self) -> bool {
        self.gathered.len() < MAX_GATHERED_EVENTS / 2
            && self.gathered_bytes < MAX_GATHERED_BYTES / 2
    }
}

fn message_len<S>(event: &StoredNodeEvent<S>) -> usize {
    match event {
        StoredNodeEvent::Network(StoredNetEvent::Message(_, data)) => data.len(),
        _ => 0,
    }
}

impl<S: Send + 'static> NodeListener<S> {
    /// The node's events as a [`Stream`](futures_core::Stream) for async code, on any executor
    /// (see [`NodeStream`]).
    ///
    /// Natively this starts one waiter thread for the node, which waits in the system poll
    /// and gathers the node's events for the stream, at most
    /// [`MAX_GATHERED_EVENTS`] ahead of it.
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
    fn start(mut listener: NodeListener<S>, delays: Arc<Delays>) -> io::Result<Self> {
        let handler = listener.handler.clone();
        // What the listener gathered already is the queue's start.
        let gathered = std::mem::take(&mut listener.pending);
        let gathered_bytes = gathered.iter().map(|(event, _)| message_len(event)).sum();
        let shared = Arc::new(Shared {
            delays,
            state: Mutex::new(State {
                gathered,
                gathered_bytes,
                waker: None,
                resting: false,
                check_waits: false,
                closing: false,
                returned: None,
            }),
            wake_waiter: Condvar::new(),
        });
        let for_waiter = shared.clone();
        let thread = std::thread::Builder::new()
            .name("portnet-node-stream".into())
            .spawn(move || wait_for_events(&for_waiter, listener))?;
        Ok(Waiter { shared, handler, thread: Some(thread) })
    }
}

/// The waiter thread: gathers the node's events into the queue until the stream closes.
fn wait_for_events<S>(shared: &Shared<S>, mut listener: NodeListener<S>) {
    let delays = &shared.delays;
    let mut state = shared.lock();
    loop {
        if state.closing {
            state.returned = Some(listener);
            return;
        }
        let running = listener.handler.is_running();
        if !running || (state.is_full() && !state.check_waits) {
            // Rest until the task makes room, the stream closes or a delay is due (a new,
            // earlier delay wakes this wait: see `on_new_delay`).
            state.resting = true;
            state = match delays.time_to_next() {
                Some(timeout) => {
                    shared
                        .wake_waiter
                        .wait_timeout(state, timeout)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => shared.wake_waiter.wait(state).unwrap_or_else(|e| e.into_inner()),
            };
            state.resting = false;
            drop(state);
            delays.fire_due();
            state = shared.lock();
            continue;
        }
        drop(state);
        // Blocks until the poll reports something, a signal is ready (or its timer is due),
        // the next delay is due, or something wakes the node (`stop()`, closing the stream,
        // a new delay).
        listener.gather(delays.time_to_next());
        delays.fire_due();
        state = shared.lock();
        let stopped = !listener.handler.is_running();
        if listener.pending.is_empty() && !stopped {
            continue;
        }
        for (event, detail) in listener.pending.drain(..) {
            state.gathered_bytes += message_len(&event);
            state.gathered.push_back((event, detail));
        }
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

impl<S> Waiter<S> {
    /// `poll_next`: hands out a gathered event, or keeps the task's waker for the waiter.
    pub(super) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<StoredNodeEvent<S>>> {
        let mut state = self.shared.lock();
        state.check_waits = false;
        if let Some(event) = pop_gathered(&self.handler, &mut state.gathered) {
            state.gathered_bytes -= message_len(&event);
            if state.resting && state.is_below_half() {
                self.shared.wake_waiter.notify_one();
            }
            return Poll::Ready(Some(event));
        }
        state.gathered_bytes = 0; // what `pop_gathered` skipped or cleared
        if !self.handler.is_running() {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        if state.resting {
            self.shared.wake_waiter.notify_one();
        }
        Poll::Pending
    }

    /// Runs `check` on what is gathered and not handed out; if it decides nothing, the task
    /// waits for the waiter's next events (gathered even if the queue is full).
    pub(super) fn poll_with<T>(
        &self,
        cx: &mut Context<'_>,
        mut check: impl FnMut(&NodeHandler<S>, &Gathered<S>) -> Option<T>,
    ) -> Poll<T> {
        let mut state = self.shared.lock();
        if let Some(outcome) = check(&self.handler, &state.gathered) {
            return Poll::Ready(outcome);
        }
        state.waker = Some(cx.waker().clone());
        state.check_waits = true;
        if state.resting {
            self.shared.wake_waiter.notify_one();
        }
        Poll::Pending
    }

    /// A resting waiter waits for the old deadline: make it look at a new delay's. (Under the
    /// lock: it reads the deadline under it, so it cannot miss this.)
    pub(super) fn on_new_delay(&self) {
        let _state = self.shared.lock();
        self.shared.wake_waiter.notify_one();
    }

    /// Makes the waiter leave the listener and exit, waits for it, and gives the listener with
    /// the queue's events back in it, first.
    pub(super) fn close(&mut self) -> Option<NodeListener<S>> {
        if let Some(thread) = self.thread.take() {
            {
                let mut state = self.shared.lock();
                state.closing = true;
                if !state.resting {
                    // In the poll, or about to be: wake it (an extra wake-up does no harm).
                    self.shared.delays.network.wake();
                }
                self.shared.wake_waiter.notify_one();
            }
            if let Err(panic) = thread.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
        let mut state = self.shared.lock();
        let mut listener = state.returned.take()?;
        let mut gathered = std::mem::take(&mut state.gathered);
        state.gathered_bytes = 0;
        gathered.append(&mut listener.pending);
        listener.pending = gathered;
        Some(listener)
    }
}
