//! The event half: the poll, reads, accepts, deadlines, on the event thread.

use super::stream::lock;
use super::{Cx, Deadline, INPUT_BUFFER_SIZE, Shared, WAKER, linger};
use crate::core::NetEvent;
use crate::core::ResourceId;
use crate::core::clock::Time;
use mio::{Events, Poll};
use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The buffer every read fills. It starts [`InputBuffer::PAST_PAGE`] bytes past a page
/// boundary: the kernel copied 64 KiB datagrams into a page-aligned buffer 8–10 % slower than
/// into one 16 or 32 bytes past it (x86, `docs/performance.md`), and an allocation this large
/// often lands page- or line-aligned.
struct InputBuffer {
    bytes: Box<[u8]>,
    start: usize,
}

impl InputBuffer {
    const PAGE: usize = 4096;
    const PAST_PAGE: usize = 32;

    fn new() -> Self {
        let bytes = vec![0; INPUT_BUFFER_SIZE + Self::PAGE + Self::PAST_PAGE].into_boxed_slice();
        let start = bytes.as_ptr().align_offset(Self::PAGE) + Self::PAST_PAGE;
        InputBuffer { bytes, start }
    }

    fn get(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + INPUT_BUFFER_SIZE]
    }
}

/// The native half that waits for and processes events; lives on the event thread.
pub(crate) struct Processor {
    pub(super) poll: Poll,
    pub(super) events: Events,
    pub(super) shared: Arc<Shared>,
    input: InputBuffer,
    deadlines: BTreeSet<(Time, ResourceId, Deadline)>,
    /// Resources to read again this turn (they used their read budget last turn).
    again: Vec<ResourceId>,
    /// Connects that ended this turn, whose deadlines can go.
    settled: Vec<ResourceId>,
}

impl Drop for Processor {
    /// Flushes what the application sent, for at most the linger (see [`linger`]).
    fn drop(&mut self) {
        linger::flush_before_exit(self);
    }
}

impl Processor {
    pub(super) fn new(poll: Poll, shared: Arc<Shared>) -> Self {
        Processor {
            poll,
            events: Events::with_capacity(1024),
            shared,
            input: InputBuffer::new(),
            deadlines: BTreeSet::new(),
            again: Vec::new(),
            settled: Vec::new(),
        }
    }

    /// Waits up to `timeout` (forever if `None`) for network activity or a wake-up, and
    /// reports what happened.
    pub fn process_poll_event(
        &mut self,
        timeout: Option<Duration>,
        callback: &mut dyn FnMut(NetEvent<'_>),
    ) {
        if self.shared.news.swap(false, Ordering::AcqRel) {
            self.deadlines.extend(lock(&self.shared.new_deadlines).drain(..));
            lock(&self.shared.removed).clear();
        }
        let mut timeout = match self.deadlines.first() {
            Some((deadline, ..)) => {
                // The clock is read only when a deadline is pending (most turns have none).
                let until = self.shared.clock.now().until(*deadline);
                Some(timeout.map_or(until, |t| t.min(until)))
            }
            None => timeout,
        };
        let read_again = std::mem::take(&mut self.again);
        if !read_again.is_empty() {
            timeout = Some(Duration::ZERO);
        }
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::error!("poll failed: {e}");
            }
            self.again = read_again;
            return;
        }
        let Processor { events, shared, input, again, settled, .. } = self;
        let input = input.get();
        let mut cx = Cx { shared, input, callback, again, settled };
        for event in events.iter() {
            if event.token() == WAKER {
                continue;
            }
            let id = ResourceId::from(event.token().0);
            if let Some(resource) = cx.shared.get_or_closing(id) {
                resource.on_event(event, &mut cx);
            }
        }
        for id in read_again {
            if let Some(resource) = cx.shared.get_or_closing(id) {
                resource.on_readable_again(&mut cx);
            }
        }
        self.expire_deadlines(callback);
        self.drop_settled_deadlines();
    }

    fn expire_deadlines(&mut self, callback: &mut dyn FnMut(NetEvent<'_>)) {
        if self.deadlines.is_empty() {
            return;
        }
        let now = self.shared.clock.now();
        while let Some(&(deadline, id, kind)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(resource) = self.shared.get_or_closing(id) {
                let mut cx = Cx {
                    shared: &self.shared,
                    input: self.input.get(),
                    callback,
                    again: &mut self.again,
                    settled: &mut self.settled,
                };
                resource.on_deadline(id, kind, &mut cx);
            }
        }
    }

    /// Drops the `Connect` deadlines of connects that ended: a pending deadline makes every
    /// turn read the clock and wait with a timeout, for nothing.
    fn drop_settled_deadlines(&mut self) {
        if self.settled.is_empty() {
            return;
        }
        self.settled.sort_unstable();
        let settled = &self.settled;
        self.deadlines.retain(|(_, id, kind)| {
            *kind != Deadline::Connect || settled.binary_search(id).is_err()
        });
        self.settled.clear();
    }
}
