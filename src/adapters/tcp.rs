//! Plain `Tcp`: a byte stream. A `Message` event carries whatever bytes arrived, so message
//! boundaries are the application's business (use `FramedTcp` to keep them).

use super::{StreamOptions, connect_builders, stream_builders};
use std::time::Duration;

/// Size of the buffer each read fills; a `Tcp` `Message` event carries at most this many bytes.
pub const INPUT_BUFFER_SIZE: usize = u16::MAX as usize;

/// The maximum length of a listener's queue of connections not yet accepted.
pub const LISTENER_BACKLOG: i32 = 4096;

/// TCP keepalive settings (`SO_KEEPALIVE` and friends).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpKeepalive {
    pub(crate) time: Option<Duration>,
    pub(crate) interval: Option<Duration>,
    pub(crate) retries: Option<u32>,
}

impl TcpKeepalive {
    /// Keepalive with the system's default timings.
    pub const fn new() -> Self {
        Self { time: None, interval: None, retries: None }
    }

    /// Idle time before the first probe.
    pub const fn with_time(self, time: Duration) -> Self {
        Self { time: Some(time), ..self }
    }

    /// Time between probes.
    pub const fn with_interval(self, interval: Duration) -> Self {
        Self { interval: Some(interval), ..self }
    }

    /// Unanswered probes before the connection is dropped.
    pub const fn with_retries(self, retries: u32) -> Self {
        Self { retries: Some(retries), ..self }
    }
}

/// Options for `connect_with(TransportConnect::Tcp(..))`.
#[derive(Clone, Debug, Default)]
pub struct TcpConnectConfig {
    pub(crate) options: StreamOptions,
}

/// Options for `listen_with(TransportListen::Tcp(..))`; socket options apply to the listener and
/// to every connection it accepts.
#[derive(Clone, Debug, Default)]
pub struct TcpListenConfig {
    pub(crate) options: StreamOptions,
}

stream_builders!(TcpConnectConfig);
connect_builders!(TcpConnectConfig);
stream_builders!(TcpListenConfig);
