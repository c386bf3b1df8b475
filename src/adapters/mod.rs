//! Per-transport configuration and constants, at message-io's paths.
//!
//! These are plain data: the backends read them to build sockets. Every backend accepts the
//! same configs; options a backend cannot honour (a bind device in the browser) are ignored
//! there and documented as such.

pub mod framed_tcp;
pub mod tcp;
pub mod udp;
pub mod ws;

use std::net::SocketAddr;
use std::time::Duration;

/// How long a connect (and, for `Ws`, its handshake) may take before it ends in
/// `NetEvent::Connected(endpoint, false)`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes a connection may queue for a slow peer before `send` answers
/// [`SendStatus::QueueFull`](crate::network::SendStatus::QueueFull).
pub const DEFAULT_SEND_QUEUE_LIMIT: usize = 16 << 20;

/// Options shared by every stream connection (`Tcp`, `FramedTcp`, `Ws`).
#[derive(Clone, Debug)]
pub(crate) struct StreamOptions {
    pub bind_device: Option<String>,
    pub source_address: Option<SocketAddr>,
    pub keepalive: Option<tcp::TcpKeepalive>,
    pub reuse_address: bool,
    pub reuse_port: bool,
    pub connect_timeout: Duration,
    pub send_queue_limit: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            bind_device: None,
            source_address: None,
            keepalive: None,
            reuse_address: false,
            reuse_port: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            send_queue_limit: DEFAULT_SEND_QUEUE_LIMIT,
        }
    }
}

/// Builder methods shared by the stream configs, written once.
macro_rules! stream_builders {
    ($config:ty) => {
        impl $config {
            /// Binds the socket to a network interface by name (Linux `SO_BINDTODEVICE`;
            /// ignored elsewhere).
            pub fn with_bind_device(mut self, device: String) -> Self {
                self.options.bind_device = Some(device);
                self
            }

            /// Enables TCP keepalive with these settings.
            pub fn with_keepalive(
                mut self,
                keepalive: $crate::adapters::tcp::TcpKeepalive,
            ) -> Self {
                self.options.keepalive = Some(keepalive);
                self
            }

            /// Sets `SO_REUSEADDR` on the socket.
            pub fn with_reuse_address(mut self) -> Self {
                self.options.reuse_address = true;
                self
            }

            /// Sets `SO_REUSEPORT` on the socket (Unix).
            pub fn with_reuse_port(mut self) -> Self {
                self.options.reuse_port = true;
                self
            }

            /// Bytes each connection may queue for a slow peer before `send` answers
            /// `SendStatus::QueueFull` (default [`DEFAULT_SEND_QUEUE_LIMIT`](crate::adapters::DEFAULT_SEND_QUEUE_LIMIT)).
            pub fn with_send_queue_limit(mut self, bytes: usize) -> Self {
                self.options.send_queue_limit = bytes;
                self
            }
        }
    };
}

/// Builder methods that only make sense when connecting.
macro_rules! connect_builders {
    ($config:ty) => {
        impl $config {
            /// Connects from this local address and port.
            pub fn with_source_address(mut self, source_address: std::net::SocketAddr) -> Self {
                self.options.source_address = Some(source_address);
                self
            }

            /// Gives up on a connect that has not completed after `timeout` (default
            /// [`DEFAULT_CONNECT_TIMEOUT`](crate::adapters::DEFAULT_CONNECT_TIMEOUT)).
            pub fn with_connect_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.options.connect_timeout = timeout;
                self
            }
        }
    };
}

pub(crate) use connect_builders;
pub(crate) use stream_builders;
