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

mod chart;
mod cpu;
mod criterion;
mod machine;
mod markdown;
mod profile;
mod scale;

use cpu::{Cpu, cpu_per_message};
use criterion::{read_criterion, run_criterion};
use machine::{Machine, load_average};
use markdown::Report;
use portnet_perf_report::{Kind, Lib};
use scale::connection_scale;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
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
