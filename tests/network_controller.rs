//! `NetworkController` on native loopback: every transport, IPv4 and IPv6.

mod util;

use portnet::adapters::udp::MAX_LOCAL_PAYLOAD_LEN;
use portnet::network::{NetEvent, SendStatus, Transport};
use portnet::node::{self, NodeEvent};
use util::{Watchdog, echo_server, exchange, payload};

/// At most this many messages in flight per Udp client, so loopback buffers never overflow.
const UDP_WINDOW: usize = 8;

fn window(transport: Transport) -> usize {
    if transport == Transport::Udp { UDP_WINDOW } else { usize::MAX }
}

fn echo(transport: Transport, ipv6: bool, clients: usize, messages: Vec<Vec<u8>>) {
    let (server, task, addr) = echo_server(transport, ipv6);
    exchange(transport, addr, clients, &messages, window(transport));
    server.stop();
    drop(task);
}

fn small_messages(count: u32, len: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| payload(i, len)).collect()
}

fn refused(transport: Transport) {
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let (endpoint, _) = handler.network().connect(transport, util::closed_port()).unwrap();
    assert_eq!(handler.network().send(endpoint, b"early"), SendStatus::ResourceNotAvailable);
    let mut outcome = None;
    listener.for_each(|event| {
        if let NodeEvent::Network(NetEvent::Connected(ep, ok)) = event {
            assert_eq!(ep, endpoint);
            outcome = Some(ok);
            handler.stop();
        }
    });
    watchdog.check("waiting for the refusal");
    assert_eq!(outcome, Some(false));
    assert_eq!(handler.network().is_ready(endpoint.resource_id()), None, "refused endpoint kept");
    assert_eq!(handler.network().send(endpoint, b"late"), SendStatus::ResourceNotFound);
}

macro_rules! transport_tests {
    ($name:ident, $transport:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn echo_one_client() {
                echo($transport, false, 1, small_messages(10, 100));
            }

            #[test]
            fn echo_many_clients() {
                // Udp clients share one server socket buffer: fewer, so nothing is dropped.
                let clients = if $transport == Transport::Udp { 10 } else { 40 };
                echo($transport, false, clients, small_messages(20, 64));
            }

            #[test]
            fn ordered_burst_of_50_000() {
                echo($transport, false, 1, small_messages(50_000, 16));
            }

            #[test]
            fn ipv6_echo() {
                echo($transport, true, 2, small_messages(10, 100));
            }
        }
    };
}

transport_tests!(tcp, Transport::Tcp);
transport_tests!(framed_tcp, Transport::FramedTcp);
transport_tests!(udp, Transport::Udp);
transport_tests!(ws, Transport::Ws);

const MIB: usize = 1 << 20;

#[test]
fn tcp_8_mib_messages() {
    echo(Transport::Tcp, false, 1, vec![payload(0, 8 * MIB), payload(1, 8 * MIB)]);
}

#[test]
fn framed_tcp_8_mib_messages() {
    echo(
        Transport::FramedTcp,
        false,
        2,
        vec![payload(0, 8 * MIB), payload(1, 3), payload(2, 8 * MIB)],
    );
}

#[test]
fn ws_8_mib_messages() {
    echo(Transport::Ws, false, 2, vec![payload(0, 8 * MIB), payload(1, 3), payload(2, 8 * MIB)]);
}

#[test]
fn udp_max_size_datagrams() {
    echo(Transport::Udp, false, 1, vec![payload(0, MAX_LOCAL_PAYLOAD_LEN), payload(1, 1)]);
    echo(Transport::Udp, true, 1, vec![payload(0, MAX_LOCAL_PAYLOAD_LEN - 20)]);
}

#[test]
fn udp_oversize_is_max_packet_size_exceeded() {
    let (handler, _listener) = node::split::<()>();
    let (_, addr) = handler.network().listen(Transport::Udp, "127.0.0.1:0").unwrap();
    let (endpoint, _) = handler.network().connect(Transport::Udp, addr).unwrap();
    let send = |len| handler.network().send(endpoint, &vec![0; len]);
    assert_eq!(send(MAX_LOCAL_PAYLOAD_LEN + 1), SendStatus::MaxPacketSizeExceeded);
    // message-io reported ResourceNotFound here.
    assert_eq!(send(70_000), SendStatus::MaxPacketSizeExceeded);
    assert_eq!(send(MAX_LOCAL_PAYLOAD_LEN), SendStatus::Sent);
}

#[test]
fn tcp_refused() {
    refused(Transport::Tcp);
}

#[test]
fn framed_tcp_refused() {
    refused(Transport::FramedTcp);
}

#[test]
fn ws_refused() {
    refused(Transport::Ws);
}

