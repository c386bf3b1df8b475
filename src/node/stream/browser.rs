//! The async face in the browser: a loop on the page's event loop.
//!
//! The JS event loop already calls the node back: the page's sockets report to the backend,
//! which runs the node's installed loop soon after (as it runs `for_each`'s). The stream
//! installs a loop of its own that calls no application code: it gathers what the sockets
//! reported into the listener (owned events, kept for `poll_next`), fires the delays that are
//! due and wakes the task. So no thread and no polling: every wake-up comes from a socket, a
//! signal, a timer of the node's signals or a delay, as natively.

use super::{Delays, Driver, NodeListener, NodeStream, StoredNodeEvent};
use crate::network::NetworkController;
use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The browser side of a [`NodeStream`]: what its loop shares with the task. Both run on the
/// page's one thread and never inside each other (the loop calls no application code, and
/// waking a task only schedules it).
pub(super) struct PageLoop<S> {
    shared: Rc<RefCell<State<S>>>,
    network: NetworkController,
}

struct State<S> {
    /// With the stream until it gives it back or goes.
    listener: Option<NodeListener<S>>,
    /// The task to wake when the loop has gathered something (or the node stopped).
    waker: Option<Waker>,
}

impl<S: 'static> NodeListener<S> {
    /// The node's events as a [`Stream`](futures_core::Stream) for async code, on any executor
    /// (see [`NodeStream`]); in the browser typically `wasm-bindgen-futures`' `spawn_local`.
    ///
    /// In the browser this installs the stream's loop on the page's event loop, as `for_each`
    /// installs its callback; no thread, and it does not fail. Natively it starts a waiter
    /// thread instead.
    pub fn into_stream(self) -> io::Result<NodeStream<S>> {
        NodeStream::new(self, |listener, delays| {
            let network = listener.handler.network().clone();
            let shared = Rc::new(RefCell::new(State { listener: Some(listener), waker: None }));
            let for_loop = shared.clone();
            network.install_loop(Box::new(move || turn(&for_loop, &delays)));
            Ok(Driver::Browser(PageLoop { shared, network }))
        })
    }
}

/// One run of the stream's loop, from the page's event loop. Returns when to run again at
/// the latest, or `None` once the node stopped (the backend then closes its sockets, as after
/// `for_each`'s last turn).
fn turn<S>(shared: &RefCell<State<S>>, delays: &Delays) -> Option<Option<Duration>> {
    let mut state = shared.borrow_mut();
    let state = &mut *state;
    let listener = state.listener.as_mut()?;
    let running = listener.handler.is_running();
    if running {
        listener.gather(Some(Duration::ZERO));
    }
    delays.fire_due();
    if !listener.pending.is_empty() || !running {
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
    if !running {
        return None;
    }
    Some(match (listener.signals.time_to_next(), delays.time_to_next()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

impl<S> PageLoop<S> {
    /// `poll_next`: hands out an event gathered or ready now; else the loop wakes the task.
    pub(super) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<StoredNodeEvent<S>>> {
        let mut state = self.shared.borrow_mut();
        let Some(listener) = state.listener.as_mut() else { return Poll::Ready(None) };
        if let Some(event) = listener.try_next() {
            return Poll::Ready(Some(event));
        }
        if !listener.handler.is_running() {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Runs `check` on the listener, before and after taking what is ready now; if it decides
    /// nothing, the loop wakes the task when it gathers more.
    pub(super) fn poll_with<T>(
        &self,
        cx: &mut Context<'_>,
        mut check: impl FnMut(&NodeListener<S>) -> Option<T>,
        gone: impl FnOnce() -> T,
    ) -> Poll<T> {
        let mut state = self.shared.borrow_mut();
        let Some(listener) = state.listener.as_mut() else { return Poll::Ready(gone()) };
        if let Some(outcome) = check(listener) {
            return Poll::Ready(outcome);
        }
        listener.gather(Some(Duration::ZERO));
        if let Some(outcome) = check(listener) {
            return Poll::Ready(outcome);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Takes the stream's loop off the page's event loop and gives the listener back.
    pub(super) fn close(&mut self) -> Option<NodeListener<S>> {
        self.network.uninstall_loop();
        self.shared.borrow_mut().listener.take()
    }
}
