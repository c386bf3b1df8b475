//! Helpers shared by the integration tests: a watchdog, loopback addresses and small nodes.
#![allow(dead_code)]

// The hostile peers' server and client (tests/hostile_peers.rs, tests/hostile_ws.rs).
#[cfg(target_os = "linux")]
pub mod hostile;
// The simulator tests' applications (tests/sim_world.rs, tests/sim_faults.rs, tests/sim_links.rs).
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub mod sim;
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub mod ws;

use portnet::adapters::framed_tcp::FramedTcpListenConfig;
use portnet::adapters::tcp::TcpListenConfig;
use portnet::network::{Endpoint, NetEvent, SendStatus, Transport, TransportListen};
use portnet::node::{self, NodeEvent, NodeHandler, NodeTask};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long any single test may wait for what it expects.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// A report the applications of a test's nodes fill in and the test waits on (natively the
/// nodes run on their threads, in a world on the world's).
pub struct Reported<R>(Arc<(Mutex<R>, Condvar)>);

impl<R> Clone for Reported<R> {
    fn clone(&self) -> Self {
        Reported(self.0.clone())
    }
}

impl<R: Default> Default for Reported<R> {
    fn default() -> Self {
        Reported(Arc::default())
    }
}

impl<R> Reported<R> {
    /// Changes the report and wakes whoever waits on it.
    pub fn update(&self, f: impl FnOnce(&mut R)) {
        f(&mut self.0.0.lock().unwrap());
        self.0.1.notify_all();
    }

    /// Reads the report as it is now.
    pub fn read<T>(&self, f: impl FnOnce(&R) -> T) -> T {
        f(&self.0.0.lock().unwrap())
    }

    /// Waits, at most [`WATCHDOG`], until `get` finds `what` in the report.
    pub fn wait_for<T>(&self, what: &str, get: impl Fn(&R) -> Option<T>) -> T {
        let guard = self.0.0.lock().unwrap();
        let (guard, _) =
            self.0.1.wait_timeout_while(guard, WATCHDOG, |report| get(report).is_none()).unwrap();
        get(&guard).unwrap_or_else(|| panic!("waited {WATCHDOG:?} for {what}"))
    }

    /// The report as it is, leaving a default one.
    pub fn take(&self) -> R
    where
        R: Default,
    {
        std::mem::take(&mut self.0.0.lock().unwrap())
    }
}

