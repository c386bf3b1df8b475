use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};

/// Where to connect: a socket address, or a string for what needs more than one (a host name,
/// a `ws://`/`wss://` URL).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RemoteAddr {
    /// A resolved socket address.
    Socket(SocketAddr),
    /// A `host:port` to resolve, or a URL.
    Str(String),
}

impl RemoteAddr {
    /// Whether this is a [`RemoteAddr::Socket`].
    pub fn is_socket_addr(&self) -> bool {
        matches!(self, RemoteAddr::Socket(_))
    }

    /// Whether this is a [`RemoteAddr::Str`].
    pub fn is_string(&self) -> bool {
        matches!(self, RemoteAddr::Str(_))
    }

    /// The socket address. Panics on a [`RemoteAddr::Str`], as message-io's does; prefer
    /// matching on the enum or [`ToSocketAddrs`].
    pub fn socket_addr(&self) -> &SocketAddr {
        match self {
            RemoteAddr::Socket(addr) => addr,
            RemoteAddr::Str(s) => panic!("RemoteAddr::socket_addr on the string {s:?}"),
        }
    }

    /// The string. Panics on a [`RemoteAddr::Socket`], as message-io's does.
    pub fn string(&self) -> &str {
        match self {
            RemoteAddr::Str(s) => s,
            RemoteAddr::Socket(addr) => panic!("RemoteAddr::string on the socket address {addr}"),
        }
    }
}

/// Resolves a [`RemoteAddr::Socket`] as itself and a [`RemoteAddr::Str`] as `host:port`
/// (blocking on DNS).
impl ToSocketAddrs for RemoteAddr {
    type Iter = std::vec::IntoIter<SocketAddr>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        match self {
            RemoteAddr::Socket(addr) => Ok(vec![*addr].into_iter()),
            RemoteAddr::Str(s) => Ok(s.to_socket_addrs()?.collect::<Vec<_>>().into_iter()),
        }
    }
}

impl std::fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteAddr::Socket(addr) => write!(f, "{addr}"),
            RemoteAddr::Str(s) => write!(f, "{s}"),
        }
    }
}

/// Anything `connect` accepts as an address.
pub trait ToRemoteAddr {
    /// Converts `self`; an address that cannot be resolved is an error, not a panic.
    fn to_remote_addr(&self) -> io::Result<RemoteAddr>;
}

impl ToRemoteAddr for &str {
    fn to_remote_addr(&self) -> io::Result<RemoteAddr> {
        Ok(match self.parse() {
            Ok(addr) => RemoteAddr::Socket(addr),
            Err(_) => RemoteAddr::Str(self.to_string()),
        })
    }
}

impl ToRemoteAddr for String {
    fn to_remote_addr(&self) -> io::Result<RemoteAddr> {
        self.as_str().to_remote_addr()
    }
}

impl ToRemoteAddr for &String {
    fn to_remote_addr(&self) -> io::Result<RemoteAddr> {
        self.as_str().to_remote_addr()
    }
}

impl ToRemoteAddr for SocketAddr {
    fn to_remote_addr(&self) -> io::Result<RemoteAddr> {
        Ok(RemoteAddr::Socket(*self))
    }
}

impl ToRemoteAddr for SocketAddrV4 {
    fn to_remote_addr(&self) -> io::Result<RemoteAddr> {
        Ok(RemoteAddr::Socket((*self).into()))
    }
}

impl ToRemoteAddr for SocketAddrV6 {
    fn to_remote_addr(&self) -> io::Result<RemoteAddr> {
        Ok(RemoteAddr::Socket((*self).into()))
    }
}

impl ToRemoteAddr for RemoteAddr {
    fn to_remote_addr(&self) -> io::Result<RemoteAddr> {
        Ok(self.clone())
    }
}

/// A host name stays a name (resolved by the backend: DNS natively, node names in a
/// simulated world); an IP literal becomes a socket address.
fn host_port(host: &str, port: u16) -> RemoteAddr {
    match host.parse::<IpAddr>() {
        Ok(ip) => RemoteAddr::Socket(SocketAddr::new(ip, port)),
        Err(_) => RemoteAddr::Str(format!("{host}:{port}")),
    }
}

/// A `(host, port)` tuple: natively the host is resolved by DNS at connect; in a simulated
/// world it names a node, as `"host:port"` does.
///
/// ```
/// # #[cfg(feature = "tcp")] {
/// use portnet::network::{NetEvent, Transport};
/// use portnet::node::NodeEvent;
/// use portnet::sim::World;
/// use std::sync::{Arc, Mutex};
///
/// let connected = Arc::new(Mutex::new(0));
/// let mut world = World::with_seed(1);
/// world.node::<(), _>("server", |handler, listener| {
///     handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
///     listener.for_each(|_| ());
/// });
/// let count = connected.clone();
/// world.node::<(), _>("client", move |handler, listener| {
///     handler.network().connect(Transport::FramedTcp, ("server", 3000)).unwrap();
///     handler.network().connect(Transport::FramedTcp, (String::from("server"), 3000)).unwrap();
///     listener.for_each(|event| {
///         if let NodeEvent::Network(NetEvent::Connected(_, true)) = event {
///             *count.lock().unwrap() += 1;
///         }
///     });
/// });
/// world.run_until_idle();
/// assert_eq!(*connected.lock().unwrap(), 2);
/// # }
/// ```
impl ToRemoteAddr for (&str, u16) {
    fn to_remote_addr(&self) -> io::Result<RemoteAddr> {
        Ok(host_port(self.0, self.1))
    }
}

impl ToRemoteAddr for (String, u16) {
    fn to_remote_addr(&self) -> io::Result<RemoteAddr> {
        Ok(host_port(&self.0, self.1))
    }
}

impl ToRemoteAddr for (IpAddr, u16) {
    fn to_remote_addr(&self) -> io::Result<RemoteAddr> {
        Ok(RemoteAddr::Socket((*self).into()))
    }
}

impl ToRemoteAddr for (Ipv4Addr, u16) {
    fn to_remote_addr(&self) -> io::Result<RemoteAddr> {
        Ok(RemoteAddr::Socket((*self).into()))
    }
}

impl ToRemoteAddr for (Ipv6Addr, u16) {
    fn to_remote_addr(&self) -> io::Result<RemoteAddr> {
        Ok(RemoteAddr::Socket((*self).into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_sockets() {
        assert!("127.0.0.1:80".to_remote_addr().unwrap().is_socket_addr());
        assert!("[::1]:80".to_remote_addr().unwrap().is_socket_addr());
        let url = "ws://domain:1234/socket".to_remote_addr().unwrap();
        assert!(url.is_string());
        assert_eq!(url.string(), "ws://domain:1234/socket");
        assert_eq!(("localhost", 80).to_remote_addr().unwrap().string(), "localhost:80");
        assert!(("::1", 80).to_remote_addr().unwrap().is_socket_addr());
    }

    #[test]
    fn unresolvable_is_an_error() {
        let addr = ("no such host.invalid", 80).to_remote_addr().unwrap();
        assert!(addr.to_socket_addrs().is_err());
    }
}
