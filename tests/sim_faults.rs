//! The simulator's faults that the world injects between nodes (partitions and heals, one-way
//! partitions, crashes and restarts, holds and releases, resets, pauses), one test each, every
//! test asserting what a bug in that fault would break. Applications are ordinary node functions
//! (the ones a user writes, shared in tests/util/sim.rs); give-up logic runs on virtual-time
//! timers, never on real sleeps.

mod util;

use portnet::network::{Endpoint, NetEvent, Transport};
use portnet::node::{NodeEvent, NodeHandler, NodeListener};
use portnet::sim::{Link, World};
use std::time::Duration;
use util::sim::*;

// ----- faults -----

#[test]
fn framed_tcp_requests_survive_partition_and_heal() {
    let (server_log, client_log) = (Log::default(), Log::default());
    let mut world = World::with_seed(11);
    world.node("server", reply_server(Transport::FramedTcp, 3000, server_log.clone()));
    world.node("client", paced_client("server:3000", 20, ms(100), client_log.clone()));
    let log = client_log.clone();
    world.at(ms(350), move |w| {
        w.partition("client", "server");
        log.push("partition");
    });
    let log = client_log.clone();
    world.at(ms(1350), move |w| {
        w.heal();
        log.push("heal");
    });
    assert!(world.run_until(|w| w.is_finished("client")));

    let answers = client_log.with("got ");
    let expected: Vec<String> = (0..20).map(|i| format!("re:{i}")).collect();
    assert_eq!(answers, expected, "every request answered once, in order");
    let (cut, healed) = (client_log.position("partition"), client_log.position("heal"));
    let lines = client_log.lines();
    let during = &lines[cut..healed];
    assert!(
        during.iter().filter(|l| l.starts_with("sent ")).count() >= 9,
        "requests were sent during the partition: {during:?}"
    );
    assert!(!during.iter().any(|l| l.starts_with("got ")), "nothing crosses a partition");
    assert!(
        lines[healed..].iter().filter(|l| l.starts_with("got ")).count() >= 10,
        "what was sent during the partition is answered after the heal"
    );
    assert_eq!(server_log.count("request "), 20, "no request lost or duplicated");
    assert!(!client_log.lines().contains(&"gave up".to_string()));
}

/// Partitions and heals at times that fall inside a burst of segments in flight: TCP delivers
/// a stream in order whatever the timing, so must the simulator.
#[test]
fn partition_heal_keeps_stream_order_with_segments_in_flight() {
    for heal_at in [1203, 1207, 1211, 1219, 1233, 1241] {
        let log = Log::default();
        let mut world = World::with_seed(3);
        world.set_default_link(Link { latency: ms(50), ..Link::default() });
        world.node("receiver", stream_sink(Transport::FramedTcp, 3000, log.clone()));
        world.node(
            "sender",
            sender(Transport::FramedTcp, "receiver:3000", 200, ms(0), ms(10), Log::default()),
        );
        world.at(ms(500), |w| w.partition("sender", "receiver"));
        world.at(ms(heal_at), |w| w.heal());
        world.run_for(Duration::from_secs(10));
        assert_eq!(log.with("got "), in_order(200), "heal at {heal_at} ms: stream reordered");
    }
}

#[derive(Debug)]
enum Conn {
    Ping,
    Reconnect,
    GiveUp,
}

/// Pings a FramedTcp echo server every 100 ms; on `Disconnected` (or a refused connect)
/// reconnects after 200 ms; stops after 3 pongs on a second connection.
fn reconnecting_client(log: Log) -> impl App<Conn> {
    move |handler: NodeHandler<Conn>, listener: NodeListener<Conn>| {
        let connect = || handler.network().connect(Transport::FramedTcp, "server:3000").unwrap();
        connect();
        handler.signals().send_with_timer(Conn::GiveUp, Duration::from_secs(30));
        let mut server: Option<Endpoint> = None;
        let (mut connections, mut pongs_since_connect) = (0, 0);
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(endpoint, true)) => {
                log.push("connected");
                server = Some(endpoint);
                connections += 1;
                pongs_since_connect = 0;
                handler.network().send(endpoint, b"ping");
            }
            NodeEvent::Network(NetEvent::Connected(_, false)) => {
                log.push("refused");
                handler.signals().send_with_timer(Conn::Reconnect, ms(200));
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                assert_eq!(data, b"re:ping");
                log.push("pong");
                pongs_since_connect += 1;
                if connections == 2 && pongs_since_connect == 3 {
                    handler.stop();
                } else {
                    handler.signals().send_with_timer(Conn::Ping, ms(100));
                }
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => {
                log.push("disconnected");
                server = None;
                handler.signals().send_with_timer(Conn::Reconnect, ms(200));
            }
            NodeEvent::Signal(Conn::Ping) => {
                if let Some(endpoint) = server {
                    handler.network().send(endpoint, b"ping");
                }
            }
            NodeEvent::Signal(Conn::Reconnect) => {
                connect();
            }
            NodeEvent::Signal(Conn::GiveUp) => {
                log.push("gave up");
                handler.stop();
            }
            NodeEvent::Network(NetEvent::Accepted(..)) => unreachable!(),
        });
    }
}

