//! A queue of timers ordered by deadline.
//!
//! Each timer gets its own id, so two timers with the same deadline are two timers (message-io
//! keyed them by deadline alone and lost one). Timers with equal deadlines fire in the order
//! they were created.

use super::clock::Time;
use std::collections::{BTreeMap, HashMap};

/// Timers carrying a payload `E`, keyed by `(deadline, id)`.
#[derive(Debug)]
pub(crate) struct TimerQueue<E> {
    by_deadline: BTreeMap<(Time, u64), E>,
    deadline_of: HashMap<u64, Time>,
    next_id: u64,
}

impl<E> Default for TimerQueue<E> {
    fn default() -> Self {
        Self { by_deadline: BTreeMap::new(), deadline_of: HashMap::new(), next_id: 0 }
    }
}

impl<E> TimerQueue<E> {
    /// Adds a timer firing at `deadline` and returns its id.
    pub fn insert(&mut self, deadline: Time, payload: E) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.by_deadline.insert((deadline, id), payload);
        self.deadline_of.insert(id, deadline);
        id
    }

    /// Removes the timer `id`, returning its payload if it had not fired yet.
    pub fn cancel(&mut self, id: u64) -> Option<E> {
        let deadline = self.deadline_of.remove(&id)?;
        self.by_deadline.remove(&(deadline, id))
    }

    /// The earliest deadline, if any timer is pending.
    pub fn next_deadline(&self) -> Option<Time> {
        self.by_deadline.keys().next().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns the earliest timer whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Time) -> Option<(u64, E)> {
        let entry = self.by_deadline.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let ((_, id), payload) = entry.remove_entry();
        self.deadline_of.remove(&id);
        Some((id, payload))
    }

    /// How many timers are pending.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_deadline.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(ms: u64) -> Time {
        Time(Duration::from_millis(ms))
    }

    #[test]
    fn equal_deadlines_are_distinct_timers_in_creation_order() {
        let mut q = TimerQueue::default();
        q.insert(t(10), "a");
        q.insert(t(10), "b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_due(t(10)).map(|(_, e)| e), Some("a"));
        assert_eq!(q.pop_due(t(10)).map(|(_, e)| e), Some("b"));
        assert!(q.pop_due(t(10)).is_none());
    }

    #[test]
    fn nothing_fires_before_its_deadline() {
        let mut q = TimerQueue::default();
        q.insert(t(20), 2);
        q.insert(t(5), 1);
        assert_eq!(q.next_deadline(), Some(t(5)));
        assert!(q.pop_due(t(4)).is_none());
        assert_eq!(q.pop_due(t(19)).map(|(_, e)| e), Some(1));
        assert!(q.pop_due(t(19)).is_none());
        assert_eq!(q.pop_due(t(20)).map(|(_, e)| e), Some(2));
    }

    #[test]
    fn cancel_removes_only_that_timer() {
        let mut q = TimerQueue::default();
        let a = q.insert(t(10), "a");
        let b = q.insert(t(10), "b");
        assert_eq!(q.cancel(a), Some("a"));
        assert_eq!(q.cancel(a), None);
        assert_eq!(q.pop_due(t(10)), Some((b, "b")));
        assert_eq!(q.cancel(b), None, "a fired timer cannot be cancelled");
    }
}
