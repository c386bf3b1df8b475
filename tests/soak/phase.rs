//! tests/soak.rs, a phase: the client process runs while the probe and the samples go on; then
//! the figures printed and the checks of each kind of phase.

use super::*;
use allocation_counter::AllocationInfo;
use portnet::network::{Endpoint, SendStatus};
use portnet::node::NodeHandler;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the client process if the test fails before it exits.
pub struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub struct Phase {
    pub name: &'static str,
    /// The client's report.
    pub client: BTreeMap<String, String>,
    /// The client's log tally.
    pub client_log: Vec<String>,
    /// `[FramedTcp, Ws]`, as the server counted them.
    pub server: [Counts; 2],
    /// The server's event thread's allocations during the phase, net of its frees.
    pub heap: AllocationInfo,
    pub server_log: BTreeMap<String, usize>,
    pub probe: (usize, Duration, Duration),
    /// The kernel's TCP counters' growth during the phase.
    pub tcp: BTreeMap<String, u64>,
    pub before: Sample,
    pub peak: Sample,
    pub after: Sample,
    pub elapsed: Duration,
}

impl Phase {
    pub fn get(&self, key: &str) -> u64 {
        let value = self.client.get(key).unwrap_or_else(|| panic!("no {key} in {:?}", self.client));
        value.parse().unwrap()
    }

    /// The server's counts over both transports.
    pub fn server_total(&self, field: fn(&Counts) -> usize) -> u64 {
        self.server.iter().map(field).sum::<usize>() as u64
    }
}

