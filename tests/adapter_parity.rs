//! The line protocol of `examples/line-protocol` (a transport written with the public adapter
//! API only) with one test body on both backends: natively over loopback, and in a simulated
//! world, clean, under loss with a partition that heals, and replayed from its seed.

#[path = "../examples/line-protocol/lines.rs"]
mod lines;
mod util;

use lines::{LineDecoder, Lines};
use portnet::adapter::{
    Carrier, Decoder, Frame, Io, ProtocolError, SendError, Side, StreamProtocol,
};
use portnet::network::{Endpoint, NetEvent, SendStatus};
use portnet::node::{self, NodeEvent, NodeHandler, NodeListener};
use portnet::sim::{Link, World};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use util::ws::{capture_logs, logged};

/// The signals the applications send themselves.
const TICK: u32 = 1;
const GIVE_UP: u32 = 2;

/// What the applications report back to the test.
#[derive(Default, Debug)]
struct Report {
    /// Where the server listens, once it does.
    server_addr: Option<String>,
    /// The lines the server received, in order, per connection (in accept order).
    received: Vec<Vec<Vec<u8>>>,
    /// The lines echoed back to the client, in order.
    echoed: Vec<Vec<u8>>,
    /// What the client saw, in order: "connected a", "disconnected b", ...
    client_events: Vec<String>,
    /// Connections the server saw end, by accept order.
    server_disconnects: Vec<usize>,
    /// What `send` answered for a message the protocol cannot frame.
    refused: Option<SendStatus>,
    done: bool,
}

type Shared = util::Reported<Report>;

trait AppFn: Fn(NodeHandler<u32>, NodeListener<u32>) + Send + Sync + 'static {}
impl<F: Fn(NodeHandler<u32>, NodeListener<u32>) + Send + Sync + 'static> AppFn for F {}

/// Where a scenario runs.
#[derive(Clone, Copy, Debug)]
enum Backend {
    /// Loopback sockets.
    Native,
    /// A world with this seed, clean links.
    Sim(u64),
    /// A world with this seed, 2 % segment loss both ways and a partition from 40 ms to
    /// 300 ms of virtual time.
    SimFaulty(u64),
}

/// Sets up a world for `backend` (not `Native`) with the two apps.
fn world_for(
    world: &mut World,
    backend: Backend,
    server: impl AppFn,
    client: impl AppFn,
    target: &Arc<Mutex<String>>,
) {
    world.node("server", server);
    *target.lock().unwrap() = "server:3000".into();
    world.node("client", client);
    if let Backend::SimFaulty(_) = backend {
        let lossy = Link { loss: 0.02, ..Link::default() };
        world.set_link("client", "server", lossy);
        world.set_link("server", "client", lossy);
        world.at(Duration::from_millis(40), |w| w.partition("client", "server"));
        world.at(Duration::from_millis(300), |w| w.heal());
    }
}

/// Runs a server app and a client app on `backend` until the client returns. Returns the
/// world's trace in the simulator.
fn run(
    backend: Backend,
    server: impl AppFn,
    client: impl AppFn,
    report: &Shared,
    target: &Arc<Mutex<String>>,
) -> Vec<String> {
    match backend {
        Backend::Native => {
            let (handler, listener) = node::split::<u32>();
            let server_handler = handler.clone();
            let server_task = std::thread::spawn(move || server(handler, listener));
            *target.lock().unwrap() =
                report.wait_for("the server to listen", |r| r.server_addr.clone());
            let (handler, listener) = node::split::<u32>();
            client(handler, listener);
            server_handler.stop();
            server_task.join().unwrap();
            Vec::new()
        }
        Backend::Sim(seed) | Backend::SimFaulty(seed) => {
            let mut world = World::with_seed(seed);
            world_for(&mut world, backend, server, client, target);
            assert!(world.run_until(|w| w.is_finished("client")), "{backend:?}: client stuck");
            world.trace()
        }
    }
}

fn listen_at(backend: Backend) -> &'static str {
    match backend {
        Backend::Native => "127.0.0.1:0",
        _ => "0.0.0.0:3000",
    }
}

