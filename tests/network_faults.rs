//! Real network faults: the kernel drops packets at random on real sockets, and the simulator
//! runs the same node functions under the same loss, so the two can be compared.
//!
//! Each test runs in network namespaces of its own (`util::in_own_network_namespace`, then a
//! second namespace for the server): client and server talk over a veth pair, and nftables
//! (Debian package `nftables`) in each namespace drops a share of the packets arriving on its end
//! of the pair (`numgen random mod 100 < loss`, with a counter). TCP SYNs are spared so that a
//! connect does not wait out SYN timeouts of one to seven seconds; everything after the
//! handshake (the WebSocket handshake included) goes through the lossy path.
//!
//! - `Tcp`, `FramedTcp` and `Ws` must deliver every message intact and in order;
//! - `Udp` must deliver exactly what the network delivered (the server's count equals what was
//!   sent minus nftables' drops), never a corrupted datagram, and its delivery ratio must match
//!   the configured loss;
//! - the simulator, given `Link { loss }` with the same loss, must agree: streams complete and in
//!   order, and a Udp delivery ratio within a tolerance of the kernel's.
//!
//! Figures are written to a file by the run inside the namespace and printed by the test.
#![cfg(target_os = "linux")]

mod util;

use portnet::network::{NetEvent, SendStatus, Transport};
use portnet::node::{self, NodeEvent, NodeHandler, NodeListener};
use portnet::sim::{Link, World};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use util::{AbortAfter, check_payload, payload};

/// The server's ports, one per transport (the namespaces are ours: nothing else uses them).
const PORTS: [(Transport, u16); 4] = [
    (Transport::Tcp, 7101),
    (Transport::FramedTcp, 7102),
    (Transport::Ws, 7103),
    (Transport::Udp, 7104),
];
const CLIENT_IP: &str = "10.77.0.1";
const SERVER_IP: &str = "10.77.0.2";

/// Stream messages per transport and loss level, and how many may be unanswered at a time.
const STREAM_MESSAGES: u32 = 120;
const WINDOW: usize = 16;
/// Udp datagrams per run, sent in batches; a batch's round ends after [`UDP_ROUND`].
const UDP_DATAGRAMS: u32 = 2000;
const UDP_BATCH: u32 = 50;
const UDP_ROUND: Duration = Duration::from_millis(40);
/// A client that has not finished by then stops and reports what it has (virtual time in
/// the simulator).
const GIVE_UP: Duration = Duration::from_secs(90);

fn port(transport: Transport) -> u16 {
    PORTS.iter().find(|(t, _)| *t == transport).unwrap().1
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The node functions, the same natively and in the simulator

/// What the server saw of the Udp datagrams.
#[derive(Default, Debug)]
struct UdpSeen {
    /// Every datagram (duplicates included).
    datagrams: usize,
    /// Distinct datagram indices.
    indices: BTreeSet<u32>,
}

/// An echo server on every transport. `ready` runs once it listens. A corrupted Udp datagram
/// panics (in `check_payload`), which fails the run.
fn server(
    udp: Arc<Mutex<UdpSeen>>,
    ready: impl Fn(&NodeHandler<()>) + Send + Sync + 'static,
) -> impl Fn(NodeHandler<()>, NodeListener<()>) + Send + Sync + 'static {
    move |handler, listener| {
        let mut udp_listener = None;
        for (transport, port) in PORTS {
            let (id, _) = handler.network().listen(transport, format!("0.0.0.0:{port}")).unwrap();
            if transport == Transport::Udp {
                udp_listener = Some(id);
            }
        }
        ready(&handler);
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                if Some(endpoint.resource_id()) == udp_listener {
                    let index = check_payload(data);
                    let mut seen = lock(&udp);
                    seen.datagrams += 1;
                    seen.indices.insert(index);
                }
                let status = handler.network().send(endpoint, data);
                assert!(
                    status == SendStatus::Sent || Some(endpoint.resource_id()) == udp_listener,
                    "echo to {endpoint}: {status:?}"
                );
            }
        });
    }
}

#[derive(Clone, Copy, Debug)]
enum Sig {
    Writable,
    Round,
    GiveUp,
}

/// What a stream client got back.
#[derive(Default, Debug, Clone)]
struct StreamOutcome {
    connected: bool,
    /// Messages echoed intact and in order (for `Tcp`: whole messages' worth of bytes).
    echoed: usize,
    /// First difference from what was sent, if any.
    mismatch: Option<String>,
    disconnected: bool,
    gave_up: bool,
    elapsed: Duration,
}

