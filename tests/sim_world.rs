//! The simulator's faults and controls, one test each, every test asserting what a bug in that
//! fault or control would break. Applications are ordinary node functions (the ones a user
//! writes); give-up logic runs on virtual-time timers, never on real sleeps.

use portnet::network::{Endpoint, NetEvent, SendStatus, Transport};
use portnet::node::{NodeEvent, NodeHandler, NodeListener, StoredNodeEvent};
use portnet::sim::{Link, Packet, Verdict, World, check_determinism};
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An application function, as `World::node` takes it.
trait App<S>: Fn(NodeHandler<S>, NodeListener<S>) + Send + Sync + 'static {}
impl<S, F: Fn(NodeHandler<S>, NodeListener<S>) + Send + Sync + 'static> App<S> for F {}

/// What nodes (and world actions) report to the test, in the order it happened. Nodes run one
/// at a time, so the order is the simulation's.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: impl Into<String>) {
        self.0.lock().unwrap().push(line.into());
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, prefix: &str) -> usize {
        self.lines().iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// The lines that start with `prefix`, with the prefix cut off.
    fn with(&self, prefix: &str) -> Vec<String> {
        self.lines().iter().filter_map(|l| l.strip_prefix(prefix)).map(str::to_string).collect()
    }

    fn position(&self, line: &str) -> usize {
        let lines = self.lines();
        lines.iter().position(|l| l == line).unwrap_or_else(|| panic!("no {line:?} in {lines:?}"))
    }
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The virtual time stamped on a trace line.
fn stamp(line: &str) -> f64 {
    line.split_whitespace().next().and_then(|t| t.parse().ok()).expect("a time-stamped line")
}

/// Trace lines of messages delivered to `node`.
fn deliveries_to(trace: &[String], node: &str) -> Vec<String> {
    let needle = format!(" {node} <- Message(");
    trace.iter().filter(|l| l.contains(&needle)).cloned().collect()
}

// ----- applications -----

/// A FramedTcp (or Ws) server answering every request `x` with `re:x`.
fn reply_server(transport: Transport, port: u16, log: Log) -> impl App<()> {
    move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(transport, ("0.0.0.0", port)).unwrap();
        log.push("server up");
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
                log.push(format!("request {}", text(data)));
                let reply = [b"re:", data].concat();
                assert_eq!(handler.network().send(endpoint, &reply), SendStatus::Sent);
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => log.push("disconnected"),
            _ => (),
        });
    }
}

#[derive(Debug)]
enum Tick {
    Next,
    GiveUp,
}

/// Sends `count` requests over a stream, one every `every`, and stops when every answer came.
fn paced_client(target: &'static str, count: u32, every: Duration, log: Log) -> impl App<Tick> {
    move |handler: NodeHandler<Tick>, listener: NodeListener<Tick>| {
        let (server, _) = handler.network().connect(Transport::FramedTcp, target).unwrap();
        handler.signals().send_with_timer(Tick::GiveUp, Duration::from_secs(60));
        let (mut sent, mut answered) = (0, 0);
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                assert!(ok, "connect to {target}");
                handler.signals().send(Tick::Next);
            }
            NodeEvent::Signal(Tick::Next) => {
                let status = handler.network().send(server, format!("{sent}").as_bytes());
                assert_eq!(status, SendStatus::Sent);
                log.push(format!("sent {sent}"));
                sent += 1;
                if sent < count {
                    handler.signals().send_with_timer(Tick::Next, every);
                }
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                log.push(format!("got {}", text(data)));
                answered += 1;
                if answered == count {
                    handler.stop();
                }
            }
            NodeEvent::Signal(Tick::GiveUp) => {
                log.push("gave up");
                handler.stop();
            }
            NodeEvent::Network(other) => panic!("client: unexpected {other:?}"),
        });
    }
}

/// A Udp server acknowledging every `req N` with `ack N`.
fn ack_server(port: u16, log: Log) -> impl App<()> {
    move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, ("0.0.0.0", port)).unwrap();
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                let request = text(data);
                log.push(format!("got {request}"));
                let n = request.strip_prefix("req ").expect("a request");
                handler.network().send(endpoint, format!("ack {n}").as_bytes());
            }
        });
    }
}

#[derive(Debug)]
enum Retry {
    Resend(u32),
    GiveUp,
}

/// Sends requests `0..count` over Udp one at a time, resending each every `every` until it is
/// acknowledged (stop-and-wait).
fn retry_client(target: &'static str, count: u32, every: Duration, log: Log) -> impl App<Retry> {
    move |handler: NodeHandler<Retry>, listener: NodeListener<Retry>| {
        let (server, _) = handler.network().connect(Transport::Udp, target).unwrap();
        handler.signals().send_with_timer(Retry::GiveUp, Duration::from_secs(600));
        let send = |n: u32| {
            assert_eq!(
                handler.network().send(server, format!("req {n}").as_bytes()),
                SendStatus::Sent
            );
            handler.signals().send_with_timer(Retry::Resend(n), every);
        };
        let mut current = 0;
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                assert!(ok, "a Udp connect succeeds at once");
                log.push("sent 0");
                send(0);
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                let ack = text(data);
                log.push(format!("received {ack}"));
                if ack == format!("ack {current}") {
                    log.push(format!("acked {current}"));
                    current += 1;
                    if current == count {
                        handler.stop();
                    } else {
                        log.push(format!("sent {current}"));
                        send(current);
                    }
                }
            }
            NodeEvent::Signal(Retry::Resend(n)) if n == current => {
                log.push(format!("resent {n}"));
                send(n);
            }
            NodeEvent::Signal(Retry::Resend(_)) => (), // acknowledged meanwhile
            NodeEvent::Signal(Retry::GiveUp) => {
                log.push("gave up");
                handler.stop();
            }
            NodeEvent::Network(other) => panic!("retry client: unexpected {other:?}"),
        });
    }
}

/// Listens on Udp `port` and logs every datagram as `from <peer node> <text>`; stops after
/// `stop_after` of virtual time.
fn udp_sink(port: u16, stop_after: Duration, log: Log) -> impl App<()> {
    move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, ("0.0.0.0", port)).unwrap();
        handler.signals().send_with_timer((), stop_after);
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                log.push(format!("got {}", text(data)))
            }
            NodeEvent::Signal(()) => handler.stop(),
            _ => (),
        });
    }
}

/// Sends `m0`, `m1`, ... over `transport` to `target`: `count` messages, the first `first`
/// after connecting, then one every `every` (all at once if `every` is zero).
fn sender(
    transport: Transport,
    target: &'static str,
    count: u32,
    first: Duration,
    every: Duration,
    log: Log,
) -> impl App<u32> {
    move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
        let (peer, _) = handler.network().connect(transport, target).unwrap();
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                assert!(ok, "connect to {target}");
                handler.signals().send_with_timer(0, first);
            }
            NodeEvent::Signal(n) => {
                let burst = if every.is_zero() { count } else { 1 };
                for i in n..n + burst {
                    let status = handler.network().send(peer, format!("m{i}").as_bytes());
                    assert_eq!(status, SendStatus::Sent, "m{i}");
                    log.push(format!("sent m{i}"));
                }
                if n + burst < count {
                    handler.signals().send_with_timer(n + 1, every);
                } else {
                    handler.stop();
                }
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                log.push(format!("got {}", text(data)))
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => log.push("disconnected"),
            NodeEvent::Network(_) => (),
        });
    }
}

