//! How long a closing connection may take to hand its last bytes to the peer: the bound on
//! [`NodeHandler::stop`](crate::node::NodeHandler::stop) and on
//! [`NetworkController::remove`](crate::network::NetworkController::remove), shared by every backend.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The linger a network starts with: one second.
///
/// A peer that reads at all takes what a node queued in far less: over loopback or a LAN a
/// megabyte goes in milliseconds, and even a 100 ms round trip leaves time for several windows
/// of data. A peer that stops reading (or never answers a WebSocket Close) would take forever,
/// and an application that is shutting down should not wait on it for longer than a person
/// notices. Change it with [`NetworkController::set_linger`](crate::network::NetworkController::set_linger).
pub const DEFAULT_LINGER: Duration = Duration::from_secs(1);

/// A network's linger, readable from any thread (nanoseconds; fits 584 years).
#[derive(Debug)]
pub(crate) struct LingerSetting(AtomicU64);

impl Default for LingerSetting {
    fn default() -> Self {
        LingerSetting(AtomicU64::new(DEFAULT_LINGER.as_nanos() as u64))
    }
}

impl LingerSetting {
    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Acquire))
    }

    pub fn set(&self, linger: Duration) {
        let nanos = u64::try_from(linger.as_nanos()).unwrap_or(u64::MAX);
        self.0.store(nanos, Ordering::Release);
    }
}

/// Says that `bytes` queued for `endpoint` were dropped when its linger ran out (`when`: on
/// `stop`, on `remove`). One line per connection, at warn: data the application sent is lost.
/// (The browser never drops: see `docs/browser.md`.)
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub(crate) fn warn_dropped(
    endpoint: super::endpoint::Endpoint,
    bytes: usize,
    linger: Duration,
    when: &str,
) {
    log::warn!(
        "{} {endpoint}: dropped {bytes} unsent bytes on {when}: the peer did not take them \
         within the linger of {linger:?}",
        endpoint.transport(),
    );
}
