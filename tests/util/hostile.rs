//! The hostile peers' tests (tests/hostile_peers.rs, tests/hostile_ws.rs): the echo server
//! node they attack (Ws, FramedTcp, Tcp and Udp listeners), the well-behaved client that must
//! keep getting its echoes meanwhile, the captured logs (a small `log::Log`) and the process
//! measurements (resident set from `/proc/self/statm`: the tests of a file run one at a time).

use portnet::adapters::framed_tcp::FramedTcpListenConfig;
use portnet::adapters::tcp::TcpListenConfig;
use portnet::adapters::ws::WsListenConfig;
use portnet::network::{Endpoint, NetEvent, SendStatus, Transport, TransportListen};
use portnet::node::{self, NodeEvent, NodeHandler, NodeTask};
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

/// The server's FramedTcp frame limit.
pub const MAX_FRAME: usize = 64 * 1024;
/// The server's Ws message and frame limit.
pub const MAX_WS_MESSAGE: usize = 1 << 20;
/// Every server connection's send queue limit.
pub const QUEUE_LIMIT: usize = 1 << 20;
/// How long to wait for anything the server should do. Longer than the server's WebSocket
/// handshake timeout (`DEFAULT_CONNECT_TIMEOUT`, 10 s), which ends slowloris connections.
pub const WAIT: Duration = Duration::from_secs(25);
/// A message asking the server to send to this connection until its queue is full.
pub const FLOOD: &[u8] = b"FLOOD";
/// The request path portnet serves (any path is accepted).
pub const PATH: &str = "/message-io-default";

// ---------------------------------------------------------------------------------------------
// Captured logs

pub static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Keeps portnet's log lines (debug and above) for the tests to check reasons in.
pub struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("portnet") && metadata.level() <= log::Level::Debug
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let mut lines = lock(&LINES);
            if lines.len() < 200_000 {
                lines.push(format!("{} {}", record.level(), record.args()));
            }
        }
    }

    fn flush(&self) {}
}

pub static CAPTURE: Capture = Capture;

