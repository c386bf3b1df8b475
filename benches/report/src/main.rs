//! The performance report: runs portnet beside message-io 0.19 beside raw std sockets and
//! writes the tables and charts of `docs/performance.md`.
//!
//! ```text
//! cargo run --release -p portnet-perf-report -- --quick     # about a minute after building
//! cargo run --release -p portnet-perf-report -- --full      # as long as it takes (~15 min)
//! cargo run --release -p portnet-perf-report -- --quick --out target/perf-report   # CI
//! ```
//!
//! Options: `--out DIR` (default `docs/`: the region between `<!-- report:begin -->` and
//! `<!-- report:end -->` of `DIR/performance.md` is replaced, the rest kept; charts go to
//! `DIR/charts/`), `--skip-criterion` (reuse criterion's last results), `--skip-cpu`,
//! `--skip-scale`. `--skip-cpu` also skips the per-function breakdown of a round trip
//! (`profile.rs`). Criterion's output is read from `$CARGO_TARGET_DIR/criterion` (default
//! `target/criterion`).
//!
//! The same binary is the subject of the other measurements (it re-executes itself):
//!
//! ```text
//! portnet-perf-report cpu <raw|portnet|message-io> <Tcp|FramedTcp|Udp|Ws> <messages> [size]
//! portnet-perf-report scale-server <lib> <transport> <connections>
//! portnet-perf-report scale-client <transport> <addr> <connections> [size]
//! portnet-perf-report rtt <raw|portnet> <transport> <round trips>
//! ```

mod profile;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use portnet_perf_report::{Kind, Lib, stall_reason};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// Bytes per message in the small-message, fan-in, CPU and scale cases.
const SMALL: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    match args.first().map(String::as_str) {
        Some("cpu") => {
            let (lib, kind) = (parse_lib(arg(1)), parse_kind(arg(2)));
            let messages: u64 = arg(3).parse().unwrap_or_else(|_| usage());
            let size = args.get(4).map_or(SMALL, |s| s.parse().unwrap_or_else(|_| usage()));
            let mut pair = portnet_perf_report::one_way(lib, kind, size);
            // The same warm-up in every run: subtracting two runs removes it with the set-up.
            pair.run(2 * kind.ack_step());
            pair.run(messages);
            // Skips tearing down (identical in both runs anyway).
            std::process::exit(0);
        }
        Some("fanin") => {
            // fanin <lib> <transport> <clients> <burst> <rounds>: a look at one fan-in case.
            let (lib, kind) = (parse_lib(arg(1)), parse_kind(arg(2)));
            let number = |i| arg(i).parse::<u64>().unwrap_or_else(|_| usage());
            let (clients, burst, rounds) = (number(3), number(4), number(5));
            let started = Instant::now();
            let mut fan = portnet_perf_report::fan_in(lib, kind, clients as usize, burst, SMALL);
            eprintln!("connected in {:.3} s", started.elapsed().as_secs_f64());
            let started = Instant::now();
            for _ in 0..rounds {
                fan.burst();
            }
            let secs = started.elapsed().as_secs_f64();
            eprintln!("{:.3} M messages/s", (clients * burst * rounds) as f64 / secs / 1e6);
            std::process::exit(0);
        }
        Some("rtt") => {
            let (lib, kind) = (parse_lib(arg(1)), parse_kind(arg(2)));
            let round_trips: u64 = arg(3).parse().unwrap_or_else(|_| usage());
            let Some(mut echo) =
                portnet_perf_report::round_trip::round_trip(lib, kind, profile::SIZE)
            else {
                usage()
            };
            // The same warm-up in every run: subtracting two runs removes it with the set-up.
            echo.run(64);
            echo.run(round_trips);
            // Skips tearing down (identical in both runs anyway).
            std::process::exit(0);
        }
        Some("scale-server") => {
            let connections = arg(3).parse().unwrap_or_else(|_| usage());
            portnet_perf_report::scale_server(parse_lib(arg(1)), parse_kind(arg(2)), connections);
        }
        Some("scale-client") => {
            let addr = arg(2).parse().unwrap_or_else(|_| usage());
            let connections = arg(3).parse().unwrap_or_else(|_| usage());
            let size = args.get(4).map_or(SMALL, |s| s.parse().unwrap_or_else(|_| usage()));
            portnet_perf_report::scale_client(parse_kind(arg(1)), addr, connections, size);
        }
        _ => report(&args),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: portnet-perf-report [--quick|--full] [--out DIR] [--skip-criterion] \
         [--skip-cpu] [--skip-scale]\n       \
         portnet-perf-report cpu <lib> <transport> <messages> [size]\n       \
         portnet-perf-report scale-server <lib> <transport> <connections>\n       \
         portnet-perf-report scale-client <transport> <addr> <connections> [size]\n       \
         portnet-perf-report rtt <raw|portnet> <transport> <round trips>"
    );
    std::process::exit(2)
}

fn parse_lib(s: &str) -> Lib {
    Lib::parse(s).unwrap_or_else(|| usage())
}

fn parse_kind(s: &str) -> Kind {
    Kind::parse(s).unwrap_or_else(|| usage())
}

// ---------------------------------------------------------------------------------------------
// The report.
// ---------------------------------------------------------------------------------------------

struct Options {
    quick: bool,
    out: PathBuf,
    criterion: bool,
    cpu: bool,
    scale: bool,
}

/// Sizes of one mode.
struct Plan {
    /// Messages of the two callgrind runs: per message = difference / difference.
    cpu_runs: (u64, u64),
    /// Pairs of callgrind runs per case: the median is reported, with the lowest and highest.
    cpu_repeats: usize,
    connections: u64,
    /// How long one phase of the scale case may take before it counts as stalled.
    scale_phase: Duration,
}

fn workspace() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => std::env::current_dir().unwrap_or_default().join(dir),
        None => workspace().join("target"),
    }
}

