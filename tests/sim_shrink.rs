//! The multi-seed runner and shrinking: from a failing seed to the one fault that matters.

use portnet::network::{NetEvent, Transport};
use portnet::node::{NodeEvent, NodeHandler, NodeListener};
use portnet::sim::{self, Link, World};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A naive Udp client: five requests, no retries; it expects all five answers. Any loss breaks
/// it, so the minimal failing fault set is a single lost datagram.
fn naive_udp(world: &mut World) {
    world.set_default_link(Link { loss: 0.2, jitter: Duration::from_millis(2), ..Link::default() });
    world.node("server", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, "0.0.0.0:7000").unwrap();
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                handler.network().send(endpoint, data);
            }
        });
    });
    let answers = Arc::new(Mutex::new(0));
    let counted = answers.clone();
    world.node("client", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (server, _) = handler.network().connect(Transport::Udp, "server:7000").unwrap();
        for i in 0..5u8 {
            handler.network().send(server, &[i]);
        }
        handler.signals().send_with_timer((), Duration::from_secs(1));
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(..)) => *counted.lock().unwrap() += 1,
            NodeEvent::Signal(()) => handler.stop(),
            _ => (),
        });
    });
    world.run_until(|w| w.is_finished("client"));
    assert_eq!(*answers.lock().unwrap(), 5, "answers lost");
}

#[test]
fn runner_finds_failing_seeds_and_shrinking_keeps_one_fault() {
    let failures = sim::run_seeds(0..40, naive_udp);
    assert!(!failures.is_empty(), "20 % loss on 10 datagrams must break some of 40 seeds");
    assert!(failures.len() < 40, "and spare some");
    let failure = &failures[0];
    assert!(failure.message.contains("answers lost"), "{}", failure.message);
    assert!(!failure.faults.is_empty());

    let shrunk = sim::shrink(failure.seed, naive_udp).expect("the seed fails again");
    assert_eq!(shrunk.faults.len(), 1, "{shrunk}");
    assert!(shrunk.faults[0].description.contains("lose a datagram"), "{shrunk}");
    assert!(shrunk.trace.iter().any(|line| line.contains("fault #")), "the trace shows it");
    // The passing seeds really pass.
    let passing = (0..40).find(|s| failures.iter().all(|f| f.seed != *s)).unwrap();
    assert!(sim::shrink(passing, naive_udp).is_none());
}

#[test]
fn same_seed_same_trace() {
    let scenario = |world: &mut World| {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| naive_udp(world)));
    };
    for seed in 0..5 {
        sim::check_determinism(seed, scenario).unwrap();
    }
}
