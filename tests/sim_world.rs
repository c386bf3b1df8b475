//! The simulator's world: one test per control and behaviour of the world itself (determinism,
//! virtual time, stepping, failing loudly), every test asserting what a bug there would break.
//! The faults a world injects are tested in tests/sim_faults.rs (partitions, crashes, holds,
//! resets, pauses) and tests/sim_links.rs (what a link does to packets). Applications are
//! ordinary node functions (the ones a user writes, shared in tests/util/sim.rs); give-up logic
//! runs on virtual-time timers, never on real sleeps.

mod util;

use portnet::network::{NetEvent, SendStatus, Transport};
use portnet::node::{NodeEvent, NodeHandler, NodeListener, StoredNodeEvent};
use portnet::sim::{Link, World, check_determinism};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::sim::*;

/// TLS is not simulated: a `wss://` URL reaches its node as `ws://` does (on 443 when it names
/// no port, as natively), so an application written for a TLS server runs unchanged.
#[test]
fn wss_urls_connect_without_tls() {
    let (server_log, client_log) = (Log::default(), Log::default());
    let mut world = World::with_seed(5);
    world.node("server", reply_server(Transport::Ws, 443, server_log.clone()));
    let log = client_log.clone();
    world.node("client", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let network = handler.network();
        let (server, _) = network.connect(Transport::Ws, "wss://server/chat").unwrap();
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                log.push(format!("connected {ok}"));
                assert_eq!(handler.network().send(server, b"hi"), SendStatus::Sent);
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                log.push(format!("got {}", text(data)));
                handler.stop();
            }
            _ => (),
        });
    });
    assert!(world.run_until(|w| w.is_finished("client")));
    assert_eq!(client_log.lines(), ["connected true", "got re:hi"]);
    assert_eq!(server_log.with("request "), ["hi"]);
}

// ----- determinism -----

/// Several nodes, jitter, loss and duplication: Udp retries and a FramedTcp exchange.
fn busy_scenario(world: &mut World) {
    world.set_default_link(Link {
        latency: ms(3),
        jitter: ms(15),
        loss: 0.2,
        duplicate: 0.05,
        ..Link::default()
    });
    world.node("server", ack_server(4000, Log::default()));
    world.node("replier", reply_server(Transport::FramedTcp, 3000, Log::default()));
    for name in ["c1", "c2", "c3", "c4"] {
        world.node(name, retry_client("server:4000", 10, ms(40), Log::default()));
    }
    world.node("paced", paced_client("replier:3000", 10, ms(30), Log::default()));
    world.run_until_idle();
}

#[test]
fn same_seed_same_trace_and_different_seeds_differ() {
    check_determinism(77, busy_scenario).unwrap();

    let trace = |seed| {
        let mut world = World::with_seed(seed);
        busy_scenario(&mut world);
        assert!(world.is_finished("paced") && world.is_finished("c4"));
        world.trace()
    };
    let (a, b) = (trace(1), trace(2));
    assert!(a.len() > 100, "a busy scenario: {} lines", a.len());
    assert_ne!(a, b, "different seeds, different runs");
}

#[test]
fn check_determinism_reports_a_scenario_that_iterates_a_hash_map() {
    let scenario = |world: &mut World| {
        world.node("sink", udp_sink(4000, ms(100), Log::default()));
        world.node("sender", |handler: NodeHandler<()>, listener: NodeListener<()>| {
            let (peer, _) = handler.network().connect(Transport::Udp, "sink:4000").unwrap();
            // Iteration order differs between two HashMaps: this node is not deterministic.
            let names: std::collections::HashMap<u32, ()> = (0..16).map(|i| (i, ())).collect();
            for name in names.keys() {
                handler.network().send(peer, &name.to_le_bytes());
            }
            drop(listener);
        });
        world.run_until_idle();
    };
    let error = check_determinism(5, scenario).expect_err("HashMap order breaks determinism");
    assert!(error.contains("seed 5") && error.contains("differ"), "{error}");
}

// ----- virtual time and control -----

