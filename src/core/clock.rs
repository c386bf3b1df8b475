//! The only module that reads a clock.
//!
//! Core code measures time as a [`Time`]: the duration since the clock's origin. A native node
//! reads the monotonic system clock; the simulator plugs in a virtual clock that only moves when
//! the world says so.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A point in time on a node's clock: the time elapsed since the clock's origin.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub(crate) struct Time(pub Duration);

impl Time {
    /// The time `delay` after `self`, saturating instead of overflowing.
    pub fn after(self, delay: Duration) -> Time {
        Time(self.0.saturating_add(delay))
    }

    /// How long from `self` until `later` (zero if `later` is already past).
    pub fn until(self, later: Time) -> Duration {
        later.0.saturating_sub(self.0)
    }
}

/// A source of [`Time`].
#[derive(Clone, Debug)]
pub(crate) enum Clock {
    /// The monotonic system clock.
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    System(std::time::Instant),
    /// The browser's clock (milliseconds since the epoch at the origin).
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    Browser(f64),
    /// A clock that moves only when told to (virtual time, tests).
    // Used by the simulator and by core unit tests.
    #[allow(dead_code)]
    Manual(Arc<Mutex<Duration>>),
}

impl Clock {
    /// The clock of a native node: the system's monotonic clock.
    #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
    pub fn system() -> Clock {
        Clock::System(std::time::Instant::now())
    }

    /// The clock of a browser node: `std::time::Instant` panics on this target.
    #[cfg(all(target_family = "wasm", target_os = "unknown"))]
    pub fn system() -> Clock {
        Clock::Browser(js_sys::Date::now())
    }

    /// A manual clock starting at zero, and the handle that moves it.
    #[allow(dead_code)]
    pub fn manual() -> (Clock, Arc<Mutex<Duration>>) {
        let now = Arc::new(Mutex::new(Duration::ZERO));
        (Clock::Manual(now.clone()), now)
    }

    /// The current time on this clock.
    pub fn now(&self) -> Time {
        match self {
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Clock::System(origin) => Time(origin.elapsed()),
            #[cfg(all(target_family = "wasm", target_os = "unknown"))]
            Clock::Browser(origin) => {
                Time(Duration::from_secs_f64(((js_sys::Date::now() - origin) / 1000.0).max(0.0)))
            }
            Clock::Manual(now) => Time(*now.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }
}
