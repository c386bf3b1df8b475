//! Each node's random source (`NodeHandler::rng`): in a simulated world it replays from the
//! world's seed; natively it is OS-seeded, so nodes differ.

use portnet::network::{NetEvent, Transport};
use portnet::node::{self, NodeEvent};
use portnet::sim::{World, check_determinism};
use rand::{Rng, RngCore};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Per node, what it drew: 16 numbers at start, and a jittered retry's draws after it.
fn draws(seed: u64, restart: bool) -> BTreeMap<String, Vec<u64>> {
    let drawn: Arc<Mutex<BTreeMap<String, Vec<u64>>>> = Arc::default();
    let mut world = World::with_seed(seed);
    for name in ["a", "b"] {
        let drawn = drawn.clone();
        world.node::<(), _>(name, move |handler, listener| {
            let mut rng = handler.rng();
            let mut mine: Vec<u64> = (0..16).map(|_| rng.next_u64()).collect();
            drawn.lock().unwrap().insert(name.into(), mine.clone());
            let jitter = handler.rng().random_range(0..1000);
            handler.signals().send_with_timer((), Duration::from_millis(jitter));
            let drawn = drawn.clone();
            listener.for_each(move |event| {
                if let NodeEvent::Signal(()) = event {
                    // Another handle draws from the same sequence.
                    mine.push(handler.rng().next_u64());
                    mine.push(handler.now().as_millis() as u64);
                    drawn.lock().unwrap().insert(name.into(), mine.clone());
                    handler.stop();
                }
            });
        });
    }
    world.run_until_idle();
    if restart {
        world.restart("a");
        world.run_until_idle();
    }
    drawn.lock().unwrap().clone()
}

#[test]
fn the_same_seed_gives_each_node_the_same_sequence() {
    let (first, second) = (draws(11, false), draws(11, false));
    assert_eq!(first, second);
    assert_eq!(first["a"].len(), 18);
    assert_ne!(first["a"], first["b"], "two nodes of one world draw the same numbers");
    // The timer fired at the jittered time it drew, not at a fixed one.
    assert!(first["a"][17] < 1000);
}

#[test]
fn different_seeds_give_different_sequences() {
    let (first, second) = (draws(11, false), draws(12, false));
    assert_ne!(first["a"], second["a"]);
    assert_ne!(first["b"], second["b"]);
}

#[test]
fn a_restarted_node_draws_afresh_and_the_same_in_every_run() {
    let before = draws(11, false);
    let (first, second) = (draws(11, true), draws(11, true));
    assert_eq!(first, second);
    assert_ne!(first["a"][..16], before["a"][..16], "a restart repeated its first life's draws");
    assert_eq!(first["b"], before["b"], "restarting a changed what b drew");
}

#[test]
fn a_run_whose_choices_come_from_the_node_rng_is_deterministic() {
    // Peer selection by the node's rng: which server each client talks to is a random choice,
    // yet the whole run replays.
    let scenario = |world: &mut World| {
        for server in ["s0", "s1", "s2"] {
            world.node::<(), _>(server, |handler, listener| {
                handler.network().listen(Transport::FramedTcp, "0.0.0.0:5000").unwrap();
                listener.for_each(move |event| {
                    if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                        handler.network().send(endpoint, data);
                    }
                });
            });
        }
        for client in ["c0", "c1", "c2", "c3"] {
            world.node::<(), _>(client, |handler, listener| {
                let server = handler.rng().random_range(0..3);
                let addr = format!("s{server}:5000");
                handler.network().connect(Transport::FramedTcp, addr).unwrap();
                listener.for_each(move |event| match event {
                    NodeEvent::Network(NetEvent::Connected(endpoint, true)) => {
                        handler.network().send(endpoint, b"hi");
                    }
                    NodeEvent::Network(NetEvent::Message(..)) => handler.stop(),
                    _ => (),
                });
            });
        }
        world.run_until_idle();
    };
    check_determinism(3, scenario).unwrap();
}

#[test]
fn natively_two_nodes_draw_different_sequences() {
    let (a, _a_listener) = node::split::<()>();
    let (b, _b_listener) = node::split::<()>();
    let (mut ra, mut rb) = (a.rng(), b.rng());
    let sa: Vec<u64> = (0..4).map(|_| ra.next_u64()).collect();
    let sb: Vec<u64> = (0..4).map(|_| rb.next_u64()).collect();
    assert_ne!(sa, sb);
    // Handles of one node share its sequence: a clone does not repeat what the other drew.
    let mut again = a.rng();
    assert!(!sa.contains(&again.next_u64()));
}
