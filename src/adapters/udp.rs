//! `Udp`: datagrams, unicast, broadcast and multicast, over IPv4 and IPv6.
//!
//! Listening on a multicast address (`224.0.0.0/4` or `ff00::/8`) joins that group.

use std::net::SocketAddr;

/// Largest payload that fits an Ethernet MTU without fragmentation: safest on the internet.
pub const MAX_INTERNET_PAYLOAD_LEN: usize = 1500 - 20 - 8;

/// Largest payload one datagram can carry on this system's loopback.
#[cfg(not(target_os = "macos"))]
pub const MAX_LOCAL_PAYLOAD_LEN: usize = 65535 - 20 - 8;

/// Largest payload one datagram can carry on this system's loopback.
#[cfg(target_os = "macos")]
pub const MAX_LOCAL_PAYLOAD_LEN: usize = 9216 - 20 - 8;

/// Options for `connect_with(TransportConnect::Udp(..))`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct UdpConnectConfig {
    pub(crate) source_address: Option<SocketAddr>,
    pub(crate) broadcast: bool,
    pub(crate) reuse_address: bool,
    pub(crate) reuse_port: bool,
}

impl UdpConnectConfig {
    /// Sends from this local address and port. By default the socket binds to the unspecified
    /// address of the peer's family, so IPv6 peers work without configuration.
    pub fn with_source_address(mut self, addr: SocketAddr) -> Self {
        self.source_address = Some(addr);
        self
    }

    /// Allows sending to broadcast addresses (`SO_BROADCAST`).
    pub fn with_broadcast(mut self) -> Self {
        self.broadcast = true;
        self
    }

    /// Sets `SO_REUSEADDR`.
    pub fn with_reuse_address(mut self) -> Self {
        self.reuse_address = true;
        self
    }

    /// Sets `SO_REUSEPORT` (Unix).
    pub fn with_reuse_port(mut self) -> Self {
        self.reuse_port = true;
        self
    }
}

/// Options for `listen_with(TransportListen::Udp(..))`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct UdpListenConfig {
    pub(crate) send_broadcasts: bool,
    pub(crate) receive_broadcasts: bool,
    pub(crate) reuse_address: bool,
    pub(crate) reuse_port: bool,
}

impl UdpListenConfig {
    /// Allows sending broadcasts through `Endpoint::from_listener` endpoints.
    pub fn with_send_broadcasts(mut self) -> Self {
        self.send_broadcasts = true;
        self
    }

    /// Receives broadcasts. A socket bound to the unspecified address already does on Linux;
    /// this also sets `SO_BROADCAST` and address reuse so several listeners can share a port.
    pub fn with_receive_broadcasts(mut self) -> Self {
        self.receive_broadcasts = true;
        self
    }

    /// Sets `SO_REUSEADDR`.
    pub fn with_reuse_address(mut self) -> Self {
        self.reuse_address = true;
        self
    }

    /// Sets `SO_REUSEPORT` (Unix).
    pub fn with_reuse_port(mut self) -> Self {
        self.reuse_port = true;
        self
    }
}