/// A stream server that logs `got <message>` for every message and `disconnected`.
fn stream_sink(transport: Transport, port: u16, log: Log) -> impl App<()> {
    move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(transport, ("0.0.0.0", port)).unwrap();
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                log.push(format!("got {}", text(data)))
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => log.push("disconnected"),
            _ => (),
        });
    }
}

/// `got m0`, `got m1`, ...: what a receiver should log for `count` messages in order.
fn in_order(count: u32) -> Vec<String> {
    (0..count).map(|i| format!("m{i}")).collect()
}

// ----- faults -----

#[test]
fn framed_tcp_requests_survive_partition_and_heal() {
    let (server_log, client_log) = (Log::default(), Log::default());
    let mut world = World::with_seed(11);
    world.node("server", reply_server(Transport::FramedTcp, 3000, server_log.clone()));
    world.node("client", paced_client("server:3000", 20, ms(100), client_log.clone()));
    let log = client_log.clone();
    world.at(ms(350), move |w| {
        w.partition("client", "server");
        log.push("partition");
    });
    let log = client_log.clone();
    world.at(ms(1350), move |w| {
        w.heal();
        log.push("heal");
    });
    assert!(world.run_until(|w| w.is_finished("client")));

    let answers = client_log.with("got ");
    let expected: Vec<String> = (0..20).map(|i| format!("re:{i}")).collect();
    assert_eq!(answers, expected, "every request answered once, in order");
    let (cut, healed) = (client_log.position("partition"), client_log.position("heal"));
    let lines = client_log.lines();
    let during = &lines[cut..healed];
    assert!(
        during.iter().filter(|l| l.starts_with("sent ")).count() >= 9,
        "requests were sent during the partition: {during:?}"
    );
    assert!(!during.iter().any(|l| l.starts_with("got ")), "nothing crosses a partition");
    assert!(
        lines[healed..].iter().filter(|l| l.starts_with("got ")).count() >= 10,
        "what was sent during the partition is answered after the heal"
    );
    assert_eq!(server_log.count("request "), 20, "no request lost or duplicated");
    assert!(!client_log.lines().contains(&"gave up".to_string()));
}

/// Partitions and heals at times that fall inside a burst of segments in flight: TCP delivers
/// a stream in order whatever the timing, so must the simulator.
#[test]
fn partition_heal_keeps_stream_order_with_segments_in_flight() {
    for heal_at in [1203, 1207, 1211, 1219, 1233, 1241] {
        let log = Log::default();
        let mut world = World::with_seed(3);
        world.set_default_link(Link { latency: ms(50), ..Link::default() });
        world.node("receiver", stream_sink(Transport::FramedTcp, 3000, log.clone()));
        world.node(
            "sender",
            sender(Transport::FramedTcp, "receiver:3000", 200, ms(0), ms(10), Log::default()),
        );
        world.at(ms(500), |w| w.partition("sender", "receiver"));
        world.at(ms(heal_at), |w| w.heal());
        world.run_for(Duration::from_secs(10));
        assert_eq!(log.with("got "), in_order(200), "heal at {heal_at} ms: stream reordered");
    }
}

#[test]
fn udp_retries_deliver_everything_under_30_percent_loss() {
    let (server_log, client_log) = (Log::default(), Log::default());
    let mut world = World::with_seed(30);
    world.set_default_link(Link { loss: 0.3, ..Link::default() });
    world.node("server", ack_server(4000, server_log.clone()));
    world.node("client", retry_client("server:4000", 25, ms(50), client_log.clone()));
    assert!(world.run_until(|w| w.is_finished("client")));

    let acked: Vec<String> = client_log.with("acked ");
    assert_eq!(acked, (0..25).map(|i| i.to_string()).collect::<Vec<_>>());
    let got: BTreeSet<String> = server_log.with("got ").into_iter().collect();
    assert_eq!(got.len(), 25, "the server saw every request");
    assert!(!client_log.lines().contains(&"gave up".to_string()));

    // Losses happened, in both directions: requests sent vs. requests arrived, acks sent (one
    // per arrived request) vs. acks arrived.
    let requests_sent = client_log.count("sent ") + client_log.count("resent ");
    let requests_arrived = server_log.count("got ");
    let acks_arrived = client_log.count("received ");
    assert!(client_log.count("resent ") > 0, "loss made the client resend");
    assert!(requests_arrived < requests_sent, "requests lost: {requests_arrived}/{requests_sent}");
    assert!(acks_arrived < requests_arrived, "acks lost: {acks_arrived}/{requests_arrived}");
    // The trace agrees with the applications about what arrived.
    let trace = world.trace();
    assert_eq!(deliveries_to(&trace, "server").len(), requests_arrived);
    assert_eq!(deliveries_to(&trace, "client").len(), acks_arrived);
}

/// Every loss is a line of the trace (a fault on the run's tape): datagrams are lost, stream
/// segments retransmitted, and the stream still arrives whole and in order.
#[test]
fn link_losses_show_in_the_trace() {
    let (datagrams, stream) = (Log::default(), Log::default());
    let mut world = World::with_seed(30);
    world.set_default_link(Link { loss: 0.5, ..Link::default() });
    world.node("receiver", udp_sink(4000, ms(500), datagrams.clone()));
    world.node("sink", stream_sink(Transport::FramedTcp, 3000, stream.clone()));
    world.node("sender", sender(Transport::Udp, "receiver:4000", 20, ms(1), ms(1), Log::default()));
    world.node(
        "streamer",
        sender(Transport::FramedTcp, "sink:3000", 20, ms(1), ms(1), Log::default()),
    );
    world.run_until_idle();
    let trace = world.trace();
    let arrived = deliveries_to(&trace, "receiver").len();
    assert_eq!(arrived, datagrams.count("got "));
    assert!(arrived < 20, "with 50 % loss some of 20 datagrams are lost");
    let lost = trace.iter().filter(|l| l.contains("sender -> receiver: lose a datagram")).count();
    assert_eq!(lost, 20 - arrived, "each loss has a trace line:\n{}", trace.join("\n"));

    assert_eq!(stream.with("got "), in_order(20), "a lossy stream stays whole and ordered");
    let retransmits = trace
        .iter()
        .filter(|l| l.contains("streamer -> sink: lose a FramedTcp segment (retransmitted)"))
        .count();
    assert!(retransmits > 0, "{}", trace.join("\n"));
}

#[derive(Debug)]
enum Conn {
    Ping,
    Reconnect,
    GiveUp,
}

/// Pings a FramedTcp echo server every 100 ms; on `Disconnected` (or a refused connect)
/// reconnects after 200 ms; stops after 3 pongs on a second connection.
fn reconnecting_client(log: Log) -> impl App<Conn> {
    move |handler: NodeHandler<Conn>, listener: NodeListener<Conn>| {
        let connect = || handler.network().connect(Transport::FramedTcp, "server:3000").unwrap();
        connect();
        handler.signals().send_with_timer(Conn::GiveUp, Duration::from_secs(30));
        let mut server: Option<Endpoint> = None;
        let (mut connections, mut pongs_since_connect) = (0, 0);
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(endpoint, true)) => {
                log.push("connected");
                server = Some(endpoint);
                connections += 1;
                pongs_since_connect = 0;
                handler.network().send(endpoint, b"ping");
            }
            NodeEvent::Network(NetEvent::Connected(_, false)) => {
                log.push("refused");
                handler.signals().send_with_timer(Conn::Reconnect, ms(200));
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                assert_eq!(data, b"re:ping");
                log.push("pong");
                pongs_since_connect += 1;
                if connections == 2 && pongs_since_connect == 3 {
                    handler.stop();
                } else {
                    handler.signals().send_with_timer(Conn::Ping, ms(100));
                }
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => {
                log.push("disconnected");
                server = None;
                handler.signals().send_with_timer(Conn::Reconnect, ms(200));
            }
            NodeEvent::Signal(Conn::Ping) => {
                if let Some(endpoint) = server {
                    handler.network().send(endpoint, b"ping");
                }
            }
            NodeEvent::Signal(Conn::Reconnect) => {
                connect();
            }
            NodeEvent::Signal(Conn::GiveUp) => {
                log.push("gave up");
                handler.stop();
            }
            NodeEvent::Network(NetEvent::Accepted(..)) => unreachable!(),
        });
    }
}