/// A line server: mounts `protocol`, echoes every line, records what it got per connection.
fn line_server(protocol: Lines, listen: &'static str, report: Shared) -> impl AppFn {
    line_server_over(protocol, Carrier::Tcp, listen, report)
}

/// [`line_server`] with the protocol on `carrier`.
fn line_server_over(
    protocol: Lines,
    carrier: Carrier,
    listen: &'static str,
    report: Shared,
) -> impl AppFn {
    move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
        let lines = handler.network().mount_with(protocol, carrier).expect("mount");
        let (_, addr) = handler.network().listen(lines, listen).expect("listen");
        report.update(|r| r.server_addr = Some(addr.to_string()));
        let mut order: Vec<Endpoint> = Vec::new();
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Accepted(endpoint, _)) => {
                order.push(endpoint);
                report.update(|r| r.received.push(Vec::new()));
            }
            NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
                let at = order.iter().position(|e| *e == endpoint).expect("an accepted endpoint");
                report.update(|r| r.received[at].push(data.to_vec()));
                assert_eq!(handler.network().send(endpoint, data), SendStatus::Sent, "echo");
            }
            NodeEvent::Network(NetEvent::Disconnected(endpoint)) => {
                let at = order.iter().position(|e| *e == endpoint).expect("an accepted endpoint");
                report.update(|r| r.server_disconnects.push(at))
            }
            _ => (),
        });
    }
}

/// Line `i` of the echo scenario: varying lengths, some longer than a segment.
fn line(i: usize) -> Vec<u8> {
    let len = if i % 25 == 0 { 3000 + i } else { i % 97 };
    format!("{i}:{}", "x".repeat(len)).into_bytes()
}

const BATCHES: usize = 20;
const PER_BATCH: usize = 10;

/// Sends [`BATCHES`] batches of lines, one batch every 10 ms, and waits for every echo.
fn echo_client(target: Arc<Mutex<String>>, report: Shared) -> impl AppFn {
    echo_client_over(Carrier::Tcp, target, report)
}

/// [`echo_client`] with the protocol on `carrier`.
fn echo_client_over(carrier: Carrier, target: Arc<Mutex<String>>, report: Shared) -> impl AppFn {
    move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
        let target = target.lock().unwrap().clone();
        let lines = handler.network().mount_with(Lines::default(), carrier).expect("mount");
        let (server, _) = handler.network().connect(lines, target.as_str()).expect("connect");
        handler.signals().send_with_timer(GIVE_UP, Duration::from_secs(20));
        let (mut sent, mut echoed) = (0, 0);
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                assert!(ok, "connected");
                // What the protocol cannot frame is refused, and nothing of it goes out.
                let status = handler.network().send(server, b"two\nlines");
                report.update(|r| r.refused = Some(status));
                handler.signals().send(TICK);
            }
            NodeEvent::Signal(TICK) => {
                for _ in 0..PER_BATCH {
                    assert_eq!(handler.network().send(server, &line(sent)), SendStatus::Sent);
                    sent += 1;
                }
                if sent < BATCHES * PER_BATCH {
                    handler.signals().send_with_timer(TICK, Duration::from_millis(10));
                }
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                report.update(|r| r.echoed.push(data.to_vec()));
                echoed += 1;
                if echoed == BATCHES * PER_BATCH {
                    report.update(|r| r.done = true);
                    handler.stop();
                }
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => panic!("the server went away"),
            NodeEvent::Signal(_) => handler.stop(),
            other => panic!("client got {other:?}"),
        });
    }
}

/// The scenario: every line arrives at the server and back, in order, each exactly once.
fn echo_in_order(backend: Backend) -> Vec<String> {
    echo_in_order_over(backend, Carrier::Tcp)
}