/// Sends `messages` over `transport` to `host` (at most [`WINDOW`] unanswered) and checks that
/// the echoes come back intact and in order.
fn stream_client(
    transport: Transport,
    host: &'static str,
    messages: Arc<Vec<Vec<u8>>>,
    out: Arc<Mutex<StreamOutcome>>,
) -> impl Fn(NodeHandler<Sig>, NodeListener<Sig>) + Send + Sync + 'static {
    move |handler, listener| {
        let start = handler.now();
        let (endpoint, _) =
            handler.network().connect(transport, format!("{host}:{}", port(transport))).unwrap();
        handler.signals().send_with_timer(Sig::GiveUp, GIVE_UP);
        let expected: Vec<u8> = messages.concat();
        // For Tcp: where each message ends in the byte stream.
        let ends: Vec<usize> = messages
            .iter()
            .scan(0, |end, m| {
                *end += m.len();
                Some(*end)
            })
            .collect();
        let (mut next, mut echoed, mut bytes) = (0, 0, 0);
        let pump = |next: &mut usize, echoed: usize| {
            while *next < messages.len() && *next - echoed < WINDOW {
                match handler.network().send(endpoint, &messages[*next]) {
                    SendStatus::Sent => *next += 1,
                    SendStatus::QueueFull => {
                        return handler.signal_when_writable(endpoint, Sig::Writable);
                    }
                    status => panic!("{transport} send: {status:?}"),
                }
            }
        };
        let finish = |out: &mut StreamOutcome| {
            out.elapsed = handler.now() - start;
            handler.stop();
        };
        listener.for_each(|event| {
            let mut out = lock(&out);
            match event {
                NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                    out.connected = ok;
                    if !ok {
                        return finish(&mut out);
                    }
                    pump(&mut next, echoed);
                }
                NodeEvent::Signal(Sig::Writable) => pump(&mut next, echoed),
                NodeEvent::Network(NetEvent::Message(_, data)) => {
                    if transport.is_packet_based() {
                        if data != &messages[echoed][..] {
                            out.mismatch = Some(format!("message {echoed} differs or is missing"));
                            return finish(&mut out);
                        }
                        echoed += 1;
                    } else {
                        let at = bytes;
                        bytes += data.len();
                        if expected.get(at..bytes) != Some(data) {
                            out.mismatch = Some(format!("stream bytes {at}..{bytes} differ"));
                            return finish(&mut out);
                        }
                        echoed = ends.partition_point(|&end| end <= bytes);
                    }
                    out.echoed = echoed;
                    if echoed == messages.len() {
                        return finish(&mut out);
                    }
                    pump(&mut next, echoed);
                }
                NodeEvent::Network(NetEvent::Disconnected(_)) => {
                    out.disconnected = true;
                    finish(&mut out);
                }
                NodeEvent::Signal(Sig::GiveUp) => {
                    out.gave_up = true;
                    finish(&mut out);
                }
                NodeEvent::Signal(Sig::Round) | NodeEvent::Network(NetEvent::Accepted(..)) => (),
            }
        });
    }
}

/// What a Udp client sent and got back.
#[derive(Default, Debug, Clone)]
struct UdpOutcome {
    sent: u32,
    echoes: usize,
    echoed: BTreeSet<u32>,
}

/// Sends [`UDP_DATAGRAMS`] numbered datagrams in batches of [`UDP_BATCH`], one batch per
/// [`UDP_ROUND`], and collects the echoes (checking each is intact).
fn udp_client(
    host: &'static str,
    out: Arc<Mutex<UdpOutcome>>,
) -> impl Fn(NodeHandler<Sig>, NodeListener<Sig>) + Send + Sync + 'static {
    move |handler, listener| {
        let target = format!("{host}:{}", port(Transport::Udp));
        let (endpoint, _) = handler.network().connect(Transport::Udp, target).unwrap();
        let mut next = 0;
        let mut rounds_left_after_last = 2;
        listener.for_each(|event| {
            let mut out = lock(&out);
            match event {
                NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                    assert!(ok, "Udp connect");
                    handler.signals().send(Sig::Round);
                }
                NodeEvent::Signal(Sig::Round) => {
                    if next == UDP_DATAGRAMS {
                        // The last echoes may still be on their way: wait a round or two.
                        rounds_left_after_last -= 1;
                        if rounds_left_after_last == 0 {
                            return handler.stop();
                        }
                    }
                    let end = (next + UDP_BATCH).min(UDP_DATAGRAMS);
                    for index in next..end {
                        let len = 64 + (index as usize * 131) % 1300;
                        let status = handler.network().send(endpoint, &payload(index, len));
                        assert_eq!(status, SendStatus::Sent, "Udp send {index}");
                        out.sent += 1;
                    }
                    next = end;
                    handler.signals().send_with_timer(Sig::Round, UDP_ROUND);
                }
                NodeEvent::Network(NetEvent::Message(_, data)) => {
                    out.echoes += 1;
                    out.echoed.insert(check_payload(data));
                }
                other => panic!("Udp client: unexpected {other:?}"),
            }
        });
    }
}