#[test]
fn crashed_server_restarts_and_clients_reconnect() {
    let server_log = Log::default();
    let logs = [Log::default(), Log::default()];
    let mut world = World::with_seed(5);
    world.node("server", reply_server(Transport::FramedTcp, 3000, server_log.clone()));
    world.node("c1", reconnecting_client(logs[0].clone()));
    world.node("c2", reconnecting_client(logs[1].clone()));
    world.at(ms(1000), |w| w.crash("server"));
    world.at(ms(2000), |w| w.restart("server"));
    assert!(world.run_until(|w| w.is_finished("c1") && w.is_finished("c2")));

    assert_eq!(server_log.count("server up"), 2, "restart runs the application again");
    for log in &logs {
        let lines = log.lines();
        assert!(!lines.contains(&"gave up".to_string()), "{lines:?}");
        assert_eq!(log.count("disconnected"), 1, "the crash is noticed: {lines:?}");
        assert_eq!(log.count("connected"), 2, "{lines:?}");
        // Down for a second, retried every 200 ms: refused meanwhile (the host is up, the
        // process is not).
        assert!(log.count("refused") >= 3, "reconnects while down are refused: {lines:?}");
        let before = lines.iter().position(|l| l == "disconnected").unwrap();
        assert!(lines[..before].iter().filter(|l| *l == "pong").count() >= 5, "{lines:?}");
        let back = lines.iter().rposition(|l| l == "connected").unwrap();
        assert_eq!(lines[back..].iter().filter(|l| *l == "pong").count(), 3, "resumed");
    }
    assert!(world.now() > Duration::from_secs(2) && world.now() < ms(2600), "{:?}", world.now());
}

/// Listens on Udp 5000, sends `m0`..`m19` to `peer` every 100 ms, logs what it receives.
fn udp_chatter(peer: &'static str, log: Log) -> impl App<u32> {
    move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
        handler.network().listen(Transport::Udp, "0.0.0.0:5000").unwrap();
        let (peer, _) = handler.network().connect(Transport::Udp, peer).unwrap();
        handler.signals().send_with_timer(0, ms(100));
        listener.for_each(|event| match event {
            NodeEvent::Signal(20) => handler.stop(),
            NodeEvent::Signal(n) => {
                handler.network().send(peer, format!("m{n}").as_bytes());
                handler.signals().send_with_timer(n + 1, ms(100));
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                log.push(format!("got {}", text(data)))
            }
            NodeEvent::Network(_) => (),
        });
    }
}

#[test]
fn one_way_partition_cuts_one_direction_only() {
    let (a_log, b_log) = (Log::default(), Log::default());
    let mut world = World::with_seed(8);
    world.node("a", udp_chatter("b:5000", a_log.clone()));
    world.node("b", udp_chatter("a:5000", b_log.clone()));
    world.partition_one_way("a", "b");
    world.at(ms(1050), |w| w.heal());
    world.run_until_idle();
    // b -> a was never cut: all 20 arrive. a -> b was cut until 1.05 s: the 10 datagrams sent
    // from 1.1 s on arrive, the first 10 are lost (datagrams are not retransmitted).
    assert_eq!(a_log.with("got "), in_order(20));
    assert_eq!(b_log.with("got "), (10..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
}

#[test]
fn one_way_partition_on_a_stream_stalls_one_direction() {
    let (server_log, client_log) = (Log::default(), Log::default());
    let mut world = World::with_seed(8);
    world.node("server", reply_server(Transport::FramedTcp, 3000, server_log.clone()));
    world.node("client", paced_client("server:3000", 5, ms(100), client_log.clone()));
    world.run_for(ms(50)); // connected, request 0 answered
    world.partition_one_way("server", "client");
    world.run_for(Duration::from_secs(2));
    // Requests keep arriving (client -> server works); answers wait.
    assert_eq!(server_log.count("request "), 5);
    assert_eq!(client_log.with("got "), ["re:0"]);
    world.heal();
    assert!(world.run_until(|w| w.is_finished("client")));
    assert_eq!(client_log.with("got "), ["re:0", "re:1", "re:2", "re:3", "re:4"]);
}

#[test]
fn hold_and_release_deliver_everything_at_once_in_order() {
    let log = Log::default();
    let mut world = World::with_seed(21);
    world.node("receiver", stream_sink(Transport::FramedTcp, 3000, log.clone()));
    world.node(
        "sender",
        sender(Transport::FramedTcp, "receiver:3000", 8, ms(100), ms(100), Log::default()),
    );
    let marker = log.clone();
    world.at(ms(50), move |w| {
        w.hold("sender", "receiver");
        marker.push("hold");
    });
    let marker = log.clone();
    world.at(ms(2000), move |w| {
        w.release("sender", "receiver");
        marker.push("release");
    });
    world.run_until_idle();
    let mut expected = vec!["hold".to_string(), "release".to_string()];
    expected.extend(in_order(8).into_iter().map(|m| format!("got {m}")));
    // The sender's app then returns: its connection closes, as a process's does on exit.
    expected.push("disconnected".into());
    assert_eq!(log.lines(), expected, "nothing before release, everything after, in order");
    let arrivals = deliveries_to(&world.trace(), "receiver");
    assert_eq!(arrivals.len(), 8);
    assert!(arrivals.iter().all(|l| stamp(l) == 2.0), "all at the release: {arrivals:#?}");
}

/// Releases while more segments are still in flight (50 ms latency, one send every 10 ms):
/// the held ones were sent first, so they must arrive first.
#[test]
fn hold_release_keeps_stream_order_with_segments_in_flight() {
    let log = Log::default();
    let mut world = World::with_seed(21);
    world.set_default_link(Link { latency: ms(50), ..Link::default() });
    world.node("receiver", stream_sink(Transport::FramedTcp, 3000, log.clone()));
    world.node(
        "sender",
        sender(Transport::FramedTcp, "receiver:3000", 100, ms(0), ms(10), Log::default()),
    );
    world.at(ms(300), |w| w.hold("sender", "receiver"));
    world.at(ms(605), |w| w.release("sender", "receiver"));
    world.run_until_idle();
    assert_eq!(log.with("got "), in_order(100));
}

#[test]
fn hold_and_release_keep_datagram_order() {
    let log = Log::default();
    let mut world = World::with_seed(21);
    world.node("receiver", udp_sink(4000, Duration::from_secs(5), log.clone()));
    world.node(
        "sender",
        sender(Transport::Udp, "receiver:4000", 8, ms(100), ms(100), Log::default()),
    );
    world.at(ms(50), |w| w.hold("sender", "receiver"));
    world.at(ms(2000), |w| w.release("sender", "receiver"));
    world.run_until_idle();
    assert_eq!(log.with("got "), in_order(8));
}

/// TLS is not simulated: a `wss://` URL reaches its node as `ws://` does (on 443 when it names
/// no port, as natively), so an application written for a TLS server runs unchanged.
#[test]
fn wss_urls_connect_without_tls() {
    let (server_log, client_log) = (Log::default(), Log::default());
    let mut world = World::with_seed(5);
    world.node("server", reply_server(Transport::Ws, 443, server_log.clone()));
    let log = client_log.clone();
    world.node("client", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let network = handler.network();
        let (server, _) = network.connect(Transport::Ws, "wss://server/chat").unwrap();
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                log.push(format!("connected {ok}"));
                assert_eq!(handler.network().send(server, b"hi"), SendStatus::Sent);
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                log.push(format!("got {}", text(data)));
                handler.stop();
            }
            _ => (),
        });
    });
    assert!(world.run_until(|w| w.is_finished("client")));
    assert_eq!(client_log.lines(), ["connected true", "got re:hi"]);
    assert_eq!(server_log.with("request "), ["hi"]);
}

