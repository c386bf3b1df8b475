//! Behaviour tests written once and run on both backends and both IP families: on native
//! loopback (`127.0.0.1`, `::1`) and in the simulator (a node's IPv4 and IPv6 address), with the
//! same application functions and the same assertions. Where `::1` is unavailable the native
//! IPv6 cases say they were skipped.

mod util;

use portnet::adapters::ws::{DEFAULT_PATH, MessageKind, WsClose, WsConnectConfig, WsListenConfig};
use portnet::network::{Endpoint, NetEvent, SendStatus, Transport};
use portnet::node::{self, NodeEvent, NodeHandler, NodeListener};
use portnet::sim::World;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What an application reports back to the test.
#[derive(Default, Debug)]
struct Report {
    /// Where the server listens, once it does.
    server_addr: Option<String>,
    /// Per client endpoint (in connect order): the bytes echoed back.
    echoed: Vec<Vec<u8>>,
    /// Outcome of each connect.
    connected: Vec<bool>,
    /// Signals in the order they arrived.
    signals: Vec<u32>,
    /// Messages as each side read them: "side kind text".
    kinds: Vec<String>,
    /// `Ws` handshakes and closes as each side saw them.
    ws_lines: Vec<String>,
    done: bool,
}

type Shared = util::Reported<Report>;

/// Where the server listens on each backend.
struct Place {
    listen: &'static str,
}

/// The signals the applications send themselves.
const GIVE_UP: u32 = u32::MAX;

/// An echo server: every message goes back where it came from.
fn echo_server(transport: Transport, place: Place, report: Shared) -> impl AppFn {
    move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
        let (_, addr) = handler.network().listen(transport, place.listen).unwrap();
        report.update(|r| r.server_addr = Some(addr.to_string()));
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                let status = handler.network().send(endpoint, data);
                assert_eq!(status, SendStatus::Sent, "echo");
            }
        });
    }
}

/// Clients that each send `messages` and wait for every echo.
fn echo_clients(
    transport: Transport,
    target: Arc<Mutex<String>>,
    clients: usize,
    messages: Arc<Vec<Vec<u8>>>,
    report: Shared,
) -> impl AppFn {
    move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
        let target = target.lock().unwrap().clone();
        let mut order = Vec::new();
        let mut echoed: BTreeMap<Endpoint, Vec<u8>> = BTreeMap::new();
        for _ in 0..clients {
            let (endpoint, _) = handler.network().connect(transport, target.as_str()).unwrap();
            order.push(endpoint);
            echoed.insert(endpoint, Vec::new());
        }
        let expected: usize = messages.iter().map(Vec::len).sum();
        let mut complete = 0;
        handler.signals().send_with_timer(GIVE_UP, Duration::from_secs(20));
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(endpoint, ok)) => {
                report.update(|r| r.connected.push(ok));
                if ok {
                    for message in messages.iter() {
                        assert_eq!(handler.network().send(endpoint, message), SendStatus::Sent);
                    }
                } else if report.read(|r| r.connected.len()) == clients {
                    handler.stop();
                }
            }
            NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
                let bytes = echoed.get_mut(&endpoint).expect("known endpoint");
                bytes.extend_from_slice(data);
                if bytes.len() == expected {
                    complete += 1;
                    if complete == clients {
                        handler.stop();
                    }
                }
            }
            NodeEvent::Signal(GIVE_UP) => handler.stop(),
            other => panic!("client got {other:?}"),
        });
        let echoed = order.iter().map(|e| echoed.remove(e).unwrap_or_default()).collect();
        report.update(|r| {
            r.echoed = echoed;
            r.done = true;
        });
    }
}

trait AppFn: Fn(NodeHandler<u32>, NodeListener<u32>) + Send + Sync + 'static {}
impl<F: Fn(NodeHandler<u32>, NodeListener<u32>) + Send + Sync + 'static> AppFn for F {}

/// The IP family a scenario's network runs over.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ip {
    V4,
    V6,
}

/// The two backends a scenario runs on, and over which family.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Native(Ip),
    Sim(u64, Ip),
}

impl Backend {
    fn ip(self) -> Ip {
        match self {
            Backend::Native(ip) | Backend::Sim(_, ip) => ip,
        }
    }
}

/// The native IPv6 backend, if this machine has `::1`; else says the case was skipped.
fn native_over_ipv6(case: &str) -> Option<Backend> {
    match std::net::TcpListener::bind("[::1]:0") {
        Ok(_) => Some(Backend::Native(Ip::V6)),
        Err(e) => {
            eprintln!("SKIPPED: parity {case} native over IPv6: ::1 is unavailable here ({e})");
            None
        }
    }
}

