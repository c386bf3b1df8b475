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

/// A client that gives up when no answer comes within 5 s of virtual time; a 30 s partition
/// (and a crash of a bystander, which does not matter) breaks it.
fn impatient_client(world: &mut World) {
    world.node("server", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::FramedTcp, "0.0.0.0:7000").unwrap();
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                handler.network().send(endpoint, data);
            }
        });
    });
    world.node("bystander", |_handler: NodeHandler<()>, listener: NodeListener<()>| {
        listener.for_each(|_| ());
    });
    let gave_up = Arc::new(Mutex::new(false));
    let flag = gave_up.clone();
    world.node("client", move |handler: NodeHandler<bool>, listener: NodeListener<bool>| {
        let (server, _) = handler.network().connect(Transport::FramedTcp, "server:7000").unwrap();
        let mut sent = 0u32;
        let mut timer = None;
        handler.signals().send_with_timer(false, Duration::from_secs(1));
        listener.for_each(|event| match event {
            // Tick: one request a second, each with its own 5 s deadline.
            NodeEvent::Signal(false) if sent < 40 => {
                sent += 1;
                handler.network().send(server, &sent.to_be_bytes());
                if timer.is_none() {
                    timer = Some(handler.signals().send_with_timer(true, Duration::from_secs(5)));
                }
                handler.signals().send_with_timer(false, Duration::from_secs(1));
            }
            NodeEvent::Signal(false) => handler.stop(),
            NodeEvent::Network(NetEvent::Message(..)) => {
                if let Some(timer) = timer.take() {
                    handler.signals().cancel_timer(timer);
                }
            }
            NodeEvent::Signal(true) => *flag.lock().unwrap() = true,
            _ => (),
        });
    });
    world.at(Duration::from_secs(10), |w| w.partition("client", "server"));
    world.at(Duration::from_secs(12), |w| w.crash("bystander"));
    world.at(Duration::from_secs(20), |w| w.restart("bystander"));
    world.at(Duration::from_secs(40), |w| w.heal());
    world.run_until(|w| w.is_finished("client"));
    assert!(!*gave_up.lock().unwrap(), "the client gave up");
}

#[test]
fn shrinking_softens_a_partition_to_what_still_breaks() {
    let shrunk = sim::shrink(7, impatient_client).expect("a 30 s partition breaks it");
    // One direction is enough (no answers come back); the bystander's crash does not matter.
    assert_eq!(shrunk.faults.len(), 1, "{shrunk}");
    let fault = &shrunk.faults[0];
    assert!(fault.description.contains("partition"), "{shrunk}");
    assert_eq!(fault.duration, Some(Duration::from_secs(30)), "{shrunk}");
    // Halved while it still fails: 15 s and 7.5 s still break a client that waits 5 s for an
    // answer; 3.75 s does not.
    assert_eq!(fault.softened, Some(Duration::from_millis(7500)), "{shrunk}");
    assert!(shrunk.to_string().contains("still fails cut to 7.5s"), "{shrunk}");
    let cut = shrunk.trace.iter().any(|l| l.contains("cut short by the shrinker"));
    assert!(cut, "the trace shows it");
}
