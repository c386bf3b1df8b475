use super::resource_id::ResourceId;
use super::transport::Transport;
use std::net::SocketAddr;

/// A peer as seen by a node: the resource that talks to it and its address.
///
/// For connection-oriented transports it names one connection. For `Udp` listeners many
/// endpoints share the listener's resource and differ by address.
///
/// Endpoints are ordered (by resource, then address), so they can key a `BTreeMap`: iteration
/// order then does not depend on a hasher's random seed, which keeps simulated runs
/// reproducible.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Endpoint {
    resource_id: ResourceId,
    addr: SocketAddr,
}

impl Endpoint {
    /// An endpoint that sends from the `Udp` listener `id` to `addr`, without a connection.
    ///
    /// Only meaningful for listeners of non connection-oriented transports (`Udp`); sending
    /// through any other endpoint made this way returns `SendStatus::ResourceNotFound`
    /// (message-io panicked here).
    ///
    /// ```
    /// use portnet::network::{Endpoint, Transport};
    /// use portnet::node;
    ///
    /// let (handler, _listener) = node::split::<()>();
    /// let (id, _) = handler.network().listen(Transport::Udp, "127.0.0.1:0").unwrap();
    /// let (_, target) = handler.network().listen(Transport::Udp, "127.0.0.1:0").unwrap();
    /// let status = handler.network().send(Endpoint::from_listener(id, target), b"hi");
    /// assert_eq!(status, portnet::network::SendStatus::Sent);
    /// ```
    pub fn from_listener(id: ResourceId, addr: SocketAddr) -> Self {
        Endpoint::new(id, addr)
    }

    pub(crate) fn new(resource_id: ResourceId, addr: SocketAddr) -> Self {
        Self { resource_id, addr }
    }

    /// The resource behind this endpoint. Several `Udp` endpoints may share one.
    pub fn resource_id(&self) -> ResourceId {
        self.resource_id
    }

    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The transport this endpoint talks over.
    pub fn transport(&self) -> Transport {
        let id = self.resource_id.adapter_id();
        Transport::from_adapter_id(id).unwrap_or_else(|| Transport::from(id))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if f.width().is_none() && f.precision().is_none() {
            // The common case writes straight through: no string to build.
            return write!(f, "[{}] {}", self.resource_id, self.addr);
        }
        f.pad(&format!("[{}] {}", self.resource_id, self.addr))
    }
}