/// Runs a server app and a client app on `backend`; the client's target is the server's
/// address (native: a loopback port; simulated: `"server:3000"`, or the server node's IPv6
/// address at port 3000).
fn run(
    backend: Backend,
    server: impl AppFn,
    client: impl AppFn,
    report: &Shared,
    target: &Arc<Mutex<String>>,
) {
    run_apps(backend, server, client, report, target);
    // The case ran over the family it claims: the server's address says so.
    let listened = report.read(|r| r.server_addr.clone());
    if let Some(addr) = listened.and_then(|a| a.parse::<std::net::SocketAddr>().ok()) {
        assert_eq!(addr.is_ipv6(), backend.ip() == Ip::V6, "{backend:?}: server at {addr}");
    }
}

fn run_apps(
    backend: Backend,
    server: impl AppFn,
    client: impl AppFn,
    report: &Shared,
    target: &Arc<Mutex<String>>,
) {
    match backend {
        Backend::Native(_) => {
            let (handler, listener) = node::split::<u32>();
            let server_handler = handler.clone();
            let server_task = std::thread::spawn(move || server(handler, listener));
            *target.lock().unwrap() =
                report.wait_for("the server to listen", |r| r.server_addr.clone());
            let (handler, listener) = node::split::<u32>();
            client(handler, listener);
            server_handler.stop();
            server_task.join().unwrap();
        }
        Backend::Sim(seed, ip) => {
            let mut world = World::with_seed(seed);
            world.node("server", server);
            *target.lock().unwrap() = match ip {
                Ip::V4 => "server:3000".into(),
                Ip::V6 => format!("[{}]:3000", world.ipv6("server")),
            };
            world.node("client", client);
            world.run_until(|w| w.is_finished("client"));
        }
    }
}

fn place(backend: Backend) -> Place {
    match backend {
        Backend::Native(Ip::V4) => Place { listen: "127.0.0.1:0" },
        Backend::Native(Ip::V6) => Place { listen: "[::1]:0" },
        Backend::Sim(_, Ip::V4) => Place { listen: "0.0.0.0:3000" },
        Backend::Sim(_, Ip::V6) => Place { listen: "[::]:3000" },
    }
}

fn echo(backend: Backend, transport: Transport, clients: usize, messages: Vec<Vec<u8>>) {
    let report = Shared::default();
    let target = Arc::new(Mutex::new(String::new()));
    let messages = Arc::new(messages);
    let server = echo_server(transport, place(backend), report.clone());
    let client = echo_clients(transport, target.clone(), clients, messages.clone(), report.clone());
    run(backend, server, client, &report, &target);
    let report = report.take();
    assert!(report.done, "{backend:?}: the client never finished");
    assert_eq!(report.connected, vec![true; clients], "{backend:?} {transport}");
    let all: Vec<u8> = messages.concat();
    for (i, bytes) in report.echoed.iter().enumerate() {
        assert!(
            *bytes == all,
            "{backend:?} {transport}: client {i} got {} of {} bytes back, or altered",
            bytes.len(),
            all.len()
        );
    }
}

fn refused(backend: Backend, transport: Transport) {
    let report = Shared::default();
    let target = Arc::new(Mutex::new(String::new()));
    // The "server" listens on another port than the one the client tries.
    let server = {
        let report = report.clone();
        let listen = match backend {
            Backend::Native(Ip::V4) => "127.0.0.1:0",
            Backend::Native(Ip::V6) => "[::1]:0",
            Backend::Sim(_, Ip::V4) => "0.0.0.0:3001",
            Backend::Sim(_, Ip::V6) => "[::]:3001",
        };
        move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
            handler.network().listen(transport, listen).unwrap();
            let closed = match backend {
                Backend::Native(Ip::V4) => util::closed_port().to_string(),
                Backend::Native(Ip::V6) => {
                    let port = std::net::TcpListener::bind("[::1]:0").unwrap();
                    port.local_addr().unwrap().to_string()
                }
                Backend::Sim(..) => "server:3000".into(),
            };
            report.update(|r| r.server_addr = Some(closed));
            listener.for_each(|_| ());
        }
    };
    let client = echo_clients(transport, target.clone(), 1, Arc::new(vec![]), report.clone());
    run(backend, server, client, &report, &target);
    assert_eq!(report.take().connected, vec![false], "{backend:?} {transport}");
}