/// Runs the client process with `spec`, probing the server meanwhile; then waits for the
/// server to see every connection go, ends the phase, and checks that the server's view of
/// every endpoint of the phase is gone.
pub fn run_phase(
    name: &'static str,
    server: &Server,
    probe: &mut Probe,
    spec: &str,
    limit: Duration,
) -> Phase {
    let before = Sample::now();
    let counters = tcp_counters();
    let start = Instant::now();
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", "soak_client", "--nocapture", "--test-threads=1"])
        .env(CLIENT_ENV, spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the client process");
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (line_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest's "test soak_client ... " may precede a report on its line.
            let Some(at) = line.find(LINE_PREFIX) else { continue };
            if line_tx.send(line[at..].to_owned()).is_err() {
                break;
            }
        }
    });
    let mut client = BTreeMap::new();
    let mut client_log = Vec::new();
    let mut peak = before;
    let mut next_probe = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_probe {
            let took = probe.round();
            assert!(took < PROBE_LIMIT, "{name}: the server took {took:?} to answer the probe");
            let sample = Sample::now();
            peak = Sample { fds: peak.fds.max(sample.fds), rss: peak.rss.max(sample.rss) };
            next_probe = now + PROBE_EVERY;
        }
        assert!(start.elapsed() < limit, "{name}: the client process still runs after {limit:?}");
        match lines.recv_timeout(next_probe.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if let Some(report) = line.strip_prefix("SOAK-REPORT ") {
                    for pair in report.split_whitespace() {
                        let (key, value) = pair.split_once('=').unwrap();
                        client.insert(key.to_owned(), value.to_owned());
                    }
                } else if let Some(log) = line.strip_prefix("SOAK-LOG ") {
                    client_log.push(log.to_owned());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => (),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    reader.join().unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{name}: the client process failed: {status}");
    assert!(!client.is_empty(), "{name}: the client process reported nothing");
    server.wait_idle(Duration::from_secs(30));
    let report = server.checkpoint();
    check_endpoints_gone(&server.handler, &report.endpoints);
    let ServerReport { counts, heap, endpoints, .. } = report;
    // Before measuring: the list lives in the server thread's arena.
    drop(endpoints);
    let after = Sample::now();
    let elapsed = start.elapsed();
    Phase {
        name,
        client,
        client_log,
        server: counts,
        heap,
        server_log: take_tally(),
        probe: probe.take(),
        tcp: counters_since(&counters),
        before,
        peak,
        after,
        elapsed,
    }
}

/// portnet's view of every endpoint of the phase: gone.
pub fn check_endpoints_gone(handler: &NodeHandler<Ctl>, endpoints: &[Endpoint]) {
    let net = handler.network();
    for &endpoint in endpoints {
        let id = endpoint.resource_id();
        assert_eq!(net.is_ready(id), None, "{endpoint} still known after the phase");
        assert_eq!(net.send(endpoint, b"late"), SendStatus::ResourceNotFound, "send to {endpoint}");
        assert!(!net.remove(id), "{endpoint} removable after the phase");
    }
}

pub fn print_server(phase: &Phase) {
    let (before, peak, after) = (phase.before, phase.peak, phase.after);
    for (name, c) in ["FramedTcp", "Ws"].iter().zip(phase.server) {
        println!(
            "  server {name}: {} accepted, {} disconnected, {} removed by the server; {} \
             messages ({:.1} MiB) echoed, {} refused",
            c.accepted,
            c.disconnected,
            c.removed,
            c.messages,
            mib(c.bytes),
            c.echo_refused
        );
    }
    let heap = phase.heap;
    println!(
        "  server heap (event thread): peak {:.1} MiB in {} allocations, kept after the phase \
         {} B in {} allocations; {:.0} MiB allocated in all",
        mib(heap.bytes_max as usize),
        heap.count_max,
        heap.bytes_current,
        heap.count_current,
        mib(heap.bytes_total as usize)
    );
    println!(
        "  server process: fds {} -> peak {} -> {}; VmRSS {:.1} -> peak {:.1} -> {:.1} MiB \
         (kept {:+.2} MiB); VmHWM {:.1} MiB",
        before.fds,
        peak.fds,
        after.fds,
        mib(before.rss),
        mib(peak.rss),
        mib(after.rss),
        (after.rss as f64 - before.rss as f64) / (1 << 20) as f64,
        mib(status_kib("VmHWM:"))
    );
    let (rounds, mean, worst) = phase.probe;
    println!("  probe: {rounds} echoes during the phase, mean {mean:?}, worst {worst:?}");
    println!("  kernel TCP counters during the phase: {:?}", phase.tcp);
    println!("  server log: {:?}", phase.server_log);
    println!("  client log: {:?}", phase.client_log);
    println!("  {} took {:.1} s", phase.name, phase.elapsed.as_secs_f64());
}

/// The leak checks every phase ends with (besides `check_endpoints_gone`). Resident memory is
/// compared with `rss_base` if given: the start, or the end of a phase that reached the same
/// peak the same way (an allocator keeps what it once took).
pub fn check_no_leak(phase: &Phase, start: Sample, rss_base: Option<usize>) {
    let name = phase.name;
    assert_eq!(phase.after.fds, start.fds, "{name}: descriptors left open");
    let heap = phase.heap;
    assert!(
        heap.bytes_current < HEAP_KEPT,
        "{name}: the server's event thread kept {} B in {} allocations",
        heap.bytes_current,
        heap.count_current
    );
    if let Some(base) = rss_base {
        let kept = phase.after.rss.saturating_sub(base);
        assert!(kept < RSS_KEPT, "{name}: resident memory grew by {:.1} MiB", mib(kept));
    }
    assert!(phase.probe.0 > 0, "{name}: no probe");
}

pub fn print_soak(soak: &Phase) {
    let (sent, echoed) = (soak.get("sent"), soak.get("echoed"));
    println!(
        "{}: {} connections ({} FramedTcp + {} Ws) held by one server node; opened in {:.2} s \
         ({:.0}/s, {} in flight at most), {} connect failures; connect (and Ws handshake) p50 \
         {} us, p99 {} us, max {} us",
        soak.name,
        soak.get("connected"),
        soak.get("framed"),
        soak.get("ws"),
        soak.get("connect_ms") as f64 / 1000.0,
        soak.get("connected") as f64 * 1000.0 / soak.get("connect_ms").max(1) as f64,
        soak.get("window"),
        soak.get("connect_failed"),
        soak.get("connect_p50_us"),
        soak.get("connect_p99_us"),
        soak.get("connect_max_us"),
    );
    println!(
        "  traffic: {sent} messages ({:.1} MiB) sent in {:.1} s ({:.0} msg/s), {echoed} echoed \
         intact and in order, {} lost, {} corrupt, {} out of order, {} refused by send, {} \
         unasked disconnects; round trip p50 {} us, p99 {} us, max {} us; drained in {} ms",
        mib(soak.get("bytes") as usize),
        soak.get("traffic_ms") as f64 / 1000.0,
        sent as f64 * 1000.0 / soak.get("traffic_ms").max(1) as f64,
        soak.get("lost"),
        soak.get("corrupt"),
        soak.get("out_of_order"),
        soak.get("refused"),
        soak.get("disconnects"),
        soak.get("rtt_p50_us"),
        soak.get("rtt_p99_us"),
        soak.get("rtt_max_us"),
        soak.get("drain_ms")
    );
    println!(
        "  client process with all connections open: {} fds, VmRSS {:.1} MiB",
        soak.get("fds"),
        mib(soak.get("rss") as usize)
    );
}

/// Soak: everything sent came back, the server saw exactly that.
pub fn check_soak(soak: &Phase, secs: u64) {
    let name = soak.name;
    let (sent, echoed) = (soak.get("sent"), soak.get("echoed"));
    let connections = (SOAK_FRAMED + SOAK_WS) as u64;
    assert_eq!(soak.get("connected"), connections, "{name}: connections opened");
    assert_eq!(soak.get("connect_failed"), 0, "{name}: connects failed");
    assert_eq!(soak.get("lost"), 0, "{name}: messages lost");
    assert_eq!(soak.get("corrupt"), 0, "{name}: messages corrupted");
    assert_eq!(soak.get("out_of_order"), 0, "{name}: messages out of order");
    assert_eq!(soak.get("disconnects"), 0, "{name}: connections dropped during the soak");
    assert_eq!(soak.get("refused"), 0, "{name}: client sends refused");
    assert_eq!(echoed, sent, "{name}: echoes");
    // The rate reached depends on the machine's load: it is reported above, not asserted. Any
    // working client sends at least one tick's catch-up (`SOAK_RATE / 10`) in a phase of a
    // second or more.
    if secs > 0 {
        let least = SOAK_RATE / 10;
        assert!(sent >= least, "{name}: the client sent only {sent} messages (< {least})");
    }
    let [framed, ws] = soak.server;
    assert_eq!((framed.accepted, ws.accepted), (SOAK_FRAMED, SOAK_WS), "{name}: accepted");
    let disconnected = (framed.disconnected, ws.disconnected);
    assert_eq!(disconnected, (SOAK_FRAMED, SOAK_WS), "{name}: disconnected");
    assert_eq!(soak.server_total(|c| c.messages), sent, "{name}: server received");
    assert_eq!(soak.server_total(|c| c.echo_refused), 0, "{name}: server echoes refused");
}

pub fn print_churn(churn: &Phase) {
    println!(
        "churn: {} connections ({} FramedTcp + {} Ws) opened, given one message each and \
         closed, {CHURN_CONCURRENCY} at a time, in {:.1} s ({:.0} connections/s); {} closed by \
         the client, {} by the server after its echo; {} echoed, {} lost, {} corrupt, {} connect \
         failures, {} unasked disconnects; connect to echo p50 {} us, p99 {} us, max {} us",
        churn.get("completed"),
        churn.get("framed"),
        churn.get("ws"),
        churn.get("churn_ms") as f64 / 1000.0,
        churn.get("completed") as f64 * 1000.0 / churn.get("churn_ms").max(1) as f64,
        churn.get("client_closed"),
        churn.get("server_closed"),
        churn.get("echoed"),
        churn.get("lost"),
        churn.get("corrupt"),
        churn.get("connect_failed"),
        churn.get("disconnects"),
        churn.get("rtt_p50_us"),
        churn.get("rtt_p99_us"),
        churn.get("rtt_max_us"),
    );
}

/// Churn: every connection got its echo, then ended as asked.
pub fn check_churn(churn: &Phase, total: u64) {
    assert_eq!(churn.get("completed"), total);
    assert_eq!(churn.get("echoed"), total);
    assert_eq!(churn.get("lost"), 0, "churn: messages lost");
    assert_eq!(churn.get("corrupt"), 0, "churn: messages corrupted");
    assert_eq!(churn.get("connect_failed"), 0, "churn: connects failed");
    assert_eq!(churn.get("disconnects"), 0, "churn: connections dropped unasked");
    assert_eq!(churn.server_total(|c| c.accepted), total, "churn: accepted");
    assert_eq!(churn.server_total(|c| c.messages), total, "churn: server received");
    assert_eq!(churn.server_total(|c| c.echo_refused), 0, "churn: server echoes refused");
    for c in churn.server {
        assert_eq!(c.accepted, c.disconnected + c.removed, "churn: connections unaccounted");
    }
    assert_eq!(churn.server_total(|c| c.removed), churn.get("server_closed"));
}