#[test]
fn a_minute_of_chatter_among_ten_nodes_runs_in_virtual_time() {
    let received = Arc::new(Mutex::new(BTreeMap::<String, u32>::new()));
    let mut world = World::with_seed(60);
    for i in 0..10 {
        let name = format!("n{i}");
        let next = format!("n{}:5000", (i + 1) % 10);
        let received = received.clone();
        world.node(&name.clone(), move |handler: NodeHandler<()>, listener: NodeListener<()>| {
            handler.network().listen(Transport::Udp, "0.0.0.0:5000").unwrap();
            let (peer, _) = handler.network().connect(Transport::Udp, next.as_str()).unwrap();
            handler.signals().send_with_timer((), ms(100));
            listener.for_each(|event| match event {
                NodeEvent::Signal(()) => {
                    handler.network().send(peer, b"tick");
                    handler.signals().send_with_timer((), ms(100));
                }
                NodeEvent::Network(NetEvent::Message(..)) => {
                    *received.lock().unwrap().entry(name.clone()).or_default() += 1;
                }
                _ => (),
            });
        });
    }
    let start = Instant::now();
    world.run_for(Duration::from_secs(60));
    let wall = start.elapsed();
    assert_eq!(world.now(), Duration::from_secs(60));
    // Sent at 0.1 s, 0.2 s, ... 60 s; each arrives 1 ms later: 599 arrive within the minute.
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 10);
    assert!(received.values().all(|&n| n == 599), "{received:?}");
    eprintln!("a simulated minute of 10 nodes (6000 timers, 5990 datagrams) took {wall:?}");
    assert!(wall < Duration::from_secs(20), "took {wall:?}");
}

/// A node that counts 100 ms ticks into `ticks`, forever.
fn ticker(ticks: Arc<AtomicUsize>) -> impl App<()> {
    move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.signals().send_with_timer((), ms(100));
        listener.for_each(|_| {
            ticks.fetch_add(1, Ordering::Relaxed);
            handler.signals().send_with_timer((), ms(100));
        });
    }
}

#[test]
fn run_for_runs_exactly_the_events_due_and_moves_the_clock() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let mut world = World::with_seed(1);
    world.node("ticker", ticker(ticks.clone()));
    world.run_for(ms(250));
    assert_eq!((ticks.load(Ordering::Relaxed), world.now()), (2, ms(250)));
    world.run_for(ms(250));
    assert_eq!(
        (ticks.load(Ordering::Relaxed), world.now()),
        (5, ms(500)),
        "the tick at 500 ms runs"
    );
    // An idle world: the clock still moves.
    let mut idle = World::with_seed(1);
    idle.run_for(Duration::from_secs(3));
    assert_eq!(idle.now(), Duration::from_secs(3));
}

#[test]
fn run_until_stops_when_the_predicate_holds() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let mut world = World::with_seed(1);
    world.node("ticker", ticker(ticks.clone()));
    let t = ticks.clone();
    assert!(world.run_until(move |_| t.load(Ordering::Relaxed) == 7));
    assert_eq!((ticks.load(Ordering::Relaxed), world.now()), (7, ms(700)));
    // A predicate that never holds on a world that idles: false, not a hang.
    let mut finite = World::with_seed(1);
    finite.node("once", |_: NodeHandler<()>, _: NodeListener<()>| ());
    assert!(!finite.run_until(|_| false));
    assert!(finite.is_finished("once"));
}

#[test]
fn step_runs_one_event_and_returns_its_trace_lines() {
    let log = Log::default();
    let mut world = World::with_seed(2);
    world.node("receiver", udp_sink(4000, ms(300), log.clone()));
    world
        .node("sender", sender(Transport::Udp, "receiver:4000", 1, ms(100), ms(0), Log::default()));

    // The first event starts the first node: it listens, then waits.
    let first = world.step().expect("an event");
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].contains("receiver listens on 10.0.0.1:4000 over Udp"), "{first:?}");
    assert_eq!(world.now(), Duration::ZERO);

    let mut steps = Vec::new();
    while let Some(lines) = world.step() {
        steps.push((world.now(), lines));
    }
    assert!(world.step().is_none(), "nothing left");
    // The datagram's arrival is one step of its own, at 100 ms + 1 ms latency.
    let arrival: Vec<_> = steps
        .iter()
        .filter(|(_, lines)| lines.iter().any(|l| l.contains("receiver <- Message")))
        .collect();
    assert_eq!(arrival.len(), 1, "{steps:#?}");
    assert_eq!(arrival[0].0, ms(101));
    assert_eq!(arrival[0].1.len(), 1);
    assert_eq!(log.lines(), ["got m0"]);
    assert!(world.is_finished("receiver") && world.is_finished("sender"));
    assert_eq!(world.now(), ms(300));
}

#[test]
fn at_runs_actions_at_their_virtual_time() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut world = World::with_seed(3);
    for (label, at) in [("b", 3000), ("a", 1000), ("c", 3000)] {
        let seen = seen.clone();
        world.at(ms(at), move |w| seen.lock().unwrap().push((label, w.now())));
    }
    world.run_until_idle();
    let order: Vec<_> = seen.lock().unwrap().clone();
    assert_eq!(order[0], ("a", ms(1000)));
    assert_eq!(order[1..].iter().map(|(_, t)| *t).collect::<Vec<_>>(), [ms(3000), ms(3000)]);
    // An action for a past time runs now.
    let s = seen.clone();
    world.at(ms(10), move |w| s.lock().unwrap().push(("late", w.now())));
    world.run_until_idle();
    assert_eq!(seen.lock().unwrap().last(), Some(&("late", ms(3000))));
    // Actions may act on the world: add a node later in virtual time.
    let log = Log::default();
    let l = log.clone();
    world.at(ms(5000), move |w| {
        w.node("newcomer", move |_: NodeHandler<()>, _: NodeListener<()>| l.push("hello"))
    });
    world.run_until_idle();
    assert_eq!((log.lines(), world.now()), (vec!["hello".to_string()], ms(5000)));
}

