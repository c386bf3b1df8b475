//! The workloads of issue 6's measurement side, each written for raw blocking std sockets,
//! for portnet and for message-io 0.19, on loopback (`127.0.0.1`, port 0):
//!
//! - [`one_way`]: messages of a given size sent one way from the caller's thread to a
//!   receiver on its own thread. The receiver acknowledges through an in-process channel (no
//!   acknowledgement crosses the network), and the sender keeps at most a window of messages
//!   in flight. The criterion bench `small/<transport>` and the callgrind subject (`cpu`) run it.
//! - [`fan_in`]: many raw std clients, each sending a burst to one server (a portnet or
//!   message-io node, or a raw thread per connection). Criterion group `fanin/<transport>`.
//! - [`scale_server`] / [`scale_client`]: the two processes of the connection-scale case.
//! - [`round_trip::round_trip`]: one message to an echo server and back at a time, raw or
//!   portnet: the subject of the per-function instruction breakdown (`rtt`).
//!
//! The raw and library versions share the flow control ([`Counter`], [`Flow`]), so every
//! member of a comparison does the same work around the code under test.

pub mod round_trip;

use std::io::{self, BufRead, BufReader, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Anything that waits longer than this is a bug (a lost message, a dead peer).
pub const STALL: Duration = Duration::from_secs(20);

const LOCALHOST: &str = "127.0.0.1:0";

/// The four transports, independent of which library names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Tcp,
    FramedTcp,
    Udp,
    Ws,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Tcp, Kind::FramedTcp, Kind::Udp, Kind::Ws];
    /// The connection-oriented transports (fan-in, connection scale).
    pub const CONNECTED: [Kind; 3] = [Kind::Tcp, Kind::FramedTcp, Kind::Ws];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "Tcp",
            Kind::FramedTcp => "FramedTcp",
            Kind::Udp => "Udp",
            Kind::Ws => "Ws",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name().eq_ignore_ascii_case(name))
    }

    /// (window, acknowledgement step), in messages. `Udp` has no flow control of its own: a
    /// small window keeps the receiver's socket buffer (208 KiB by default, about 270 small
    /// datagrams) from overflowing, so nothing is lost and nothing is counted twice.
    fn flow(self) -> (u64, u64) {
        match self {
            Kind::Udp => (32, 16),
            _ => (1024, 128),
        }
    }

    /// The acknowledgement step of [`one_way`], in messages: runs are rounded up to it.
    pub fn ack_step(self) -> u64 {
        self.flow().1
    }
}

/// The three members of every comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lib {
    Raw,
    Portnet,
    MessageIo,
}

impl Lib {
    pub const ALL: [Lib; 3] = [Lib::Raw, Lib::Portnet, Lib::MessageIo];

    pub fn name(self) -> &'static str {
        match self {
            Lib::Raw => "raw",
            Lib::Portnet => "portnet",
            Lib::MessageIo => "message-io",
        }
    }

    pub fn parse(name: &str) -> Option<Lib> {
        Lib::ALL.into_iter().find(|lib| lib.name() == name)
    }
}

/// Bytes `0, 1, 2, …` modulo 251: not all zeros, so nothing is special-cased.
pub fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// Flow control shared by every member.
// ---------------------------------------------------------------------------------------------

/// The receiving side's count: payload bytes, turned into cumulative acknowledgements (in
/// messages, a multiple of the step) sent through an in-process channel. Shared by the
/// threads of a raw thread-per-connection server, hence atomic.
pub struct Counter {
    bytes: AtomicU64,
    ack_bytes: u64,
    ack_messages: u64,
    acks: mpsc::Sender<u64>,
}

impl Counter {
    fn new(message_size: usize, ack_messages: u64) -> (Arc<Counter>, mpsc::Receiver<u64>) {
        let (acks, receiver) = mpsc::channel();
        let ack_bytes = message_size as u64 * ack_messages;
        let counter = Counter { bytes: AtomicU64::new(0), ack_bytes, ack_messages, acks };
        (Arc::new(counter), receiver)
    }

    /// Counts `n` received payload bytes.
    pub fn add(&self, n: usize) {
        let n = n as u64;
        let before = self.bytes.fetch_add(n, Ordering::Relaxed);
        let steps = (before + n) / self.ack_bytes;
        if steps > before / self.ack_bytes {
            let _ = self.acks.send(steps * self.ack_messages);
        }
    }
}

/// The sending side's count: how many messages are in flight, and waiting for room.
pub struct Flow {
    sent: u64,
    acked: u64,
    window: u64,
    acks: mpsc::Receiver<u64>,
}

