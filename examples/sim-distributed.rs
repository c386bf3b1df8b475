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

use portnet::node::{NodeHandler, NodeListener};
use portnet::sim::{self, Link, SEED_VAR, World};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The participants and when (virtual time) each joins.
const PARTICIPANTS: [(&str, u64); 5] =
    [("alice", 0), ("bob", 400), ("carol", 800), ("dave", 1200), ("erin", 3200)];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Builds the world, runs it until every participant has left, and panics if one of them was
/// not greeted by every other one. Returns how many faults the run injected; with
/// `require_faults`, also panics if the planned faults did not happen (a test that injected
/// nothing proves nothing; shrinking removes faults on purpose, so it turns this off).
fn scenario(world: &mut World, udp_loss: bool, require_faults: bool) -> usize {
    // Between participants (their Udp greetings): jitter, and loss only with `--udp-loss`.
    let loss = if udp_loss { 0.2 } else { 0.0 };
    world.set_default_link(Link { latency: ms(2), jitter: ms(8), loss, ..Link::default() });
    // To and from the discovery server (FramedTcp): slower, and lossy. A stream retransmits
    // what is lost, so this only delays; the protocol must not care.
    let to_discovery = Link { latency: ms(5), jitter: ms(20), loss: 0.2, ..Link::default() };

    let discovery_addr: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let greeted: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();

    let bound = discovery_addr.clone();
    world.node("discovery", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 5000));
        discovery::discovery_server(handler, listener, listen, |addr| {
            *bound.lock().unwrap() = Some(addr)
        })
        .expect("the discovery server runs");
    });

    for (i, &(name, joins_at)) in PARTICIPANTS.iter().enumerate() {
        let discovery_addr = discovery_addr.clone();
        let greeted = greeted.clone();
        let app = move |handler: NodeHandler<participant::Signal>,
                        listener: NodeListener<participant::Signal>| {
            let config = participant::Config {
                name: name.to_string(),
                // The example takes a socket address: the one the discovery server bound (it
                // started first). Node names ("discovery:5000") work wherever an application
                // takes a string.
                discovery_addr: discovery_addr.lock().unwrap().expect("discovery listens"),
                udp_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                // Everyone has joined long before the first one leaves.
                leave_after: Some(Duration::from_secs(10) + ms(500 * i as u64)),
            };
            let greeted_by =
                participant::participant(handler, listener, config).expect("the participant runs");
            greeted.lock().unwrap().insert(name.to_string(), greeted_by);
        };
        world.at(ms(joins_at), move |w| {
            w.node(name, app);
            w.set_link(name, "discovery", to_discovery);
            w.set_link("discovery", name, to_discovery);
            // Carol joins behind a partition: her connect waits until it heals.
            if name == "carol" {
                w.partition("carol", "discovery");
            }
        });
    }
    world.at(ms(2500), |w| w.heal());
    // Bob is cut off from the discovery server while erin joins: he hears of her late.
    world.at(ms(3000), |w| w.partition("bob", "discovery"));
    world.at(ms(4500), |w| w.heal());

    let everyone_left = |w: &World| PARTICIPANTS.iter().all(|(name, _)| w.is_finished(name));
    world.run_until(|w| w.now() > ms(PARTICIPANTS[4].1) && everyone_left(w));

    let greeted = greeted.lock().unwrap();
    for (name, _) in PARTICIPANTS {
        let Some(greeted_by) = greeted.get(name) else {
            panic!("{name} never finished (at {:?})", world.now());
        };
        for (other, _) in PARTICIPANTS.iter().filter(|(other, _)| *other != name) {
            assert!(greeted_by.contains(*other), "{name} was never greeted by {other}");
        }
    }
    // The faults are on the trace.
    let trace = world.trace();
    let faults: Vec<&String> = trace.iter().filter(|line| line.contains(" fault #")).collect();
    if !require_faults {
        return faults.len();
    }
    assert_eq!(faults.iter().filter(|f| f.contains("partition")).count(), 4, "{faults:#?}");
    assert!(faults.iter().any(|f| f.contains("lose a FramedTcp segment")), "{faults:#?}");
    faults.len()
}

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