fn timers(backend: Backend) {
    let report = Shared::default();
    let app = {
        let report = report.clone();
        move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
            handler.signals().send_with_timer(3, Duration::from_millis(30));
            handler.signals().send_with_timer(1, Duration::from_millis(10));
            handler.signals().send_with_timer(2, Duration::from_millis(10));
            let cancelled = handler.signals().send_with_timer(9, Duration::from_millis(20));
            handler.signals().cancel_timer(cancelled);
            handler.signals().send(0);
            let mut seen = 0;
            listener.for_each(|event| {
                let signal = event.signal();
                report.update(|r| r.signals.push(signal));
                seen += 1;
                if seen == 4 {
                    handler.stop();
                }
            });
        }
    };
    match backend {
        Backend::Native(_) => {
            let (handler, listener) = node::split::<u32>();
            app(handler, listener);
        }
        Backend::Sim(seed, _) => {
            let mut world = World::with_seed(seed);
            world.node("timers", app);
            world.run_until_idle();
            assert_eq!(
                world.now(),
                Duration::from_millis(30),
                "virtual time jumps to the last timer"
            );
        }
    }
    assert_eq!(report.take().signals, [0, 1, 2, 3]);
}

fn small(count: u32, len: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| util::payload(i, len)).collect()
}

const SEED: u64 = 42;

/// A case that talks over the network: on both backends, over IPv4 and IPv6.
macro_rules! parity {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn native() {
                ($body)(Backend::Native(Ip::V4))
            }

            #[test]
            fn sim() {
                ($body)(Backend::Sim(SEED, Ip::V4))
            }

            #[test]
            fn native_v6() {
                if let Some(backend) = native_over_ipv6(stringify!($name)) {
                    ($body)(backend)
                }
            }

            #[test]
            fn sim_v6() {
                ($body)(Backend::Sim(SEED, Ip::V6))
            }
        }
    };
    // A case without a network (timers, listener modes): no family to vary.
    (local $name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn native() {
                ($body)(Backend::Native(Ip::V4))
            }

            #[test]
            fn sim() {
                ($body)(Backend::Sim(SEED, Ip::V4))
            }
        }
    };
}

parity!(echo_tcp, |b| echo(b, Transport::Tcp, 1, small(20, 100)));
parity!(echo_framed_tcp, |b| echo(b, Transport::FramedTcp, 1, small(20, 100)));
parity!(echo_udp, |b| echo(b, Transport::Udp, 1, small(20, 100)));
parity!(echo_ws, |b| echo(b, Transport::Ws, 1, small(20, 100)));
parity!(many_clients_framed_tcp, |b| echo(b, Transport::FramedTcp, 20, small(10, 64)));
parity!(many_clients_ws, |b| echo(b, Transport::Ws, 20, small(10, 64)));
parity!(ordered_burst_framed_tcp, |b| echo(b, Transport::FramedTcp, 1, small(10_000, 16)));
parity!(ordered_burst_tcp, |b| echo(b, Transport::Tcp, 1, small(10_000, 16)));
parity!(big_messages_framed_tcp, |b| echo(
    b,
    Transport::FramedTcp,
    1,
    vec![util::payload(0, 8 << 20), util::payload(1, 8 << 20)]
));
parity!(big_messages_ws, |b| echo(b, Transport::Ws, 1, vec![util::payload(0, 8 << 20)]));
parity!(refused_tcp, |b| refused(b, Transport::Tcp));
parity!(refused_framed_tcp, |b| refused(b, Transport::FramedTcp));
parity!(refused_ws, |b| refused(b, Transport::Ws));
parity!(local timers_in_order, timers);