fn report(args: &[String]) {
    let mut options = Options {
        quick: true,
        out: workspace().join("docs"),
        criterion: true,
        cpu: true,
        scale: true,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--full" => options.quick = false,
            "--out" => options.out = args.next().unwrap_or_else(|| usage()).into(),
            "--skip-criterion" => options.criterion = false,
            "--skip-cpu" => options.cpu = false,
            "--skip-scale" => options.scale = false,
            _ => usage(),
        }
    }
    let plan = if options.quick {
        Plan {
            cpu_runs: (2048, 16384),
            cpu_repeats: 1,
            connections: 1000,
            scale_phase: Duration::from_secs(30),
        }
    } else {
        Plan {
            cpu_runs: (8192, 131072),
            cpu_repeats: 3,
            connections: 10_000,
            scale_phase: Duration::from_secs(120),
        }
    };
    let started = Instant::now();
    let since = SystemTime::now();
    // `cargo bench -p portnet-perf-report` below rebuilds this very binary when portnet's
    // sources changed: the child processes run from a copy made now.
    let exe = std::env::current_exe().expect("this program's path");
    let copy = target_dir().join("perf-report").join(format!("subject-{}", std::process::id()));
    std::fs::create_dir_all(copy.parent().unwrap()).expect("create target/perf-report");
    std::fs::copy(&exe, &copy).expect("copy this program");
    SUBJECT.set(copy.clone()).expect("set once");
    let machine = Machine::read();
    say(format!("portnet-perf-report, {} mode", if options.quick { "short" } else { "full" }));

    let criterion_dir = target_dir().join("criterion");
    let estimates = if options.criterion {
        let quick = options.quick;
        run_criterion("portnet", "transports", quick, false);
        run_criterion("portnet-perf-report", "load", quick, false);
        // Results older than this run are stale.
        let mut estimates = read_criterion(&criterion_dir, Some(since));
        // The latency groups again with every thread on one core: unpinned round trips on 2
        // shared cores are bimodal (a wake-up that crosses to an idle core costs ~10 µs), so
        // the pinned ones show the cost per round trip. Same group names: read them now.
        // Small messages too: unpinned, their rate depends on how fast the other core wakes
        // (2–3× between a busy and an idle machine); on one core it is the CPU cost.
        if Command::new("taskset").arg("--version").output().is_ok_and(|o| o.status.success()) {
            let since = SystemTime::now();
            run_criterion("portnet", "transports", quick, true);
            run_criterion("portnet-perf-report", "load", quick, true);
            for ((group, member), estimate) in read_criterion(&criterion_dir, Some(since)) {
                if let Some(kind) = group.strip_prefix("latency/") {
                    estimates.insert((format!("pinned/{kind}"), member), estimate);
                } else if let Some(kind) = group.strip_prefix("small/") {
                    estimates.insert((format!("pinned-small/{kind}"), member), estimate);
                }
            }
        }
        estimates
    } else {
        // Whatever criterion kept from the last run (pinned latency, if it ran last, shows
        // as unpinned).
        read_criterion(&criterion_dir, None)
    };

    let cpu = if options.cpu { cpu_per_message(&plan) } else { Cpu::default() };
    let profile = if options.cpu { profile::profile() } else { profile::Profiles::default() };
    let scale = if options.scale { connection_scale(&plan) } else { HashMap::new() };

    let load_after = load_average();
    let report = Report { options: &options, plan: &plan, machine, estimates, cpu, profile, scale };
    report.write(load_after, started.elapsed());
    let _ = std::fs::remove_file(&copy);
    eprintln!("== done in {:.0} s: {}", started.elapsed().as_secs_f64(), options.out.display());
}

/// A progress line on stderr, with the seconds since the report started.
fn say(what: String) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("== [{:>4.0} s] {what}", start.elapsed().as_secs_f64());
}

/// The program the measurements run: a copy of this one (see `report`).
static SUBJECT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn subject() -> PathBuf {
    SUBJECT.get().cloned().unwrap_or_else(|| std::env::current_exe().expect("this program's path"))
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace());
    command
}

/// `cargo bench -p package --bench bench`; `pinned`: only the latency and small-message
/// groups, with cargo and the bench under `taskset -c 0`.
fn run_criterion(package: &str, bench: &str, quick: bool, pinned: bool) {
    let mode = match (quick, pinned) {
        (true, true) => " (quick, pinned to core 0)",
        (false, true) => " (pinned to core 0)",
        (true, false) => " (quick)",
        (false, false) => "",
    };
    say(format!("cargo bench -p {package} --bench {bench}{mode}"));
    let mut command = if pinned {
        let mut command = Command::new("taskset");
        command.args(["-c", "0"]).arg(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command.current_dir(workspace());
        command
    } else {
        cargo()
    };
    // `cargo run` gave this process the package's variables (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME, …). Build scripts such as ring's ask to rerun when those change, so
    // passing them on would rebuild ring, rustls and portnet (about a minute here) every time
    // the report and a plain `cargo bench` alternate.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let from_cargo_run = key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || matches!(
                key.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            );
        if from_cargo_run {
            command.env_remove(key.as_ref());
        }
    }
    command.args(["bench", "-p", package, "--bench", bench, "--"]);
    if pinned {
        command.arg(if bench == "load" { "small/" } else { "latency/" });
    }
    if quick {
        // Criterion's analysis bootstraps 100 000 resamples per case, about a second each
        // here: most of the short mode's time. 2 000 give the median's interval well enough
        // for a smoke run.
        command.args(["--nresamples", "2000"]);
    }
    if quick {
        command.env("PORTNET_BENCH_QUICK", "1");
    } else {
        command.env_remove("PORTNET_BENCH_QUICK");
    }
    // Criterion's console output goes to stderr with ours: stdout stays clean.
    let status = command.stdout(Stdio::from(std::io::stderr())).status();
    match status {
        Ok(status) if status.success() => (),
        other => panic!("cargo bench -p {package} --bench {bench} failed: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Criterion's results.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Amount {
    Bytes(f64),
    Elements(f64),
}

/// One member's time per iteration: the median and its 95 % confidence interval, in ns.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    median: f64,
    low: f64,
    high: f64,
    amount: Option<Amount>,
}