#[test]
fn reset_disconnects_both_sides() {
    let (server_log, client_log) = (Log::default(), Log::default());
    let mut world = World::with_seed(4);
    world.node("server", stream_sink(Transport::FramedTcp, 3000, server_log.clone()));
    let log = client_log.clone();
    world.node("client", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (server, _) = handler.network().connect(Transport::FramedTcp, "server:3000").unwrap();
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                assert!(ok);
                handler.network().send(server, b"before");
                handler.signals().send_with_timer((), ms(500));
            }
            NodeEvent::Network(NetEvent::Disconnected(endpoint)) => {
                assert_eq!(endpoint, server);
                log.push("disconnected");
            }
            NodeEvent::Signal(()) => {
                let status = handler.network().send(server, b"after");
                log.push(format!("send after reset: {status:?}"));
                handler.stop();
            }
            NodeEvent::Network(other) => panic!("client: {other:?}"),
        });
    });
    world.at(ms(200), |w| w.reset("client", "server"));
    world.run_until_idle();
    assert_eq!(server_log.lines(), ["got before", "disconnected"]);
    assert_eq!(client_log.lines(), ["disconnected", "send after reset: ResourceNotFound"]);
}

#[test]
fn paused_node_gets_its_events_after_resume() {
    let log = Log::default();
    let mut world = World::with_seed(6);
    let l = log.clone();
    world.node("receiver", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, "0.0.0.0:4000").unwrap();
        handler.signals().send_with_timer((), ms(500)); // falls due while paused
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(_, data)) => l.push(format!("got {}", text(data))),
            NodeEvent::Signal(()) => l.push("timer"),
            _ => (),
        });
    });
    world.node(
        "sender",
        sender(Transport::Udp, "receiver:4000", 10, ms(100), ms(100), Log::default()),
    );
    world.run_for(ms(50));
    world.pause("receiver");
    log.push("paused");
    world.run_for(ms(1950));
    log.push("resuming");
    world.resume("receiver");
    world.run_until_idle();
    // Nothing ran while paused; afterwards everything, messages in order. (The node was
    // paused inside its network wait. As natively, a signal ready when that wait returns, the
    // overdue timer here, comes before the network events the wait returns.)
    let lines = log.lines();
    assert_eq!(lines[..2], ["paused", "resuming"], "{lines:?}");
    let mut expected = vec!["timer".to_string()];
    expected.extend(in_order(10).into_iter().map(|m| format!("got {m}")));
    assert_eq!(lines[2..], expected);
    // Delivered to the socket on time, handled at the resume.
    let arrivals = deliveries_to(&world.trace(), "receiver");
    assert_eq!(arrivals.len(), 10);
    assert!(stamp(&arrivals[0]) < 0.2, "{arrivals:?}");
    assert_eq!(world.now(), Duration::from_secs(2));
}

#[test]
fn pause_before_the_first_run_delays_the_start() {
    let log = Log::default();
    let mut world = World::with_seed(6);
    let l = log.clone();
    world.node("late", move |_handler: NodeHandler<()>, _listener: NodeListener<()>| {
        l.push("started");
    });
    world.pause("late");
    world.run_for(Duration::from_secs(1));
    assert!(log.lines().is_empty());
    world.resume("late");
    world.run_until_idle();
    assert_eq!(log.lines(), ["started"]);
    assert!(world.is_finished("late"));
}

#[test]
fn rule_drops_exactly_one_datagram_by_payload() {
    let log = Log::default();
    let matched = Arc::new(AtomicUsize::new(0));
    let mut world = World::with_seed(9);
    world.node("receiver", udp_sink(4000, Duration::from_secs(2), log.clone()));
    world.node(
        "sender",
        sender(Transport::Udp, "receiver:4000", 10, ms(10), ms(10), Log::default()),
    );
    let seen = matched.clone();
    world.set_rule(move |packet: &Packet<'_>| {
        if packet.payload == b"m4" {
            assert_eq!(
                (packet.from, packet.to, packet.transport),
                ("sender", "receiver", Transport::Udp)
            );
            seen.fetch_add(1, Ordering::Relaxed);
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    world.run_until_idle();
    let mut expected = in_order(10);
    expected.remove(4);
    assert_eq!(log.with("got "), expected);
    assert_eq!(matched.load(Ordering::Relaxed), 1, "the rule saw m4 once");
    let trace = world.trace();
    let drops: Vec<&String> = trace.iter().filter(|l| l.contains("rule: Drop")).collect();
    assert_eq!(drops.len(), 1, "the drop is traced: {drops:?}");
    assert!(drops[0].contains("sender -> receiver: rule: Drop Udp 2 bytes"), "{drops:?}");
}

#[test]
fn rule_delays_one_framed_tcp_message_and_the_stream_waits_for_it() {
    let log = Log::default();
    let mut world = World::with_seed(9);
    world.node("receiver", stream_sink(Transport::FramedTcp, 3000, log.clone()));
    world.node(
        "sender",
        sender(Transport::FramedTcp, "receiver:3000", 10, ms(10), ms(0), Log::default()),
    );
    world.set_rule(
        |packet: &Packet<'_>| {
            if packet.payload == b"m4" { Verdict::Delay(ms(500)) } else { Verdict::Pass }
        },
    );
    let marker = log.clone();
    world.at(ms(300), move |_| marker.push("300 ms"));
    world.run_until_idle();
    // In order and complete (a stream is), m5.. wait behind m4 (head-of-line blocking).
    let mut expected: Vec<String> = in_order(4).into_iter().map(|m| format!("got {m}")).collect();
    expected.push("300 ms".into());
    expected.extend((4..10).map(|i| format!("got m{i}")));
    expected.push("disconnected".into()); // the sender's app returned
    assert_eq!(log.lines(), expected);
    let arrivals = deliveries_to(&world.trace(), "receiver");
    assert!(stamp(&arrivals[4]) >= 0.5, "m4 arrives 500 ms late: {arrivals:#?}");
}

#[test]
fn duplication_delivers_every_datagram_twice() {
    let log = Log::default();
    let mut world = World::with_seed(12);
    world.node("receiver", udp_sink(4000, Duration::from_secs(2), log.clone()));
    world.node(
        "sender",
        sender(Transport::Udp, "receiver:4000", 10, ms(10), ms(10), Log::default()),
    );
    // One direction only; links exist for named nodes.
    world.set_link("sender", "receiver", Link { duplicate: 1.0, ..Link::default() });
    world.run_until_idle();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for message in log.with("got ") {
        *counts.entry(message).or_default() += 1;
    }
    assert_eq!(counts.len(), 10, "{counts:?}");
    assert!(counts.values().all(|&n| n == 2), "each datagram twice: {counts:?}");
}

#[test]
fn set_link_before_the_nodes_exist_panics_with_the_name() {
    let mut world = World::with_seed(1);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        world.set_link("nobody", "nowhere", Link::default());
    }));
    let message = panic_message(result.expect_err("an unknown node name is an error"));
    assert!(message.contains("\"nobody\""), "{message}");
}