/// Text and binary messages keep their kind end to end on `Ws` (text frames); the other
/// transports carry bytes, so `send_text` arrives as binary there.
fn message_kinds(backend: Backend, transport: Transport) {
    let report = Shared::default();
    let target = Arc::new(Mutex::new(String::new()));
    let record = |report: &Shared, side: &str, kind: MessageKind, data: &[u8]| {
        let line = format!("{side} {kind:?} {}", String::from_utf8_lossy(data));
        report.update(|r| r.kinds.push(line));
    };
    let server = {
        let (report, place) = (report.clone(), place(backend));
        move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
            let (_, addr) = handler.network().listen(transport, place.listen).unwrap();
            report.update(|r| r.server_addr = Some(addr.to_string()));
            listener.for_each(|event| {
                if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                    let kind = handler.network().message_kind(endpoint);
                    record(&report, "server", kind, data);
                    let status = match kind {
                        MessageKind::Text => {
                            let text = std::str::from_utf8(data).expect("a text frame is UTF-8");
                            handler.network().send_text(endpoint, text)
                        }
                        MessageKind::Binary => handler.network().send(endpoint, data),
                    };
                    assert_eq!(status, SendStatus::Sent, "echo");
                }
            });
        }
    };
    let client = {
        let (report, target) = (report.clone(), target.clone());
        move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
            let target = target.lock().unwrap().clone();
            handler.network().connect(transport, target.as_str()).unwrap();
            handler.signals().send_with_timer(GIVE_UP, Duration::from_secs(20));
            let mut echoes = 0;
            listener.for_each(|event| match event {
                NodeEvent::Network(NetEvent::Connected(endpoint, ok)) => {
                    assert!(ok, "connect");
                    let network = handler.network();
                    assert_eq!(network.send_text(endpoint, "hello"), SendStatus::Sent);
                    assert_eq!(network.send(endpoint, b"bytes"), SendStatus::Sent);
                    assert_eq!(network.send_text(endpoint, "bye"), SendStatus::Sent);
                }
                NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
                    record(&report, "client", handler.network().message_kind(endpoint), data);
                    echoes += 1;
                    if echoes == 3 {
                        handler.stop();
                    }
                }
                NodeEvent::Signal(GIVE_UP) => handler.stop(),
                other => panic!("client got {other:?}"),
            });
        }
    };
    run(backend, server, client, &report, &target);
    let text = if transport == Transport::Ws { "Text" } else { "Binary" };
    let expected: Vec<String> = ["server", "client"]
        .iter()
        .flat_map(|side| {
            [
                format!("{side} {text} hello"),
                format!("{side} Binary bytes"),
                format!("{side} {text} bye"),
            ]
        })
        .collect();
    let mut kinds = report.take().kinds;
    // Each side's own order is fixed; how the two interleave is not.
    kinds.sort_by_key(|line| !line.starts_with("server"));
    assert_eq!(kinds, expected, "{backend:?} {transport}");
}

parity!(message_kinds_ws, |b| message_kinds(b, Transport::Ws));

/// What `ws_handshake` reports on each side: the request path, the client's headers (server
/// side) and the agreed subprotocol; a client offering none the server speaks is refused.
fn ws_handshakes(backend: Backend) {
    let report = Shared::default();
    let target = Arc::new(Mutex::new(String::new()));
    let server = {
        let (report, place) = (report.clone(), place(backend));
        move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
            let config = WsListenConfig::default().with_subprotocols(["a", "b"]);
            let (_, addr) = handler.network().listen_with(config.into(), place.listen).unwrap();
            report.update(|r| r.server_addr = Some(addr.to_string()));
            listener.for_each(|event| {
                if let NodeEvent::Network(NetEvent::Accepted(endpoint, _)) = event {
                    let handshake = handler.network().ws_handshake(endpoint).expect("handshake");
                    let token = handshake
                        .headers
                        .iter()
                        .any(|(name, value)| name == "authorization" && value == "Bearer t");
                    let host = handshake.headers.iter().any(|(name, _)| name == "host");
                    let line = format!(
                        "server {} {:?} token {token} host {host}",
                        handshake.path, handshake.subprotocol
                    );
                    report.update(|r| r.ws_lines.push(line));
                }
            });
        }
    };
    let client = {
        let (report, target) = (report.clone(), target.clone());
        move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
            let target = target.lock().unwrap().clone();
            let network = handler.network();
            let offer = WsConnectConfig::default()
                .with_path("/chat?room=1")
                .with_header("Authorization", "Bearer t")
                .with_subprotocols(["x", "b"]);
            network.connect_with(offer.into(), target.as_str()).unwrap();
            handler.signals().send_with_timer(GIVE_UP, Duration::from_secs(20));
            listener.for_each(|event| match event {
                NodeEvent::Network(NetEvent::Connected(endpoint, true)) => {
                    let handshake = handler.network().ws_handshake(endpoint).expect("handshake");
                    let line = format!("client {} {:?}", handshake.path, handshake.subprotocol);
                    report.update(|r| r.ws_lines.push(line));
                    // Now one that offers only what the server does not speak.
                    let offer = WsConnectConfig::default().with_subprotocols(["x"]);
                    handler.network().connect_with(offer.into(), target.as_str()).unwrap();
                }
                NodeEvent::Network(NetEvent::Connected(endpoint, false)) => {
                    let handshake = handler.network().ws_handshake(endpoint);
                    report.update(|r| r.ws_lines.push(format!("client refused {handshake:?}")));
                    handler.stop();
                }
                NodeEvent::Signal(GIVE_UP) => handler.stop(),
                _ => (),
            });
        }
    };
    run(backend, server, client, &report, &target);
    let handshakes = report.take().ws_lines;
    let expected = [
        "server /chat?room=1 Some(\"b\") token true host true",
        "client /chat?room=1 Some(\"b\")",
        "client refused None",
    ];
    // The refused connect's own Accepted may or may not be reported before the client stops.
    let mut seen: Vec<&str> = handshakes.iter().map(String::as_str).collect();
    seen.retain(|line| !line.starts_with(&format!("server {DEFAULT_PATH} None")));
    // Natively the server's accept and the client's connect race (two threads): each side's
    // own order is fixed, how the two interleave is not.
    seen.sort_by_key(|line| !line.starts_with("server"));
    assert_eq!(seen, expected, "{backend:?}");
}