impl Estimate {
    /// (value, low, high) of a rate: `amount / time`, in `unit`s per second.
    fn rate(&self, unit: f64) -> Option<(f64, f64, f64)> {
        let amount = match self.amount? {
            Amount::Bytes(n) | Amount::Elements(n) => n,
        };
        let per_second = |ns: f64| amount / (ns * 1e-9) / unit;
        Some((per_second(self.median), per_second(self.high), per_second(self.low)))
    }
}

type Estimates = HashMap<(String, String), Estimate>;

fn read_criterion(dir: &Path, since: Option<SystemTime>) -> Estimates {
    let mut estimates = HashMap::new();
    let Ok(groups) = std::fs::read_dir(dir) else { return estimates };
    for group in groups.flatten() {
        let Ok(members) = std::fs::read_dir(group.path()) else { continue };
        for member in members.flatten() {
            let new = member.path().join("new");
            let (Some(benchmark), Some(values)) =
                (read_json(&new.join("benchmark.json")), read_json(&new.join("estimates.json")))
            else {
                continue;
            };
            let modified = std::fs::metadata(new.join("estimates.json")).and_then(|m| m.modified());
            if let (Some(since), Ok(modified)) = (since, modified)
                && modified < since
            {
                continue;
            }
            let text = |key: &str| benchmark[key].as_str().unwrap_or_default().to_owned();
            let median = &values["median"];
            let number = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
            let amount = match &benchmark["throughput"] {
                serde_json::Value::Object(map) => match map.iter().next() {
                    Some((unit, n)) if unit.starts_with("Bytes") => Some(Amount::Bytes(number(n))),
                    Some((_, n)) => Some(Amount::Elements(number(n))),
                    None => None,
                },
                _ => None,
            };
            estimates.insert(
                (text("group_id"), text("function_id")),
                Estimate {
                    median: number(&median["point_estimate"]),
                    low: number(&median["confidence_interval"]["lower_bound"]),
                    high: number(&median["confidence_interval"]["upper_bound"]),
                    amount,
                },
            );
        }
    }
    estimates
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

// ---------------------------------------------------------------------------------------------
// Instructions per message (callgrind).
// ---------------------------------------------------------------------------------------------

/// The median of the repeats, the lowest and the highest.
type Spread = (f64, f64, f64);

#[derive(Default)]
struct Cpu {
    /// Instructions per message, or why there is none.
    per_message: HashMap<(Lib, Kind), Result<Spread, String>>,
    note: Option<String>,
}

fn cpu_per_message(plan: &Plan) -> Cpu {
    let valgrind = Command::new("valgrind").arg("--version").output();
    if !valgrind.is_ok_and(|o| o.status.success()) {
        return Cpu {
            note: Some("valgrind is not installed: not measured".into()),
            ..Cpu::default()
        };
    }
    let dir = target_dir().join("perf-report").join("callgrind");
    std::fs::create_dir_all(&dir).expect("create the callgrind directory");
    let exe = subject();
    let cases: Vec<(Lib, Kind)> = Kind::ALL
        .into_iter()
        .flat_map(|kind| Lib::ALL.map(|lib| (lib, kind)))
        .filter(|&(lib, kind)| stall_reason(lib, kind).is_none())
        .collect();
    say(format!("callgrind: {} cases × 2 runs, {:?} messages", cases.len(), plan.cpu_runs));
    // Two at a time: instruction counts do not depend on what else runs.
    let (tx, rx) = mpsc::channel();
    let queue = std::sync::Mutex::new(cases.clone().into_iter());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (tx, queue, dir, exe) = (tx.clone(), &queue, &dir, &exe);
            scope.spawn(move || {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some((lib, kind)) = next else { break };
                    let count = |n: u64| callgrind(exe, dir, lib, kind, n);
                    let messages = round_up(plan.cpu_runs.1, kind.ack_step())
                        - round_up(plan.cpu_runs.0, kind.ack_step());
                    let result = (0..plan.cpu_repeats)
                        .map(|_| {
                            let base = count(plan.cpu_runs.0)?;
                            let total = count(plan.cpu_runs.1)?;
                            Ok((total as f64 - base as f64) / messages as f64)
                        })
                        .collect::<Result<Vec<f64>, String>>()
                        .map(|mut runs| {
                            runs.sort_by(f64::total_cmp);
                            (runs[runs.len() / 2], runs[0], runs[runs.len() - 1])
                        });
                    eprintln!(
                        "   {} {}: {result:.0?} instructions per message (median, min, max)",
                        lib.name(),
                        kind.name()
                    );
                    let _ = tx.send(((lib, kind), result));
                }
            });
        }
    });
    drop(tx);
    Cpu { per_message: rx.into_iter().collect(), note: None }
}

fn round_up(n: u64, step: u64) -> u64 {
    n.div_ceil(step) * step
}

/// Total instructions of one run of `cpu lib kind messages` under callgrind.
fn callgrind(exe: &Path, dir: &Path, lib: Lib, kind: Kind, messages: u64) -> Result<u64, String> {
    let out = dir.join(format!("callgrind.{}.{}.{messages}.out", lib.name(), kind.name()));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        // Valgrind runs one thread at a time. Its default hand-over lets the sender run ahead
        // by varying amounts, so a read takes a varying number of messages and totals varied
        // by ±10 % between runs here; fair scheduling alternates threads in a fixed order:
        // the same total to 0.1 % (Ws: a few %, each read there zero-fills tungstenite's
        // buffer, 4 KiB at most, up to its varying free capacity).
        .arg("--fair-sched=yes")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["cpu", lib.name(), kind.name(), &messages.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("valgrind: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!("exit {}: {}", output.status, tail.join(" / ")));
    }
    stderr
        .lines()
        .find_map(|line| line.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| "no 'Collected' line from callgrind".into())
}

// ---------------------------------------------------------------------------------------------
// Connection scale.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Scale {
    connect: Option<f64>,
    echo: Option<f64>,
    close: Option<f64>,
    /// Resident bytes of the server before any connection, with all of them idle, and its peak.
    rss_base: Option<u64>,
    rss_idle: Option<u64>,
    hwm: Option<u64>,
    /// Connects that stalled (SYN retransmitted: the accept queue was full), if any.
    stalls: Option<String>,
    /// What went wrong, if anything.
    failure: Option<String>,
}

