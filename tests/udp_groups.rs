//! `Udp` one-to-many: multicast (IPv4 and IPv6) and broadcast, never leaving this machine.
//! Multicast would follow the default route out, so those tests run in a network namespace of
//! their own with only loopback and a veth pair.

mod util;

use portnet::adapters::udp::{UdpConnectConfig, UdpListenConfig};
use portnet::network::{NetEvent, Transport, TransportConnect, TransportListen};
use portnet::node::{self, NodeEvent};
use std::net::{SocketAddr, SocketAddrV6};
use util::Watchdog;

/// Two listeners join `group`; one datagram sent to the group reaches both.
fn group_delivery(group: SocketAddr, connect: TransportConnect) {
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let (first, addr) = handler.network().listen(Transport::Udp, group).unwrap();
    assert_eq!(addr.ip(), group.ip(), "reports the group");
    let addr = SocketAddr::new(group.ip(), addr.port());
    let addr = match (addr, group) {
        (SocketAddr::V6(mut a), SocketAddr::V6(g)) => {
            a.set_scope_id(g.scope_id());
            SocketAddr::V6(a)
        }
        _ => addr,
    };
    // A second member on the same port: joining implies address reuse.
    let (second, _) = handler.network().listen(Transport::Udp, addr).unwrap();
    let (sender, _) = handler.network().connect_with(connect, addr).unwrap();
    let mut heard = Vec::new();
    listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Connected(endpoint, true)) => {
            handler.network().send(endpoint, b"to all");
        }
        NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
            assert_eq!(data, b"to all");
            assert_ne!(endpoint.resource_id(), sender.resource_id());
            heard.push(endpoint.resource_id());
            if heard.len() == 2 {
                handler.stop();
            }
        }
        other => panic!("unexpected {other:?}"),
    });
    watchdog.check(&format!("{group}: heard by {heard:?}"));
    heard.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(heard, expected);
}

/// The namespace's own interface, set up by `in_own_network_namespace`.
fn test_interface() -> u32 {
    std::env::var("PORTNET_TEST_IFINDEX").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn ipv4_multicast_reaches_every_member() {
    if !util::in_own_network_namespace("ipv4_multicast_reaches_every_member") {
        return;
    }
    let group = format!("239.255.42.99:{}", free_port()).parse().unwrap();
    group_delivery(group, Transport::Udp.into());
}

#[test]
fn ipv6_multicast_reaches_every_member() {
    if !util::in_own_network_namespace("ipv6_multicast_reaches_every_member") {
        return;
    }
    // Link-local scope on the namespace's own veth pair.
    let group = "ff02::4242".parse().unwrap();
    let group = SocketAddrV6::new(group, free_port(), 0, test_interface());
    group_delivery(group.into(), Transport::Udp.into());
}

#[test]
fn broadcast_reaches_listeners_on_the_port() {
    let port = free_port();
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let config = UdpListenConfig::default().with_receive_broadcasts();
    let (id, _) =
        handler.network().listen_with(TransportListen::Udp(config), ("0.0.0.0", port)).unwrap();
    // The loopback network's broadcast address.
    let target: SocketAddr = format!("127.255.255.255:{port}").parse().unwrap();
    let connect = TransportConnect::Udp(UdpConnectConfig::default().with_broadcast());
    handler.network().connect_with(connect, target).unwrap();
    let mut heard = false;
    listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Connected(endpoint, true)) => {
            handler.network().send(endpoint, b"anyone?");
        }
        NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
            assert_eq!((endpoint.resource_id(), data), (id, &b"anyone?"[..]));
            heard = true;
            handler.stop();
        }
        other => panic!("unexpected {other:?}"),
    });
    watchdog.check("broadcast");
    assert!(heard);
}