/// The messages a stream client sends: sizes from 1 byte to 6 KB, each recognisable.
fn stream_messages() -> Arc<Vec<Vec<u8>>> {
    Arc::new(
        (0..STREAM_MESSAGES)
            .map(|i| {
                let len = 4 + (i as usize * 977) % 6000;
                payload(i, len)
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Two hosts on a veth pair, with nftables dropping packets

/// The server's network namespace: a process (`cat`, waiting on its stdin) holds it; the
/// namespace goes when the process does.
struct ServerHost {
    holder: Child,
    pid: u32,
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl ServerHost {
    /// Moves `pn1` (the veth peer `util` made) into a new namespace: 10.77.0.1 here on `pn0`,
    /// 10.77.0.2 there on `pn1`.
    fn new() -> ServerHost {
        let mut holder = Command::new("unshare")
            .args(["--net", "sh", "-c", "echo ready; exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let pid = holder.id();
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the server namespace did not start");
        let host = ServerHost { holder, pid };
        sh(&format!("ip link set pn1 netns {pid}"));
        sh(&format!("ip addr add {CLIENT_IP}/24 dev pn0 && ip link set pn0 up"));
        host.sh(&format!(
            "ip link set lo up && ip addr add {SERVER_IP}/24 dev pn1 && ip link set pn1 up"
        ));
        host
    }

    fn sh(&self, script: &str) -> String {
        sh(&format!("nsenter --net=/proc/{}/ns/net sh -c '{script}'", self.pid))
    }

    /// Drops `percent` % of the packets arriving on each end of the pair (TCP SYNs spared).
    fn set_loss(&self, percent: u32) {
        let rules = |dev: &str| {
            format!(
                "table inet faults {{\n chain input {{\n  type filter hook input priority 0; \
                 policy accept;\n  iifname \"{dev}\" tcp flags & syn == syn accept\n  iifname \
                 \"{dev}\" meta l4proto udp numgen random mod 100 < {percent} counter drop\n  \
                 iifname \"{dev}\" meta l4proto tcp numgen random mod 100 < {percent} counter \
                 drop\n }}\n}}\n"
            )
        };
        let nft = |ns: Option<u32>, dev: &str| {
            let mut command = match ns {
                Some(pid) => {
                    let mut c = Command::new("nsenter");
                    c.arg(format!("--net=/proc/{pid}/ns/net")).arg("nft");
                    c
                }
                None => Command::new("nft"),
            };
            // Replace whatever the previous level was.
            let mut script = String::from("table inet faults\ndelete table inet faults\n");
            script.push_str(&rules(dev));
            let mut child = command
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("nft (Debian package nftables; tests/run.sh installs it)");
            child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
        };
        nft(None, "pn0");
        nft(Some(self.pid), "pn1");
    }

    /// Packets nftables dropped so far on (client side, server side): (udp, tcp) each.
    fn drops(&self) -> ((u64, u64), (u64, u64)) {
        let parse = |listing: String| {
            let count = |proto: &str| {
                listing
                    .lines()
                    .find(|l| l.contains(&format!("l4proto {proto}")) && l.contains("counter"))
                    .and_then(|l| l.split("packets ").nth(1))
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(|n| n.parse().unwrap())
                    .unwrap_or(0)
            };
            (count("udp"), count("tcp"))
        };
        let list = "nft list table inet faults";
        (parse(sh(list)), parse(self.sh(list)))
    }

    /// Runs the echo server on a thread inside the server namespace; returns its handler once
    /// it listens, and the thread.
    fn start_server(
        &self,
        udp: Arc<Mutex<UdpSeen>>,
    ) -> (NodeHandler<()>, std::thread::JoinHandle<()>) {
        let namespace = std::fs::File::open(format!("/proc/{}/ns/net", self.pid)).unwrap();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter_namespace(&namespace);
            let (handler, listener) = node::split::<()>();
            let ready = move |h: &NodeHandler<()>| tx.send(h.clone()).unwrap();
            server(udp, ready)(handler, listener);
        });
        let handler = rx.recv_timeout(util::WATCHDOG).expect("the server did not start");
        (handler, thread)
    }
}

impl Drop for ServerHost {
    fn drop(&mut self) {
        // Closing `cat`'s stdin ends it, and with it the namespace.
        drop(self.holder.stdin.take());
        let _ = self.holder.wait();
    }
}

/// Moves the calling thread into the network namespace `namespace` refers to: sockets it
/// creates from then on live there (the rest of the process stays where it is).
fn enter_namespace(namespace: &std::fs::File) {
    nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns: {e}"));
}

// ---------------------------------------------------------------------------------------------
// Figures: written inside the namespace, printed by the test outside

fn figures_path(test: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("portnet-{test}.figures"))
}

fn figure(test: &str, line: &str) {
    println!("{line}");
    let mut file =
        std::fs::OpenOptions::new().create(true).append(true).open(figures_path(test)).unwrap();
    writeln!(file, "{line}").unwrap();
}

/// Outside the namespace: prints what the run inside wrote.
fn print_figures(test: &str) {
    if let Ok(text) = std::fs::read_to_string(figures_path(test)) {
        print!("{text}");
        let _ = std::fs::remove_file(figures_path(test));
    }
}

// ---------------------------------------------------------------------------------------------
// The simulator, with the same loss

/// A stream run in the simulator: the outcome and how many stream segments the links lost
/// (each retransmitted 200 ms later).
fn sim_stream(transport: Transport, loss: f64, seed: u64) -> (StreamOutcome, usize) {
    let out = Arc::new(Mutex::new(StreamOutcome::default()));
    let mut world = World::with_seed(seed);
    world.set_default_link(Link { loss, ..Link::default() });
    world.node("server", server(Arc::default(), |_| ()));
    world.node("client", stream_client(transport, "server", stream_messages(), out.clone()));
    world.run_until(|w| w.is_finished("client"));
    let lost = world.trace().iter().filter(|l| l.contains("segment (retransmitted)")).count();
    (lock(&out).clone(), lost)
}

fn sim_udp(loss: f64, seed: u64) -> (UdpOutcome, usize, usize) {
    let out = Arc::new(Mutex::new(UdpOutcome::default()));
    let seen = Arc::new(Mutex::new(UdpSeen::default()));
    let mut world = World::with_seed(seed);
    world.set_default_link(Link { loss, ..Link::default() });
    world.node("server", server(seen.clone(), |_| ()));
    world.node("client", udp_client("server", out.clone()));
    world.run_until(|w| w.is_finished("client"));
    let seen = lock(&seen);
    (lock(&out).clone(), seen.datagrams, seen.indices.len())
}

fn check_stream(what: &str, outcome: &StreamOutcome) {
    assert!(outcome.connected, "{what}: not connected ({outcome:?})");
    assert_eq!(outcome.mismatch, None, "{what}: {outcome:?}");
    assert!(!outcome.disconnected, "{what}: disconnected ({outcome:?})");
    assert!(!outcome.gave_up, "{what}: gave up after {GIVE_UP:?} ({outcome:?})");
    assert_eq!(outcome.echoed, STREAM_MESSAGES as usize, "{what}: messages lost");
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn streams_deliver_everything_in_order_under_random_loss() {
    const TEST: &str = "streams_deliver_everything_in_order_under_random_loss";
    if !util::in_own_network_namespace(TEST) {
        return print_figures(TEST);
    }
    let _abort = AbortAfter::start(TEST, Duration::from_secs(300));
    let _ = std::fs::remove_file(figures_path(TEST));
    let host = ServerHost::new();
    let (server, thread) = host.start_server(Arc::default());
    let bytes: usize = stream_messages().iter().map(Vec::len).sum();
    for percent in [10, 20] {
        host.set_loss(percent);
        for transport in [Transport::Tcp, Transport::FramedTcp, Transport::Ws] {
            let (before_client, before_server) = host.drops();
            let out = Arc::new(Mutex::new(StreamOutcome::default()));
            let (handler, listener) = node::split::<Sig>();
            stream_client(transport, SERVER_IP, stream_messages(), out.clone())(handler, listener);
            let native = lock(&out).clone();
            let (after_client, after_server) = host.drops();
            let dropped = (after_client.1 - before_client.1) + (after_server.1 - before_server.1);
            check_stream(&format!("native {transport}, {percent} % loss"), &native);
            let (sim, sim_lost) =
                sim_stream(transport, f64::from(percent) / 100.0, u64::from(percent));
            check_stream(&format!("sim {transport}, {percent} % loss"), &sim);
            figure(
                TEST,
                &format!(
                    "{transport} {percent} % loss: {} messages ({bytes} bytes) each way, all \
                     echoed in order, in the kernel ({dropped} TCP segments dropped, {:.3} s) and in \
                     the sim ({sim_lost} segments lost, {:.3} s virtual)",
                    native.echoed,
                    native.elapsed.as_secs_f64(),
                    sim.elapsed.as_secs_f64()
                ),
            );
        }
    }
    server.stop();
    thread.join().unwrap();
}

#[test]
fn udp_delivers_what_the_network_delivers() {
    const TEST: &str = "udp_delivers_what_the_network_delivers";
    if !util::in_own_network_namespace(TEST) {
        return print_figures(TEST);
    }
    let _abort = AbortAfter::start(TEST, Duration::from_secs(120));
    let _ = std::fs::remove_file(figures_path(TEST));
    let host = ServerHost::new();
    for percent in [10, 20] {
        let seen = Arc::new(Mutex::new(UdpSeen::default()));
        let (server, thread) = host.start_server(seen.clone());
        host.set_loss(percent);
        let out = Arc::new(Mutex::new(UdpOutcome::default()));
        let (handler, listener) = node::split::<Sig>();
        udp_client(SERVER_IP, out.clone())(handler, listener);
        let ((client_drops, _), (server_drops, _)) = host.drops();
        server.stop();
        // A corrupted datagram panicked the server: this passes that on.
        thread.join().unwrap();
        let out = lock(&out).clone();
        let seen = lock(&seen);
        let loss = f64::from(percent) / 100.0;
        let sent = u64::from(out.sent);
        assert_eq!(sent, u64::from(UDP_DATAGRAMS));

        // Exactly what the network let through, once each.
        assert_eq!(seen.datagrams, seen.indices.len(), "duplicated datagrams");
        assert_eq!(seen.datagrams as u64, sent - server_drops, "server: sent - dropped");
        assert_eq!(out.echoes, out.echoed.len(), "duplicated echoes");
        assert_eq!(out.echoes as u64, seen.datagrams as u64 - client_drops, "echoes");
        let ratio = seen.datagrams as f64 / sent as f64;
        let echo_ratio = out.echoes as f64 / sent as f64;

        // The simulator with the same loss, on three seeds.
        let mut sim_ratios = Vec::new();
        let mut sim_echo_ratios = Vec::new();
        for seed in 1..=3 {
            let (sim, datagrams, distinct) = sim_udp(loss, seed);
            assert_eq!(datagrams, distinct, "sim: duplicated datagrams (no duplication set)");
            assert_eq!(sim.sent, UDP_DATAGRAMS);
            sim_ratios.push(datagrams as f64 / sent as f64);
            sim_echo_ratios.push(sim.echoes as f64 / sent as f64);
        }
        let sim_ratio = sim_ratios.iter().sum::<f64>() / 3.0;
        let sim_echo_ratio = sim_echo_ratios.iter().sum::<f64>() / 3.0;
        figure(
            TEST,
            &format!(
                "Udp {percent} % loss: {sent} datagrams (64..1364 B); kernel dropped \
                 {server_drops} on the way out and {client_drops} on the way back; server got \
                 {} ({:.1} %), client got {} echoes ({:.1} %); sim (3 seeds): {:.1} % and {:.1} \
                 %; expected {:.1} % and {:.1} %; corrupted 0, duplicated 0",
                seen.datagrams,
                ratio * 100.0,
                out.echoes,
                echo_ratio * 100.0,
                sim_ratio * 100.0,
                sim_echo_ratio * 100.0,
                (1.0 - loss) * 100.0,
                (1.0 - loss).powi(2) * 100.0
            ),
        );
        // 2000 datagrams: a standard deviation of under 1 %; 4 % is over four of them.
        assert!((ratio - (1.0 - loss)).abs() < 0.04, "kernel delivery {ratio}");
        assert!((echo_ratio - (1.0 - loss).powi(2)).abs() < 0.05, "kernel echoes {echo_ratio}");
        assert!((sim_ratio - (1.0 - loss)).abs() < 0.04, "sim delivery {sim_ratio}");
        assert!((sim_ratio - ratio).abs() < 0.05, "sim {sim_ratio} vs kernel {ratio}");
        assert!((sim_echo_ratio - echo_ratio).abs() < 0.06, "sim {sim_echo_ratio} vs {echo_ratio}");
    }
}