impl Flow {
    fn new(window: u64, acks: mpsc::Receiver<u64>) -> Flow {
        Flow { sent: 0, acked: 0, window, acks }
    }

    /// Waits until one more message fits in the window, and counts it as sent.
    fn one_more(&mut self) {
        while self.sent - self.acked >= self.window {
            self.wait();
        }
        self.sent += 1;
    }

    /// Counts `n` messages sent without looking at the window.
    fn sent(&mut self, n: u64) {
        self.sent += n;
    }

    /// Waits until everything sent has been acknowledged.
    fn finish(&mut self) {
        while self.acked < self.sent {
            self.wait();
        }
    }

    fn wait(&mut self) {
        let ack = self.acks.recv_timeout(STALL).expect("the receiver stopped counting");
        self.acked = self.acked.max(ack);
        while let Ok(ack) = self.acks.try_recv() {
            self.acked = self.acked.max(ack);
        }
    }
}

/// Messages sent one way.
pub trait OneWay {
    /// Sends `messages` (rounded up to [`Kind::ack_step`]) and returns once all are received.
    fn run(&mut self, messages: u64);
}

/// One way, `size`-byte messages, `lib` at both ends.
pub fn one_way(lib: Lib, kind: Kind, size: usize) -> Box<dyn OneWay> {
    match lib {
        Lib::Raw => Box::new(raw::OneWaySink::new(kind, size)),
        Lib::Portnet => with_portnet::one_way(kind, size),
        Lib::MessageIo => with_message_io::one_way(kind, size),
    }
}

/// Why a member cannot run a workload, if it cannot.
///
/// message-io 0.19's `Ws` receive loop stops when a zero-length `peek` on the socket finds
/// nothing, even though tungstenite has already read more whole frames into its buffer: those
/// frames wait until more bytes arrive. Under a sender that waits for the receiver (every
/// small-message and fan-in case here) nothing more arrives, and the run stalls for good.
pub fn stall_reason(lib: Lib, kind: Kind) -> Option<&'static str> {
    (lib == Lib::MessageIo && kind == Kind::Ws).then_some(
        "stalls: message-io's Ws receive loop leaves frames already read into tungstenite's \
         buffer undelivered until more bytes arrive",
    )
}

/// Raw clients bursting at one server.
pub trait FanIn {
    /// Every client sends its burst; returns once the server has received them all.
    fn burst(&mut self);
}

/// `clients` raw std clients, each sending `burst` messages of `size` bytes per round, to one
/// server made with `lib` (for raw: a thread per connection). Connected transports only.
pub fn fan_in(lib: Lib, kind: Kind, clients: usize, burst: u64, size: usize) -> Box<dyn FanIn> {
    assert!(kind != Kind::Udp, "fan-in is measured on connected transports");
    let round = clients as u64 * burst;
    let (counter, acks) = Counter::new(size, round);
    let (server, addr): (Box<dyn Send>, SocketAddr) = match lib {
        Lib::Raw => {
            let (server, addr) = raw::ThreadPerConnection::start(kind, Handling::Count(counter));
            (Box::new(server), addr)
        }
        Lib::Portnet => with_portnet::counting_server(kind, counter),
        Lib::MessageIo => with_message_io::counting_server(kind, counter),
    };
    let clients = (0..clients).map(|_| raw::Client::connect(kind, addr)).collect();
    Box::new(raw::Bursts {
        clients,
        message: payload(size),
        burst,
        flow: Flow::new(round, acks),
        _server: server,
    })
}

/// What a raw thread-per-connection server does with what it receives.
#[derive(Clone)]
enum Handling {
    /// Counts payload bytes.
    Count(Arc<Counter>),
    /// Echoes each message and reports progress on stdout (the connection-scale server).
    Echo(Arc<ScaleProgress>),
}

// ---------------------------------------------------------------------------------------------
// Connection scale: the server and the client are separate processes (each holds one end of
// every connection, and the open-file limit of 20 000 does not fit both), spoken to over
// stdin/stdout by the report.
// ---------------------------------------------------------------------------------------------

/// The server's progress lines: `accepted N` once `N` connections have been accepted,
/// `disconnected N` once all of them are gone.
pub struct ScaleProgress {
    target: u64,
    accepted: AtomicU64,
    disconnected: AtomicU64,
}

impl ScaleProgress {
    fn new(target: u64) -> Arc<ScaleProgress> {
        Arc::new(ScaleProgress {
            target,
            accepted: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
        })
    }