/// Whether a receiver saw the datagrams in another order than they were sent, for one seed.
fn reordered(seed: u64, jitter: Duration) -> bool {
    let log = Log::default();
    let mut world = World::with_seed(seed);
    world.set_default_link(Link { latency: ms(5), jitter, ..Link::default() });
    world.node("receiver", udp_sink(4000, Duration::from_secs(2), log.clone()));
    world.node("sender", sender(Transport::Udp, "receiver:4000", 20, ms(1), ms(1), Log::default()));
    world.run_until_idle();
    let got = log.with("got ");
    let mut sorted = got.clone();
    sorted.sort_by_key(|m| m[1..].parse::<u32>().unwrap());
    assert_eq!(sorted, in_order(20), "seed {seed}: jitter loses nothing");
    got != sorted
}

#[test]
fn jitter_reorders_datagrams() {
    let reordering: Vec<u64> = (0..10).filter(|&seed| reordered(seed, ms(20))).collect();
    assert!(!reordering.is_empty(), "20 ms jitter on 1 ms spacing reorders for some seed");
    assert!((0..10).all(|seed| !reordered(seed, Duration::ZERO)), "no jitter, no reordering");
}

/// Sends `count` length-prefixed messages over plain Tcp; the receiver reassembles them.
/// Returns (the reassembled messages, whether some `Message` event held a partial message).
fn tcp_length_prefixed(seed: u64, count: u32) -> (Vec<String>, bool) {
    let log = Log::default();
    let mut world = World::with_seed(seed);
    let l = log.clone();
    world.node("receiver", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Tcp, "0.0.0.0:3000").unwrap();
        let mut buffer = Vec::new();
        listener.for_each(|event| {
            let NodeEvent::Network(NetEvent::Message(_, data)) = event else { return };
            buffer.extend_from_slice(data);
            let mut whole = true;
            loop {
                if buffer.len() < 4 {
                    whole &= buffer.is_empty();
                    break;
                }
                let len = u32::from_be_bytes(buffer[..4].try_into().unwrap()) as usize;
                if buffer.len() < 4 + len {
                    whole = false;
                    break;
                }
                l.push(format!("got {}", text(&buffer[4..4 + len])));
                buffer.drain(..4 + len);
            }
            if !whole {
                l.push("partial");
            }
        });
    });
    world.node("sender", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (peer, _) = handler.network().connect(Transport::Tcp, "receiver:3000").unwrap();
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Connected(_, true)) = event {
                for i in 0..count {
                    let body = format!("message number {i}");
                    let frame = [&(body.len() as u32).to_be_bytes()[..], body.as_bytes()].concat();
                    assert_eq!(handler.network().send(peer, &frame), SendStatus::Sent);
                }
                handler.stop();
            }
        });
    });
    world.run_until_idle();
    (log.with("got "), log.count("partial") > 0)
}

#[test]
fn tcp_rechunks_and_the_application_reassembles() {
    let expected: Vec<String> = (0..5).map(|i| format!("message number {i}")).collect();
    let mut split_seeds = Vec::new();
    for seed in 0..10 {
        let (messages, split) = tcp_length_prefixed(seed, 5);
        assert_eq!(messages, expected, "seed {seed}: reassembled in order, complete");
        if split {
            split_seeds.push(seed);
        }
    }
    assert!(!split_seeds.is_empty(), "some seed splits a Tcp send");
}

// ----- determinism -----

/// Several nodes, jitter, loss and duplication: Udp retries and a FramedTcp exchange.
fn busy_scenario(world: &mut World) {
    world.set_default_link(Link {
        latency: ms(3),
        jitter: ms(15),
        loss: 0.2,
        duplicate: 0.05,
        ..Link::default()
    });
    world.node("server", ack_server(4000, Log::default()));
    world.node("replier", reply_server(Transport::FramedTcp, 3000, Log::default()));
    for name in ["c1", "c2", "c3", "c4"] {
        world.node(name, retry_client("server:4000", 10, ms(40), Log::default()));
    }
    world.node("paced", paced_client("replier:3000", 10, ms(30), Log::default()));
    world.run_until_idle();
}

#[test]
fn same_seed_same_trace_and_different_seeds_differ() {
    check_determinism(77, busy_scenario).unwrap();

    let trace = |seed| {
        let mut world = World::with_seed(seed);
        busy_scenario(&mut world);
        assert!(world.is_finished("paced") && world.is_finished("c4"));
        world.trace()
    };
    let (a, b) = (trace(1), trace(2));
    assert!(a.len() > 100, "a busy scenario: {} lines", a.len());
    assert_ne!(a, b, "different seeds, different runs");
}

#[test]
fn check_determinism_reports_a_scenario_that_iterates_a_hash_map() {
    let scenario = |world: &mut World| {
        world.node("sink", udp_sink(4000, ms(100), Log::default()));
        world.node("sender", |handler: NodeHandler<()>, listener: NodeListener<()>| {
            let (peer, _) = handler.network().connect(Transport::Udp, "sink:4000").unwrap();
            // Iteration order differs between two HashMaps: this node is not deterministic.
            let names: std::collections::HashMap<u32, ()> = (0..16).map(|i| (i, ())).collect();
            for name in names.keys() {
                handler.network().send(peer, &name.to_le_bytes());
            }
            drop(listener);
        });
        world.run_until_idle();
    };
    let error = check_determinism(5, scenario).expect_err("HashMap order breaks determinism");
    assert!(error.contains("seed 5") && error.contains("differ"), "{error}");
}

// ----- virtual time and control -----

#[test]
fn a_minute_of_chatter_among_ten_nodes_runs_in_virtual_time() {
    let received = Arc::new(Mutex::new(BTreeMap::<String, u32>::new()));
    let mut world = World::with_seed(60);
    for i in 0..10 {
        let name = format!("n{i}");
        let next = format!("n{}:5000", (i + 1) % 10);
        let received = received.clone();
        world.node(&name.clone(), move |handler: NodeHandler<()>, listener: NodeListener<()>| {
            handler.network().listen(Transport::Udp, "0.0.0.0:5000").unwrap();
            let (peer, _) = handler.network().connect(Transport::Udp, next.as_str()).unwrap();
            handler.signals().send_with_timer((), ms(100));
            listener.for_each(|event| match event {
                NodeEvent::Signal(()) => {
                    handler.network().send(peer, b"tick");
                    handler.signals().send_with_timer((), ms(100));
                }
                NodeEvent::Network(NetEvent::Message(..)) => {
                    *received.lock().unwrap().entry(name.clone()).or_default() += 1;
                }
                _ => (),
            });
        });
    }
    let start = Instant::now();
    world.run_for(Duration::from_secs(60));
    let wall = start.elapsed();
    assert_eq!(world.now(), Duration::from_secs(60));
    // Sent at 0.1 s, 0.2 s, ... 60 s; each arrives 1 ms later: 599 arrive within the minute.
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 10);
    assert!(received.values().all(|&n| n == 599), "{received:?}");
    eprintln!("a simulated minute of 10 nodes (6000 timers, 5990 datagrams) took {wall:?}");
    assert!(wall < Duration::from_secs(20), "took {wall:?}");
}

/// A node that counts 100 ms ticks into `ticks`, forever.
fn ticker(ticks: Arc<AtomicUsize>) -> impl App<()> {
    move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.signals().send_with_timer((), ms(100));
        listener.for_each(|_| {
            ticks.fetch_add(1, Ordering::Relaxed);
            handler.signals().send_with_timer((), ms(100));
        });
    }
}

