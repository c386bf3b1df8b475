//! IPv6 in the simulator, as natively: every node has an IPv6 address (`fd00::N`) beside its
//! IPv4 one and a loopback of each family; `[::]` listens dual-stack, `0.0.0.0` IPv4 only, a
//! specific address only itself; multicast groups work over IPv6. Each test asserts what an
//! IPv4-only simulator gets wrong (it hangs, refuses, or reports the wrong address).

use portnet::network::{NetEvent, SendStatus, Transport};
use portnet::node::{NodeEvent, NodeHandler, NodeListener};
use portnet::sim::{Link, World, check_determinism};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What nodes report, in the simulation's order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: impl Into<String>) {
        self.0.lock().unwrap().push(line.into());
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

trait App: Fn(NodeHandler<()>, NodeListener<()>) + Send + Sync + 'static {}
impl<F: Fn(NodeHandler<()>, NodeListener<()>) + Send + Sync + 'static> App for F {}

/// Listens on `addr`, logs where and whom it accepts and hears, and echoes every message.
fn echo_server(transport: Transport, addr: &'static str, log: Log) -> impl App {
    move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (_, local) = handler.network().listen(transport, addr).unwrap();
        log.push(format!("server listens on {local}"));
        listener.for_each(|event| match event.network() {
            NetEvent::Accepted(endpoint, _) => log.push(format!("accepted {}", endpoint.addr())),
            NetEvent::Message(endpoint, data) => {
                log.push(format!("server heard {}", endpoint.addr()));
                assert_eq!(handler.network().send(endpoint, data), SendStatus::Sent);
            }
            _ => (),
        });
    }
}

/// Connects to `target`, sends "ping" and logs what comes back and from where; gives up after
/// a virtual second.
fn ping_client(transport: Transport, target: String, log: Log) -> impl App {
    move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (_, local) = handler.network().connect(transport, target.as_str()).unwrap();
        log.push(format!("client local {local}"));
        handler.signals().send_with_timer((), Duration::from_secs(1));
        let mut echo = Vec::new();
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(endpoint, ok)) => {
                log.push(format!("connected {ok} to {}", endpoint.addr()));
                if ok {
                    assert_eq!(handler.network().send(endpoint, b"ping"), SendStatus::Sent);
                } else {
                    handler.stop();
                }
            }
            NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
                echo.extend_from_slice(data); // plain Tcp may cut it
                if echo.len() == 4 {
                    let text = String::from_utf8_lossy(&echo);
                    log.push(format!("echo {text} from {}", endpoint.addr()));
                    handler.stop();
                }
            }
            NodeEvent::Signal(()) => {
                log.push("gave up");
                handler.stop();
            }
            _ => (),
        });
    }
}

fn ping(transport: Transport, listen: &'static str, target: impl FnOnce(&World) -> String) -> Log {
    let log = Log::default();
    let mut world = World::with_seed(6);
    world.node("server", echo_server(transport, listen, log.clone()));
    let target = target(&world);
    world.node("client", ping_client(transport, target, log.clone()));
    world.run_until(|w| w.is_finished("client"));
    log
}

/// Every transport listens on `[::]` and connects to a node's IPv6 address; both sides see
/// the other's IPv6 address.
#[test]
fn every_transport_connects_over_ipv6() {
    for transport in [Transport::Tcp, Transport::FramedTcp, Transport::Ws, Transport::Udp] {
        let log = ping(transport, "[::]:3000", |w| format!("[{}]:3000", w.ipv6("server")));
        let mut expected = vec![
            "server listens on [fd00::1]:3000",
            "client local [fd00::2]:49152",
            "connected true to [fd00::1]:3000",
            "accepted [fd00::2]:49152",
            "server heard [fd00::2]:49152",
            "echo ping from [fd00::1]:3000",
        ];
        if transport == Transport::Udp {
            expected.retain(|line| !line.starts_with("accepted")); // no connection to accept
        }
        let mut lines = log.lines();
        // When the server's accept is reported against the client's connect is the seed's.
        lines.sort();
        expected.sort();
        assert_eq!(lines, expected, "{transport}");
    }
}

/// A `Ws` URL names an IPv6 host in brackets, as natively.
#[test]
fn a_ws_url_reaches_an_ipv6_host() {
    let log =
        ping(Transport::Ws, "[::]:8080", |w| format!("ws://[{}]:8080/chat", w.ipv6("server")));
    assert!(log.lines().contains(&"echo ping from [fd00::1]:8080".to_owned()), "{:?}", log.lines());
}

