//! The simulated address plan, and what a bound socket answers to.
//!
//! Each node has an IPv4 address (`10.0.x.y`, in the order nodes are added), an IPv6 one
//! (`fd00::N`, N = its index + 1: a unique local address, never on a real network) and its own
//! loopback (`127.0.0.0/8`, `::1`). Binding follows Linux's defaults, as the native backend
//! gets them: `[::]` is dual-stack (it also takes IPv4, whose peers it sees as
//! `::ffff:a.b.c.d`), `0.0.0.0` takes IPv4 only, a specific address only itself; two sockets
//! clash on a port when one's address covers the other's.

use super::{Core, NodeId, NodeState, Res};
use crate::core::{RemoteAddr, ResourceId, Transport};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The IPv4 address of the node added `id`-th: `10.0.x.y`.
pub(crate) fn node_v4(id: NodeId) -> Ipv4Addr {
    Ipv4Addr::new(10, (id / (250 * 256) % 256) as u8, (id / 250 % 256) as u8, (id % 250 + 1) as u8)
}

/// The IPv6 address of the node added `id`-th: `fd00::N` with N = `id + 1`.
pub(crate) fn node_v6(id: NodeId) -> Ipv6Addr {
    Ipv6Addr::from((0xfd00_u128 << 112) | (id as u128 + 1))
}

/// IPv6's link-local all-nodes group, `ff02::1`: every node is in it, as natively every
/// interface is, so it reaches every socket bound to `[::]` on its port.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// An IPv4 broadcast address (the limited one, or a `/24`'s).
pub(crate) fn is_broadcast(ip: IpAddr) -> bool {
    matches!(ip.to_canonical(), IpAddr::V4(v4) if v4.is_broadcast() || v4.octets()[3] == 255)
}

/// Whether a socket bound to `bound` (an address, a wildcard or a multicast group) takes a
/// datagram or a connection addressed to `to`.
pub(crate) fn accepts(bound: IpAddr, to: IpAddr) -> bool {
    let to = to.to_canonical();
    if to == IpAddr::V6(ALL_NODES) && bound == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        return true; // IPv6's broadcast: every interface is in the all-nodes group
    }
    if bound.is_multicast() || to.is_multicast() {
        return bound == to; // a group reaches only the sockets that joined it
    }
    match bound {
        IpAddr::V4(v4) if v4.is_unspecified() => to.is_ipv4(),
        IpAddr::V6(v6) if v6.is_unspecified() => true,
        _ => bound.to_canonical() == to,
    }
}

/// How a socket bound to `bound` sees a peer at `peer`: an IPv6 socket sees an IPv4 peer as
/// `::ffff:a.b.c.d`, as a dual-stack socket does natively.
pub(crate) fn as_seen(bound: IpAddr, peer: SocketAddr) -> SocketAddr {
    match (bound, peer) {
        (IpAddr::V6(_), SocketAddr::V4(v4)) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        _ => peer,
    }
}

/// The same address, whichever way each is written (`::ffff:a.b.c.d` is `a.b.c.d`).
pub(crate) fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// The wildcard of an address's family.
pub(crate) fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// Whether sockets bound to `a` and `b` clash on one port: the same address, or one is a
/// wildcard that covers the other (a group counts as its family's wildcard: it binds that).
fn clashes(a: IpAddr, b: IpAddr) -> bool {
    let plain = |ip: IpAddr| if ip.is_multicast() { unspecified_like(ip) } else { ip };
    let (a, b) = (plain(a), plain(b));
    let covers =
        |wild: IpAddr, other: IpAddr| wild.is_unspecified() && (wild.is_ipv6() || other.is_ipv4());
    a == b || covers(a, b) || covers(b, a)
}

/// Every address a port key can hold, for ranges over one port.
const ALL_IPS: (IpAddr, IpAddr) =
    (IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::new(!0, !0, !0, !0, !0, !0, !0, !0)));

