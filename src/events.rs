//! A queue of events a node sends to itself: immediate, priority, and timed.
//!
//! [`split`] makes a standalone queue; a node owns one for its signals
//! ([`crate::node::NodeHandler::signals`]).
//!
//! Ordering: priority events come first; then events in the order they became ready. A timed
//! event becomes ready at its deadline, and timers with the same deadline fire in the order
//! they were set (they are distinct timers, unlike message-io's).

use crate::core::clock::{Clock, Time};
use crate::core::timers::TimerQueue;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Creates a standalone event queue on the system clock.
///
/// ```
/// let (sender, mut receiver) = portnet::events::split();
/// sender.send_with_timer("later", std::time::Duration::from_millis(5));
/// sender.send("now");
/// assert_eq!(receiver.receive(), "now");
/// assert_eq!(receiver.receive(), "later");
/// ```
pub fn split<E: Send + 'static>() -> (EventSender<E>, EventReceiver<E>) {
    split_with_clock(Clock::system())
}

pub(crate) fn split_with_clock<E>(clock: Clock) -> (EventSender<E>, EventReceiver<E>) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State {
            priority: VecDeque::new(),
            normal: VecDeque::new(),
            timers: TimerQueue::default(),
        }),
        ready: Condvar::new(),
        queued: AtomicBool::new(false),
        clock,
        waker: OnceLock::new(),
        pump: Mutex::new(None),
    });
    (EventSender { queue: queue.clone() }, EventReceiver { sender: EventSender { queue } })
}

/// Identifies a timer set by [`EventSender::send_with_timer`], to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(u64);

/// Called after every push, to wake whoever drives the queue (a node's event loop).
pub(crate) type Waker = Arc<dyn Fn() + Send + Sync>;

struct State<E> {
    priority: VecDeque<E>,
    normal: VecDeque<E>,
    timers: TimerQueue<E>,
}

impl<E> State<E> {
    fn pop_ready(&mut self, now: Time) -> Option<E> {
        while let Some((_, event)) = self.timers.pop_due(now) {
            self.normal.push_back(event);
        }
        self.priority.pop_front().or_else(|| self.normal.pop_front())
    }
}

/// Produces events on the receiver's thread instead of waiting for another thread: a
/// simulated node's `enqueue` runs its loop this way. Gets the longest it may wait; returns
/// `None` once nothing more can ever come.
pub(crate) type Pump<E> = Box<dyn FnMut(Duration) -> Option<Vec<E>> + Send>;

struct Queue<E> {
    state: Mutex<State<E>>,
    ready: Condvar,
    /// False only when `state` is known empty (no event, no timer): the node's loop asks
    /// every turn, and most turns find nothing, so they skip the lock. Set under the lock by
    /// every insertion, cleared under it by a look that finds nothing.
    queued: AtomicBool,
    clock: Clock,
    waker: OnceLock<Waker>,
    pump: Mutex<Option<Pump<E>>>,
}

impl<E> Queue<E> {
    fn lock(&self) -> MutexGuard<'_, State<E>> {
        // A panic in another thread while holding the lock leaves the queue consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the lock after an insertion: marks the queue non-empty.
    fn lock_to_insert(&self) -> MutexGuard<'_, State<E>> {
        let state = self.lock();
        self.queued.store(true, Ordering::Release);
        state
    }

    /// Whether the queue may hold something (see `queued`).
    fn may_hold(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    fn notify(&self) {
        self.ready.notify_one();
        if let Some(wake) = self.waker.get() {
            wake();
        }
    }
}

/// Sends events to its [`EventReceiver`]. Cheap to clone; usable from any thread.
pub struct EventSender<E> {
    queue: Arc<Queue<E>>,
}

impl<E> Clone for EventSender<E> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone() }
    }
}

impl<E> EventSender<E> {
    /// Queues `event` behind the events already ready.
    pub fn send(&self, event: E) {
        self.queue.lock_to_insert().normal.push_back(event);
        self.queue.notify();
    }