/// [`echo_in_order`] with the protocol on `carrier`.
fn echo_in_order_over(backend: Backend, carrier: Carrier) -> Vec<String> {
    let report = Shared::default();
    let target = Arc::new(Mutex::new(String::new()));
    let server = line_server_over(Lines::default(), carrier, listen_at(backend), report.clone());
    let client = echo_client_over(carrier, target.clone(), report.clone());
    let trace = run(backend, server, client, &report, &target);
    let report = report.take();
    assert!(report.done, "{backend:?}: the client never got every echo: {report:?}");
    assert_eq!(report.refused, Some(SendStatus::MaxPacketSizeExceeded), "{backend:?}");
    let expected: Vec<Vec<u8>> = (0..BATCHES * PER_BATCH).map(line).collect();
    assert_eq!(report.received.len(), 1, "{backend:?}: one connection");
    assert!(report.received[0] == expected, "{backend:?}: the server got lines altered");
    assert!(report.echoed == expected, "{backend:?}: the echoes came altered");
    trace
}

#[test]
fn lines_arrive_whole_in_order_once_natively() {
    echo_in_order(Backend::Native);
}

/// The same body with the protocol carried over WebSocket: natively a tungstenite connection,
/// in a world the same byte stream as over TCP (also under loss and a partition).
#[test]
fn lines_over_websocket_arrive_whole_in_order_once_natively_and_in_a_world() {
    echo_in_order_over(Backend::Native, Carrier::WebSocket);
    for seed in 1..=3 {
        echo_in_order_over(Backend::Sim(seed), Carrier::WebSocket);
        echo_in_order_over(Backend::SimFaulty(seed), Carrier::WebSocket);
    }
}

#[test]
fn lines_arrive_whole_in_order_once_in_a_world() {
    for seed in 1..=5 {
        let trace = echo_in_order(Backend::Sim(seed));
        // The world cut the bytes: more segments arrived than messages were sent.
        assert!(trace.iter().any(|l| l.contains("client <- Message")), "{seed}: {trace:?}");
    }
}

#[test]
fn lines_arrive_whole_in_order_once_under_loss_and_a_healed_partition() {
    for seed in 1..=5 {
        let trace = echo_in_order(Backend::SimFaulty(seed));
        let faults = trace.iter().filter(|l| l.contains("(retransmitted)")).count();
        assert!(faults > 0, "seed {seed}: no segment was lost");
        assert!(trace.iter().any(|l| l.contains("partition")), "seed {seed}: no partition");
        assert!(trace.iter().any(|l| l.ends_with("heal")), "seed {seed}: no heal");
        // Nothing got through the partition (what was in flight at 40 ms arrived by 42 ms).
        let at = |l: &String| l.split_whitespace().next().and_then(|t| t.parse::<f64>().ok());
        let through: Vec<_> = trace
            .iter()
            .filter(|l| l.contains("<- Message") && at(l).is_some_and(|t| t > 0.042 && t < 0.3))
            .collect();
        assert!(through.is_empty(), "seed {seed}: through the partition: {through:?}");
        let after = trace.iter().filter(|l| l.contains("<- Message") && at(l) > Some(0.3));
        assert!(after.count() > 0, "seed {seed}: the lines sent during the partition came after");
    }
}

/// One client node with two connections: one sends a line too long for the server, the other
/// goes on being echoed.
fn two_connections_client(target: Arc<Mutex<String>>, report: Shared) -> impl AppFn {
    move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
        let target = target.lock().unwrap().clone();
        let lines = handler.network().mount(Lines::default()).expect("mount");
        let (good, _) = handler.network().connect(lines, target.as_str()).expect("connect");
        // Connected one after the other, so the server accepts them in this order.
        let mut bad = None;
        handler.signals().send_with_timer(GIVE_UP, Duration::from_secs(20));
        let name = |e: Endpoint, bad: Option<Endpoint>| if Some(e) == bad { "bad" } else { "good" };
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(endpoint, ok)) => {
                assert!(ok);
                report
                    .update(|r| r.client_events.push(format!("connected {}", name(endpoint, bad))));
                if endpoint == good {
                    let (b, _) = handler.network().connect(lines, target.as_str()).unwrap();
                    bad = Some(b);
                } else {
                    assert_eq!(handler.network().send(good, b"hello"), SendStatus::Sent);
                    // Longer than the server's maximum of 100: the server's decoder refuses it.
                    assert_eq!(handler.network().send(endpoint, &[b'a'; 200]), SendStatus::Sent);
                }
            }
            NodeEvent::Network(NetEvent::Disconnected(endpoint)) => {
                let which = name(endpoint, bad);
                report.update(|r| r.client_events.push(format!("disconnected {which}")));
                assert_eq!(which, "bad", "only the bad connection ends");
                assert_eq!(handler.network().send(good, b"after"), SendStatus::Sent);
            }
            NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
                let text = String::from_utf8_lossy(data).into_owned();
                let which = name(endpoint, bad);
                report.update(|r| r.client_events.push(format!("{which} echoed {text}")));
                if data == b"after" {
                    report.update(|r| r.done = true);
                    handler.stop();
                }
            }
            NodeEvent::Signal(_) => handler.stop(),
            other => panic!("client got {other:?}"),
        });
    }
}