#[test]
fn listen_errors_are_values_not_panics() {
    let (handler, _listener) = node::split::<()>();
    let network = handler.network();
    for transport in Transport::ALL {
        for bad in ["not an address", "127.0.0.1:99999", "", "no.such.host.invalid:80"] {
            let err = network.listen(transport, bad).expect_err(bad);
            assert!(err.to_string().contains("listen"), "unclear error for {bad:?}: {err}");
        }
        // A port already taken.
        let (_, addr) = network.listen(transport, "127.0.0.1:0").unwrap();
        let err = network.listen(transport, addr).expect_err("port taken");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{transport}: {err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}

#[test]
fn connect_errors_are_values_not_panics() {
    let (handler, _listener) = node::split::<()>();
    let network = handler.network();
    for transport in Transport::ALL {
        for bad in ["not an address", "no.such.host.invalid:80", "127.0.0.1", "ws://"] {
            if transport == Transport::Ws && bad.contains(".invalid") {
                continue; // looked up off the caller's thread: see ws_names_resolve_off_thread
            }
            assert!(network.connect(transport, bad).is_err(), "{transport} {bad:?}");
        }
    }
    let err = network.connect(Transport::Ws, "http://127.0.0.1:80/").unwrap_err();
    assert!(err.to_string().contains("ws://"), "{err}");
}

#[test]
fn host_names_resolve() {
    // message-io panicked on connect(FramedTcp, "localhost:3000").
    for transport in Transport::ALL {
        let (server, task, addr) = echo_server(transport, false);
        let target = format!("localhost:{}", addr.port());
        let (handler, listener) = node::split::<()>();
        let watchdog = Watchdog::new(&handler);
        let (endpoint, _) = handler.network().connect(transport, target.as_str()).unwrap();
        let mut echoed = false;
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                assert!(ok, "{transport} to {target}");
                handler.network().send(endpoint, b"hi");
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                assert_eq!(data, b"hi");
                echoed = true;
                handler.stop();
            }
            _ => (),
        });
        watchdog.check(&format!("{transport} via {target}"));
        assert!(echoed);
        server.stop();
        drop(task);
    }
}

#[test]
fn ws_names_resolve_off_the_callers_thread() {
    // connect returns before the lookup; its outcome comes as Connected, like a refusal.
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let network = handler.network();
    let mut pending = Vec::new();
    for target in ["no.such.host.invalid:80", "ws://no.such.host.invalid:81/x"] {
        let (endpoint, local) = network.connect(Transport::Ws, target).unwrap();
        assert!(endpoint.addr().ip().is_unspecified(), "{target}: {endpoint}");
        assert!(local.ip().is_unspecified(), "{target}: {local}");
        assert_eq!(network.send(endpoint, b"early"), SendStatus::ResourceNotAvailable);
        pending.push(endpoint);
    }
    assert_eq!(pending[0].addr().port(), 80);
    assert_eq!(pending[1].addr().port(), 81);
    listener.for_each(|event| {
        if let NodeEvent::Network(NetEvent::Connected(endpoint, ok)) = event {
            assert!(!ok, "{endpoint} connected to a name that does not exist");
            pending.retain(|e| *e != endpoint);
            if pending.is_empty() {
                handler.stop();
            }
        }
    });
    watchdog.check("waiting for the failed lookups");
    assert!(pending.is_empty());
}

#[test]
fn stream_options_are_applied() {
    use portnet::adapters::tcp::{TcpConnectConfig, TcpKeepalive};
    use portnet::network::TransportConnect;
    use std::time::Duration;

    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let (_, addr) = handler.network().listen(Transport::Tcp, "127.0.0.1:0").unwrap();
    let source = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    let config = TcpConnectConfig::default()
        .with_source_address(source)
        .with_keepalive(keepalive)
        .with_reuse_address()
        .with_bind_device("lo".into());
    handler.network().connect_with(TransportConnect::Tcp(config), addr).unwrap();
    let mut accepted_from = None;
    listener.for_each(|event| {
        if let NodeEvent::Network(NetEvent::Accepted(endpoint, _)) = event {
            accepted_from = Some(endpoint.addr());
            handler.stop();
        }
    });
    watchdog.check("accept");
    assert_eq!(accepted_from, Some(source), "the source address was not used");

    let bad_device = TcpConnectConfig::default().with_bind_device("no-such-dev0".into());
    let err = handler.network().connect_with(TransportConnect::Tcp(bad_device), addr).unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

/// A read stops at TCP's urgent mark with bytes still queued behind it: the event loop must
/// read on until "would block", or those bytes wait for a readiness edge that never comes.
#[test]
fn tcp_bytes_behind_an_urgent_mark_are_delivered() {
    use std::io::Write;
    let (handler, listener) = node::split::<()>();
    let watchdog = Watchdog::new(&handler);
    let (_, addr) = handler.network().listen(Transport::Tcp, "127.0.0.1:0").unwrap();
    let mut peer = std::net::TcpStream::connect(addr).unwrap();
    // All of it is queued before the node reads anything: one readiness edge for everything.
    peer.write_all(b"abc").unwrap();
    socket2::SockRef::from(&peer).send_out_of_band(b"!").unwrap();
    peer.write_all(b"efg").unwrap();
    let mut got = Vec::new();
    listener.for_each(|event| {
        if let NodeEvent::Network(NetEvent::Message(_, data)) = event {
            got.extend_from_slice(data);
            if got.ends_with(b"efg") {
                handler.stop();
            }
        }
    });
    watchdog.check(&format!("got {:?}", String::from_utf8_lossy(&got)));
    assert_eq!(got, b"abcefg", "the urgent byte is out of band; the rest arrives in order");
}
