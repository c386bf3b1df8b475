//! Tests the distributed example (`examples/distributed/`) under faults in the simulator, as you
//! would test your own application: the discovery server and the participants are the
//! example's own functions, unchanged, running in a `portnet::sim::World` of six nodes with
//! jitter, lossy links to the discovery server, and partitions that heal. The invariant: every
//! participant is greeted by every other one.
//!
//! ```text
//! cargo run --example sim-distributed                          # seeds 1..=8; all must pass
//! cargo run --example sim-distributed -- --seeds 100           # seeds 1..=100
//! PORTNET_SIM_SEED=5 cargo run --example sim-distributed       # just seed 5 (a rerun)
//! cargo run --example sim-distributed -- --udp-loss            # greetings may be lost too
//! ```
//!
//! `--udp-loss` also loses datagrams between participants. The example greets once, without
//! retries, so the invariant breaks: the run lists the failing seeds, shrinks the first one to
//! the fault that matters (e.g. "alice -> erin: lose a datagram") and exits with a failure, as
//! a test of your own application would.

#[path = "distributed/discovery.rs"]
mod discovery;
#[path = "distributed/participant.rs"]
mod participant;
#[path = "distributed/protocol.rs"]
mod protocol;
#[path = "distributed/sim_scenario.rs"]
mod sim_scenario;

use portnet::sim::{self, SEED_VAR};
use sim_scenario::scenario;
use std::process::ExitCode;
use std::sync::Mutex;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let udp_loss = args.iter().any(|a| a == "--udp-loss");
    let count: u64 = match args.iter().position(|a| a == "--seeds") {
        Some(i) => match args.get(i + 1).and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => {
                eprintln!("usage: sim-distributed [--seeds N] [--udp-loss]");
                return ExitCode::FAILURE;
            }
        },
        None => 8,
    };
    // A seed from the environment reruns exactly that case.
    let seeds: Vec<u64> = match std::env::var(SEED_VAR).ok().and_then(|s| s.trim().parse().ok()) {
        Some(seed) => vec![seed],
        None => (1..=count).collect(),
    };
    let flags = if udp_loss { " -- --udp-loss" } else { "" };

    let injected = Mutex::new(Vec::new());
    let failures = sim::run_seeds(seeds.iter().copied(), |world| {
        let faults = scenario(world, udp_loss, true);
        injected.lock().unwrap().push(faults);
    });
    println!();
    for failure in &failures {
        println!("seed {} FAILED: {}", failure.seed, failure.message);
        println!("  rerun: {SEED_VAR}={} cargo run --example sim-distributed{flags}", failure.seed);
    }
    let Some(first) = failures.first() else {
        println!(
            "sim-distributed: every participant was greeted by every other one, for {} seed(s) \
             ({}), under jitter, stream loss{} and partitions: {:?} faults injected",
            seeds.len(),
            if seeds.len() == 1 { seeds[0].to_string() } else { format!("{seeds:?}") },
            if udp_loss { ", datagram loss" } else { "" },
            injected.lock().unwrap(),
        );
        return ExitCode::SUCCESS;
    };

    // Find the faults that matter: replay the first failing seed with fewer and fewer faults.
    println!("\nshrinking seed {} ({} faults)...", first.seed, first.faults.len());
    if let Some(shrunk) = sim::shrink(first.seed, |world| {
        scenario(world, udp_loss, false);
    }) {
        let file = std::env::temp_dir().join(format!("sim-distributed-{}.trace", shrunk.seed));
        let written = std::fs::write(&file, shrunk.trace.join("\n") + "\n")
            .map(|()| file.display().to_string())
            .unwrap_or_else(|e| format!("(not written: {e})"));
        println!(
            "{shrunk}\n  trace of the minimal run ({} runs to find it): {written}",
            shrunk.runs
        );
    }
    println!(
        "\n{} of {} seed(s) failed{}",
        failures.len(),
        seeds.len(),
        if udp_loss { " (expected: the example greets once, without retries)" } else { "" }
    );
    ExitCode::FAILURE
}
