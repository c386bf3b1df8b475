//! A simulated node's stop honours the network's linger in virtual time, as a native node's
//! does in real time: its processor waits while connections still have bytes for the link,
//! at most the linger, then gives up on the rest (a warning per connection, and a reset).

use super::Processor;
use crate::core::warn_dropped;

impl Drop for Processor {
    fn drop(&mut self) {
        // A crash unwinds through here: a crashed node sends nothing more. Outside its
        // coroutine (a listener the World's own thread dropped) nothing may wait.
        if std::thread::panicking() || !generator::is_generator() {
            return;
        }
        let controller = &self.controller;
        let linger = controller.linger.get();
        let give_up = controller.core().now + linger;
        loop {
            let (now, last) = {
                let mut core = controller.core();
                let last = core.unsent(controller.node).iter().map(|u| u.leaves).max();
                (core.now, last)
            };
            match last {
                None => return,
                Some(_) if now >= give_up => break,
                // Events that reach the node meanwhile are not delivered: it stopped.
                Some(last) => controller.wait(Some(last.min(give_up) - now)),
            }
        }
        let mut core = controller.core();
        for unsent in core.unsent(controller.node) {
            warn_dropped(unsent.endpoint, unsent.bytes, linger, "stop");
            core.abandon(controller.node, unsent.endpoint.resource_id());
        }
        drop(core);
        let drained = std::mem::take(&mut controller.core().drained);
        drained.into_iter().for_each(|notify| notify());
    }
}
