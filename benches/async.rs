//! The async face (`NodeListener::into_stream`) beside the callback API and beside the tokio
//! peers an async user would pick instead, in the same run, on loopback (issue 15's cost).
//!
//! ```text
//! cargo bench --bench async                      # full run, a few minutes on 2 cores
//! cargo bench --bench async -- --quick           # smoke run for CI, well under a minute
//! PORTNET_BENCH_QUICK=1 cargo bench --bench async   # the same sizes as --quick
//! cargo bench --bench async -- async-latency/Ws  # one group (criterion filter)
//! PORTNET_ASYNC_COUNT=10000 PORTNET_ASYNC_MEMBER=callback cargo bench --bench async
//!     # no criterion: 10 000 FramedTcp round trips of one member, for callgrind
//! ```
//!
//! Groups `async-latency/<transport>` and `async-throughput/<transport>` for `FramedTcp`, `Ws`
//! and `Udp`; their members run one after the other, each with both ends in its own style:
//!
//! - `callback`: the echo server (or receiver) is a node in `for_each_async`; the client is a
//!   node driven on the bench thread with `poll_events` (the sender of a throughput case is a
//!   node in `for_each_async` sent to from the bench thread, as in `benches/transports.rs`).
//! - `async-block_on`: both ends are `NodeStream`s awaited with `futures::executor::block_on`
//!   (the server on its own thread, the client on the bench thread).
//! - `async-tokio`: the same code on tokio current-thread runtimes.
//! - `tokio`: what a tokio user writes without portnet, on current-thread runtimes: tokio's
//!   `TcpStream` in `tokio_util::codec::Framed` with `LengthDelimitedCodec` for `FramedTcp`,
//!   tokio-tungstenite over tokio's `TcpStream` for `Ws`, tokio's `UdpSocket` for `Udp`.
//!
//! **latency**: one 1-byte message to the echo server and back per iteration.
//! **throughput**: per iteration a round of 256 messages (16 when quick) of 64 KiB (`Udp`:
//! 65 507-byte datagrams, `udp::MAX_LOCAL_PAYLOAD_LEN`) sent one way; the round ends when the
//! receiver has counted every byte and said so through an in-process channel. `Udp` is goodput,
//! as in `benches/transports.rs`: the sender sends until the receiver has counted a round's
//! worth of datagrams tagged with the round's number.

// The shared library macro (`common::library`) is not used here.
#[allow(unused)]
#[path = "common/mod.rs"]
mod common;

use common::{
    Blaster, LOCALHOST, Pinger, Plan, STALL, Watchdog, measure_latency, measure_rounds, member,
    payload,
};
use criterion::{Criterion, Throughput};
use futures::future::{Either, select};
use futures::{SinkExt, StreamExt};
use portnet::network::{Endpoint, NetEvent, SendStatus, StoredNetEvent, Transport};
use portnet::node::{self, NodeEvent, NodeHandler, NodeListener, NodeStream, StoredNodeEvent};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tungstenite::Bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    FramedTcp,
    Ws,
    Udp,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::FramedTcp, Kind::Ws, Kind::Udp];

    fn name(self) -> &'static str {
        match self {
            Kind::FramedTcp => "FramedTcp",
            Kind::Ws => "Ws",
            Kind::Udp => "Udp",
        }
    }

    fn transport(self) -> Transport {
        match self {
            Kind::FramedTcp => Transport::FramedTcp,
            Kind::Ws => Transport::Ws,
            Kind::Udp => Transport::Udp,
        }
    }

    /// Bytes per throughput message.
    fn message_size(self) -> usize {
        match self {
            Kind::Udp => portnet::adapters::udp::MAX_LOCAL_PAYLOAD_LEN,
            _ => 64 * 1024,
        }
    }
}

fn round_bytes(plan: Plan, kind: Kind) -> u64 {
    (plan.round_messages * kind.message_size()) as u64
}

/// Which executor an async member runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exec {
    BlockOn,
    Tokio,
}

/// An executor on the current thread.
enum Runner {
    BlockOn,
    Tokio(tokio::runtime::Runtime),
}

impl Runner {
    fn new(exec: Exec) -> Self {
        match exec {
            Exec::BlockOn => Runner::BlockOn,
            Exec::Tokio => Runner::Tokio(current_thread()),
        }
    }