parity!(ws_handshakes_path_headers_subprotocol, ws_handshakes);

/// A server that removes a `Ws` connection says goodbye with a Close frame of code 1000, which
/// the client reads in `ws_close` while it handles `Disconnected`.
fn remove_says_goodbye(backend: Backend) {
    let report = Shared::default();
    let target = Arc::new(Mutex::new(String::new()));
    let server = {
        let (report, place) = (report.clone(), place(backend));
        move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
            let (_, addr) = handler.network().listen(Transport::Ws, place.listen).unwrap();
            report.update(|r| r.server_addr = Some(addr.to_string()));
            listener.for_each(|event| {
                if let NodeEvent::Network(NetEvent::Message(endpoint, _)) = event {
                    assert!(handler.network().remove(endpoint.resource_id()));
                }
            });
        }
    };
    let client = {
        let (report, target) = (report.clone(), target.clone());
        move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
            let target = target.lock().unwrap().clone();
            handler.network().connect(Transport::Ws, target.as_str()).unwrap();
            handler.signals().send_with_timer(GIVE_UP, Duration::from_secs(20));
            listener.for_each(|event| match event {
                NodeEvent::Network(NetEvent::Connected(endpoint, ok)) => {
                    assert!(ok, "connect");
                    assert_eq!(handler.network().send(endpoint, b"bye?"), SendStatus::Sent);
                }
                NodeEvent::Network(NetEvent::Disconnected(endpoint)) => {
                    let close = handler.network().ws_close(endpoint);
                    report.update(|r| r.ws_lines.push(format!("closed {close:?}")));
                    handler.stop();
                }
                NodeEvent::Signal(GIVE_UP) => handler.stop(),
                other => panic!("client got {other:?}"),
            });
        }
    };
    run(backend, server, client, &report, &target);
    let expected = format!("closed {:?}", Some(WsClose { code: 1000, reason: String::new() }));
    assert_eq!(report.take().ws_lines, [expected], "{backend:?}");
}

parity!(ws_remove_says_goodbye, remove_says_goodbye);
parity!(message_kinds_framed_tcp, |b| message_kinds(b, Transport::FramedTcp));

/// The other listener modes, on each backend's time.
fn listener_modes(backend: Backend) {
    let report = Shared::default();
    let app = {
        let report = report.clone();
        move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
            let start = handler.now();
            handler.signals().send_with_timer(1, Duration::from_millis(10));
            let (mut task, mut events) = listener.enqueue();
            match events.receive_timeout(util::WATCHDOG) {
                Some(node::StoredNodeEvent::Signal(1)) => report.update(|r| r.signals.push(1)),
                other => panic!("{other:?}"),
            }
            assert!(handler.now() - start >= Duration::from_millis(10), "the timer fired early");
            handler.stop();
            task.wait();
        }
    };
    let async_app = {
        let report = report.clone();
        move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
            handler.signals().send_with_timer(2, Duration::from_millis(5));
            let inner = handler.clone();
            let reporter = report.clone();
            let task = listener.for_each_async(move |event| {
                reporter.update(|r| r.signals.push(event.signal()));
                inner.stop();
            });
            drop(task); // waits for the node to stop
        }
    };
    match backend {
        Backend::Native(_) => {
            let (handler, listener) = node::split::<u32>();
            app(handler, listener);
            let (handler, listener) = node::split::<u32>();
            async_app(handler, listener);
        }
        Backend::Sim(seed, _) => {
            let mut world = World::with_seed(seed);
            world.node("enqueue", app);
            world.node("async", async_app);
            world.run_until_idle();
            assert!(world.is_finished("enqueue") && world.is_finished("async"));
        }
    }
    let mut signals = report.take().signals;
    signals.sort();
    assert_eq!(signals, [1, 2]);
}

parity!(local enqueue_and_for_each_async, listener_modes);