/// The scenario: a decoder error ends its connection alone, with the reason logged, and the
/// peer sees the close.
fn bad_line_ends_only_its_connection(backend: Backend) -> Vec<String> {
    capture_logs();
    const REASON: &str = "longer than the maximum of 100";
    let before = logged(&[REASON]).len();
    let report = Shared::default();
    let target = Arc::new(Mutex::new(String::new()));
    let server =
        line_server(Lines::default().with_max_line(100), listen_at(backend), report.clone());
    let client = two_connections_client(target.clone(), report.clone());
    let trace = run(backend, server, client, &report, &target);
    let report = report.take();
    assert!(report.done, "{backend:?}: {report:?}");
    let events = &report.client_events;
    assert_eq!(&events[..2], ["connected good", "connected bad"], "{backend:?}");
    // "hello" may come back before or after the bad connection ends; "after" comes last.
    let mut rest = events[2..].to_vec();
    rest.sort();
    assert_eq!(rest, ["disconnected bad", "good echoed after", "good echoed hello"], "{backend:?}");
    assert_eq!(events.last().map(String::as_str), Some("good echoed after"), "{backend:?}");
    assert_eq!(report.received.len(), 2, "{backend:?}: two connections accepted");
    assert_eq!(report.received[0], [b"hello".to_vec(), b"after".to_vec()], "{backend:?}");
    assert!(report.received[1].is_empty(), "{backend:?}: nothing of the bad line delivered");
    // (The good one may end too, once the client is done.)
    assert_eq!(report.server_disconnects.first(), Some(&1), "{backend:?}: the bad one ends first");
    assert!(logged(&[REASON]).len() > before, "{backend:?}: the reason is logged");
    trace
}

#[test]
fn a_bad_line_ends_only_its_connection_natively() {
    bad_line_ends_only_its_connection(Backend::Native);
}

#[test]
fn a_bad_line_ends_only_its_connection_in_a_world() {
    for seed in 1..=3 {
        let trace = bad_line_ends_only_its_connection(Backend::Sim(seed));
        let closed: Vec<_> =
            trace.iter().filter(|l| l.contains("closed by its protocol")).collect();
        assert_eq!(closed.len(), 1, "seed {seed}: {trace:#?}");
    }
}

#[test]
fn a_world_with_a_mounted_transport_replays_from_its_seed() {
    for seed in [7, 8] {
        let scenario = |world: &mut World| {
            let report = Shared::default();
            let target = Arc::new(Mutex::new(String::new()));
            let server = line_server(Lines::default(), "0.0.0.0:3000", report.clone());
            let client = echo_client(target.clone(), report.clone());
            world_for(world, Backend::SimFaulty(seed), server, client, &target);
            world.run_until(|w| w.is_finished("client"));
            assert!(report.take().done, "seed {seed}: the client finished its work");
        };
        portnet::sim::check_determinism(seed, scenario).unwrap();
    }
}

/// The line protocol, recording the size of every input its decoders get.
struct Probe {
    inner: Lines,
    reads: Arc<Mutex<Vec<Vec<u8>>>>,
}

