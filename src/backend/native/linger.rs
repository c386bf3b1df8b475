//! The bounded end of a native connection's life: what a removed connection and a stopping
//! node still write, and for how long (the network's linger, `NetworkController::set_linger`).

use super::stream::lock;
use super::{Processor, Resource};
use crate::core::{Endpoint, ResourceId, warn_dropped};
use std::sync::Arc;
#[cfg(feature = "websocket")]
use std::sync::atomic::Ordering;

impl Resource {
    /// The connection's endpoint, for the resources that have one.
    fn endpoint(&self) -> Option<Endpoint> {
        match self {
            Resource::Stream(c) => Some(c.endpoint),
            #[cfg(feature = "websocket")]
            Resource::Ws(c) => Some(c.endpoint),
            _ => None,
        }
    }

    /// Bytes accepted by `send` that were not written yet (for `Ws`: the message bytes handed
    /// to the WebSocket since its buffer last emptied, some of which may have gone out).
    fn unsent_bytes(&self) -> usize {
        match self {
            Resource::Stream(c) => lock(&c.out).len(),
            #[cfg(feature = "websocket")]
            Resource::Ws(c) => c.queued.load(Ordering::Acquire),
            _ => 0,
        }
    }

    /// Logs what is lost if this connection is given up now with data queued.
    fn warn_if_unsent(&self, linger: std::time::Duration, when: &str) {
        if let Some(endpoint) = self.endpoint().filter(|_| self.has_queued()) {
            warn_dropped(endpoint, self.unsent_bytes(), linger, when);
        }
    }
}

/// A removed connection's linger ran out: whatever it still had queued is dropped, and its
/// socket closed.
pub(super) fn expire(resource: &Resource, id: ResourceId, shared: &super::Shared) {
    resource.warn_if_unsent(shared.linger.get(), "remove");
    shared.finish_close(id);
}

/// The event thread is going away and nothing will flush send queues any more: writes what
/// was accepted with `SendStatus::Sent`, waiting for writability for at most the linger in
/// all, then drops what is left (one warning per connection) and closes the removed ones.
pub(super) fn flush_before_exit(processor: &mut Processor) {
    let shared = &processor.shared;
    let linger = shared.linger.get();
    let give_up = shared.clock.now().after(linger);
    let mut waiting: Vec<Arc<Resource>> = shared
        .resources
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .chain(lock(&shared.closing).values())
        .filter(|r| r.has_queued())
        .cloned()
        .collect();
    loop {
        waiting.retain(|r| {
            r.flush_now();
            r.has_queued()
        });
        let left = shared.clock.now().until(give_up);
        if waiting.is_empty() || left.is_zero() {
            break;
        }
        if processor.poll.poll(&mut processor.events, Some(left)).is_err() {
            break;
        }
    }
    for resource in &waiting {
        resource.warn_if_unsent(linger, "stop");
    }
    for (_, resource) in lock(&shared.closing).drain() {
        resource.shutdown();
    }
}
