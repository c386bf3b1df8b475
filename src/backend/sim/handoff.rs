//! A one-value hand-off between two threads that take turns: the world and a node.
//!
//! std's channels park the receiver at once; here the receiver first spins a little, because
//! the other side usually answers within microseconds (a node handles an event; the world pops
//! the next one). That makes a simulated delivery several times cheaper.

use crate::core::clock::Clock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::Thread;
use std::time::Duration;

pub(crate) struct Handoff<T> {
    slot: Mutex<Option<T>>,
    ready: AtomicBool,
    waiter: Mutex<Option<Thread>>,
    spins: u32,
    yields: u32,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Handoff<T> {
    /// A hand-off whose receiver spins `spins` times, then yields its core `yields` times,
    /// before it sleeps.
    pub fn new(spins: u32, yields: u32) -> Self {
        Handoff {
            slot: Mutex::new(None),
            ready: AtomicBool::new(false),
            waiter: Mutex::new(None),
            spins,
            yields,
        }
    }

    /// Hands `value` over.
    pub fn send(&self, value: T) -> Result<(), T> {
        *lock(&self.slot) = Some(value);
        self.ready.store(true, Ordering::Release);
        if let Some(waiter) = lock(&self.waiter).as_ref() {
            waiter.unpark();
        }
        Ok(())
    }

    /// Waits for a value, at most `timeout` if given. `None` on timeout.
    pub fn recv(&self, timeout: Option<Duration>) -> Option<T> {
        *lock(&self.waiter) = Some(std::thread::current());
        // Real time: this only notices a node stuck outside the simulation.
        let clock = Clock::system();
        let deadline = timeout.map(|t| clock.now().after(t));
        let mut spins = 0;
        loop {
            if self.ready.swap(false, Ordering::AcqRel) {
                return lock(&self.slot).take();
            }
            if spins < self.spins + self.yields {
                spins += 1;
                // Spins first; then yields: on a busy machine the other side may need this
                // very core to answer.
                if spins <= self.spins {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            match deadline {
                None => std::thread::park(),
                Some(deadline) => {
                    let now = clock.now();
                    if now >= deadline {
                        return None;
                    }
                    std::thread::park_timeout(now.until(deadline));
                }
            }
        }
    }
}