/// `[::]` is dual-stack, as on Linux by default: it takes IPv4 too, and sees IPv4 peers as
/// `::ffff:a.b.c.d`; its answers reach them.
#[test]
fn a_wildcard_ipv6_listener_takes_ipv4_as_mapped_addresses() {
    for transport in [Transport::FramedTcp, Transport::Udp] {
        let log = ping(transport, "[::]:3000", |_| "server:3000".to_owned());
        let lines = log.lines();
        assert!(lines.contains(&"client local 10.0.0.2:49152".to_owned()), "{lines:?}");
        assert!(lines.contains(&"server heard [::ffff:10.0.0.2]:49152".to_owned()), "{lines:?}");
        assert!(lines.contains(&"echo ping from 10.0.0.1:3000".to_owned()), "{lines:?}");
    }
}

/// `0.0.0.0` takes IPv4 only: an IPv6 connect is refused, an IPv6 datagram goes unheard.
#[test]
fn an_ipv4_wildcard_listener_takes_no_ipv6() {
    let log =
        ping(Transport::FramedTcp, "0.0.0.0:3000", |w| format!("[{}]:3000", w.ipv6("server")));
    assert!(
        log.lines().contains(&"connected false to [fd00::1]:3000".to_owned()),
        "{:?}",
        log.lines()
    );
    let log = ping(Transport::Udp, "0.0.0.0:3000", |w| format!("[{}]:3000", w.ipv6("server")));
    let lines = log.lines();
    assert!(!lines.iter().any(|l| l.starts_with("server heard")), "{lines:?}");
    assert!(lines.contains(&"gave up".to_owned()), "{lines:?}");
}

/// Which binds clash on a port, and which addresses a node may bind, as on Linux.
#[test]
fn binding_follows_the_native_rules() {
    let log = Log::default();
    let record = log.clone();
    let mut world = World::with_seed(1);
    world.node("a", move |handler: NodeHandler<()>, _listener: NodeListener<()>| {
        let attempts = [
            (Transport::Tcp, "[::]:3000"),
            (Transport::Tcp, "0.0.0.0:3000"), // [::] covers IPv4 too
            (Transport::Tcp, "127.0.0.1:3000"),
            (Transport::Udp, "[::]:3000"), // another protocol
            (Transport::Tcp, "0.0.0.0:4000"),
            (Transport::Tcp, "[fd00::1]:4000"), // IPv6 beside an IPv4 wildcard
            (Transport::Tcp, "[::1]:4000"),
            (Transport::Tcp, "[::]:4000"),      // would cover 0.0.0.0
            (Transport::Tcp, "10.0.0.1:4000"),  // covered by 0.0.0.0
            (Transport::Tcp, "[fd00::2]:5000"), // another node's
            (Transport::Tcp, "10.0.0.2:5000"),
            (Transport::Tcp, "[::]:0"),
        ];
        for (transport, addr) in attempts {
            let result = match handler.network().listen(transport, addr) {
                Ok((_, local)) => format!("ok {local}"),
                Err(e) => format!("{:?}", e.kind()),
            };
            record.push(format!("{transport} {addr}: {result}"));
        }
    });
    world.node("b", |_handler: NodeHandler<()>, _listener: NodeListener<()>| ());
    world.run_until_idle();
    assert_eq!(
        log.lines(),
        [
            "Tcp [::]:3000: ok [fd00::1]:3000",
            "Tcp 0.0.0.0:3000: AddrInUse",
            "Tcp 127.0.0.1:3000: AddrInUse",
            "Udp [::]:3000: ok [fd00::1]:3000",
            "Tcp 0.0.0.0:4000: ok 10.0.0.1:4000",
            "Tcp [fd00::1]:4000: ok [fd00::1]:4000",
            "Tcp [::1]:4000: ok [::1]:4000",
            "Tcp [::]:4000: AddrInUse",
            "Tcp 10.0.0.1:4000: AddrInUse",
            "Tcp [fd00::2]:5000: AddrNotAvailable",
            "Tcp 10.0.0.2:5000: AddrNotAvailable",
            "Tcp [::]:0: ok [fd00::1]:49152",
        ]
    );
}

