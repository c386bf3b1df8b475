//! The simulator's multi-seed runner and trace replayer, over the scenarios in this file.
//!
//! ```text
//! cargo run -p portnet-sim-runner -- list
//! cargo run -p portnet-sim-runner -- seeds distributed --count 200       # seeds 1..=200
//! cargo run -p portnet-sim-runner -- seeds distributed-udp-loss --from 1 --count 50
//! cargo run -p portnet-sim-runner -- trace distributed 7 > distributed-7.trace
//! cargo run -p portnet-sim-runner -- replay /tmp/portnet-sim/distributed-udp-loss-3.trace
//! ```
//!
//! `seeds` runs a scenario once per seed and lists the failing seeds; it then shrinks the first
//! failure to the fewest, mildest faults that still break it. It writes the first failing run's
//! trace to `<temp>/portnet-sim/<scenario>-<seed>.trace` (and the minimal run's beside it, as
//! `.shrunk-trace`). `trace` prints any seed's trace. `replay` reruns the seed a trace file is named
//! after and compares the new trace with the file line by line: the same seed gives the same
//! trace on any machine, so a difference means the scenario (or portnet) changed, or is not
//! deterministic; the first differing line says where.
//!
//! Your own scenarios: copy this file next to your tests and put your scenario functions in
//! `SCENARIOS`; or call `portnet::sim::{run_seeds, shrink, check_determinism}` from a test.

#[path = "../examples/distributed/discovery.rs"]
mod discovery;
#[path = "../examples/distributed/participant.rs"]
mod participant;
#[path = "../examples/distributed/protocol.rs"]
mod protocol;
#[path = "../examples/distributed/sim_scenario.rs"]
mod sim_scenario;

use portnet::sim::{self, World};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A scenario builds a world, runs it, and panics when an invariant breaks.
type Scenario = fn(&mut World);

/// The scenarios this runner knows, by name.
const SCENARIOS: &[(&str, &str, Scenario)] = &[
    (
        "distributed",
        "the distributed example (discovery server + 5 participants) under jitter, stream loss \
         and partitions; every participant must be greeted by every other one",
        |world| {
            sim_scenario::scenario(world, false, false);
        },
    ),
    (
        "distributed-udp-loss",
        "the same with 20 % datagram loss between participants: the example greets once, \
         without retries, so some seeds fail (a demonstration of shrinking)",
        |world| {
            sim_scenario::scenario(world, true, false);
        },
    ),
];

fn scenario(name: &str) -> Result<Scenario, String> {
    SCENARIOS
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(.., run)| *run)
        .ok_or_else(|| format!("no scenario {name:?}; `list` shows them"))
}

fn usage() -> String {
    "usage: sim-runner list\n       \
     sim-runner seeds <scenario> [--from N] [--count N]\n       \
     sim-runner trace <scenario> <seed>\n       \
     sim-runner replay <file named <scenario>-<seed>.trace>"
        .to_string()
}

/// The value after `flag`, parsed; `default` when the flag is absent.
fn flag(args: &[String], flag: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number\n{}", usage())),
    }
}

/// Runs `scenario` with `seed` and returns its trace, or the failure with the trace so far.
fn trace_of(scenario: Scenario, seed: u64) -> (Vec<String>, Option<String>) {
    let mut world = World::with_seed(seed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&mut world)));
    let failure = outcome.err().map(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(a panic without a message)".into())
    });
    (world.trace(), failure)
}

fn trace_file(name: &str, seed: u64) -> PathBuf {
    std::env::temp_dir().join("portnet-sim").join(format!("{name}-{seed}.trace"))
}

fn write_trace(path: &Path, trace: &[String]) -> String {
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(path, trace.join("\n") + "\n"));
    match written {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(not written: {e})"),
    }
}

fn seeds(args: &[String]) -> Result<bool, String> {
    let name = args.first().ok_or_else(usage)?;
    let run = scenario(name)?;
    let (from, count) = (flag(args, "--from", 1)?, flag(args, "--count", 100)?);
    let failures = sim::run_seeds(from..from + count, run);
    for failure in &failures {
        let first = failure.message.lines().next().unwrap_or("");
        println!("seed {} FAILED ({} faults): {first}", failure.seed, failure.faults.len());
    }
    println!("{name}: {} of {count} seed(s) from {from} failed", failures.len());
    let Some(first) = failures.first() else { return Ok(true) };
    // The failing run as it happened: `replay` reruns exactly this.
    let (trace, _) = trace_of(run, first.seed);
    let written = write_trace(&trace_file(name, first.seed), &trace);
    println!("\ntrace of seed {}: {written}", first.seed);
    println!("  replay it: cargo run -p portnet-sim-runner -- replay {written}");
    println!("\nshrinking seed {}...", first.seed);
    if let Some(shrunk) = sim::shrink(first.seed, run) {
        let path = trace_file(name, shrunk.seed).with_extension("shrunk-trace");
        let written = write_trace(&path, &shrunk.trace);
        println!("{shrunk}\n  {} runs; trace of the minimal run: {written}", shrunk.runs);
    }
    Ok(false)
}

/// Reruns the seed a trace file is named after and compares line by line.
fn replay(args: &[String]) -> Result<bool, String> {
    let path = Path::new(args.first().ok_or_else(usage)?);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let (name, seed) = stem
        .rsplit_once('-')
        .and_then(|(name, seed)| Some((name, seed.parse::<u64>().ok()?)))
        .ok_or_else(|| format!("{}: not named <scenario>-<seed>.trace", path.display()))?;
    let run = scenario(name)?;
    let recorded = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let recorded: Vec<&str> = recorded.lines().collect();
    let (trace, failure) = trace_of(run, seed);
    for (line, (old, new)) in recorded.iter().zip(&trace).enumerate() {
        if old != new {
            println!(
                "{}: differs at line {}:\n  recorded: {old}\n  replayed: {new}",
                path.display(),
                line + 1
            );
            return Ok(false);
        }
    }
    if recorded.len() != trace.len() {
        println!(
            "{}: the recorded trace has {} lines, the replay {}",
            path.display(),
            recorded.len(),
            trace.len()
        );
        return Ok(false);
    }
    let outcome = failure
        .map_or("passed".to_string(), |f| format!("failed: {}", f.lines().next().unwrap_or("")));
    println!(
        "{}: replayed seed {seed} of {name}: identical, {} lines; the run {outcome}",
        path.display(),
        trace.len()
    );
    Ok(true)
}

fn main() -> ExitCode {
    // A failing scenario panics; this runner reports it, without a backtrace per seed.
    std::panic::set_hook(Box::new(|_| {}));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("list") => {
            for (name, about, _) in SCENARIOS {
                println!("{name}\n    {about}");
            }
            Ok(true)
        }
        Some("seeds") => seeds(&args[1..]),
        Some("trace") => (|| {
            let name = args.get(1).ok_or_else(usage)?;
            let seed = args.get(2).and_then(|s| s.parse().ok()).ok_or_else(usage)?;
            let (trace, failure) = trace_of(scenario(name)?, seed);
            for line in &trace {
                println!("{line}");
            }
            if let Some(failure) = &failure {
                eprintln!("the run failed: {failure}");
            }
            Ok(failure.is_none())
        })(),
        Some("replay") => replay(&args[1..]),
        _ => Err(usage()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}