    fn run<F: Future>(&self, future: F) -> F::Output {
        match self {
            Runner::BlockOn => futures::executor::block_on(future),
            Runner::Tokio(runtime) => runtime.block_on(future),
        }
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new().name(name.into()).spawn(f).unwrap()
}

fn listen(handler: &NodeHandler<()>, kind: Kind) -> SocketAddr {
    handler.network().listen(kind.transport(), LOCALHOST).unwrap().1
}

fn is_message(event: &StoredNodeEvent<()>) -> bool {
    matches!(event, StoredNodeEvent::Network(StoredNetEvent::Message(..)))
}

/// A portnet node on its own thread (a `for_each_async` task or a thread awaiting its
/// stream); stopped and joined on drop.
struct PortnetServer {
    handler: NodeHandler<()>,
    thread: Option<JoinHandle<()>>,
    _task: Option<node::NodeTask>,
}

impl Drop for PortnetServer {
    fn drop(&mut self) {
        self.handler.stop();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl PortnetServer {
    /// Runs `on_message` for every message, in `for_each_async`.
    fn callback(
        handler: NodeHandler<()>,
        listener: NodeListener<()>,
        mut on_message: impl FnMut(Endpoint, &[u8]) + Send + 'static,
    ) -> Self {
        let task = listener.for_each_async(move |event| {
            if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                on_message(endpoint, data);
            }
        });
        PortnetServer { handler, thread: None, _task: Some(task) }
    }

    /// Runs `on_message` for every message of the node's stream, on `exec` on a thread.
    fn stream(
        exec: Exec,
        handler: NodeHandler<()>,
        listener: NodeListener<()>,
        mut on_message: impl FnMut(Endpoint, Vec<u8>) + Send + 'static,
    ) -> Self {
        let mut stream = listener.into_stream().unwrap();
        let thread = spawn("async-server", move || {
            Runner::new(exec).run(async move {
                while let Some(event) = stream.next().await {
                    if let StoredNodeEvent::Network(StoredNetEvent::Message(endpoint, data)) = event
                    {
                        on_message(endpoint, data);
                    }
                }
            });
        });
        PortnetServer { handler, thread: Some(thread), _task: None }
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips.
// ---------------------------------------------------------------------------------------------

/// Both ends with the callback API: the server in `for_each_async`, the client pumped with
/// `poll_events` on the bench thread.
struct CallbackEcho {
    _server: PortnetServer,
    handler: NodeHandler<()>,
    listener: NodeListener<()>,
    endpoint: Endpoint,
    echoes: u64,
    watchdog: Watchdog,
}

impl CallbackEcho {
    fn new(kind: Kind) -> Self {
        let (server, listener) = node::split::<()>();
        let addr = listen(&server, kind);
        let network = server.clone();
        let server = PortnetServer::callback(server, listener, move |endpoint, data| {
            network.network().send(endpoint, data);
        });
        let (handler, mut listener) = node::split::<()>();
        let (endpoint, _) = handler.network().connect(kind.transport(), addr).unwrap();
        let mut connected = None;
        let deadline = Instant::now() + STALL;
        while connected.is_none() {
            assert!(Instant::now() < deadline, "could not connect to {addr}");
            listener.poll_events(Duration::from_millis(100), |event| {
                if let NodeEvent::Network(NetEvent::Connected(_, ok)) = event {
                    connected = Some(ok);
                }
            });
        }
        assert_eq!(connected, Some(true), "connect to {addr}");
        let watchdog = Watchdog::start("callback echo client");
        CallbackEcho { _server: server, handler, listener, endpoint, echoes: 0, watchdog }
    }
}

impl Pinger for CallbackEcho {
    fn round_trip(&mut self) {
        assert_eq!(self.handler.network().send(self.endpoint, &[0xFF]), SendStatus::Sent);
        let mut echoed = false;
        while !echoed {
            // Returns at the first event; the watchdog ends a run that waits for ever.
            self.listener.poll_events(STALL, |event| {
                if let NodeEvent::Network(NetEvent::Message(..)) = event {
                    echoed = true;
                }
            });
        }
        self.echoes += 1;
        self.watchdog.progress(self.echoes);
    }
}

/// Both ends with the async face: the server's stream on a thread, the client's on the bench
/// thread, on `exec`.
struct StreamEcho {
    _server: PortnetServer,
    runner: Runner,
    stream: NodeStream<()>,
    endpoint: Endpoint,
    echoes: u64,
    watchdog: Watchdog,
}

impl StreamEcho {
    fn new(kind: Kind, exec: Exec) -> Self {
        let (server, listener) = node::split::<()>();
        let addr = listen(&server, kind);
        let network = server.clone();
        let server = PortnetServer::stream(exec, server, listener, move |endpoint, data| {
            network.network().send(endpoint, &data);
        });
        let (handler, listener) = node::split::<()>();
        let mut stream = listener.into_stream().unwrap();
        let (endpoint, _) = handler.network().connect(kind.transport(), addr).unwrap();
        let runner = Runner::new(exec);
        runner.run(stream.connected(endpoint)).expect("connect");
        let watchdog = Watchdog::start("async echo client");
        StreamEcho { _server: server, runner, stream, endpoint, echoes: 0, watchdog }
    }
}

impl Pinger for StreamEcho {
    fn round_trip(&mut self) {
        let status = self.stream.handler().network().send(self.endpoint, &[0xFF]);
        assert_eq!(status, SendStatus::Sent);
        let stream = &mut self.stream;
        self.runner.run(async {
            loop {
                let event = stream.next().await.expect("the client stopped");
                if is_message(&event) {
                    return;
                }
            }
        });
        self.echoes += 1;
        self.watchdog.progress(self.echoes);
    }
}

/// The tokio peers: a tokio echo server on its own thread, a client on a current-thread
/// runtime on the bench thread.
#[path = "async/peers.rs"]
mod peers;

// ---------------------------------------------------------------------------------------------
// Throughput with portnet.
// ---------------------------------------------------------------------------------------------

/// The receiving node of a throughput case, in the member's style: it counts bytes, and says
/// when a round is in (streams: on `rounds`; `Udp`: in `done`, from datagrams of the round).
fn portnet_receiver(
    kind: Kind,
    plan: Plan,
    exec: Option<Exec>,
    mut round_in: impl FnMut() + Send + 'static,
    done: Arc<AtomicU64>,
) -> (PortnetServer, SocketAddr) {
    let round_bytes = round_bytes(plan, kind);
    let (handler, listener) = node::split::<()>();
    let addr = listen(&handler, kind);
    let (mut round, mut count) = (0u64, 0u64);
    let mut on_message = move |data: &[u8]| {
        if kind == Kind::Udp {
            if data.first() == Some(&(round as u8)) {
                count += data.len() as u64;
                if count >= round_bytes {
                    (round, count) = (round + 1, 0);
                    done.store(round, Ordering::Release);
                }
            }
        } else {
            count += data.len() as u64;
            if count >= round_bytes {
                count -= round_bytes;
                round_in();
            }
        }
    };
    let server = match exec {
        None => PortnetServer::callback(handler, listener, move |_, data| on_message(data)),
        Some(exec) => {
            PortnetServer::stream(exec, handler, listener, move |_, data| on_message(&data))
        }
    };
    (server, addr)
}

/// Sends a `Udp` datagram from the bench thread until the socket takes it.
fn send_datagram(handler: &NodeHandler<()>, endpoint: Endpoint, data: &[u8]) {
    let deadline = Instant::now() + STALL;
    loop {
        match handler.network().send(endpoint, data) {
            SendStatus::Sent => return,
            SendStatus::QueueFull => {
                assert!(Instant::now() < deadline, "socket never drained");
                std::hint::spin_loop();
            }
            status => panic!("send failed: {status:?}"),
        }
    }
}

/// Sends rounds until the `Udp` receiver has counted one of this round's datagrams' worth.
fn udp_round(
    handler: &NodeHandler<()>,
    endpoint: Endpoint,
    message: &mut [u8],
    round: u64,
    done: &AtomicU64,
) {
    message[0] = round as u8;
    let deadline = Instant::now() + STALL;
    while done.load(Ordering::Acquire) <= round {
        send_datagram(handler, endpoint, message);
        assert!(Instant::now() < deadline, "the receiver stopped counting");
    }
}

/// The callback API's sender: a node in `for_each_async` sent to from the bench thread, which
/// waits for `signal_when_writable`'s signal on `QueueFull`.
struct CallbackSink {
    handler: NodeHandler<()>,
    endpoint: Endpoint,
    writable: mpsc::Receiver<()>,
    _sender: node::NodeTask,
    _receiver: PortnetServer,
    rounds: mpsc::Receiver<()>,
    done: Arc<AtomicU64>,
    kind: Kind,
    message: Vec<u8>,
    messages: usize,
}

impl CallbackSink {
    fn new(kind: Kind, plan: Plan) -> Self {
        let (rounds_tx, rounds) = mpsc::channel();
        let done = Arc::new(AtomicU64::new(0));
        let round_in = move || {
            let _ = rounds_tx.send(());
        };
        let (receiver, addr) = portnet_receiver(kind, plan, None, round_in, done.clone());
        let (handler, listener) = node::split::<()>();
        let (connected_tx, connected) = mpsc::channel();
        let (writable_tx, writable) = mpsc::channel();
        let task = listener.for_each_async(move |event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                let _ = connected_tx.send(ok);
            }
            NodeEvent::Signal(()) => {
                let _ = writable_tx.send(());
            }
            NodeEvent::Network(_) => (),
        });
        let (endpoint, _) = handler.network().connect(kind.transport(), addr).unwrap();
        assert_eq!(connected.recv_timeout(STALL), Ok(true), "connect to {addr}");
        CallbackSink {
            handler,
            endpoint,
            writable,
            _sender: task,
            _receiver: receiver,
            rounds,
            done,
            kind,
            message: payload(kind.message_size()),
            messages: plan.round_messages,
        }
    }
}

impl Drop for CallbackSink {
    /// The sending node's task is joined when dropped: stop it first.
    fn drop(&mut self) {
        self.handler.stop();
    }
}

impl Blaster for CallbackSink {
    fn round(&mut self, round: u64) {
        if self.kind == Kind::Udp {
            return udp_round(&self.handler, self.endpoint, &mut self.message, round, &self.done);
        }
        for _ in 0..self.messages {
            loop {
                match self.handler.network().send(self.endpoint, &self.message) {
                    SendStatus::Sent => break,
                    SendStatus::QueueFull => {
                        self.handler.signal_when_writable(self.endpoint, ());
                        self.writable.recv_timeout(STALL).expect("queue never drained");
                    }
                    status => panic!("send failed: {status:?}"),
                }
            }
        }
        self.rounds.recv_timeout(STALL).expect("the receiver stopped counting");
    }
}

/// The async face's sender: a `NodeStream` on the bench thread that sends, awaits
/// `writable` on `QueueFull` while it keeps its stream polled (the stream drives the node),
/// then awaits the receiver's word with the stream still polled so that the queue drains.
struct StreamSink {
    runner: Runner,
    stream: NodeStream<()>,
    endpoint: Endpoint,
    _receiver: PortnetServer,
    rounds: futures::channel::mpsc::UnboundedReceiver<()>,
    done: Arc<AtomicU64>,
    kind: Kind,
    message: Vec<u8>,
    messages: usize,
}

impl StreamSink {
    fn new(kind: Kind, plan: Plan, exec: Exec) -> Self {
        let (rounds_tx, rounds) = futures::channel::mpsc::unbounded();
        let done = Arc::new(AtomicU64::new(0));
        let round_in = move || {
            let _ = rounds_tx.unbounded_send(());
        };
        let (receiver, addr) = portnet_receiver(kind, plan, Some(exec), round_in, done.clone());
        let (handler, listener) = node::split::<()>();
        let mut stream = listener.into_stream().unwrap();
        let (endpoint, _) = handler.network().connect(kind.transport(), addr).unwrap();
        let runner = Runner::new(exec);
        runner.run(stream.connected(endpoint)).expect("connect");
        StreamSink {
            runner,
            stream,
            endpoint,
            _receiver: receiver,
            rounds,
            done,
            kind,
            message: payload(kind.message_size()),
            messages: plan.round_messages,
        }
    }
}

impl Blaster for StreamSink {
    fn round(&mut self, round: u64) {
        if self.kind == Kind::Udp {
            let handler = self.stream.handler().clone();
            let (message, done, endpoint) = (&mut self.message, &self.done, self.endpoint);
            return self.runner.run(async { udp_round(&handler, endpoint, message, round, done) });
        }
        let (stream, rounds) = (&mut self.stream, &mut self.rounds);
        let (message, messages, endpoint) = (&self.message, self.messages, self.endpoint);
        self.runner.run(async move {
            let handler = stream.handler().clone();
            for _ in 0..messages {
                loop {
                    match handler.network().send(endpoint, message) {
                        SendStatus::Sent => break,
                        SendStatus::QueueFull => {
                            let mut writable = handler.writable(endpoint);
                            loop {
                                match select(&mut writable, stream.next()).await {
                                    Either::Left(_) => break,
                                    Either::Right((event, _)) => {
                                        event.expect("the sender stopped");
                                    }
                                }
                            }
                        }
                        status => panic!("send failed: {status:?}"),
                    }
                }
            }
            loop {
                match select(rounds.next(), stream.next()).await {
                    Either::Left((round, _)) => return round.expect("the receiver is gone"),
                    Either::Right((event, _)) => {
                        event.expect("the sender stopped");
                    }
                }
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.
// ---------------------------------------------------------------------------------------------

const MEMBERS: [&str; 4] = ["callback", "async-block_on", "async-tokio", "tokio"];

fn echo(member: &str, kind: Kind) -> Box<dyn Pinger> {
    match member {
        "callback" => Box::new(CallbackEcho::new(kind)),
        "async-block_on" => Box::new(StreamEcho::new(kind, Exec::BlockOn)),
        "async-tokio" => Box::new(StreamEcho::new(kind, Exec::Tokio)),
        "tokio" => Box::new(peers::Echo::new(kind)),
        _ => panic!("no member {member}; one of {MEMBERS:?}"),
    }
}

fn sink(member: &str, kind: Kind, plan: Plan) -> Box<dyn Blaster> {
    match member {
        "callback" => Box::new(CallbackSink::new(kind, plan)),
        "async-block_on" => Box::new(StreamSink::new(kind, plan, Exec::BlockOn)),
        "async-tokio" => Box::new(StreamSink::new(kind, plan, Exec::Tokio)),
        "tokio" => Box::new(peers::Sink::new(kind, plan)),
        _ => panic!("no member {member}; one of {MEMBERS:?}"),
    }
}

fn latency(c: &mut Criterion) {
    let plan = Plan::from_env();
    for kind in Kind::ALL {
        let mut group = c.benchmark_group(format!("async-latency/{}", kind.name()));
        plan.configure(&mut group, false);
        for name in MEMBERS {
            let measure =
                |pinger: &mut (dyn Pinger + 'static), iters| measure_latency(pinger, iters);
            member(&mut group, name, || echo(name, kind), measure);
        }
        group.finish();
    }
}

fn throughput(c: &mut Criterion) {
    let plan = Plan::from_env();
    for kind in Kind::ALL {
        let mut group = c.benchmark_group(format!("async-throughput/{}", kind.name()));
        plan.configure(&mut group, true);
        group.throughput(Throughput::Bytes(round_bytes(plan, kind)));
        for name in MEMBERS {
            // Rounds are numbered across samples so `Udp` receivers can drop late datagrams.
            let next_round = std::cell::Cell::new(0);
            member(
                &mut group,
                name,
                || sink(name, kind, plan),
                |blaster, iters| {
                    let mut round = next_round.get();
                    let elapsed = measure_rounds(blaster, &mut round, iters);
                    next_round.set(round);
                    elapsed
                },
            );
        }
        group.finish();
    }
}

/// `PORTNET_ASYNC_COUNT=N` (and `PORTNET_ASYNC_MEMBER`, `callback` by default): N `FramedTcp`
/// round trips of one member and nothing else, so that callgrind's count of a run with N
/// round trips minus one with fewer gives the instructions of a round trip.
fn counted_run() -> bool {
    let Some(count) = std::env::var("PORTNET_ASYNC_COUNT").ok().and_then(|n| n.parse().ok()) else {
        return false;
    };
    let name = std::env::var("PORTNET_ASYNC_MEMBER").unwrap_or_else(|_| "callback".into());
    let mut pinger = echo(&name, Kind::FramedTcp);
    let elapsed = measure_latency(&mut *pinger, count);
    println!("{name}: {count} FramedTcp round trips in {elapsed:?}");
    true
}

criterion::criterion_group!(benches, latency, throughput);

fn main() {
    if !counted_run() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