impl NodeState {
    /// The sockets bound to `port` (`udp`, or stream), with their addresses.
    fn on_port(&self, udp: bool, port: u16) -> impl Iterator<Item = (IpAddr, ResourceId)> + '_ {
        let (low, high) = ALL_IPS;
        self.ports.range((udp, port, low)..=(udp, port, high)).map(|((_, _, ip), id)| (*ip, *id))
    }

    /// Whether any socket is bound to `port`.
    pub(super) fn port_used(&self, udp: bool, port: u16) -> bool {
        self.on_port(udp, port).next().is_some()
    }

    /// Whether binding `ip` to `port` clashes with a socket bound already.
    pub(super) fn port_taken(&self, udp: bool, port: u16, ip: IpAddr) -> bool {
        self.on_port(udp, port).any(|(bound, _)| clashes(ip, bound))
    }

    /// The stream listener that takes a connection to `to`, with the address it is bound to:
    /// one bound to that very address before a wildcard, as natively.
    pub(super) fn listener_at(&self, to: SocketAddr) -> Option<(ResourceId, IpAddr)> {
        let listeners: Vec<(IpAddr, ResourceId)> = self
            .on_port(false, to.port())
            .filter(|(ip, id)| {
                accepts(*ip, to.ip())
                    && matches!(self.resources.get(id), Some(Res::Listener { .. }))
            })
            .collect();
        let specific = listeners.iter().find(|(ip, _)| !ip.is_unspecified());
        specific.or(listeners.first()).map(|(ip, id)| (*id, *ip))
    }
}

impl Core {
    /// The node that a packet `from` sends to `ip` reaches: `from` itself over its loopback,
    /// else the node with that address.
    pub(super) fn route(&self, from: NodeId, ip: IpAddr) -> Option<NodeId> {
        let ip = ip.to_canonical();
        if ip.is_loopback() { Some(from) } else { self.by_ip.get(&ip).copied() }
    }

    /// Whether `ip` is one of `node`'s own addresses (its loopback included).
    pub(super) fn owns(&self, node: NodeId, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_loopback() || ip == self.nodes[node].ip || ip == IpAddr::V6(node_v6(node))
    }

    /// What `listen` on `ip` binds on `node`, and the address it reports: the node's own
    /// address of the family for a wildcard, the group for a group, else `ip` itself, which
    /// must be the node's (an error otherwise, as natively).
    pub(super) fn bind_ip(&self, node: NodeId, ip: IpAddr) -> io::Result<(IpAddr, IpAddr)> {
        match ip {
            IpAddr::V4(v4) if v4.is_unspecified() => Ok((ip, self.nodes[node].ip)),
            IpAddr::V6(v6) if v6.is_unspecified() => Ok((ip, node_v6(node).into())),
            _ if ip.is_multicast() || self.owns(node, ip) => Ok((ip, ip)),
            _ => Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("{ip} is not an address of simulated node {:?}", self.nodes[node].name),
            )),
        }
    }

    /// The address `node`'s socket bound to `bound` sends from to `to`: a bound address (or
    /// group) itself; for a wildcard, the node's own address of `to`'s family, or its
    /// loopback for a loopback `to`.
    pub(super) fn source_ip(&self, node: NodeId, bound: IpAddr, to: IpAddr) -> IpAddr {
        if !bound.is_unspecified() {
            return bound;
        }
        match to.to_canonical() {
            IpAddr::V4(v4) if v4.is_loopback() => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(v6) if v6.is_loopback() => Ipv6Addr::LOCALHOST.into(),
            IpAddr::V4(_) => self.nodes[node].ip,
            IpAddr::V6(_) => node_v6(node).into(),
        }
    }

    /// Resolves an address given to `connect`: node names (`"server:3000"`: the node's IPv4
    /// address), simulated IPs of either family.
    pub(super) fn resolve(
        &self,
        addr: &RemoteAddr,
        transport: Transport,
    ) -> io::Result<SocketAddr> {
        let text = match addr {
            RemoteAddr::Socket(addr) => return Ok(*addr),
            RemoteAddr::Str(text) => text,
        };
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        let (host, port) = match url::Url::parse(text) {
            // TLS is not simulated: a wss:// URL reaches its node as ws:// would. Without a
            // port, a URL means its scheme's (80, 443), as natively.
            Ok(url) if transport.is_ws() && matches!(url.scheme(), "ws" | "wss") => {
                let host = url.host_str().ok_or_else(|| invalid(format!("{text}: no host")))?;
                let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
                (host, url.port_or_known_default().unwrap_or(80))
            }
            _ => {
                if let Ok(addr) = text.parse() {
                    return Ok(addr);
                }
                let (host, port) = text
                    .rsplit_once(':')
                    .ok_or_else(|| invalid(format!("{text}: expected host:port")))?;
                let port: u16 =
                    port.parse().map_err(|_| invalid(format!("{text}: bad port {port:?}")))?;
                (host.to_owned(), port)
            }
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let host = host.as_str();
        let node = self.node_id(host).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{text}: no simulated node {host:?}"))
        })?;
        Ok(SocketAddr::new(self.nodes[node].ip, port))
    }
}