#[test]
fn run_for_runs_exactly_the_events_due_and_moves_the_clock() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let mut world = World::with_seed(1);
    world.node("ticker", ticker(ticks.clone()));
    world.run_for(ms(250));
    assert_eq!((ticks.load(Ordering::Relaxed), world.now()), (2, ms(250)));
    world.run_for(ms(250));
    assert_eq!(
        (ticks.load(Ordering::Relaxed), world.now()),
        (5, ms(500)),
        "the tick at 500 ms runs"
    );
    // An idle world: the clock still moves.
    let mut idle = World::with_seed(1);
    idle.run_for(Duration::from_secs(3));
    assert_eq!(idle.now(), Duration::from_secs(3));
}

#[test]
fn run_until_stops_when_the_predicate_holds() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let mut world = World::with_seed(1);
    world.node("ticker", ticker(ticks.clone()));
    let t = ticks.clone();
    assert!(world.run_until(move |_| t.load(Ordering::Relaxed) == 7));
    assert_eq!((ticks.load(Ordering::Relaxed), world.now()), (7, ms(700)));
    // A predicate that never holds on a world that idles: false, not a hang.
    let mut finite = World::with_seed(1);
    finite.node("once", |_: NodeHandler<()>, _: NodeListener<()>| ());
    assert!(!finite.run_until(|_| false));
    assert!(finite.is_finished("once"));
}

#[test]
fn step_runs_one_event_and_returns_its_trace_lines() {
    let log = Log::default();
    let mut world = World::with_seed(2);
    world.node("receiver", udp_sink(4000, ms(300), log.clone()));
    world
        .node("sender", sender(Transport::Udp, "receiver:4000", 1, ms(100), ms(0), Log::default()));

    // The first event starts the first node: it listens, then waits.
    let first = world.step().expect("an event");
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].contains("receiver listens on 10.0.0.1:4000 over Udp"), "{first:?}");
    assert_eq!(world.now(), Duration::ZERO);

    let mut steps = Vec::new();
    while let Some(lines) = world.step() {
        steps.push((world.now(), lines));
    }
    assert!(world.step().is_none(), "nothing left");
    // The datagram's arrival is one step of its own, at 100 ms + 1 ms latency.
    let arrival: Vec<_> = steps
        .iter()
        .filter(|(_, lines)| lines.iter().any(|l| l.contains("receiver <- Message")))
        .collect();
    assert_eq!(arrival.len(), 1, "{steps:#?}");
    assert_eq!(arrival[0].0, ms(101));
    assert_eq!(arrival[0].1.len(), 1);
    assert_eq!(log.lines(), ["got m0"]);
    assert!(world.is_finished("receiver") && world.is_finished("sender"));
    assert_eq!(world.now(), ms(300));
}

#[test]
fn at_runs_actions_at_their_virtual_time() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut world = World::with_seed(3);
    for (label, at) in [("b", 3000), ("a", 1000), ("c", 3000)] {
        let seen = seen.clone();
        world.at(ms(at), move |w| seen.lock().unwrap().push((label, w.now())));
    }
    world.run_until_idle();
    let order: Vec<_> = seen.lock().unwrap().clone();
    assert_eq!(order[0], ("a", ms(1000)));
    assert_eq!(order[1..].iter().map(|(_, t)| *t).collect::<Vec<_>>(), [ms(3000), ms(3000)]);
    // An action for a past time runs now.
    let s = seen.clone();
    world.at(ms(10), move |w| s.lock().unwrap().push(("late", w.now())));
    world.run_until_idle();
    assert_eq!(seen.lock().unwrap().last(), Some(&("late", ms(3000))));
    // Actions may act on the world: add a node later in virtual time.
    let log = Log::default();
    let l = log.clone();
    world.at(ms(5000), move |w| {
        w.node("newcomer", move |_: NodeHandler<()>, _: NodeListener<()>| l.push("hello"))
    });
    world.run_until_idle();
    assert_eq!((log.lines(), world.now()), (vec!["hello".to_string()], ms(5000)));
}

// ----- failing loudly -----

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(not a string)".into())
}

#[test]
fn handler_used_from_a_thread_the_world_does_not_know_panics() {
    let log = Log::default();
    let mut world = World::with_seed(13);
    world.node("peer", udp_sink(4000, ms(100), Log::default()));
    let l = log.clone();
    world.node("spawner", move |handler: NodeHandler<()>, _listener: NodeListener<()>| {
        let h = handler.clone();
        let outcome = std::thread::spawn(move || {
            h.network().connect(Transport::Udp, "peer:4000").map(|_| ()).map_err(|e| e.to_string())
        })
        .join();
        l.push(match outcome {
            Ok(result) => format!("no panic: {result:?}"),
            Err(payload) => panic_message(payload),
        });
    });
    world.run_until_idle();
    let message = log.lines().join("\n");
    assert!(
        message.contains(
            "the handler of simulated node \"spawner\" was used from a thread outside its world"
        ),
        "{message}"
    );
}

#[test]
fn signals_from_a_thread_the_world_does_not_know_panic() {
    let log = Log::default();
    let mut world = World::with_seed(13);
    let l = log.clone();
    world.node("spawner", move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
        let h = handler.clone();
        let outcome = std::thread::spawn(move || h.signals().send(1)).join();
        l.push(match outcome {
            Ok(()) => "no panic".to_string(),
            Err(payload) => panic_message(payload),
        });
        listener.for_each(|_| handler.stop());
    });
    world.run_until_idle();
    let message = log.lines().join("\n");
    assert!(message.contains("outside its world"), "{message}");
}

/// `connect` takes `(host, port)` as natively; in a world the host is a node name. Resolving it
/// with the system's resolver would be real I/O, and wrong: the name is no real host.
#[test]
fn connect_resolves_host_port_tuples_to_nodes() {
    let log = Log::default();
    let mut world = World::with_seed(17);
    world.node("server", stream_sink(Transport::FramedTcp, 3000, Log::default()));
    let l = log.clone();
    world.node("client", move |handler: NodeHandler<()>, _: NodeListener<()>| {
        let result = handler.network().connect(Transport::FramedTcp, ("server", 3000));
        l.push(format!("{:?}", result.map(|(endpoint, _)| endpoint.addr())));
    });
    world.run_until_idle();
    assert_eq!(log.lines(), ["Ok(10.0.0.1:3000)"]);
}

/// A node's handler may be used from the test's own thread between steps (the world is
/// stopped then); `connect_sync` there would wait for the world, which waits for the test.
#[test]
fn connect_sync_from_the_world_thread_fails_loudly() {
    let (answer, answers) = std::sync::mpsc::channel();
    // The world lives on this thread; the test thread only watches for a hang (real time).
    std::thread::spawn(move || {
        let slot: Arc<Mutex<Option<NodeHandler<()>>>> = Arc::default();
        let mut world = World::with_seed(15);
        world.node("server", stream_sink(Transport::FramedTcp, 3000, Log::default()));
        let s = slot.clone();
        world.node("client", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
            *s.lock().unwrap() = Some(handler.clone());
            listener.for_each(|_| ());
        });
        world.run_for(ms(10));
        let handler = slot.lock().unwrap().clone().unwrap();
        // A plain connect from here works: the world is stopped, nothing races.
        assert!(handler.network().connect(Transport::FramedTcp, "server:3000").is_ok());
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            handler.network().connect_sync(Transport::FramedTcp, "server:3000").map(|_| ())
        }));
        let _ = answer.send(match outcome {
            Ok(result) => format!("returned {result:?}"),
            Err(payload) => panic_message(payload),
        });
    });
    let outcome = answers.recv_timeout(Duration::from_secs(3)).expect("connect_sync hung");
    assert!(outcome.contains("portnet sim"), "a clear error, got: {outcome}");
}

