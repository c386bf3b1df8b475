//! tests/soak.rs, the server's side: the process measurements, portnet's log tallied by reason
//! (both processes), the echo server node and the probe.

use super::*;
use allocation_counter::AllocationInfo;
use portnet::network::{Endpoint, NetEvent, SendStatus, Transport};
use portnet::node::{self, NodeEvent, NodeHandler};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Process measurements

/// Open descriptors of this process (the directory being read counts as one, every time).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A `kB` line of `/proc/self/status`, in bytes.
pub fn status_kib(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

pub fn rss() -> usize {
    status_kib("VmRSS:")
}

pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Counters of the kernel's TCP (this network namespace, every process): how often a listen
/// queue overflowed, and connections reset at close.
pub fn tcp_counters() -> BTreeMap<String, u64> {
    const WANTED: [&str; 4] =
        ["ListenOverflows", "ListenDrops", "TCPAbortOnData", "TCPAbortOnClose"];
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return BTreeMap::new() };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(name, _)| WANTED.contains(name))
        .map(|(name, value)| (name.to_owned(), value.parse().unwrap_or(0)))
        .collect()
}

/// How much each counter grew since `before`.
pub fn counters_since(before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    tcp_counters().into_iter().map(|(k, v)| (k.clone(), v - before.get(&k).unwrap_or(&0))).collect()
}

#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub fds: usize,
    pub rss: usize,
}

impl Sample {
    pub fn now() -> Self {
        Sample { fds: open_fds(), rss: rss() }
    }
}

// ---------------------------------------------------------------------------------------------
// portnet's log, tallied by reason

pub static TALLY: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// Counts portnet's log lines (debug and above) by what they say, without the addresses.
pub struct Tally;

impl log::Log for Tally {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("portnet") && metadata.level() <= log::Level::Debug
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Not the server's heap: the tally is the test's.
        allocation_counter::opt_out(|| {
            let text = record.args().to_string();
            let key = if let Some((_, why)) = text.split_once("disconnected: ") {
                format!("disconnected: {why}")
            } else if let Some((_, why)) = text.split_once(" failed: ") {
                format!("{} failed: {why}", text.split_whitespace().next().unwrap_or(""))
            } else {
                let digitless: String =
                    text.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect();
                format!("{} {digitless}", record.level())
            };
            let mut tally = TALLY.lock().unwrap_or_else(|e| e.into_inner());
            *tally.entry(key.chars().take(160).collect()).or_default() += 1;
        });
    }

    fn flush(&self) {}
}

pub static TALLY_LOGGER: Tally = Tally;