// ----- failing loudly -----

#[test]
fn handler_used_from_a_thread_the_world_does_not_know_panics() {
    let log = Log::default();
    let mut world = World::with_seed(13);
    world.node("peer", udp_sink(4000, ms(100), Log::default()));
    let l = log.clone();
    world.node("spawner", move |handler: NodeHandler<()>, _listener: NodeListener<()>| {
        let h = handler.clone();
        let outcome = std::thread::spawn(move || {
            h.network().connect(Transport::Udp, "peer:4000").map(|_| ()).map_err(|e| e.to_string())
        })
        .join();
        l.push(match outcome {
            Ok(result) => format!("no panic: {result:?}"),
            Err(payload) => panic_message(payload),
        });
    });
    world.run_until_idle();
    let message = log.lines().join("\n");
    assert!(
        message.contains(
            "the handler of simulated node \"spawner\" was used from a thread outside its world"
        ),
        "{message}"
    );
}

#[test]
fn signals_from_a_thread_the_world_does_not_know_panic() {
    let log = Log::default();
    let mut world = World::with_seed(13);
    let l = log.clone();
    world.node("spawner", move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
        let h = handler.clone();
        let outcome = std::thread::spawn(move || h.signals().send(1)).join();
        l.push(match outcome {
            Ok(()) => "no panic".to_string(),
            Err(payload) => panic_message(payload),
        });
        listener.for_each(|_| handler.stop());
    });
    world.run_until_idle();
    let message = log.lines().join("\n");
    assert!(message.contains("outside its world"), "{message}");
}

/// `connect` takes `(host, port)` as natively; in a world the host is a node name. Resolving it
/// with the system's resolver would be real I/O, and wrong: the name is no real host.
#[test]
fn connect_resolves_host_port_tuples_to_nodes() {
    let log = Log::default();
    let mut world = World::with_seed(17);
    world.node("server", stream_sink(Transport::FramedTcp, 3000, Log::default()));
    let l = log.clone();
    world.node("client", move |handler: NodeHandler<()>, _: NodeListener<()>| {
        let result = handler.network().connect(Transport::FramedTcp, ("server", 3000));
        l.push(format!("{:?}", result.map(|(endpoint, _)| endpoint.addr())));
    });
    world.run_until_idle();
    assert_eq!(log.lines(), ["Ok(10.0.0.1:3000)"]);
}

/// A node's handler may be used from the test's own thread between steps (the world is
/// stopped then); `connect_sync` there would wait for the world, which waits for the test.
#[test]
fn connect_sync_from_the_world_thread_fails_loudly() {
    let (answer, answers) = std::sync::mpsc::channel();
    // The world lives on this thread; the test thread only watches for a hang (real time).
    std::thread::spawn(move || {
        let slot: Arc<Mutex<Option<NodeHandler<()>>>> = Arc::default();
        let mut world = World::with_seed(15);
        world.node("server", stream_sink(Transport::FramedTcp, 3000, Log::default()));
        let s = slot.clone();
        world.node("client", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
            *s.lock().unwrap() = Some(handler.clone());
            listener.for_each(|_| ());
        });
        world.run_for(ms(10));
        let handler = slot.lock().unwrap().clone().unwrap();
        // A plain connect from here works: the world is stopped, nothing races.
        assert!(handler.network().connect(Transport::FramedTcp, "server:3000").is_ok());
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            handler.network().connect_sync(Transport::FramedTcp, "server:3000").map(|_| ())
        }));
        let _ = answer.send(match outcome {
            Ok(result) => format!("returned {result:?}"),
            Err(payload) => panic_message(payload),
        });
    });
    let outcome = answers.recv_timeout(Duration::from_secs(3)).expect("connect_sync hung");
    assert!(outcome.contains("portnet sim"), "a clear error, got: {outcome}");
}

/// Natively, a node whose application returned has dropped its sockets: its peers get
/// `Disconnected`. A simulated node that finishes should close its connections the same way.
#[test]
fn a_finished_node_closes_its_connections() {
    let log = Log::default();
    let mut world = World::with_seed(16);
    world.node("server", stream_sink(Transport::FramedTcp, 3000, log.clone()));
    world.node(
        "client",
        sender(Transport::FramedTcp, "server:3000", 1, ms(10), ms(0), Log::default()),
    );
    world.run_for(Duration::from_secs(5));
    assert!(world.is_finished("client"));
    assert_eq!(log.lines(), ["got m0", "disconnected"]);
}