impl Scale {
    fn idle_per_connection(&self, connections: u64) -> Option<f64> {
        Some((self.rss_idle? as f64 - self.rss_base? as f64) / connections as f64)
    }
}

fn connection_scale(plan: &Plan) -> HashMap<(Lib, Kind), Scale> {
    let mut results = HashMap::new();
    for kind in Kind::CONNECTED {
        for lib in Lib::ALL {
            say(format!("scale: {} connections, {} {}", plan.connections, lib.name(), kind.name()));
            let result = scale_case(plan, lib, kind);
            eprintln!("   {result:?}");
            results.insert((lib, kind), result);
        }
    }
    results
}

/// A child process whose stdout lines arrive on a channel.
struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Process {
    fn start(args: &[String]) -> std::io::Result<Process> {
        let mut child = Command::new(subject())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Process { child, stdin, lines })
    }

    /// Waits for a line starting with `word`; returns the rest.
    fn expect(&self, word: &str, deadline: Instant) -> Result<String, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(word) {
                        return Ok(rest.trim().to_owned());
                    }
                    if let Some(error) = line.strip_prefix("error") {
                        return Err(error.trim().to_owned());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("no '{word}' within the time allowed"));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("exited before '{word}'"));
                }
            }
        }
    }

    fn say(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}");
        }
    }

    /// `VmRSS` or `VmHWM` of the process, in bytes.
    fn memory(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|line| line.starts_with(field))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scale_case(plan: &Plan, lib: Lib, kind: Kind) -> Scale {
    let mut scale = Scale::default();
    if let Err(e) = scale_phases(plan, lib, kind, &mut scale) {
        scale.failure = Some(e);
    }
    scale
}

fn scale_phases(plan: &Plan, lib: Lib, kind: Kind, scale: &mut Scale) -> Result<(), String> {
    let n = plan.connections.to_string();
    let start_process = |args: Vec<String>| Process::start(&args).map_err(|e| e.to_string());
    let mut server = start_process(vec![
        "scale-server".into(),
        lib.name().into(),
        kind.name().into(),
        n.clone(),
    ])?;
    let addr = server.expect("listening", Instant::now() + Duration::from_secs(10))?;
    scale.rss_base = server.memory("VmRSS:");
    let started = Instant::now();
    let mut client = start_process(vec!["scale-client".into(), kind.name().into(), addr, n])?;
    let phase = |what: &str, result: Result<String, String>| {
        result.map_err(|e| format!("{what}: {e} (after {:.1} s)", started.elapsed().as_secs_f64()))
    };
    let deadline = Instant::now() + plan.scale_phase;
    let connected = phase("connect (client)", client.expect("connected", deadline))?;
    let mut words = connected.split_whitespace().skip(1);
    if let (Some(slow), Some(slowest)) = (words.next(), words.next())
        && slow != "0"
    {
        scale.stalls = Some(format!("{slow} connects took ≥ 0.5 s (longest {slowest} s)"));
    }
    phase("connect (server)", server.expect("accepted", deadline))?;
    scale.connect = Some(started.elapsed().as_secs_f64());
    // Idle: every connection open, nothing sent yet.
    std::thread::sleep(Duration::from_millis(200));
    scale.rss_idle = server.memory("VmRSS:");

    let started = Instant::now();
    client.say("echo");
    phase("echo", client.expect("echoed", Instant::now() + plan.scale_phase))?;
    scale.echo = Some(started.elapsed().as_secs_f64());

    let started = Instant::now();
    client.say("close");
    let deadline = Instant::now() + plan.scale_phase;
    phase("close (client)", client.expect("closed", deadline))?;
    phase("close (server)", server.expect("disconnected", deadline))?;
    scale.close = Some(started.elapsed().as_secs_f64());
    scale.hwm = server.memory("VmHWM:");
    server.say("quit");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The machine.
// ---------------------------------------------------------------------------------------------

struct Machine {
    cpu: String,
    cores: usize,
    memory: String,
    kernel: String,
    rustc: String,
    commit: String,
    load_before: String,
    date: String,
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, v)| v))
            .map_or_else(|| std::env::consts::ARCH.to_owned(), |v| v.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or_else(|| "?".into(), |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("{} {}", std::env::consts::OS, s.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.into());
        let root = workspace();
        let root = root.to_string_lossy();
        let commit = command_line("git", &["-C", &root, "rev-parse", "--short", "HEAD"])
            .map(|commit| {
                let dirty = command_line("git", &["-C", &root, "status", "--porcelain", "-uno"])
                    .is_some_and(|s| !s.is_empty());
                if dirty { format!("{commit} + uncommitted changes") } else { commit }
            })
            .unwrap_or_else(|| "?".into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory,
            kernel,
            rustc: command_line("rustc", &["-V"]).unwrap_or_else(|| "?".into()),
            commit,
            load_before: load_average(),
            date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing: Markdown tables and SVG charts.
// ---------------------------------------------------------------------------------------------

struct Report<'a> {
    options: &'a Options,
    plan: &'a Plan,
    machine: Machine,
    estimates: Estimates,
    cpu: Cpu,
    profile: profile::Profiles,
    scale: HashMap<(Lib, Kind), Scale>,
}

/// Per member and transport: a value and, when known, its spread (low, high).
type Values = HashMap<(Lib, Kind), (f64, Option<(f64, f64)>)>;

/// One figure: a value (with its spread, when known) per transport and member.
struct Figure {
    file: &'static str,
    title: String,
    unit: &'static str,
    kinds: Vec<Kind>,
    values: Values,
    /// Whether more is better (throughput) or worse (latency, instructions, memory).
    higher_is_better: bool,
    digits: usize,
    /// Whether the members named by [`stall_reason`] were left out.
    skips_stalls: bool,
}

impl Figure {
    fn get(&self, lib: Lib, kind: Kind) -> Option<f64> {
        self.values.get(&(lib, kind)).map(|v| v.0)
    }

    fn cell(&self, lib: Lib, kind: Kind) -> String {
        match self.values.get(&(lib, kind)) {
            Some((v, Some((low, high)))) => {
                format!(
                    "{} ({}–{})",
                    fmt(*v, self.digits),
                    fmt(*low, self.digits),
                    fmt(*high, self.digits)
                )
            }
            Some((v, None)) => fmt(*v, self.digits),
            None if self.skips_stalls && stall_reason(lib, kind).is_some() => "stalls ¹".into(),
            None => "—".into(),
        }
    }

    /// A table: transport, raw, portnet, message-io, portnet / raw, portnet / message-io.
    fn table(&self, out: &mut String) {
        let ratio_title = "portnet / raw";
        let _ = writeln!(
            out,
            "| transport | raw {u} | portnet {u} | message-io {u} | {ratio_title} | portnet / message-io |",
            u = self.unit
        );
        out.push_str("|---|---|---|---|---|---|\n");
        for &kind in &self.kinds {
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b != 0.0 && a / b < 0.01 => "< 0.01".into(),
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                _ => "—".into(),
            };
            let portnet = self.get(Lib::Portnet, kind);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                kind.name(),
                self.cell(Lib::Raw, kind),
                self.cell(Lib::Portnet, kind),
                self.cell(Lib::MessageIo, kind),
                ratio(portnet, self.get(Lib::Raw, kind)),
                ratio(portnet, self.get(Lib::MessageIo, kind)),
            );
        }
        if let Some(reason) = self
            .kinds
            .iter()
            .filter(|_| self.skips_stalls)
            .find_map(|&kind| Lib::ALL.into_iter().find_map(|lib| stall_reason(lib, kind)))
        {
            let _ = writeln!(
                out,
                "\n¹ Not run: {reason} (`stall_reason` in `benches/report/src/lib.rs`)."
            );
        }
    }
}