/// Natively, a node whose application returned has dropped its sockets: its peers get
/// `Disconnected`. A simulated node that finishes should close its connections the same way.
#[test]
fn a_finished_node_closes_its_connections() {
    let log = Log::default();
    let mut world = World::with_seed(16);
    world.node("server", stream_sink(Transport::FramedTcp, 3000, log.clone()));
    world.node(
        "client",
        sender(Transport::FramedTcp, "server:3000", 1, ms(10), ms(0), Log::default()),
    );
    world.run_for(Duration::from_secs(5));
    assert!(world.is_finished("client"));
    assert_eq!(log.lines(), ["got m0", "disconnected"]);
}

/// `for_each_async` and `enqueue` spawn no thread in a world: the loop runs when the task is
/// waited for (or the queue is read), on the node's thread, in virtual time.
#[test]
fn for_each_async_and_enqueue_run_on_virtual_time() {
    let log = Log::default();
    let mut world = World::with_seed(14);
    world.node("receiver", udp_sink(4000, Duration::from_secs(1), Log::default()));
    let l = log.clone();
    world.node("async", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (peer, _) = handler.network().connect(Transport::Udp, "receiver:4000").unwrap();
        handler.signals().send_with_timer((), ms(250));
        let h = handler.clone();
        let l = l.clone();
        let mut task = listener.for_each_async(move |event| {
            if let NodeEvent::Signal(()) = event {
                l.push(format!("timer at {:?}", h.now()));
                h.network().send(peer, b"from async");
                h.stop();
            }
        });
        task.wait();
    });
    let l = log.clone();
    world.node("queue", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (peer, _) = handler.network().connect(Transport::Udp, "receiver:4000").unwrap();
        handler.signals().send_with_timer((), ms(400));
        let (_task, mut events) = listener.enqueue();
        loop {
            match events.receive_timeout(Duration::from_secs(5)) {
                Some(StoredNodeEvent::Signal(())) => {
                    l.push(format!("queued timer at {:?}", handler.now()));
                    handler.network().send(peer, b"from queue");
                    handler.stop();
                    break;
                }
                Some(StoredNodeEvent::Network(_)) => (),
                None => panic!("no timer within 5 s of virtual time"),
            }
        }
    });
    world.run_until_idle();
    assert_eq!(log.lines(), ["timer at 250ms", "queued timer at 400ms"]);
    assert!(world.is_finished("async") && world.is_finished("queue"));
    assert_eq!(world.now(), Duration::from_secs(1));
}

#[test]
fn a_panicking_node_fails_the_run_with_seed_rerun_command_and_trace_file() {
    let mut world = World::with_seed(4242);
    world.node("boom", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, "0.0.0.0:1").unwrap();
        handler.signals().send_with_timer((), ms(1500));
        listener.for_each(|_| panic!("boom at the first timer"));
    });
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| world.run_until_idle()));
    let message = panic_message(result.expect_err("the node's panic fails the run"));
    assert!(message.contains("node \"boom\" panicked: boom at the first timer"), "{message}");
    assert!(message.contains("seed: 4242"), "{message}");
    assert!(message.contains("rerun: PORTNET_SIM_SEED=4242 cargo test"), "{message}");
    assert!(message.contains("boom listens on"), "the tail of the trace: {message}");
    let file = message
        .split("written to ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no trace file in {message}"));
    let written = std::fs::read_to_string(file).unwrap();
    assert_eq!(written.lines().collect::<Vec<_>>(), world.trace());
    assert_eq!(world.now(), ms(1500));
}

/// A bandwidth-limited link fills a stream's send queue: `send` answers `QueueFull`, and
/// `signal_when_writable` paces the sender by the link, in virtual time.
#[test]
fn bandwidth_fills_the_send_queue_and_paces_the_sender() {
    use portnet::adapters::framed_tcp::FramedTcpConnectConfig;
    use portnet::network::{SendStatus, TransportConnect};
    const CHUNK: usize = 16 * 1024;
    const CHUNKS: u32 = 100;
    let log = Log::default();
    let mut world = World::with_seed(3);
    // 1 MB/s: 1.6 MB takes about 1.6 s of virtual time.
    world.set_default_link(Link { bandwidth: Some(1_000_000), ..Link::default() });
    world.node("receiver", stream_sink(Transport::FramedTcp, 3000, log.clone()));
    let full = Arc::new(Mutex::new(0u32));
    let count_full = full.clone();
    world.node("sender", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let config = FramedTcpConnectConfig::default().with_send_queue_limit(64 * 1024);
        let (peer, _) = handler
            .network()
            .connect_with(TransportConnect::FramedTcp(config), "receiver:3000")
            .unwrap();
        let mut next = 0u32;
        let pump = |handler: &NodeHandler<()>, next: &mut u32| {
            while *next < CHUNKS {
                let mut data = vec![0u8; CHUNK];
                data[..2].copy_from_slice(format!("{:02}", *next % 100).as_bytes());
                match handler.network().send(peer, &data) {
                    SendStatus::Sent => *next += 1,
                    SendStatus::QueueFull => {
                        *count_full.lock().unwrap() += 1;
                        return handler.signal_when_writable(peer, ());
                    }
                    other => panic!("{other:?}"),
                }
            }
            handler.stop();
        };
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, true)) | NodeEvent::Signal(()) => {
                pump(&handler, &mut next)
            }
            _ => (),
        });
    });
    world.run_until_idle();
    assert!(*full.lock().unwrap() > 5, "the 64 KiB queue filled repeatedly");
    let got: Vec<String> = log.lines().into_iter().filter(|l| l.starts_with("got")).collect();
    assert_eq!(got.len(), CHUNKS as usize, "every chunk arrived");
    let arrivals = deliveries_to(&world.trace(), "receiver");
    let last = stamp(arrivals.last().unwrap());
    assert!((1.5..2.5).contains(&last), "bandwidth-bound: the last chunk arrived at {last} s");
}

/// A link with a bandwidth and a small buffer drops the datagrams that overflow it.
#[test]
fn a_full_link_queue_drops_datagrams() {
    let log = Log::default();
    let mut world = World::with_seed(4);
    world.set_default_link(Link {
        bandwidth: Some(100_000),
        queue: Some(10_000),
        ..Link::default()
    });
    world.node("receiver", udp_sink(4000, Duration::from_secs(5), log.clone()));
    world.node("sender", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (peer, _) = handler.network().connect(Transport::Udp, "receiver:4000").unwrap();
        for _ in 0..100 {
            handler.network().send(peer, &[7; 1000]);
        }
        handler.stop();
        listener.for_each(|_| ());
    });
    world.run_until_idle();
    let received = log.lines().iter().filter(|l| l.starts_with("got")).count();
    assert!((5..=15).contains(&received), "about 10 KB fit the queue: {received} arrived");
    assert!(world.trace().iter().any(|l| l.contains("link queue full")));
}