pub fn capture_logs() {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

/// The captured lines that mention `addr` (followed by a space or a colon, so that port 4000
/// does not match 40001).
pub fn logged(addr: SocketAddr) -> Vec<String> {
    let (spaced, coloned) = (format!("{addr} "), format!("{addr}:"));
    lock(&LINES).iter().filter(|l| l.contains(&spaced) || l.contains(&coloned)).cloned().collect()
}

/// The one line saying why the connection from `addr` ended, with `needle` in it.
pub fn reason(addr: SocketAddr, needle: &str) -> String {
    let lines = logged(addr);
    lines.iter().find(|l| l.contains(needle)).cloned().unwrap_or_else(|| {
        let all = lock(&LINES);
        let last = &all[all.len().saturating_sub(8)..];
        panic!("no log line with {needle:?} for {addr}: {lines:#?}; last lines: {last:#?}")
    })
}

// ---------------------------------------------------------------------------------------------
// Process measurements

/// The tests measure the process as a whole: one at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    lock(&SERIAL)
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resident memory of this process, in bytes.
pub fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

// ---------------------------------------------------------------------------------------------
// The server

/// What the server node reported, in order.
#[derive(Clone, Debug)]
pub enum Seen {
    Accepted(Endpoint),
    Disconnected(Endpoint),
    Message(Endpoint),
    /// Answer to [`FLOOD`]: bytes `send` accepted, and the status that stopped it.
    Flooded(Endpoint, usize, SendStatus),
}

#[derive(Default)]
pub struct Stats {
    pub udp_datagrams: AtomicUsize,
    pub udp_sources: Mutex<HashSet<SocketAddr>>,
    /// Echoes `send` did not accept (a Udp socket buffer full, a closing connection).
    pub echo_refused: AtomicUsize,
}

/// An echo server node with a listener per transport.
pub struct Server {
    pub handler: NodeHandler<()>,
    pub task: Option<NodeTask>,
    pub seen: mpsc::Receiver<Seen>,
    pub history: Vec<Seen>,
    pub stats: Arc<Stats>,
    pub ws: SocketAddr,
    pub framed: SocketAddr,
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
}

impl Server {
    pub fn start() -> Server {
        capture_logs();
        // One test at a time: its lines only (ports come back from test to test).
        lock(&LINES).clear();
        let (handler, listener) = node::split::<()>();
        let net = handler.network();
        let local = "127.0.0.1:0";
        let ws = WsListenConfig::default()
            .with_max_message_size(MAX_WS_MESSAGE)
            .with_max_frame_size(MAX_WS_MESSAGE)
            .with_send_queue_limit(QUEUE_LIMIT);
        let (_, ws) = net.listen_with(TransportListen::WsWith(ws), local).unwrap();
        let framed = FramedTcpListenConfig::default()
            .with_max_frame_size(MAX_FRAME)
            .with_send_queue_limit(QUEUE_LIMIT);
        let (_, framed) = net.listen_with(TransportListen::FramedTcp(framed), local).unwrap();
        let tcp = TcpListenConfig::default().with_send_queue_limit(QUEUE_LIMIT);
        let (_, tcp) = net.listen_with(TransportListen::Tcp(tcp), local).unwrap();
        let (udp_id, udp) = net.listen(Transport::Udp, local).unwrap();
        let (tx, seen) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let (echo, counts) = (handler.clone(), stats.clone());
        let task = listener.for_each_async(move |event| {
            let NodeEvent::Network(event) = event else { return };
            let _ = match event {
                NetEvent::Accepted(ep, _) => tx.send(Seen::Accepted(ep)),
                NetEvent::Disconnected(ep) => tx.send(Seen::Disconnected(ep)),
                NetEvent::Connected(..) => Ok(()),
                NetEvent::Message(ep, data) if ep.resource_id() == udp_id => {
                    counts.udp_datagrams.fetch_add(1, Ordering::Relaxed);
                    let mut sources = lock(&counts.udp_sources);
                    if sources.len() < 10_000 {
                        sources.insert(ep.addr());
                    }
                    if echo.network().send(ep, data) != SendStatus::Sent {
                        counts.echo_refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
                NetEvent::Message(ep, data) if data == FLOOD => {
                    let chunk = vec![0x5a; 32 * 1024];
                    let (mut sent, mut status) = (0, SendStatus::Sent);
                    for _ in 0..10_000 {
                        status = echo.network().send(ep, &chunk);
                        if status != SendStatus::Sent {
                            break;
                        }
                        sent += chunk.len();
                    }
                    tx.send(Seen::Flooded(ep, sent, status))
                }
                NetEvent::Message(ep, data) => {
                    if echo.network().send(ep, data) != SendStatus::Sent {
                        counts.echo_refused.fetch_add(1, Ordering::Relaxed);
                    }
                    tx.send(Seen::Message(ep))
                }
            };
        });
        Server { handler, task: Some(task), seen, history: Vec::new(), stats, ws, framed, tcp, udp }
    }

    /// Takes the first event that `matches` out of what the server reported, waiting (at most
    /// [`WAIT`]) for it. Events are matched by endpoint where one is known: a port may come back
    /// for a later connection.
    pub fn take(&mut self, what: &str, matches: impl Fn(&Seen) -> bool) -> Seen {
        self.collect();
        if let Some(at) = self.history.iter().position(&matches) {
            return self.history.remove(at);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(seen) if matches(&seen) => return seen,
                Ok(seen) => self.history.push(seen),
                Err(_) => panic!("the server did not report {what} within {WAIT:?}"),
            }
        }
    }

    /// The connection from `addr`, once the server accepted it.
    pub fn accepted(&mut self, addr: SocketAddr) -> Endpoint {
        let what = format!("Accepted from {addr}");
        match self.take(&what, |s| matches!(s, Seen::Accepted(e) if e.addr() == addr)) {
            Seen::Accepted(endpoint) => endpoint,
            _ => unreachable!(),
        }
    }

    pub fn disconnected(&mut self, endpoint: Endpoint) {
        let what = format!("Disconnected of {endpoint}");
        self.take(&what, |s| matches!(s, Seen::Disconnected(e) if *e == endpoint));
    }

    /// The server's answer to the next [`FLOOD`] from `endpoint`.
    pub fn flooded(&mut self, endpoint: Endpoint) -> (usize, SendStatus) {
        let what = format!("the flood of {endpoint}");
        match self.take(&what, |s| matches!(s, Seen::Flooded(e, ..) if *e == endpoint)) {
            Seen::Flooded(_, sent, status) => (sent, status),
            _ => unreachable!(),
        }
    }

    /// Drains what the server reported so far into the history.
    pub fn collect(&mut self) {
        while let Ok(seen) = self.seen.try_recv() {
            self.history.push(seen);
        }
    }

    /// Whether the server accepted a connection from `addr` that the test has not taken with
    /// [`Server::accepted`] (attackers whose handshake never completed must not be reported;
    /// earlier connections from the same port were taken).
    pub fn reported(&mut self, addr: SocketAddr) -> bool {
        self.ws_accepted_from(addr) > 0
    }

    /// How many `Ws` connections from `addr` the server accepted: more than one when the kernel
    /// gave a closed connection's port to a new one. Only `Ws` ones: Linux also gives a port in
    /// use to a connection towards another destination (the good client's `FramedTcp`
    /// connection may share an attacker's port).
    pub fn ws_accepted_from(&mut self, addr: SocketAddr) -> usize {
        self.collect();
        let from = |e: &Endpoint| e.addr() == addr && e.transport() == Transport::Ws;
        self.history.iter().filter(|s| matches!(s, Seen::Accepted(e) if from(e))).count()
    }

    pub fn messages_from(&mut self, endpoint: Endpoint) -> usize {
        self.collect();
        self.history.iter().filter(|s| matches!(s, Seen::Message(e) if *e == endpoint)).count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handler.stop();
        if let Some(mut task) = self.task.take() {
            task.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire helpers

/// A FramedTcp frame: LEB128 length, then the payload.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let mut out = leb128(data.len() as u64);
    out.extend_from_slice(data);
    out
}

pub fn leb128(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

pub fn read_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let (mut len, mut shift) = (0u64, 0);
    loop {
        let mut byte = [0];
        stream.read_exact(&mut byte)?;
        len |= u64::from(byte[0] & 0x7f) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 {
            break;
        }
        assert!(shift < 64, "a bad length prefix from the server");
    }
    let mut data = vec![0; len as usize];
    stream.read_exact(&mut data)?;
    Ok(data)
}

/// A client WebSocket frame: `first` is the FIN/RSV/opcode byte; masked with a fixed key.
pub fn ws_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

pub fn ws_request(addr: SocketAddr) -> String {
    format!(
        "GET {PATH} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A raw socket through a valid WebSocket handshake.
pub fn raw_ws(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr);
    stream.write_all(ws_request(addr).as_bytes()).unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        stream.read_exact(&mut byte).expect("the handshake response");
        response.push(byte[0]);
        assert!(response.len() < 4096, "an endless handshake response");
    }
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 101"), "handshake refused: {response}");
    stream
}

/// Reads until the server closes the connection (end of stream or reset). Returns the bytes
/// the server sent before; panics if it is still open after [`WAIT`].
pub fn wait_closed(stream: &mut TcpStream, what: &str) -> usize {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (mut total, mut buf) = (0, [0; 4096]);
    for _ in 0..100_000 {
        match stream.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return total,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => (),
            Err(e) => panic!("{what}: the server kept the connection open ({e})"),
        }
    }
    panic!("{what}: the server keeps sending");
}

/// Resets the connection (SO_LINGER 0: the close sends RST).
pub fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

// ---------------------------------------------------------------------------------------------
// The well-behaved client

/// Blocking FramedTcp, Ws and Udp clients that check every echo.
pub struct Good {
    pub framed: TcpStream,
    pub ws: tungstenite::WebSocket<TcpStream>,
    pub udp: UdpSocket,
    pub rounds: usize,
}

impl Good {
    pub fn connect(server: &Server) -> Good {
        let framed = connect(server.framed);
        let (ws, _) = tungstenite::client(format!("ws://{}{PATH}", server.ws), connect(server.ws))
            .expect("a well-behaved Ws client is refused");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.connect(server.udp).unwrap();
        Good { framed, ws, udp, rounds: 0 }
    }

    /// One echo on each stream transport; panics when one does not come (within [`WAIT`]).
    pub fn round(&mut self) {
        self.rounds += 1;
        let message = format!("good {}", self.rounds).into_bytes();
        self.framed.write_all(&frame(&message)).unwrap();
        let echo = read_frame(&mut self.framed).expect("FramedTcp echo");
        assert_eq!(echo, message, "FramedTcp echo");
        self.ws.send(tungstenite::Message::binary(message.clone())).unwrap();
        loop {
            match self.ws.read().expect("Ws echo") {
                tungstenite::Message::Binary(echo) => {
                    assert_eq!(&echo[..], &message[..], "Ws echo");
                    break;
                }
                tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => (),
                other => panic!("Ws echo: {other:?}"),
            }
        }
    }

    /// One Udp echo, sent again every 100 ms until it comes (the network may drop it). Returns
    /// the attempts it took; panics after `attempts`.
    pub fn udp_round(&mut self, attempts: usize) -> usize {
        self.rounds += 1;
        let message = format!("good udp {}", self.rounds).into_bytes();
        self.udp.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut buf = [0; 2048];
        for attempt in 1..=attempts {
            self.udp.send(&message).unwrap();
            // Echoes of earlier attempts may still come: skip those.
            loop {
                match self.udp.recv(&mut buf) {
                    Ok(n) if buf[..n] == message[..] => return attempt,
                    Ok(_) => continue,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(e) => panic!("Udp echo: {e}"),
                }
            }
        }
        panic!("no Udp echo of round {} in {attempts} attempts", self.rounds);
    }
}
