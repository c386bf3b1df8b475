//! `FramedTcp`: TCP with message boundaries. Each message goes on the wire as an unsigned LEB128
//! length followed by the payload, exactly as message-io frames it, so the two interoperate.

pub use super::tcp::TcpKeepalive;
use super::{StreamOptions, connect_builders, stream_builders};

/// The largest frame accepted by default. A peer announcing more is disconnected with a logged
/// reason; raise it with `with_max_frame_size`.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 64 << 20;

/// Options for `connect_with(TransportConnect::FramedTcp(..))`.
#[derive(Clone, Debug)]
pub struct FramedTcpConnectConfig {
    pub(crate) options: StreamOptions,
    pub(crate) max_frame_size: usize,
}

/// Options for `listen_with(TransportListen::FramedTcp(..))`, applied to accepted connections.
#[derive(Clone, Debug)]
pub struct FramedTcpListenConfig {
    pub(crate) options: StreamOptions,
    pub(crate) max_frame_size: usize,
}

impl Default for FramedTcpConnectConfig {
    fn default() -> Self {
        Self { options: StreamOptions::default(), max_frame_size: DEFAULT_MAX_FRAME_SIZE }
    }
}

impl Default for FramedTcpListenConfig {
    fn default() -> Self {
        Self { options: StreamOptions::default(), max_frame_size: DEFAULT_MAX_FRAME_SIZE }
    }
}

impl FramedTcpConnectConfig {
    /// The largest frame this connection sends or accepts.
    pub fn with_max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }
}

impl FramedTcpListenConfig {
    /// The largest frame accepted connections send or accept.
    pub fn with_max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }
}

stream_builders!(FramedTcpConnectConfig);
connect_builders!(FramedTcpConnectConfig);
stream_builders!(FramedTcpListenConfig);