#[test]
fn crashed_server_restarts_and_clients_reconnect() {
    let server_log = Log::default();
    let logs = [Log::default(), Log::default()];
    let mut world = World::with_seed(5);
    world.node("server", reply_server(Transport::FramedTcp, 3000, server_log.clone()));
    world.node("c1", reconnecting_client(logs[0].clone()));
    world.node("c2", reconnecting_client(logs[1].clone()));
    world.at(ms(1000), |w| w.crash("server"));
    world.at(ms(2000), |w| w.restart("server"));
    assert!(world.run_until(|w| w.is_finished("c1") && w.is_finished("c2")));

    assert_eq!(server_log.count("server up"), 2, "restart runs the application again");
    for log in &logs {
        let lines = log.lines();
        assert!(!lines.contains(&"gave up".to_string()), "{lines:?}");
        assert_eq!(log.count("disconnected"), 1, "the crash is noticed: {lines:?}");
        assert_eq!(log.count("connected"), 2, "{lines:?}");
        // Down for a second, retried every 200 ms: refused meanwhile (the host is up, the
        // process is not).
        assert!(log.count("refused") >= 3, "reconnects while down are refused: {lines:?}");
        let before = lines.iter().position(|l| l == "disconnected").unwrap();
        assert!(lines[..before].iter().filter(|l| *l == "pong").count() >= 5, "{lines:?}");
        let back = lines.iter().rposition(|l| l == "connected").unwrap();
        assert_eq!(lines[back..].iter().filter(|l| *l == "pong").count(), 3, "resumed");
    }
    assert!(world.now() > Duration::from_secs(2) && world.now() < ms(2600), "{:?}", world.now());
}

/// Listens on Udp 5000, sends `m0`..`m19` to `peer` every 100 ms, logs what it receives.
fn udp_chatter(peer: &'static str, log: Log) -> impl App<u32> {
    move |handler: NodeHandler<u32>, listener: NodeListener<u32>| {
        handler.network().listen(Transport::Udp, "0.0.0.0:5000").unwrap();
        let (peer, _) = handler.network().connect(Transport::Udp, peer).unwrap();
        handler.signals().send_with_timer(0, ms(100));
        listener.for_each(|event| match event {
            NodeEvent::Signal(20) => handler.stop(),
            NodeEvent::Signal(n) => {
                handler.network().send(peer, format!("m{n}").as_bytes());
                handler.signals().send_with_timer(n + 1, ms(100));
            }
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                log.push(format!("got {}", text(data)))
            }
            NodeEvent::Network(_) => (),
        });
    }
}