struct ProbeDecoder {
    inner: LineDecoder,
    reads: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl StreamProtocol for Probe {
    type Decoder = ProbeDecoder;

    fn decoder(&self, side: Side) -> ProbeDecoder {
        ProbeDecoder { inner: self.inner.decoder(side), reads: self.reads.clone() }
    }

    fn encode(&self, message: &[u8], frame: &mut Frame) -> Result<(), SendError> {
        self.inner.encode(message, frame)
    }
}

impl Decoder for ProbeDecoder {
    fn decode(&mut self, input: &[u8], io: &mut Io<'_>) -> Result<(), ProtocolError> {
        self.reads.lock().unwrap().push(input.to_vec());
        self.inner.decode(input, io)
    }
}

/// The inputs a world's server decoder gets for 60 lines sent at once, and the lines it
/// delivered.
fn reads_in_a_world(seed: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let reads: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let mut world = World::with_seed(seed);
    let (probe_reads, server_got) = (reads.clone(), got.clone());
    world.node("server", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let probe = Probe { inner: Lines::default(), reads: probe_reads.clone() };
        let lines = handler.network().mount(probe).unwrap();
        handler.network().listen(lines, "0.0.0.0:3000").unwrap();
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Message(_, data)) = event {
                server_got.lock().unwrap().push(data.to_vec());
            }
        });
    });
    world.node("client", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let lines = handler.network().mount(Lines::default()).unwrap();
        handler.network().connect(lines, "server:3000").unwrap();
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Connected(server, true)) = event {
                for i in 0..60 {
                    assert_eq!(handler.network().send(server, &line(i)), SendStatus::Sent);
                }
            }
        });
    });
    world.run_until_idle();
    let (reads, got) = (reads.lock().unwrap().clone(), got.lock().unwrap().clone());
    (reads, got)
}

#[test]
fn a_world_hands_decoders_partial_and_joined_reads_drawn_from_its_seed() {
    let (reads, got) = reads_in_a_world(3);
    assert!(got == (0..60).map(line).collect::<Vec<_>>(), "the lines, whole and in order");
    let stream: Vec<u8> = reads.concat();
    let sent: Vec<u8> = (0..60).flat_map(|i| [line(i), b"\n".to_vec()].concat()).collect();
    assert!(stream == sent, "the reads are the stream, cut");
    let newlines = |r: &Vec<u8>| r.iter().filter(|&&b| b == b'\n').count();
    let partial = reads.iter().filter(|r| r.last() != Some(&b'\n')).count();
    let joined = reads.iter().filter(|r| newlines(r) >= 2).count();
    assert!(
        partial > 0 && joined > 0,
        "{partial} partial reads, {joined} joined, of {}",
        reads.len()
    );
    // The same seed cuts the same way; another seed, another way.
    assert!(reads_in_a_world(3).0 == reads, "replayable from the seed");
    assert!(reads_in_a_world(4).0 != reads, "drawn from the seed");
}

#[test]
fn a_crashed_node_s_connections_end_and_a_restarted_node_mounts_anew() {
    let report = Shared::default();
    let mut world = World::with_seed(11);
    world.node("server", line_server(Lines::default(), "0.0.0.0:3000", report.clone()));
    let client_report = report.clone();
    world.node("client", move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
        let lines = handler.network().mount(Lines::default()).expect("mount after a restart too");
        handler.network().connect(lines, "server:3000").unwrap();
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(server, true)) => {
                assert_eq!(handler.network().send(server, b"ping"), SendStatus::Sent);
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                client_report.update(|r| r.echoed.push(data.to_vec()))
            }
            _ => (),
        });
    });
    world.at(Duration::from_millis(50), |w| w.crash("client"));
    world.at(Duration::from_millis(100), |w| w.restart("client"));
    let done = world.run_until(|_| report.read(|r| r.echoed.len()) == 2);
    let report = report.take();
    assert!(done, "{report:?}");
    assert_eq!(report.echoed, [b"ping".to_vec(), b"ping".to_vec()], "an echo per life");
    assert_eq!(report.received, [vec![b"ping".to_vec()], vec![b"ping".to_vec()]]);
    assert_eq!(report.server_disconnects, [0], "the crash ended the first connection");
}
