//! `check_determinism` compares what each application was handed, not only the trace: a
//! nondeterminism that changes no packet (a timer set from outside the seed) is still caught.

use portnet::network::{NetEvent, Transport};
use portnet::node::NodeEvent;
use portnet::sim::{World, check_determinism};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// A delay from outside the world's seed: std's hash keys differ on every call.
fn unseeded_delay() -> Duration {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    Duration::from_millis(1 + hasher.finish() % 1_000_000)
}

/// A node that waits a timer set from an unseeded source and then stops: no traffic at all.
fn timer_from_outside_the_seed(world: &mut World) {
    world.node::<(), _>("sleeper", |handler, listener| {
        handler.signals().send_with_timer((), unseeded_delay());
        listener.for_each(move |event| {
            if let NodeEvent::Signal(()) = event {
                handler.stop();
            }
        });
    });
    world.run_until_idle();
}

#[test]
fn an_application_level_nondeterminism_the_trace_misses_is_caught() {
    let run = || {
        let mut world = World::with_seed(5);
        world.record_app_events();
        timer_from_outside_the_seed(&mut world);
        (world.trace(), world.app_events())
    };
    let ((trace_a, apps_a), (trace_b, apps_b)) = (run(), run());
    // The trace alone cannot tell the runs apart: no packet, no fault differs.
    assert_eq!(trace_a, trace_b);
    assert_ne!(apps_a["sleeper"], apps_b["sleeper"], "the signal came at the same time");
    let error = check_determinism(5, timer_from_outside_the_seed).unwrap_err();
    assert!(error.contains("node \"sleeper\"'s application saw different events"), "{error}");
}

/// A server echoing a client's three messages: what each application sees is fixed by the seed.
fn echo(world: &mut World) {
    world.node::<(), _>("server", |handler, listener| {
        handler.network().listen(Transport::FramedTcp, "0.0.0.0:7000").unwrap();
        listener.for_each(move |event| {
            if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                handler.network().send(endpoint, data);
            }
        });
    });
    world.node::<(), _>("client", |handler, listener| {
        handler.network().connect(Transport::FramedTcp, "server:7000").unwrap();
        let mut echoed = 0;
        listener.for_each(move |event| match event {
            NodeEvent::Network(NetEvent::Connected(endpoint, true)) => {
                for message in [&b"one"[..], b"two", b"three"] {
                    handler.network().send(endpoint, message);
                }
            }
            NodeEvent::Network(NetEvent::Message(..)) => {
                echoed += 1;
                if echoed == 3 {
                    handler.stop();
                }
            }
            _ => (),
        });
    });
    world.run_until_idle();
}

#[test]
fn a_deterministic_run_passes_and_its_application_events_are_recorded() {
    check_determinism(9, echo).unwrap();
    let mut world = World::with_seed(9);
    world.record_app_events();
    echo(&mut world);
    let events = world.app_events();
    let client = &events["client"];
    assert!(client[0].contains("connected"), "{client:?}");
    assert_eq!(client.iter().filter(|line| line.contains(" message ")).count(), 3, "{client:?}");
    // Each message is told apart by its length and bytes.
    assert!(client.iter().any(|line| line.contains(" 5 bytes ")), "{client:?}");
    let server = &events["server"];
    assert!(server[0].contains("accepted"), "{server:?}");
    assert_eq!(server.iter().filter(|line| line.contains(" message ")).count(), 3);
}

#[test]
fn a_world_that_does_not_record_keeps_no_application_events() {
    let mut world = World::with_seed(9);
    echo(&mut world);
    assert!(world.app_events().is_empty());
}