#[test]
fn one_way_partition_cuts_one_direction_only() {
    let (a_log, b_log) = (Log::default(), Log::default());
    let mut world = World::with_seed(8);
    world.node("a", udp_chatter("b:5000", a_log.clone()));
    world.node("b", udp_chatter("a:5000", b_log.clone()));
    world.partition_one_way("a", "b");
    world.at(ms(1050), |w| w.heal());
    world.run_until_idle();
    // b -> a was never cut: all 20 arrive. a -> b was cut until 1.05 s: the 10 datagrams sent
    // from 1.1 s on arrive, the first 10 are lost (datagrams are not retransmitted).
    assert_eq!(a_log.with("got "), in_order(20));
    assert_eq!(b_log.with("got "), (10..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
}

#[test]
fn one_way_partition_on_a_stream_stalls_one_direction() {
    let (server_log, client_log) = (Log::default(), Log::default());
    let mut world = World::with_seed(8);
    world.node("server", reply_server(Transport::FramedTcp, 3000, server_log.clone()));
    world.node("client", paced_client("server:3000", 5, ms(100), client_log.clone()));
    world.run_for(ms(50)); // connected, request 0 answered
    world.partition_one_way("server", "client");
    world.run_for(Duration::from_secs(2));
    // Requests keep arriving (client -> server works); answers wait.
    assert_eq!(server_log.count("request "), 5);
    assert_eq!(client_log.with("got "), ["re:0"]);
    world.heal();
    assert!(world.run_until(|w| w.is_finished("client")));
    assert_eq!(client_log.with("got "), ["re:0", "re:1", "re:2", "re:3", "re:4"]);
}

#[test]
fn hold_and_release_deliver_everything_at_once_in_order() {
    let log = Log::default();
    let mut world = World::with_seed(21);
    world.node("receiver", stream_sink(Transport::FramedTcp, 3000, log.clone()));
    world.node(
        "sender",
        sender(Transport::FramedTcp, "receiver:3000", 8, ms(100), ms(100), Log::default()),
    );
    let marker = log.clone();
    world.at(ms(50), move |w| {
        w.hold("sender", "receiver");
        marker.push("hold");
    });
    let marker = log.clone();
    world.at(ms(2000), move |w| {
        w.release("sender", "receiver");
        marker.push("release");
    });
    world.run_until_idle();
    let mut expected = vec!["hold".to_string(), "release".to_string()];
    expected.extend(in_order(8).into_iter().map(|m| format!("got {m}")));
    // The sender's app then returns: its connection closes, as a process's does on exit.
    expected.push("disconnected".into());
    assert_eq!(log.lines(), expected, "nothing before release, everything after, in order");
    let arrivals = deliveries_to(&world.trace(), "receiver");
    assert_eq!(arrivals.len(), 8);
    assert!(arrivals.iter().all(|l| stamp(l) == 2.0), "all at the release: {arrivals:#?}");
}

/// Releases while more segments are still in flight (50 ms latency, one send every 10 ms):
/// the held ones were sent first, so they must arrive first.
#[test]
fn hold_release_keeps_stream_order_with_segments_in_flight() {
    let log = Log::default();
    let mut world = World::with_seed(21);
    world.set_default_link(Link { latency: ms(50), ..Link::default() });
    world.node("receiver", stream_sink(Transport::FramedTcp, 3000, log.clone()));
    world.node(
        "sender",
        sender(Transport::FramedTcp, "receiver:3000", 100, ms(0), ms(10), Log::default()),
    );
    world.at(ms(300), |w| w.hold("sender", "receiver"));
    world.at(ms(605), |w| w.release("sender", "receiver"));
    world.run_until_idle();
    assert_eq!(log.with("got "), in_order(100));
}

#[test]
fn hold_and_release_keep_datagram_order() {
    let log = Log::default();
    let mut world = World::with_seed(21);
    world.node("receiver", udp_sink(4000, Duration::from_secs(5), log.clone()));
    world.node(
        "sender",
        sender(Transport::Udp, "receiver:4000", 8, ms(100), ms(100), Log::default()),
    );
    world.at(ms(50), |w| w.hold("sender", "receiver"));
    world.at(ms(2000), |w| w.release("sender", "receiver"));
    world.run_until_idle();
    assert_eq!(log.with("got "), in_order(8));
}

#[test]
fn reset_disconnects_both_sides() {
    let (server_log, client_log) = (Log::default(), Log::default());
    let mut world = World::with_seed(4);
    world.node("server", stream_sink(Transport::FramedTcp, 3000, server_log.clone()));
    let log = client_log.clone();
    world.node("client", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (server, _) = handler.network().connect(Transport::FramedTcp, "server:3000").unwrap();
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                assert!(ok);
                handler.network().send(server, b"before");
                handler.signals().send_with_timer((), ms(500));
            }
            NodeEvent::Network(NetEvent::Disconnected(endpoint)) => {
                assert_eq!(endpoint, server);
                log.push("disconnected");
            }
            NodeEvent::Signal(()) => {
                let status = handler.network().send(server, b"after");
                log.push(format!("send after reset: {status:?}"));
                handler.stop();
            }
            NodeEvent::Network(other) => panic!("client: {other:?}"),
        });
    });
    world.at(ms(200), |w| w.reset("client", "server"));
    world.run_until_idle();
    assert_eq!(server_log.lines(), ["got before", "disconnected"]);
    assert_eq!(client_log.lines(), ["disconnected", "send after reset: ResourceNotFound"]);
}

#[test]
fn paused_node_gets_its_events_after_resume() {
    let log = Log::default();
    let mut world = World::with_seed(6);
    let l = log.clone();
    world.node("receiver", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, "0.0.0.0:4000").unwrap();
        handler.signals().send_with_timer((), ms(500)); // falls due while paused
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(_, data)) => l.push(format!("got {}", text(data))),
            NodeEvent::Signal(()) => l.push("timer"),
            _ => (),
        });
    });
    world.node(
        "sender",
        sender(Transport::Udp, "receiver:4000", 10, ms(100), ms(100), Log::default()),
    );
    world.run_for(ms(50));
    world.pause("receiver");
    log.push("paused");
    world.run_for(ms(1950));
    log.push("resuming");
    world.resume("receiver");
    world.run_until_idle();
    // Nothing ran while paused; afterwards everything, messages in order. (The node was
    // paused inside its network wait. As natively, a signal ready when that wait returns, the
    // overdue timer here, comes before the network events the wait returns.)
    let lines = log.lines();
    assert_eq!(lines[..2], ["paused", "resuming"], "{lines:?}");
    let mut expected = vec!["timer".to_string()];
    expected.extend(in_order(10).into_iter().map(|m| format!("got {m}")));
    assert_eq!(lines[2..], expected);
    // Delivered to the socket on time, handled at the resume.
    let arrivals = deliveries_to(&world.trace(), "receiver");
    assert_eq!(arrivals.len(), 10);
    assert!(stamp(&arrivals[0]) < 0.2, "{arrivals:?}");
    assert_eq!(world.now(), Duration::from_secs(2));
}

#[test]
fn pause_before_the_first_run_delays_the_start() {
    let log = Log::default();
    let mut world = World::with_seed(6);
    let l = log.clone();
    world.node("late", move |_handler: NodeHandler<()>, _listener: NodeListener<()>| {
        l.push("started");
    });
    world.pause("late");
    world.run_for(Duration::from_secs(1));
    assert!(log.lines().is_empty());
    world.resume("late");
    world.run_until_idle();
    assert_eq!(log.lines(), ["started"]);
    assert!(world.is_finished("late"));
}