    fn accepted(&self) {
        if self.accepted.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            println!("accepted {}", self.target);
        }
    }

    fn disconnected(&self) {
        if self.disconnected.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            println!("disconnected {}", self.target);
        }
    }
}

/// The connection-scale server: echoes every message, prints `listening <addr>`, then
/// `accepted N` and `disconnected N` as the client gets there; exits when stdin closes.
pub fn scale_server(lib: Lib, kind: Kind, connections: u64) {
    let progress = ScaleProgress::new(connections);
    match lib {
        Lib::Raw => {
            let (server, addr) = raw::ThreadPerConnection::start(kind, Handling::Echo(progress));
            println!("listening {addr}");
            wait_for_stdin_eof();
            drop(server);
        }
        Lib::Portnet => with_portnet::scale_server(kind, progress),
        Lib::MessageIo => with_message_io::scale_server(kind, progress),
    }
}

fn wait_for_stdin_eof() {
    let mut sink = Vec::new();
    let _ = io::stdin().lock().read_to_end(&mut sink);
}

/// The connection-scale client (raw std sockets, the same for every server): opens
/// `connections` connections to `addr` one after the other (for `Ws`, each with its
/// handshake) and prints `connected <seconds> <connects that took 0.5 s or more> <longest
/// connect, seconds>`; on the stdin line `echo`, sends one
/// `size`-byte message on each, reads every echo and prints `echoed <seconds>`; on `close`,
/// closes them all and prints `closed <seconds>`. An error prints `error <what>` and exits.
pub fn scale_client(kind: Kind, addr: SocketAddr, connections: u64, size: usize) {
    let fail = |what: String| -> ! {
        println!("error {what}");
        std::process::exit(1)
    };
    let start = Instant::now();
    let mut clients = Vec::with_capacity(connections as usize);
    // Connects that wait a second or more: SYN retransmissions, the server's accept queue
    // (its listen backlog, capped by `somaxconn`) being full.
    let (mut slow, mut slowest) = (0u64, Duration::ZERO);
    for i in 0..connections {
        let started = Instant::now();
        match raw::Client::try_connect(kind, addr) {
            Ok(client) => clients.push(client),
            Err(e) => fail(format!("connection {i} of {connections}: {e}")),
        }
        let took = started.elapsed();
        slow += u64::from(took >= Duration::from_millis(500));
        slowest = slowest.max(took);
    }
    let secs = start.elapsed().as_secs_f64();
    println!("connected {secs:.6} {slow} {:.3}", slowest.as_secs_f64());
    let mut lines = io::stdin().lock().lines();
    let message = payload(size);
    let mut buf = vec![0; size];
    while let Some(Ok(line)) = lines.next() {
        match line.trim() {
            "echo" => {
                let start = Instant::now();
                for (i, client) in clients.iter_mut().enumerate() {
                    if let Err(e) = client.send(&message) {
                        fail(format!("send on connection {i}: {e}"));
                    }
                }
                for (i, client) in clients.iter_mut().enumerate() {
                    if let Err(e) = client.receive_exact(&mut buf) {
                        fail(format!("echo on connection {i}: {e}"));
                    }
                }
                println!("echoed {:.6}", start.elapsed().as_secs_f64());
            }
            "close" => {
                let start = Instant::now();
                clients.clear();
                println!("closed {:.6}", start.elapsed().as_secs_f64());
                return;
            }
            other => fail(format!("unknown command {other:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// portnet and message-io: the same code for both, since portnet keeps message-io's API.
// ---------------------------------------------------------------------------------------------

fn portnet_queue_full(status: &portnet::network::SendStatus) -> bool {
    matches!(status, portnet::network::SendStatus::QueueFull)
}

/// message-io has no queue: its `send` spins until the socket takes everything.
fn message_io_queue_full(_: &message_io::network::SendStatus) -> bool {
    false
}

macro_rules! library {
    ($module:ident, $krate:ident, $queue_full:path) => {
        mod $module {
            use super::*;
            use $krate::network::{Endpoint, NetEvent, SendStatus, Transport};
            use $krate::node::{self, NodeEvent, NodeHandler, NodeTask};

            fn transport(kind: Kind) -> Transport {
                match kind {
                    Kind::Tcp => Transport::Tcp,
                    Kind::FramedTcp => Transport::FramedTcp,
                    Kind::Udp => Transport::Udp,
                    Kind::Ws => Transport::Ws,
                }
            }

            /// A node on its own thread; stopped and joined on drop.
            pub struct Node {
                handler: NodeHandler<()>,
                _task: NodeTask,
            }

            impl Drop for Node {
                fn drop(&mut self) {
                    self.handler.stop();
                }
            }

            /// A listening node that counts the payload bytes it receives.
            pub fn counting_server(
                kind: Kind,
                counter: Arc<Counter>,
            ) -> (Box<dyn Send>, SocketAddr) {
                let (node, addr) = receiver(kind, counter);
                (Box::new(node), addr)
            }

            fn receiver(kind: Kind, counter: Arc<Counter>) -> (Node, SocketAddr) {
                let (handler, listener) = node::split::<()>();
                let (_, addr) = handler.network().listen(transport(kind), LOCALHOST).unwrap();
                let task = listener.for_each_async(move |event| {
                    if let NodeEvent::Network(NetEvent::Message(_, data)) = event {
                        counter.add(data.len());
                    }
                });
                (Node { handler, _task: task }, addr)
            }

            /// The sending side: a node on its own thread (it connects, and flushes what
            /// portnet queued) sent to from the caller's thread.
            struct Sender {
                node: Node,
                endpoint: Endpoint,
            }

            impl Sender {
                fn connect(kind: Kind, addr: SocketAddr) -> Self {
                    let (handler, listener) = node::split::<()>();
                    let (connected_tx, connected) = mpsc::channel();
                    let task = listener.for_each_async(move |event| {
                        if let NodeEvent::Network(NetEvent::Connected(_, ok)) = event {
                            let _ = connected_tx.send(ok);
                        }
                    });
                    let (endpoint, _) = handler.network().connect(transport(kind), addr).unwrap();
                    assert_eq!(connected.recv_timeout(STALL), Ok(true), "connect to {addr}");
                    Sender { node: Node { handler, _task: task }, endpoint }
                }

                fn send(&self, data: &[u8]) {
                    // Read the clock only when waiting: callgrind counts every instruction
                    // here as the library's.
                    let mut deadline = None;
                    loop {
                        match self.node.handler.network().send(self.endpoint, data) {
                            SendStatus::Sent => return,
                            // Not reached with these windows (64 KiB at most in flight).
                            status if $queue_full(&status) => {
                                let deadline =
                                    *deadline.get_or_insert_with(|| Instant::now() + STALL);
                                assert!(Instant::now() < deadline, "send queue never drained");
                                std::thread::sleep(Duration::from_micros(50));
                            }
                            status => panic!("send failed: {status:?}"),
                        }
                    }
                }
            }

            struct OneWaySink {
                // Field order: the sender goes first, then the receiving node.
                sender: Sender,
                _receiver: Node,
                message: Vec<u8>,
                flow: Flow,
                step: u64,
            }

            pub fn one_way(kind: Kind, size: usize) -> Box<dyn OneWay> {
                let (window, step) = kind.flow();
                let (counter, acks) = Counter::new(size, step);
                let (receiver, addr) = receiver(kind, counter);
                Box::new(OneWaySink {
                    sender: Sender::connect(kind, addr),
                    _receiver: receiver,
                    message: payload(size),
                    flow: Flow::new(window, acks),
                    step,
                })
            }

            impl OneWay for OneWaySink {
                fn run(&mut self, messages: u64) {
                    for _ in 0..messages.div_ceil(self.step) * self.step {
                        self.flow.one_more();
                        self.sender.send(&self.message);
                    }
                    self.flow.finish();
                }
            }

            /// The connection-scale echo server, on this thread until stdin closes.
            pub fn scale_server(kind: Kind, progress: Arc<ScaleProgress>) {
                let (handler, listener) = node::split::<()>();
                let (_, addr) = handler.network().listen(transport(kind), LOCALHOST).unwrap();
                println!("listening {addr}");
                let stopper = handler.clone();
                std::thread::spawn(move || {
                    wait_for_stdin_eof();
                    stopper.stop();
                });
                listener.for_each(move |event| match event {
                    NodeEvent::Network(NetEvent::Accepted(..)) => progress.accepted(),
                    NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
                        handler.network().send(endpoint, data);
                    }
                    NodeEvent::Network(NetEvent::Disconnected(_)) => progress.disconnected(),
                    _ => (),
                });
            }
        }
    };
}

library!(with_portnet, portnet, portnet_queue_full);
library!(with_message_io, message_io, message_io_queue_full);

// Raw blocking std sockets: what a careful std-only user writes.
mod raw;