    /// Queues `event` ahead of every non-priority event.
    pub fn send_with_priority(&self, event: E) {
        self.queue.lock_to_insert().priority.push_back(event);
        self.queue.notify();
    }

    /// Delivers `event` after `delay`. Returns an id to cancel it.
    pub fn send_with_timer(&self, event: E, delay: Duration) -> TimerId {
        let deadline = self.queue.clock.now().after(delay);
        let id = self.queue.lock_to_insert().timers.insert(deadline, event);
        self.queue.notify();
        TimerId(id)
    }

    /// Cancels a timer that has not fired yet. Returns whether it was still pending.
    pub fn cancel_timer(&self, timer_id: TimerId) -> bool {
        self.queue.lock().timers.cancel(timer_id.0).is_some()
    }

    /// The time on this queue's clock (virtual in a simulated world).
    pub(crate) fn now(&self) -> Duration {
        self.queue.clock.now().0
    }

    pub(crate) fn set_waker(&self, waker: Waker) {
        let _ = self.queue.waker.set(waker);
    }
}

/// Receives what its [`EventSender`]s send.
pub struct EventReceiver<E> {
    sender: EventSender<E>,
}

impl<E: Send + 'static> Default for EventReceiver<E> {
    /// A new event queue, as message-io's `EventReceiver::default()`: the same as
    /// [`split`]'s receiver, whose sender [`EventReceiver::sender`] gives.
    fn default() -> Self {
        split().1
    }
}

impl<E> EventReceiver<E> {
    /// A sender for this receiver.
    pub fn sender(&self) -> &EventSender<E> {
        &self.sender
    }

    fn queue(&self) -> &Queue<E> {
        &self.sender.queue
    }

    /// Blocks until an event is ready.
    ///
    /// In the browser nothing may block: there it returns a ready event and panics, saying
    /// so, if none is ready. Use [`try_receive`](Self::try_receive) there.
    pub fn receive(&mut self) -> E {
        #[cfg(all(target_family = "wasm", target_os = "unknown"))]
        match self.try_receive() {
            Some(event) => event,
            None => panic!(
                "EventReceiver::receive would block, and nothing may block in the browser: \
                 use try_receive"
            ),
        }
        #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
        loop {
            if let Some(event) = self.receive_timeout(Duration::from_secs(3600)) {
                return event;
            }
        }
    }