/// Loopback (`::1`, `127.0.0.1`) reaches the node itself only; a listener bound there is out
/// of other nodes' reach.
#[test]
fn loopback_reaches_only_the_node_itself() {
    let log = Log::default();
    let mut world = World::with_seed(3);
    let record = log.clone();
    world.node("a", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::FramedTcp, "[::1]:4000").unwrap();
        handler.network().listen(Transport::FramedTcp, "127.0.0.1:4001").unwrap();
        handler.network().connect(Transport::FramedTcp, "[::1]:4000").unwrap();
        handler.network().connect(Transport::FramedTcp, "127.0.0.1:4001").unwrap();
        handler.signals().send_with_timer((), Duration::from_secs(1));
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Accepted(endpoint, _)) => {
                record.push(format!("a accepted {}", endpoint.addr()))
            }
            NodeEvent::Network(NetEvent::Connected(endpoint, ok)) => {
                record.push(format!("a connected {ok} to {}", endpoint.addr()))
            }
            NodeEvent::Signal(()) => handler.stop(),
            _ => (),
        });
    });
    let record = log.clone();
    world.node("b", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        for target in ["[fd00::1]:4000", "10.0.0.1:4001", "[::1]:4000"] {
            handler.network().connect(Transport::FramedTcp, target).unwrap();
        }
        handler.signals().send_with_timer((), Duration::from_secs(1));
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(endpoint, ok)) => {
                record.push(format!("b connected {ok} to {}", endpoint.addr()))
            }
            NodeEvent::Signal(()) => handler.stop(),
            _ => (),
        });
    });
    world.run_until_idle();
    let mut lines = log.lines();
    lines.sort();
    assert_eq!(
        lines,
        [
            "a accepted 127.0.0.1:49153",
            "a accepted [::1]:49152",
            "a connected true to 127.0.0.1:4001",
            "a connected true to [::1]:4000",
            "b connected false to 10.0.0.1:4001",
            "b connected false to [::1]:4000",
            "b connected false to [fd00::1]:4000",
        ]
    );
}

/// Udp groups over IPv6: a datagram to `ff02::4242` reaches the nodes that joined it only; one
/// to `ff02::1` (all nodes, IPv6's broadcast) every node listening on `[::]` at the port.
#[test]
fn ipv6_multicast_reaches_its_group_only() {
    let member = |addr: &'static str, log: Log| {
        move |handler: NodeHandler<()>, listener: NodeListener<()>| {
            let (_, local) = handler.network().listen(Transport::Udp, addr).unwrap();
            assert_eq!(local.port(), 5000);
            handler.signals().send_with_timer((), Duration::from_secs(1));
            listener.for_each(|event| match event {
                NodeEvent::Network(NetEvent::Message(_, data)) => {
                    log.push(format!("got {}", String::from_utf8_lossy(data)))
                }
                NodeEvent::Signal(()) => handler.stop(),
                _ => (),
            });
        }
    };
    let (a, b, outsider) = (Log::default(), Log::default(), Log::default());
    let mut world = World::with_seed(8);
    world.node("a", member("[ff02::4242]:5000", a.clone()));
    world.node("b", member("[ff02::4242]:5000", b.clone()));
    world.node("outsider", member("[::]:5000", outsider.clone()));
    world.node("speaker", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let network = handler.network();
        let (group, _) = network.connect(Transport::Udp, "[ff02::4242]:5000").unwrap();
        let (everyone, _) = network.connect(Transport::Udp, "[ff02::1]:5000").unwrap();
        let (v4_group, _) = network.connect(Transport::Udp, "239.0.0.42:5000").unwrap();
        network.send(group, b"to the group");
        network.send(everyone, b"to all nodes");
        network.send(v4_group, b"to another group");
        handler.stop();
        listener.for_each(|_| ());
    });
    world.run_until_idle();
    assert_eq!(a.lines(), ["got to the group"]);
    assert_eq!(b.lines(), ["got to the group"]);
    assert_eq!(outsider.lines(), ["got to all nodes"], "not a member; in all-nodes");
}

/// A world over IPv6 with jitter and loss replays from its seed.
#[test]
fn an_ipv6_world_replays_from_its_seed() {
    let scenario = |world: &mut World| {
        world.set_default_link(Link {
            jitter: Duration::from_millis(5),
            loss: 0.2,
            ..Link::default()
        });
        let log = Log::default();
        world.node("server", echo_server(Transport::Udp, "[::]:3000", log.clone()));
        for i in 0..3 {
            let target = format!("[{}]:3000", world.ipv6("server"));
            world.node(&format!("client{i}"), ping_client(Transport::Udp, target, log.clone()));
        }
        world.run_for(Duration::from_secs(2));
    };
    check_determinism(11, scenario).unwrap();
}