/// Stops a node if the test takes too long, so a hang becomes a failure with a message.
pub struct Watchdog {
    fired: Arc<AtomicBool>,
    cancel: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Stops `handler` after [`WATCHDOG`] unless dropped or checked first.
    pub fn new<S: Send + 'static>(handler: &NodeHandler<S>) -> Self {
        let handler = handler.clone();
        let fired = Arc::new(AtomicBool::new(false));
        let (cancel, cancelled) = mpsc::channel::<()>();
        let flag = fired.clone();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(WATCHDOG) {
                flag.store(true, Ordering::SeqCst);
                handler.stop();
            }
        });
        Self { fired, cancel: Some(cancel), thread: Some(thread) }
    }

    /// Panics with `what` if the watchdog fired.
    pub fn check(mut self, what: &str) {
        self.stop_thread();
        assert!(!self.fired.load(Ordering::SeqCst), "watchdog fired after {WATCHDOG:?}: {what}");
    }

    fn stop_thread(&mut self) {
        drop(self.cancel.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// The loopback address of the family under test, port 0.
pub fn any_port(ipv6: bool) -> SocketAddr {
    if ipv6 { "[::1]:0".parse().unwrap() } else { "127.0.0.1:0".parse().unwrap() }
}

/// A port on which nothing listens (bound, then closed).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Listen options whose send queue never refuses: for servers that echo whatever comes.
pub fn unbounded(transport: Transport) -> TransportListen {
    match transport {
        Transport::Tcp => {
            TransportListen::Tcp(TcpListenConfig::default().with_send_queue_limit(usize::MAX))
        }
        Transport::FramedTcp => TransportListen::FramedTcp(
            FramedTcpListenConfig::default().with_send_queue_limit(usize::MAX),
        ),
        other => other.into(),
    }
}

/// A node that echoes every message back on its own thread. Returns its handler (stop it to
/// end), its task, and the address it listens on.
pub fn echo_server(transport: Transport, ipv6: bool) -> (NodeHandler<()>, NodeTask, SocketAddr) {
    let (handler, listener) = node::split::<()>();
    let (_, addr) = handler.network().listen_with(unbounded(transport), any_port(ipv6)).unwrap();
    let echo = handler.clone();
    let task = listener.for_each_async(move |event| {
        if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
            let status = echo.network().send(endpoint, data);
            // Udp may drop when the socket buffer is full, as the network may.
            assert!(status == SendStatus::Sent || transport == Transport::Udp, "echo: {status:?}");
        }
    });
    (handler, task, addr)
}

/// Sends `data` from a thread that is not the node's event thread, yielding while the queue
/// is full (the event thread drains it).
pub fn send_all<S>(handler: &NodeHandler<S>, endpoint: Endpoint, data: &[u8]) {
    loop {
        match handler.network().send(endpoint, data) {
            SendStatus::Sent => return,
            SendStatus::QueueFull => std::thread::yield_now(),
            status => panic!("send to {endpoint} failed: {status:?}"),
        }
    }
}

/// A recognisable payload: message `index` of `len` bytes.
pub fn payload(index: u32, len: usize) -> Vec<u8> {
    let mut data: Vec<u8> =
        (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(index) as u8).collect();
    if len >= 4 {
        data[..4].copy_from_slice(&index.to_le_bytes());
    }
    data
}

/// The index of a [`payload`] message, checking its contents.
pub fn check_payload(data: &[u8]) -> u32 {
    let index = u32::from_le_bytes(data[..4].try_into().unwrap());
    assert_eq!(data, payload(index, data.len()), "message {index} corrupted");
    index
}

/// One client's progress in [`exchange`].
struct Client {
    next: usize,
    echoed: usize,
    bytes: Vec<u8>,
    done: bool,
}

/// Connects `clients` clients to the echo server at `addr`; each sends every message in
/// `messages` (at most `window` unanswered at a time) and checks that exactly those come back,
/// in order. A full send queue is waited out with `signal_when_writable`, never by spinning.
pub fn exchange(
    transport: Transport,
    addr: SocketAddr,
    clients: usize,
    messages: &[Vec<u8>],
    window: usize,
) {
    let (handler, listener) = node::split::<Endpoint>();
    let watchdog = Watchdog::new(&handler);
    let mut state = std::collections::HashMap::new();
    for _ in 0..clients {
        let (endpoint, _) = handler.network().connect(transport, addr).unwrap();
        state.insert(endpoint, Client { next: 0, echoed: 0, bytes: Vec::new(), done: false });
    }
    let expected_bytes: usize = messages.iter().map(Vec::len).sum();
    let mut finished = 0;
    let pump = |endpoint: Endpoint, client: &mut Client| {
        while client.next < messages.len() && client.next - client.echoed < window {
            match handler.network().send(endpoint, &messages[client.next]) {
                SendStatus::Sent => client.next += 1,
                SendStatus::QueueFull => return handler.signal_when_writable(endpoint, endpoint),
                status => panic!("send to {endpoint}: {status:?}"),
            }
        }
    };
    listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Connected(endpoint, ok)) => {
            assert!(ok, "{transport} connect to {addr} refused");
            pump(endpoint, state.get_mut(&endpoint).unwrap());
        }
        NodeEvent::Signal(endpoint) => pump(endpoint, state.get_mut(&endpoint).unwrap()),
        NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
            let client = state.get_mut(&endpoint).expect("message from an unknown endpoint");
            client.bytes.extend_from_slice(data);
            if transport.is_packet_based() {
                assert_eq!(
                    data,
                    &messages[client.echoed][..],
                    "echo {} out of order",
                    client.echoed
                );
                client.bytes.clear();
                client.echoed += 1;
                pump(endpoint, client);
            } else {
                client.echoed = messages.len().min(client.next);
            }
            let complete = if transport.is_packet_based() {
                client.echoed == messages.len()
            } else {
                client.bytes.len() >= expected_bytes
            };
            if complete && !client.done {
                if !transport.is_packet_based() {
                    assert!(client.bytes == messages.concat(), "Tcp stream bytes differ");
                }
                client.done = true;
                finished += 1;
                if finished == clients {
                    handler.stop();
                }
            }
        }
        NodeEvent::Network(NetEvent::Disconnected(endpoint)) => panic!("{endpoint} disconnected"),
        NodeEvent::Network(NetEvent::Accepted(..)) => panic!("a client accepted"),
    });
    watchdog.check(&format!("{transport}: {finished}/{clients} clients got their echoes"));
}

/// Runs the calling test in a network namespace of its own, where multicast can go nowhere but
/// a veth pair inside it (interface index in `PORTNET_TEST_IFINDEX`). Returns true when the caller is inside it and should run its body;
/// outside, it re-runs exactly this test under `unshare --net` and checks that it passed.
///
/// Without permission to create namespaces the test is skipped with a message.
pub fn in_own_network_namespace(test: &str) -> bool {
    const INSIDE: &str = "PORTNET_TEST_NETNS";
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    // A veth pair of its own carries the groups (loopback does no IPv6 multicast); without
    // duplicate address detection its link-local address is usable at once.
    let script = format!(
        "sysctl -qw net.ipv6.conf.default.accept_dad=0 && ip link set lo up && \
         ip link add pn0 type veth peer name pn1 && ip link set pn0 up && ip link set pn1 up && \
         ip route add 224.0.0.0/4 dev pn0 && \
         PORTNET_TEST_IFINDEX=$(ip -o link show pn0 | cut -d: -f1) \
         exec '{}' --exact '{test}' --nocapture --test-threads=1",
        exe.display()
    );
    let output = std::process::Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &script])
        .env(INSIDE, "1")
        .output();
    match output {
        Ok(out) if out.status.success() => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("1 passed"),
                "{test} did not run inside the namespace:\n{stdout}"
            );
        }
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("unshare failed") => {
            eprintln!("SKIPPED: {test}: this machine forbids network namespaces");
        }
        Ok(out) => panic!(
            "{test} failed inside its network namespace:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run unshare (util-linux) for {test}: {e}"),
    }
    false
}

/// Aborts the whole test binary if the guarded test still runs after `limit`: for tests that
/// wait on threads or raw sockets rather than on one node (a node has [`Watchdog`]). Dropping
/// it disarms it.
pub struct AbortAfter {
    _cancel: mpsc::Sender<()>,
}

impl AbortAfter {
    pub fn start(test: &'static str, limit: Duration) -> Self {
        let (cancel, cancelled) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(limit) {
                eprintln!("watchdog: `{test}` still running after {limit:?}; aborting");
                std::process::abort();
            }
        });
        AbortAfter { _cancel: cancel }
    }
}