/// `for_each_async` and `enqueue` spawn no thread in a world: the loop runs when the task is
/// waited for (or the queue is read), on the node's thread, in virtual time.
#[test]
fn for_each_async_and_enqueue_run_on_virtual_time() {
    let log = Log::default();
    let mut world = World::with_seed(14);
    world.node("receiver", udp_sink(4000, Duration::from_secs(1), Log::default()));
    let l = log.clone();
    world.node("async", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (peer, _) = handler.network().connect(Transport::Udp, "receiver:4000").unwrap();
        handler.signals().send_with_timer((), ms(250));
        let h = handler.clone();
        let l = l.clone();
        let mut task = listener.for_each_async(move |event| {
            if let NodeEvent::Signal(()) = event {
                l.push(format!("timer at {:?}", h.now()));
                h.network().send(peer, b"from async");
                h.stop();
            }
        });
        task.wait();
    });
    let l = log.clone();
    world.node("queue", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (peer, _) = handler.network().connect(Transport::Udp, "receiver:4000").unwrap();
        handler.signals().send_with_timer((), ms(400));
        let (_task, mut events) = listener.enqueue();
        loop {
            match events.receive_timeout(Duration::from_secs(5)) {
                Some(StoredNodeEvent::Signal(())) => {
                    l.push(format!("queued timer at {:?}", handler.now()));
                    handler.network().send(peer, b"from queue");
                    handler.stop();
                    break;
                }
                Some(StoredNodeEvent::Network(_)) => (),
                None => panic!("no timer within 5 s of virtual time"),
            }
        }
    });
    world.run_until_idle();
    assert_eq!(log.lines(), ["timer at 250ms", "queued timer at 400ms"]);
    assert!(world.is_finished("async") && world.is_finished("queue"));
    assert_eq!(world.now(), Duration::from_secs(1));
}

#[test]
fn a_panicking_node_fails_the_run_with_seed_rerun_command_and_trace_file() {
    let mut world = World::with_seed(4242);
    world.node("boom", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, "0.0.0.0:1").unwrap();
        handler.signals().send_with_timer((), ms(1500));
        listener.for_each(|_| panic!("boom at the first timer"));
    });
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| world.run_until_idle()));
    let message = panic_message(result.expect_err("the node's panic fails the run"));
    assert!(message.contains("node \"boom\" panicked: boom at the first timer"), "{message}");
    assert!(message.contains("seed: 4242"), "{message}");
    assert!(message.contains("rerun: PORTNET_SIM_SEED=4242 cargo test"), "{message}");
    assert!(message.contains("boom listens on"), "the tail of the trace: {message}");
    let file = message
        .split("written to ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no trace file in {message}"));
    let written = std::fs::read_to_string(file).unwrap();
    assert_eq!(written.lines().collect::<Vec<_>>(), world.trace());
    assert_eq!(world.now(), ms(1500));
}

/// Udp one-to-many in a world: a datagram to a multicast group reaches its members only; a
/// broadcast reaches every node listening on the port.
#[test]
fn multicast_and_broadcast_reach_their_listeners() {
    let member = |group: &'static str, log: Log| {
        move |handler: NodeHandler<()>, listener: NodeListener<()>| {
            handler.network().listen(Transport::Udp, group).unwrap();
            handler.signals().send_with_timer((), Duration::from_secs(1));
            listener.for_each(|event| match event {
                NodeEvent::Network(NetEvent::Message(_, data)) => {
                    log.push(format!("got {}", text(data)))
                }
                NodeEvent::Signal(()) => handler.stop(),
                _ => (),
            });
        }
    };
    let (a, b, outsider) = (Log::default(), Log::default(), Log::default());
    let mut world = World::with_seed(8);
    world.node("a", member("239.1.2.3:5000", a.clone()));
    world.node("b", member("239.1.2.3:5000", b.clone()));
    world.node("outsider", member("0.0.0.0:5000", outsider.clone()));
    world.node("speaker", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (group, _) = handler.network().connect(Transport::Udp, "239.1.2.3:5000").unwrap();
        let (everyone, _) =
            handler.network().connect(Transport::Udp, "255.255.255.255:5000").unwrap();
        handler.network().send(group, b"to the group");
        handler.network().send(everyone, b"to all");
        handler.stop();
        listener.for_each(|_| ());
    });
    world.run_until_idle();
    assert_eq!(a.lines(), ["got to the group"]);
    assert_eq!(b.lines(), ["got to the group"]);
    assert_eq!(outsider.lines(), ["got to all"], "not a member; reached by the broadcast");
}
