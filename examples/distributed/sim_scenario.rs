//! The distributed example under faults, as a simulator scenario: shared by
//! `examples/sim-distributed.rs` and the multi-seed runner in `sim/`. It expects the crate that
//! includes it to declare the example's `discovery`, `participant` and `protocol` modules at
//! its root.

use crate::{discovery, participant};
use portnet::node::{NodeHandler, NodeListener};
use portnet::sim::{Link, World};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The participants and when (virtual time) each joins.
pub const PARTICIPANTS: [(&str, u64); 5] =
    [("alice", 0), ("bob", 400), ("carol", 800), ("dave", 1200), ("erin", 3200)];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Builds the world, runs it until every participant has left, and panics if one of them was
/// not greeted by every other one. Returns how many faults the run injected; with
/// `require_faults`, also panics if the planned faults did not happen (a test that injected
/// nothing proves nothing; shrinking removes faults on purpose, so it turns this off).
pub fn scenario(world: &mut World, udp_loss: bool, require_faults: bool) -> usize {
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