fn fmt(v: f64, digits: usize) -> String {
    if v.abs() >= 1000.0 {
        // Thin groups of three: 12 345.
        let s = format!("{v:.0}");
        let bytes = s.as_bytes();
        let mut out = String::new();
        for (i, c) in bytes.iter().enumerate() {
            if i > 0 && (bytes.len() - i) % 3 == 0 && bytes[i - 1] != b'-' {
                out.push(' ');
            }
            out.push(*c as char);
        }
        out
    } else {
        format!("{v:.digits$}")
    }
}

impl Report<'_> {
    fn criterion_figure(
        &self,
        group: &str,
        file: &'static str,
        title: String,
        kinds: &[Kind],
        value: impl Fn(&Estimate) -> Option<(f64, f64, f64)>,
    ) -> (Figure, &'static str) {
        let mut values = HashMap::new();
        for &kind in kinds {
            for lib in Lib::ALL {
                let key = (format!("{group}/{}", kind.name()), lib.name().to_owned());
                if let Some((v, low, high)) = self.estimates.get(&key).and_then(&value) {
                    values.insert((lib, kind), (v, Some((low, high))));
                }
            }
        }
        let unit = "";
        let figure = Figure {
            file,
            title,
            unit,
            kinds: kinds.to_vec(),
            values,
            higher_is_better: true,
            digits: 2,
            skips_stalls: matches!(group, "small" | "fanin" | "pinned-small"),
        };
        (figure, unit)
    }

    fn figures(&self) -> Vec<Figure> {
        let mut figures = Vec::new();
        let (mut latency, _) = self.criterion_figure(
            "latency",
            "latency.svg",
            "1-byte round trip, median µs (lower is better)".into(),
            &Kind::ALL,
            |e| Some((e.median / 1e3, e.low / 1e3, e.high / 1e3)),
        );
        latency.unit = "µs";
        latency.higher_is_better = false;
        let (mut throughput, _) = self.criterion_figure(
            "throughput",
            "throughput.svg",
            "64 KiB messages one way, GB/s (higher is better)".into(),
            &Kind::ALL,
            |e| e.rate(1e9),
        );
        throughput.unit = "GB/s";
        let (mut small, _) = self.criterion_figure(
            "small",
            "small-messages.svg",
            "64-byte messages one way, million per second (higher is better)".into(),
            &Kind::ALL,
            |e| e.rate(1e6),
        );
        small.unit = "M/s";
        let (mut fan_in, _) = self.criterion_figure(
            "fanin",
            "fan-in.svg",
            "Fan-in: 1 000 clients' bursts of 64-byte messages into one node, million per second"
                .into(),
            &Kind::CONNECTED,
            |e| e.rate(1e6),
        );
        fan_in.unit = "M/s";
        let (mut pinned, _) = self.criterion_figure(
            "pinned",
            "latency-pinned.svg",
            "1-byte round trip, every thread on one core (taskset -c 0), median µs".into(),
            &Kind::ALL,
            |e| Some((e.median / 1e3, e.low / 1e3, e.high / 1e3)),
        );
        pinned.unit = "µs";
        pinned.higher_is_better = false;
        figures.extend([throughput, latency]);
        if !pinned.values.is_empty() {
            figures.push(pinned);
        }
        figures.push(small);
        let (mut pinned_small, _) = self.criterion_figure(
            "pinned-small",
            "small-messages-pinned.svg",
            "64-byte messages one way, every thread on one core (taskset -c 0), million per second"
                .into(),
            &Kind::ALL,
            |e| e.rate(1e6),
        );
        pinned_small.unit = "M/s";
        pinned_small.skips_stalls = true;
        if !pinned_small.values.is_empty() {
            figures.push(pinned_small);
        }
        figures.push(fan_in);

        let mut cpu_values = HashMap::new();
        for (key, value) in &self.cpu.per_message {
            if let Ok((median, low, high)) = value {
                let spread = (self.plan.cpu_repeats > 1).then_some((*low, *high));
                cpu_values.insert(*key, (*median, spread));
            }
        }
        figures.push(Figure {
            file: "cpu-per-message.svg",
            title: "Instructions per 64-byte message, send + receive (callgrind; lower is better)"
                .into(),
            unit: "instr.",
            kinds: Kind::ALL.to_vec(),
            values: cpu_values,
            higher_is_better: false,
            digits: 0,
            skips_stalls: true,
        });

        let n = self.plan.connections;
        let mut time = HashMap::new();
        let mut memory = HashMap::new();
        for (key, scale) in &self.scale {
            if let (Some(a), Some(b), Some(c)) = (scale.connect, scale.echo, scale.close) {
                time.insert(*key, (a + b + c, None));
            }
            if let Some(bytes) = scale.idle_per_connection(n) {
                memory.insert(*key, (bytes / 1024.0, None));
            }
        }
        figures.push(Figure {
            file: "conn-scale-time.svg",
            title: format!(
                "{} connections: open, echo one message on each, close; seconds",
                fmt(n as f64, 0)
            ),
            unit: "s",
            kinds: Kind::CONNECTED.to_vec(),
            values: time,
            higher_is_better: false,
            digits: 2,
            skips_stalls: false,
        });
        figures.push(Figure {
            file: "memory-per-connection.svg",
            title: "Server resident memory per idle connection, KiB (lower is better)".into(),
            unit: "KiB",
            kinds: Kind::CONNECTED.to_vec(),
            values: memory,
            higher_is_better: false,
            digits: 1,
            skips_stalls: false,
        });
        figures
    }

    fn write(&self, load_after: String, elapsed: Duration) {
        let out = &self.options.out;
        let charts = out.join("charts");
        std::fs::create_dir_all(&charts).expect("create the charts directory");
        let figures = self.figures();
        for figure in &figures {
            if let Err(e) = chart(&charts.join(figure.file), figure) {
                eprintln!("chart {}: {e}", figure.file);
            }
        }
        let region = self.markdown(&figures, load_after, elapsed);
        let page = out.join("performance.md");
        let text = std::fs::read_to_string(&page).unwrap_or_default();
        std::fs::write(&page, splice(&text, &region)).expect("write performance.md");
    }

    fn markdown(&self, figures: &[Figure], load_after: String, elapsed: Duration) -> String {
        let m = &self.machine;
        let mode = if self.options.quick { "--quick" } else { "--full" };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## Measured side by side (generated)\n\n\
             Written by `cargo run --release -p portnet-perf-report -- {mode}` \
             (`benches/report/`) on {date}, in {secs:.0} s; do not edit between the markers. \
             Each figure is raw blocking std sockets, portnet and message-io =0.19.0 measured in \
             the same run, interleaved per transport, on loopback. Brackets give criterion's 95 % \
             confidence interval of the median. {quick}\n",
            date = m.date,
            secs = elapsed.as_secs_f64(),
            quick = if self.options.quick {
                "**Short mode**: few samples, 1 000 connections instead of 10 000; a smoke \
                 run, not figures to quote."
            } else {
                ""
            },
        );
        let _ = writeln!(
            s,
            "| machine | |\n|---|---|\n| CPU | `{}` |\n| cores | {} (shared with other jobs) |\n\
             | memory | {} |\n| kernel | {} |\n| toolchain | {} |\n| portnet | commit {} |\n\
             | load average (1, 5, 15 min) | {} at the start, {} at the end |\n",
            m.cpu, m.cores, m.memory, m.kernel, m.rustc, m.commit, m.load_before, load_after
        );
        self.goals(&mut s, figures);
        let n = self.plan.connections;
        for figure in figures {
            let _ = writeln!(
                s,
                "### {}\n\n![{}](charts/{})\n",
                figure.title, figure.title, figure.file
            );
            figure.table(&mut s);
            s.push('\n');
            match figure.file {
                "throughput.svg" => s.push_str(
                    "`benches/transports.rs`: rounds of 256 messages (16 in short mode) of 64 KiB \
                     (`Udp`: 65 507 bytes, goodput). GB = 10⁹ bytes.\n\n",
                ),
                "latency.svg" => s.push_str(
                    "`benches/transports.rs`, unpinned: on 2 shared cores round trips are bimodal \
                     (3–4 µs when both threads share a core, 11–14 µs when a wake-up crosses to \
                     an idle one), so compare members within a row; the pinned figure that \
                     follows (when it ran) shows the cost per round trip.\n\n",
                ),
                "latency-pinned.svg" => s.push_str(
                    "The latency groups of `benches/transports.rs` run again under \
                     `taskset -c 0` (cargo, the bench and all its threads on one core): no \
                     cross-core wake-ups, so the difference to raw is the library's own cost \
                     per round trip. message-io's FramedTcp waits for Nagle's delayed \
                     acknowledgement (two writes per frame without `TCP_NODELAY`).\n\n",
                ),
                "small-messages-pinned.svg" => s.push_str(
                    "The same groups under `taskset -c 0`: sender and receiver share one core, \
                     so the rate is the inverse of the CPU time per message, kernel included, \
                     and does not depend on how fast an idle core wakes.\n\n",
                ),
                "small-messages.svg" => s.push_str(
                    "`benches/report/benches/load.rs` `small/<transport>`: 64-byte messages sent \
                     one at a time from the bench thread to a receiver on its own thread, at most \
                     1 024 in flight (`Udp`: 32, so nothing is lost), acknowledged every 128 \
                     (`Udp`: 16) through an in-process channel.\n\n",
                ),
                "fan-in.svg" => s.push_str(
                    "`load.rs` `fanin/<transport>`: 1 000 raw std clients connected to one \
                     server; per iteration each sends a burst of 64-byte messages (100, 16 in \
                     short mode), one client after the other from the bench thread, and the \
                     iteration ends when the server has counted them all. The server is a \
                     portnet or message-io node, or for raw a thread per connection.\n\n",
                ),
                "cpu-per-message.svg" => {
                    let _ = writeln!(
                        s,
                        "`valgrind --tool=callgrind` on `portnet-perf-report cpu <lib> <transport> \
                         <n>`: the one-way case above in one process (sender on the main thread, \
                         receiver on its own), every instruction of the process counted, \
                         user space only (the kernel's work is not counted). Per message = \
                         (instructions of a run of {b} messages − those of a run of {a}) / \
                         ({b} − {a}): set-up cancels out. Valgrind runs one thread at a time; \
                         `--fair-sched=yes` hands over in a fixed order, and the machine's load \
                         does not enter the count, but how many messages one wake-up reads \
                         still depends on timing: repeats mostly agree within a few %, and \
                         `Ws` varies several-fold, since each socket read zero-fills \
                         tungstenite's read buffer (`BytesMut::resize`: most of portnet's \
                         `Ws` count). {repeats}{note}\n",
                        a = self.plan.cpu_runs.0,
                        b = self.plan.cpu_runs.1,
                        repeats = if self.plan.cpu_repeats > 1 {
                            format!(
                                "Median of {} pairs of runs, brackets: lowest and highest.",
                                self.plan.cpu_repeats
                            )
                        } else {
                            "One pair of runs per case.".into()
                        },
                        note =
                            self.cpu.note.as_deref().map(|n| format!(" {n}.")).unwrap_or_default(),
                    );
                    let failures: Vec<String> = self
                        .cpu
                        .per_message
                        .iter()
                        .filter_map(|((lib, kind), r)| {
                            r.as_ref().err().map(|e| format!("{} {}: {e}", lib.name(), kind.name()))
                        })
                        .collect();
                    for failure in failures {
                        let _ = writeln!(s, "- failed: {failure}");
                    }
                    s.push('\n');
                    self.profile.markdown(&mut s);
                }
                "conn-scale-time.svg" => self.scale_table(&mut s, n),
                _ => (),
            }
        }
        s
    }

    fn scale_table(&self, s: &mut String, n: u64) {
        let _ = writeln!(
            s,
            "The server (`portnet-perf-report scale-server`: a portnet or message-io echo node, or \
             for raw a thread per connection with 128 KiB stacks) and the client \
             (`scale-client`: raw std sockets, the same for every server) are separate processes: \
             the open-file limit does not fit both ends of {n} connections in one. The client \
             connects one connection after the other (`Ws`: with its handshake), then sends one \
             64-byte message on each and reads every echo, then closes them all. Times are from \
             the report's start of each phase until both processes have seen its end \
             (connections accepted, all disconnected). Memory is the server's `VmRSS` before the \
             first connection and with all {n} idle, and its `VmHWM` (peak) at the end. Listen \
             backlogs: portnet 4 096 (`adapters::tcp::LISTENER_BACKLOG`, not configurable), \
             message-io 1 024 (mio 0.8's `TcpListener::bind`, and its Tcp adapter), raw 4 096 \
             (set with socket2: std's `TcpListener::bind` uses 128, which made 10 000 connects \
             take 70 s here); the kernel caps them at `somaxconn` = {somaxconn}. A connect that \
             finds the accept queue full has its SYN dropped and retried after 1 s: the outcome \
             column counts connects that took 0.5 s or more.\n",
            n = fmt(n as f64, 0),
            somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "?".into()),
        );
        s.push_str(
            "| transport | member | connect s | echo s | close s | RSS before MiB | idle RSS per connection | peak RSS (VmHWM) MiB | outcome |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for kind in Kind::CONNECTED {
            for lib in Lib::ALL {
                let Some(r) = self.scale.get(&(lib, kind)) else { continue };
                let secs = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2}"));
                let mib = |v: Option<u64>| {
                    v.map_or("—".into(), |v| format!("{:.1}", v as f64 / 1048576.0))
                };
                let per = r
                    .idle_per_connection(n)
                    .map_or("—".into(), |b| format!("{:.1} KiB", b / 1024.0));
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    kind.name(),
                    lib.name(),
                    secs(r.connect),
                    secs(r.echo),
                    secs(r.close),
                    mib(r.rss_base),
                    per,
                    mib(r.hwm),
                    outcome(r).replace('|', "/"),
                );
            }
        }
        s.push('\n');
    }

    fn goals(&self, s: &mut String, figures: &[Figure]) {
        let find = |file: &str| figures.iter().find(|f| f.file == file);
        let verdict = |met: Option<bool>, detail: String| match met {
            Some(true) => format!("**met** ({detail})"),
            Some(false) => format!("**not met** ({detail})"),
            None => "not measured".into(),
        };
        s.push_str("Goals of issues 6 and 18, from this run:\n\n| goal | Tcp | FramedTcp | Udp | Ws |\n|---|---|---|---|---|\n");
        let row = |s: &mut String, goal: &str, cell: &dyn Fn(Kind) -> String| {
            let cells: Vec<String> = Kind::ALL.into_iter().map(cell).collect();
            let _ = writeln!(s, "| {goal} | {} |", cells.join(" | "));
        };
        let values = |file: &str, kind: Kind| {
            let f = find(file)?;
            Some((f.get(Lib::Raw, kind)?, f.get(Lib::Portnet, kind)?, f.get(Lib::MessageIo, kind)?))
        };
        row(
            s,
            "64 KiB throughput ≥ 95 % of raw (Tcp, FramedTcp, Udp), ahead of message-io",
            &|kind| match values("throughput.svg", kind) {
                Some((raw, p, m)) => verdict(
                    Some((kind == Kind::Ws || p >= 0.95 * raw) && p > m),
                    format!("{:.0} % of raw, {:.2}× message-io", 100.0 * p / raw, p / m),
                ),
                None => verdict(None, String::new()),
            },
        );
        let latency = if find("latency-pinned.svg").is_some() {
            ("latency-pinned.svg", "pinned")
        } else {
            ("latency.svg", "unpinned")
        };
        let goal = format!("round trip ≤ raw + 0.5 µs and below message-io ({})", latency.1);
        row(s, &goal, &|kind| match values(latency.0, kind) {
            Some((raw, p, m)) => verdict(
                Some(p <= raw + 0.5 && p < m),
                format!("{:+.2} µs vs raw, {:+.2} µs vs message-io", p - raw, p - m),
            ),
            None => verdict(None, String::new()),
        });
        row(s, "instructions per message ≤ 1.2× raw and below message-io", &|kind| {
            let Some(f) = find("cpu-per-message.svg") else { return verdict(None, String::new()) };
            match (f.get(Lib::Raw, kind), f.get(Lib::Portnet, kind), f.get(Lib::MessageIo, kind)) {
                (Some(raw), Some(p), Some(m)) => verdict(
                    Some(p <= 1.2 * raw && p < m),
                    format!("{:.2}× raw, {:.2}× message-io", p / raw, p / m),
                ),
                (Some(raw), Some(p), None) => {
                    verdict(Some(p <= 1.2 * raw), format!("{:.2}× raw; message-io stalls", p / raw))
                }
                _ => verdict(None, String::new()),
            }
        });
        let n = self.plan.connections;
        let goal = "10 000 connections held and echoed; idle memory < 1 KiB each (Tcp, FramedTcp), \
                    < 8 KiB (Ws)";
        row(s, goal, &|kind| {
            if kind == Kind::Udp {
                return "—".into();
            }
            match self.scale.get(&(Lib::Portnet, kind)) {
                Some(r) => {
                    let per = r.idle_per_connection(n).map(|b| b / 1024.0);
                    let ok = r.failure.is_none() && r.close.is_some();
                    let detail = format!(
                        "{} connections {}, {}",
                        fmt(n as f64, 0),
                        if ok { "ok" } else { "failed" },
                        per.map_or("—".into(), |k| format!("{k:.1} KiB each"))
                    );
                    if n < 10_000 {
                        return format!("not measured at 10 000 (short mode: {detail})");
                    }
                    let limit = if kind == Kind::Ws { 8.0 } else { 1.0 };
                    verdict(Some(ok && per.is_some_and(|k| k < limit)), detail)
                }
                None => verdict(None, String::new()),
            }
        });
        row(s, "≥ 1 million 64-byte FramedTcp messages per second one way", &|kind| {
            if kind != Kind::FramedTcp {
                return "—".into();
            }
            let get = |file| find(file).and_then(|f| f.get(Lib::Portnet, kind));
            // Either way of running counts: unpinned depends on how fast an idle core wakes.
            match (get("small-messages.svg"), get("small-messages-pinned.svg")) {
                (Some(p), pinned) => verdict(
                    Some(p.max(pinned.unwrap_or(0.0)) >= 1.0),
                    match pinned {
                        Some(q) => format!("{p:.2} M/s unpinned, {q:.2} M/s on one core"),
                        None => format!("{p:.2} M/s"),
                    },
                ),
                (None, _) => verdict(None, String::new()),
            }
        });
        s.push('\n');
    }
}