pub fn tally_logs() {
    if log::set_logger(&TALLY_LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

pub fn take_tally() -> BTreeMap<String, usize> {
    std::mem::take(&mut *TALLY.lock().unwrap_or_else(|e| e.into_inner()))
}

// ---------------------------------------------------------------------------------------------
// The server

/// Signals to the server node.
pub enum Ctl {
    /// End the current phase: report what it saw.
    Checkpoint,
}

/// What the server saw of one transport in one phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub accepted: usize,
    pub disconnected: usize,
    /// Removed by the server after echoing a `SERVER_CLOSES` message.
    pub removed: usize,
    pub messages: usize,
    pub bytes: usize,
    /// Echoes `send` did not accept.
    pub echo_refused: usize,
}

/// The server's report at a checkpoint.
pub struct ServerReport {
    /// `[FramedTcp, Ws]`.
    pub counts: [Counts; 2],
    /// The event thread's allocations during the phase, net of its frees.
    pub heap: AllocationInfo,
    /// Every endpoint accepted during the phase.
    pub endpoints: Vec<Endpoint>,
    pub probe_messages: usize,
}

pub struct Server {
    pub handler: NodeHandler<Ctl>,
    pub thread: Option<std::thread::JoinHandle<()>>,
    pub reports: mpsc::Receiver<ServerReport>,
    /// Open connections, the probe's aside.
    pub open: Arc<AtomicUsize>,
    /// Told when `open` drops to zero.
    pub idle: mpsc::Receiver<()>,
    pub framed: SocketAddr,
    pub ws: SocketAddr,
}

pub fn slot(transport: Transport) -> usize {
    match transport {
        Transport::FramedTcp => 0,
        Transport::Ws => 1,
        other => panic!("the server listens on no {other}"),
    }
}

impl Server {
    /// An echo server on `FramedTcp` and `Ws` (default options), its loop on a thread of its
    /// own, run phase by phase under `allocation_counter::measure`.
    pub fn start() -> Server {
        let (handler, mut listener) = node::split::<Ctl>();
        let (_, framed) = handler.network().listen(Transport::FramedTcp, "127.0.0.1:0").unwrap();
        let (_, ws) = handler.network().listen(Transport::Ws, "127.0.0.1:0").unwrap();
        let (report_tx, reports) = mpsc::channel();
        let (idle_tx, idle) = mpsc::channel();
        let open = Arc::new(AtomicUsize::new(0));
        let (node, open_count) = (handler.clone(), open.clone());
        let thread = std::thread::Builder::new()
            .name("soak-server".into())
            .spawn(move || {
                // The first connection ever is the probe.
                let mut probe: Option<Endpoint> = None;
                while node.is_running() {
                    let mut counts = [Counts::default(); 2];
                    let mut endpoints = Vec::new();
                    let mut probe_messages = 0;
                    let mut done = false;
                    let net = node.network();
                    let gone = || {
                        if open_count.fetch_sub(1, Ordering::AcqRel) == 1 {
                            allocation_counter::opt_out(|| {
                                let _ = idle_tx.send(());
                            });
                        }
                    };
                    let heap = allocation_counter::measure(|| {
                        while !done && node.is_running() {
                            listener.poll_events(Duration::from_secs(1), |event| match event {
                                NodeEvent::Signal(Ctl::Checkpoint) => done = true,
                                NodeEvent::Network(NetEvent::Accepted(ep, _)) => {
                                    if probe.is_none() {
                                        probe = Some(ep);
                                        return;
                                    }
                                    counts[slot(ep.transport())].accepted += 1;
                                    open_count.fetch_add(1, Ordering::AcqRel);
                                    allocation_counter::opt_out(|| endpoints.push(ep));
                                }
                                NodeEvent::Network(NetEvent::Message(ep, data)) => {
                                    let echoed = net.send(ep, data) == SendStatus::Sent;
                                    if Some(ep) == probe {
                                        probe_messages += 1;
                                        assert!(echoed, "the probe's echo was refused");
                                        return;
                                    }
                                    let c = &mut counts[slot(ep.transport())];
                                    c.messages += 1;
                                    c.bytes += data.len();
                                    if !echoed {
                                        c.echo_refused += 1;
                                    }
                                    if data.len() > 8 && data[8] & SERVER_CLOSES != 0 {
                                        assert!(net.remove(ep.resource_id()), "remove {ep}");
                                        c.removed += 1;
                                        gone();
                                    }
                                }
                                NodeEvent::Network(NetEvent::Disconnected(ep)) => {
                                    if Some(ep) == probe {
                                        // Only when the test ends (or failed).
                                        return;
                                    }
                                    let c = &mut counts[slot(ep.transport())];
                                    c.disconnected += 1;
                                    gone();
                                }
                                NodeEvent::Network(NetEvent::Connected(..)) => {
                                    unreachable!("the server connects nowhere")
                                }
                            });
                        }
                    });
                    let report = ServerReport { counts, heap, endpoints, probe_messages };
                    if report_tx.send(report).is_err() {
                        break;
                    }
                }
            })
            .unwrap();
        Server { handler, thread: Some(thread), reports, open, idle, framed, ws }
    }

    /// Waits (at most `limit`) until every connection of the phase is gone.
    pub fn wait_idle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.open.load(Ordering::Acquire) != 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.idle.recv_timeout(left) {
                Ok(()) => (),
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} connections still open on the server {limit:?} after the client exited",
                    self.open.load(Ordering::Acquire)
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the server thread ended"),
            }
        }
    }

    /// Ends the current phase; returns what the server saw during it.
    pub fn checkpoint(&self) -> ServerReport {
        self.handler.signals().send(Ctl::Checkpoint);
        self.reports.recv_timeout(Duration::from_secs(30)).expect("the server's checkpoint")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handler.stop();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the server thread panicked");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The probe: a plain blocking FramedTcp client in this process

/// A FramedTcp length prefix (LEB128).
pub fn leb128(mut len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while len >= 0x80 {
        out.push(len as u8 | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out
}

pub struct Probe {
    pub stream: TcpStream,
    pub rounds: usize,
    pub worst: Duration,
    pub total: Duration,
}

impl Probe {
    pub fn connect(addr: SocketAddr) -> Probe {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.set_nodelay(true).unwrap();
        Probe { stream, rounds: 0, worst: Duration::ZERO, total: Duration::ZERO }
    }

    /// One echo, timed.
    pub fn round(&mut self) -> Duration {
        let data = message(u32::MAX, self.rounds as u32, 0);
        let start = Instant::now();
        let mut framed = leb128(data.len());
        framed.extend_from_slice(&data);
        self.stream.write_all(&framed).unwrap();
        let (mut len, mut shift) = (0, 0);
        loop {
            let mut byte = [0];
            self.stream.read_exact(&mut byte).expect("the probe's echo");
            len |= ((byte[0] & 0x7f) as usize) << shift;
            shift += 7;
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        let mut echo = vec![0; len];
        self.stream.read_exact(&mut echo).expect("the probe's echo");
        let took = start.elapsed();
        assert_eq!(echo, data, "the probe's echo differs");
        self.rounds += 1;
        self.worst = self.worst.max(took);
        self.total += took;
        took
    }

    /// Figures since the last call.
    pub fn take(&mut self) -> (usize, Duration, Duration) {
        let mean = self.total / self.rounds.max(1) as u32;
        let figures = (self.rounds, mean, self.worst);
        (self.rounds, self.worst, self.total) = (0, Duration::ZERO, Duration::ZERO);
        figures
    }
}