    /// Blocks until an event is ready or `timeout` passes.
    ///
    /// In the browser nothing may block: there it returns at once, with an event if one is
    /// ready (a timer is ready once its deadline has passed).
    pub fn receive_timeout(&mut self, timeout: Duration) -> Option<E> {
        #[cfg(all(target_family = "wasm", target_os = "unknown"))]
        {
            let _ = timeout;
            self.try_receive()
        }
        #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
        self.receive_timeout_blocking(timeout)
    }

    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    fn receive_timeout_blocking(&mut self, timeout: Duration) -> Option<E> {
        let queue = self.queue();
        let give_up = queue.clock.now().after(timeout);
        if let Some(pump) = queue.pump.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            loop {
                let now = queue.clock.now();
                if let Some(event) = queue.lock().pop_ready(now) {
                    return Some(event);
                }
                if now >= give_up {
                    return None;
                }
                let events = pump(now.until(give_up))?;
                queue.lock_to_insert().normal.extend(events);
            }
        }
        let mut state = queue.lock();
        loop {
            let now = queue.clock.now();
            if let Some(event) = state.pop_ready(now) {
                return Some(event);
            }
            if now >= give_up {
                return None;
            }
            let wake_at = state.timers.next_deadline().map_or(give_up, |t| t.min(give_up));
            state = queue
                .ready
                .wait_timeout(state, now.until(wake_at))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Returns a ready event without blocking: timers whose deadline has passed count as
    /// ready (message-io's `try_receive` missed events while a later timer was pending).
    pub fn try_receive(&mut self) -> Option<E> {
        let now = self.queue().clock.now();
        self.queue().lock().pop_ready(now)
    }

    /// Makes this receiver produce its events with `pump` (see [`Pump`]).
    pub(crate) fn set_pump(&self, pump: Pump<E>) {
        *self.queue().pump.lock().unwrap_or_else(|e| e.into_inner()) = Some(pump);
    }

    /// The clock this queue's timers run on.
    pub(crate) fn clock(&self) -> Clock {
        self.queue().clock.clone()
    }

    /// How long until the next timer fires (zero if an event is ready now), or `None` if
    /// nothing is queued.
    pub(crate) fn time_to_next(&self) -> Option<Duration> {
        let queue = self.queue();
        if !queue.may_hold() {
            return None;
        }
        let state = queue.lock();
        if !state.priority.is_empty() || !state.normal.is_empty() {
            return Some(Duration::ZERO);
        }
        let Some(next) = state.timers.next_deadline() else {
            queue.queued.store(false, Ordering::Release);
            return None;
        };
        Some(queue.clock.now().until(next))
    }

    /// How many events are ready now, due timers included.
    pub(crate) fn ready_len(&self) -> usize {
        let queue = self.queue();
        if !queue.may_hold() {
            return 0;
        }
        let mut state = queue.lock();
        // The clock is read only when a timer is pending: a system call on some hosts.
        if state.timers.next_deadline().is_some() {
            let now = queue.clock.now();
            while let Some((_, event)) = state.timers.pop_due(now) {
                state.normal.push_back(event);
            }
        } else if state.priority.is_empty() && state.normal.is_empty() {
            queue.queued.store(false, Ordering::Release);
        }
        state.priority.len() + state.normal.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manual() -> (EventSender<u32>, EventReceiver<u32>, Arc<Mutex<Duration>>) {
        let (clock, now) = Clock::manual();
        let (s, r) = split_with_clock(clock);
        (s, r, now)
    }

    #[test]
    fn timers_with_the_same_deadline_both_fire_in_order() {
        let (s, mut r, now) = manual();
        s.send_with_timer(1, Duration::from_millis(10));
        s.send_with_timer(2, Duration::from_millis(10));
        assert_eq!(r.try_receive(), None);
        *now.lock().unwrap() = Duration::from_millis(10);
        assert_eq!(r.try_receive(), Some(1));
        assert_eq!(r.try_receive(), Some(2));
        assert_eq!(r.try_receive(), None);
    }

    #[test]
    fn try_receive_sees_ready_events_while_a_later_timer_is_pending() {
        let (s, mut r, _now) = manual();
        s.send_with_timer(9, Duration::from_secs(60));
        s.send(1);
        assert_eq!(r.try_receive(), Some(1));
        assert_eq!(r.time_to_next(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn priority_first_then_fifo() {
        let (s, mut r, _now) = manual();
        s.send(1);
        s.send(2);
        s.send_with_priority(0);
        assert_eq!(
            (r.try_receive(), r.try_receive(), r.try_receive()),
            (Some(0), Some(1), Some(2))
        );
    }

    #[test]
    fn cancelled_timer_never_fires() {
        let (s, mut r, now) = manual();
        let id = s.send_with_timer(1, Duration::from_millis(5));
        s.send_with_timer(2, Duration::from_millis(5));
        assert!(s.cancel_timer(id));
        assert!(!s.cancel_timer(id));
        *now.lock().unwrap() = Duration::from_millis(5);
        assert_eq!(r.try_receive(), Some(2));
        assert_eq!(r.try_receive(), None);
    }

    #[test]
    fn receive_timeout_wakes_for_a_send_from_another_thread() {
        let (s, mut r) = split();
        let t = std::thread::spawn(move || s.send(7u32));
        assert_eq!(r.receive_timeout(Duration::from_secs(10)), Some(7));
        t.join().unwrap();
    }
}