/// Udp one-to-many in a world: a datagram to a multicast group reaches its members only; a
/// broadcast reaches every node listening on the port.
#[test]
fn multicast_and_broadcast_reach_their_listeners() {
    let member = |group: &'static str, log: Log| {
        move |handler: NodeHandler<()>, listener: NodeListener<()>| {
            handler.network().listen(Transport::Udp, group).unwrap();
            handler.signals().send_with_timer((), Duration::from_secs(1));
            listener.for_each(|event| match event {
                NodeEvent::Network(NetEvent::Message(_, data)) => {
                    log.push(format!("got {}", text(data)))
                }
                NodeEvent::Signal(()) => handler.stop(),
                _ => (),
            });
        }
    };
    let (a, b, outsider) = (Log::default(), Log::default(), Log::default());
    let mut world = World::with_seed(8);
    world.node("a", member("239.1.2.3:5000", a.clone()));
    world.node("b", member("239.1.2.3:5000", b.clone()));
    world.node("outsider", member("0.0.0.0:5000", outsider.clone()));
    world.node("speaker", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (group, _) = handler.network().connect(Transport::Udp, "239.1.2.3:5000").unwrap();
        let (everyone, _) =
            handler.network().connect(Transport::Udp, "255.255.255.255:5000").unwrap();
        handler.network().send(group, b"to the group");
        handler.network().send(everyone, b"to all");
        handler.stop();
        listener.for_each(|_| ());
    });
    world.run_until_idle();
    assert_eq!(a.lines(), ["got to the group"]);
    assert_eq!(b.lines(), ["got to the group"]);
    assert_eq!(outsider.lines(), ["got to all"], "not a member; reached by the broadcast");
}

/// A sender waiting for its queue to drain is told when the peer goes away instead, as
/// natively: its next send then answers `ResourceNotFound`.
#[test]
fn a_waiting_sender_is_signalled_when_the_peer_disconnects() {
    use portnet::adapters::framed_tcp::FramedTcpConnectConfig;
    use portnet::network::{SendStatus, TransportConnect};
    let log = Log::default();
    let mut world = World::with_seed(5);
    world.set_default_link(Link { bandwidth: Some(10_000), ..Link::default() });
    world.node("receiver", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Accepted(endpoint, _)) = event {
                handler.network().remove(endpoint.resource_id());
            }
        });
    });
    let out = log.clone();
    world.node("sender", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let config = FramedTcpConnectConfig::default().with_send_queue_limit(4096);
        let (peer, _) = handler
            .network()
            .connect_with(TransportConnect::FramedTcp(config), "receiver:3000")
            .unwrap();
        handler.signals().send_with_timer((), Duration::from_secs(30));
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, true)) => {
                while handler.network().send(peer, &[0; 1024]) == SendStatus::Sent {}
                out.push("queue full");
                handler.signal_when_writable(peer, ());
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => out.push("disconnected"),
            NodeEvent::Signal(()) => {
                out.push(format!("signal: {:?}", handler.network().send(peer, b"x")));
                handler.stop();
            }
            _ => (),
        });
    });
    world.run_until(|w| w.is_finished("sender"));
    let lines = log.lines();
    assert_eq!(lines.first().map(String::as_str), Some("queue full"), "{lines:?}");
    assert!(lines.contains(&"signal: ResourceNotFound".to_string()), "{lines:?}");
    assert!(world.now() < Duration::from_secs(30), "signalled by the disconnection, not the timer");
}

/// Plain Tcp is a byte stream both ways: sends may be cut, and sends that arrive together are
/// read together. An application that takes one `Message` for one send breaks on some seed.
#[test]
fn tcp_sends_that_arrive_together_are_read_together() {
    let mut merged = 0;
    for seed in 0..10 {
        let log = Log::default();
        let mut world = World::with_seed(seed);
        world.node("receiver", stream_sink(Transport::Tcp, 3000, log.clone()));
        world.node("sender", |handler: NodeHandler<()>, listener: NodeListener<()>| {
            let (peer, _) = handler.network().connect(Transport::Tcp, "receiver:3000").unwrap();
            listener.for_each(|event| {
                if let NodeEvent::Network(NetEvent::Connected(_, true)) = event {
                    handler.network().send(peer, b"ab");
                    handler.network().send(peer, b"cd");
                    handler.stop();
                }
            });
        });
        world.run_until_idle();
        let got: Vec<String> = log
            .lines()
            .into_iter()
            .filter_map(|l| l.strip_prefix("got ").map(str::to_string))
            .collect();
        assert_eq!(got.concat(), "abcd", "seed {seed}: the stream, whole and in order");
        if got.iter().any(|m| m.contains("bc")) {
            merged += 1;
        }
    }
    assert!(merged > 0, "on some seed, bytes of both sends arrive in one Message");
}

/// One-way delays (beyond the link's fixed latency) of `count` datagrams sent 1 ms apart over a
/// link with 10 ms of `jitter` spread as `spread`, in microseconds.
fn extra_delays(spread: portnet::sim::Spread, count: u64) -> Vec<u64> {
    let delays = Arc::new(Mutex::new(Vec::new()));
    let mut world = World::with_seed(21);
    world.set_default_link(Link { latency: ms(1), jitter: ms(10), spread, ..Link::default() });
    let d = delays.clone();
    world.node("receiver", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, "0.0.0.0:4000").unwrap();
        handler.signals().send_with_timer((), Duration::from_secs(5));
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                let sent = u64::from_be_bytes(data.try_into().unwrap());
                let now = handler.now().as_micros() as u64;
                d.lock().unwrap().push(now - sent - 1_000);
            }
            NodeEvent::Signal(()) => handler.stop(),
            _ => (),
        });
    });
    world.node("sender", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (peer, _) = handler.network().connect(Transport::Udp, "receiver:4000").unwrap();
        let mut sent = 0;
        handler.signals().send(());
        listener.for_each(|event| {
            if let NodeEvent::Signal(()) = event {
                let now = handler.now().as_micros() as u64;
                handler.network().send(peer, &now.to_be_bytes());
                sent += 1;
                match sent < count {
                    true => drop(handler.signals().send_with_timer((), ms(1))),
                    false => handler.stop(),
                }
            }
        });
    });
    world.run_until_idle();
    let mut delays = delays.lock().unwrap().clone();
    assert_eq!(delays.len() as u64, count, "no loss configured");
    delays.sort();
    delays
}

#[test]
fn jitter_spreads_follow_their_distributions() {
    use portnet::sim::Spread;
    let stats = |d: &[u64]| {
        let mean = d.iter().sum::<u64>() as f64 / d.len() as f64;
        (mean / 1000.0, d[d.len() / 2] as f64 / 1000.0, *d.last().unwrap() as f64 / 1000.0)
    };
    // Means in ms, jitter 10 ms: uniform 0..=10 (mean 5, never above 10).
    let (mean, median, max) = stats(&extra_delays(Spread::Uniform, 2000));
    assert!((4.5..5.5).contains(&mean), "uniform mean {mean}");
    assert!(max <= 10.0, "uniform max {max}");
    assert!((4.0..6.0).contains(&median), "uniform median {median}");
    // Exponential, mean 10: median ln 2 × 10 ≈ 6.9; a tail well past 10.
    let (mean, median, max) = stats(&extra_delays(Spread::Exponential, 2000));
    assert!((9.0..11.0).contains(&mean), "exponential mean {mean}");
    assert!((6.0..8.0).contains(&median), "exponential median {median}");
    assert!(max > 40.0 && max <= 200.0, "exponential max {max}");
    // Pareto(1.5), mean 10: most packets near the minimum 3.3 ms, a few very late.
    let (_, median, max) = stats(&extra_delays(Spread::Pareto(1.5), 2000));
    assert!((4.0..6.5).contains(&median), "pareto median {median}");
    assert!(max > 100.0 && max <= 1000.0, "pareto max {max}");
}