fn outcome(r: &Scale) -> String {
    match (&r.failure, &r.stalls) {
        (Some(failure), _) => format!("failed: {failure}"),
        (None, Some(stalls)) => format!("ok; {stalls}"),
        (None, None) => "ok".into(),
    }
}

const BEGIN: &str = "<!-- report:begin -->";
const END: &str = "<!-- report:end -->";

/// Replaces the marked region of `page` (or adds one after the first paragraph following the
/// title; or makes a page of it alone).
fn splice(page: &str, region: &str) -> String {
    let block = format!("{BEGIN}\n{region}{END}");
    if let (Some(begin), Some(end)) = (page.find(BEGIN), page.find(END))
        && begin < end
    {
        return format!("{}{block}{}", &page[..begin], &page[end + END.len()..]);
    }
    if page.trim().is_empty() {
        return format!("# Performance\n\n{block}\n");
    }
    // After the introduction: before the first `## ` heading.
    match page.find("\n## ") {
        Some(at) => format!("{}\n{block}\n{}", &page[..at + 1], &page[at + 1..]),
        None => format!("{page}\n{block}\n"),
    }
}

/// A grouped bar chart: one group per transport, bars raw / portnet / message-io, with error
/// bars when the figure has a spread.
fn chart(path: &Path, figure: &Figure) -> Result<(), Box<dyn std::error::Error>> {
    const COLORS: [RGBColor; 3] =
        [RGBColor(150, 150, 150), RGBColor(31, 119, 180), RGBColor(255, 127, 14)];
    let kinds = &figure.kinds;
    let top = figure
        .values
        .values()
        .map(|(v, spread)| spread.map_or(*v, |(_, high)| high.max(*v)))
        .fold(0.0f64, f64::max);
    // Head room for the legend above the tallest bar.
    let top = if top > 0.0 { top * 1.4 } else { 1.0 };
    let root = SVGBackend::new(path, (720, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&figure.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..kinds.len() as f64, 0f64..top)?;
    chart.configure_mesh().disable_x_mesh().disable_x_axis().y_desc(figure.unit).draw()?;
    let width = 0.25;
    for (i, lib) in Lib::ALL.into_iter().enumerate() {
        let color = COLORS[i];
        let bars: Vec<(f64, f64)> = kinds
            .iter()
            .enumerate()
            .filter_map(|(k, kind)| {
                figure.get(lib, *kind).map(|v| (k as f64 + 0.125 + i as f64 * width, v))
            })
            .collect();
        chart
            .draw_series(
                bars.iter().map(|&(x, v)| {
                    Rectangle::new([(x, 0.0), (x + width * 0.9, v)], color.filled())
                }),
            )?
            .label(lib.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        let label = TextStyle::from(("sans-serif", 10).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(bars.iter().map(|&(x, v)| {
            // Above the error bar, if any.
            let kind = kinds[x.floor() as usize];
            let above = match figure.values.get(&(lib, kind)) {
                Some((_, Some((_, high)))) => high.max(v),
                _ => v,
            };
            let at = (x + width * 0.45, above + top * 0.01);
            Text::new(fmt(v, figure.digits), at, label.clone())
        }))?;
        for (k, kind) in kinds.iter().enumerate() {
            if let Some((v, Some((low, high)))) = figure.values.get(&(lib, *kind)) {
                let x = k as f64 + 0.125 + i as f64 * width + width * 0.45;
                chart.draw_series(std::iter::once(ErrorBar::new_vertical(
                    x,
                    *low,
                    *v,
                    *high,
                    BLACK.stroke_width(1),
                    6,
                )))?;
            }
        }
    }
    for (k, kind) in kinds.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(k as f64 + 0.5, 0.0));
        let centred =
            TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(kind.name(), (x, y + 8), centred))?;
    }
    chart
        .configure_series_labels()
        .position(if figure.higher_is_better {
            SeriesLabelPosition::UpperLeft
        } else {
            SeriesLabelPosition::UpperRight
        })
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
