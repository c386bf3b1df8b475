//! The simulator's links: what a link does to the packets it carries (loss, duplication, jitter
//! and its spreads, bandwidth and queues, a stream's rechunking, rules that drop or delay a
//! packet), one test each, every test asserting what a bug in that fault would break.
//! Applications are ordinary node functions (the ones a user writes, shared in
//! tests/util/sim.rs); give-up logic runs on virtual-time timers, never on real sleeps.

mod util;

use portnet::network::{NetEvent, SendStatus, Transport};
use portnet::node::{NodeEvent, NodeHandler, NodeListener};
use portnet::sim::{Link, Packet, Verdict, World};
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use util::sim::*;

#[test]
fn udp_retries_deliver_everything_under_30_percent_loss() {
    let (server_log, client_log) = (Log::default(), Log::default());
    let mut world = World::with_seed(30);
    world.set_default_link(Link { loss: 0.3, ..Link::default() });
    world.node("server", ack_server(4000, server_log.clone()));
    world.node("client", retry_client("server:4000", 25, ms(50), client_log.clone()));
    assert!(world.run_until(|w| w.is_finished("client")));

    let acked: Vec<String> = client_log.with("acked ");
    assert_eq!(acked, (0..25).map(|i| i.to_string()).collect::<Vec<_>>());
    let got: BTreeSet<String> = server_log.with("got ").into_iter().collect();
    assert_eq!(got.len(), 25, "the server saw every request");
    assert!(!client_log.lines().contains(&"gave up".to_string()));

    // Losses happened, in both directions: requests sent vs. requests arrived, acks sent (one
    // per arrived request) vs. acks arrived.
    let requests_sent = client_log.count("sent ") + client_log.count("resent ");
    let requests_arrived = server_log.count("got ");
    let acks_arrived = client_log.count("received ");
    assert!(client_log.count("resent ") > 0, "loss made the client resend");
    assert!(requests_arrived < requests_sent, "requests lost: {requests_arrived}/{requests_sent}");
    assert!(acks_arrived < requests_arrived, "acks lost: {acks_arrived}/{requests_arrived}");
    // The trace agrees with the applications about what arrived.
    let trace = world.trace();
    assert_eq!(deliveries_to(&trace, "server").len(), requests_arrived);
    assert_eq!(deliveries_to(&trace, "client").len(), acks_arrived);
}

/// Every loss is a line of the trace (a fault on the run's tape): datagrams are lost, stream
/// segments retransmitted, and the stream still arrives whole and in order.
#[test]
fn link_losses_show_in_the_trace() {
    let (datagrams, stream) = (Log::default(), Log::default());
    let mut world = World::with_seed(30);
    world.set_default_link(Link { loss: 0.5, ..Link::default() });
    world.node("receiver", udp_sink(4000, ms(500), datagrams.clone()));
    world.node("sink", stream_sink(Transport::FramedTcp, 3000, stream.clone()));
    world.node("sender", sender(Transport::Udp, "receiver:4000", 20, ms(1), ms(1), Log::default()));
    world.node(
        "streamer",
        sender(Transport::FramedTcp, "sink:3000", 20, ms(1), ms(1), Log::default()),
    );
    world.run_until_idle();
    let trace = world.trace();
    let arrived = deliveries_to(&trace, "receiver").len();
    assert_eq!(arrived, datagrams.count("got "));
    assert!(arrived < 20, "with 50 % loss some of 20 datagrams are lost");
    let lost = trace.iter().filter(|l| l.contains("sender -> receiver: lose a datagram")).count();
    assert_eq!(lost, 20 - arrived, "each loss has a trace line:\n{}", trace.join("\n"));

    assert_eq!(stream.with("got "), in_order(20), "a lossy stream stays whole and ordered");
    let retransmits = trace
        .iter()
        .filter(|l| l.contains("streamer -> sink: lose a FramedTcp segment (retransmitted)"))
        .count();
    assert!(retransmits > 0, "{}", trace.join("\n"));
}

#[test]
fn rule_drops_exactly_one_datagram_by_payload() {
    let log = Log::default();
    let matched = Arc::new(AtomicUsize::new(0));
    let mut world = World::with_seed(9);
    world.node("receiver", udp_sink(4000, Duration::from_secs(2), log.clone()));
    world.node(
        "sender",
        sender(Transport::Udp, "receiver:4000", 10, ms(10), ms(10), Log::default()),
    );
    let seen = matched.clone();
    world.set_rule(move |packet: &Packet<'_>| {
        if packet.payload == b"m4" {
            assert_eq!(
                (packet.from, packet.to, packet.transport),
                ("sender", "receiver", Transport::Udp)
            );
            seen.fetch_add(1, Ordering::Relaxed);
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    world.run_until_idle();
    let mut expected = in_order(10);
    expected.remove(4);
    assert_eq!(log.with("got "), expected);
    assert_eq!(matched.load(Ordering::Relaxed), 1, "the rule saw m4 once");
    let trace = world.trace();
    let drops: Vec<&String> = trace.iter().filter(|l| l.contains("rule: Drop")).collect();
    assert_eq!(drops.len(), 1, "the drop is traced: {drops:?}");
    assert!(drops[0].contains("sender -> receiver: rule: Drop Udp 2 bytes"), "{drops:?}");
}

#[test]
fn rule_delays_one_framed_tcp_message_and_the_stream_waits_for_it() {
    let log = Log::default();
    let mut world = World::with_seed(9);
    world.node("receiver", stream_sink(Transport::FramedTcp, 3000, log.clone()));
    world.node(
        "sender",
        sender(Transport::FramedTcp, "receiver:3000", 10, ms(10), ms(0), Log::default()),
    );
    world.set_rule(
        |packet: &Packet<'_>| {
            if packet.payload == b"m4" { Verdict::Delay(ms(500)) } else { Verdict::Pass }
        },
    );
    let marker = log.clone();
    world.at(ms(300), move |_| marker.push("300 ms"));
    world.run_until_idle();
    // In order and complete (a stream is), m5.. wait behind m4 (head-of-line blocking).
    let mut expected: Vec<String> = in_order(4).into_iter().map(|m| format!("got {m}")).collect();
    expected.push("300 ms".into());
    expected.extend((4..10).map(|i| format!("got m{i}")));
    expected.push("disconnected".into()); // the sender's app returned
    assert_eq!(log.lines(), expected);
    let arrivals = deliveries_to(&world.trace(), "receiver");
    assert!(stamp(&arrivals[4]) >= 0.5, "m4 arrives 500 ms late: {arrivals:#?}");
}

#[test]
fn duplication_delivers_every_datagram_twice() {
    let log = Log::default();
    let mut world = World::with_seed(12);
    world.node("receiver", udp_sink(4000, Duration::from_secs(2), log.clone()));
    world.node(
        "sender",
        sender(Transport::Udp, "receiver:4000", 10, ms(10), ms(10), Log::default()),
    );
    // One direction only; links exist for named nodes.
    world.set_link("sender", "receiver", Link { duplicate: 1.0, ..Link::default() });
    world.run_until_idle();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for message in log.with("got ") {
        *counts.entry(message).or_default() += 1;
    }
    assert_eq!(counts.len(), 10, "{counts:?}");
    assert!(counts.values().all(|&n| n == 2), "each datagram twice: {counts:?}");
}

#[test]
fn set_link_before_the_nodes_exist_panics_with_the_name() {
    let mut world = World::with_seed(1);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        world.set_link("nobody", "nowhere", Link::default());
    }));
    let message = panic_message(result.expect_err("an unknown node name is an error"));
    assert!(message.contains("\"nobody\""), "{message}");
}

/// Whether a receiver saw the datagrams in another order than they were sent, for one seed.
fn reordered(seed: u64, jitter: Duration) -> bool {
    let log = Log::default();
    let mut world = World::with_seed(seed);
    world.set_default_link(Link { latency: ms(5), jitter, ..Link::default() });
    world.node("receiver", udp_sink(4000, Duration::from_secs(2), log.clone()));
    world.node("sender", sender(Transport::Udp, "receiver:4000", 20, ms(1), ms(1), Log::default()));
    world.run_until_idle();
    let got = log.with("got ");
    let mut sorted = got.clone();
    sorted.sort_by_key(|m| m[1..].parse::<u32>().unwrap());
    assert_eq!(sorted, in_order(20), "seed {seed}: jitter loses nothing");
    got != sorted
}

#[test]
fn jitter_reorders_datagrams() {
    let reordering: Vec<u64> = (0..10).filter(|&seed| reordered(seed, ms(20))).collect();
    assert!(!reordering.is_empty(), "20 ms jitter on 1 ms spacing reorders for some seed");
    assert!((0..10).all(|seed| !reordered(seed, Duration::ZERO)), "no jitter, no reordering");
}

/// Sends `count` length-prefixed messages over plain Tcp; the receiver reassembles them.
/// Returns (the reassembled messages, whether some `Message` event held a partial message).
fn tcp_length_prefixed(seed: u64, count: u32) -> (Vec<String>, bool) {
    let log = Log::default();
    let mut world = World::with_seed(seed);
    let l = log.clone();
    world.node("receiver", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Tcp, "0.0.0.0:3000").unwrap();
        let mut buffer = Vec::new();
        listener.for_each(|event| {
            let NodeEvent::Network(NetEvent::Message(_, data)) = event else { return };
            buffer.extend_from_slice(data);
            let mut whole = true;
            loop {
                if buffer.len() < 4 {
                    whole &= buffer.is_empty();
                    break;
                }
                let len = u32::from_be_bytes(buffer[..4].try_into().unwrap()) as usize;
                if buffer.len() < 4 + len {
                    whole = false;
                    break;
                }
                l.push(format!("got {}", text(&buffer[4..4 + len])));
                buffer.drain(..4 + len);
            }
            if !whole {
                l.push("partial");
            }
        });
    });
    world.node("sender", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (peer, _) = handler.network().connect(Transport::Tcp, "receiver:3000").unwrap();
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Connected(_, true)) = event {
                for i in 0..count {
                    let body = format!("message number {i}");
                    let frame = [&(body.len() as u32).to_be_bytes()[..], body.as_bytes()].concat();
                    assert_eq!(handler.network().send(peer, &frame), SendStatus::Sent);
                }
                handler.stop();
            }
        });
    });
    world.run_until_idle();
    (log.with("got "), log.count("partial") > 0)
}

#[test]
fn tcp_rechunks_and_the_application_reassembles() {
    let expected: Vec<String> = (0..5).map(|i| format!("message number {i}")).collect();
    let mut split_seeds = Vec::new();
    for seed in 0..10 {
        let (messages, split) = tcp_length_prefixed(seed, 5);
        assert_eq!(messages, expected, "seed {seed}: reassembled in order, complete");
        if split {
            split_seeds.push(seed);
        }
    }
    assert!(!split_seeds.is_empty(), "some seed splits a Tcp send");
}

/// A bandwidth-limited link fills a stream's send queue: `send` answers `QueueFull`, and
/// `signal_when_writable` paces the sender by the link, in virtual time.
#[test]
fn bandwidth_fills_the_send_queue_and_paces_the_sender() {
    use portnet::adapters::framed_tcp::FramedTcpConnectConfig;
    use portnet::network::{SendStatus, TransportConnect};
    const CHUNK: usize = 16 * 1024;
    const CHUNKS: u32 = 100;
    let log = Log::default();
    let mut world = World::with_seed(3);
    // 1 MB/s: 1.6 MB takes about 1.6 s of virtual time.
    world.set_default_link(Link { bandwidth: Some(1_000_000), ..Link::default() });
    world.node("receiver", stream_sink(Transport::FramedTcp, 3000, log.clone()));
    let full = Arc::new(Mutex::new(0u32));
    let count_full = full.clone();
    world.node("sender", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let config = FramedTcpConnectConfig::default().with_send_queue_limit(64 * 1024);
        let (peer, _) = handler
            .network()
            .connect_with(TransportConnect::FramedTcp(config), "receiver:3000")
            .unwrap();
        let mut next = 0u32;
        let pump = |handler: &NodeHandler<()>, next: &mut u32| {
            while *next < CHUNKS {
                let mut data = vec![0u8; CHUNK];
                data[..2].copy_from_slice(format!("{:02}", *next % 100).as_bytes());
                match handler.network().send(peer, &data) {
                    SendStatus::Sent => *next += 1,
                    SendStatus::QueueFull => {
                        *count_full.lock().unwrap() += 1;
                        return handler.signal_when_writable(peer, ());
                    }
                    other => panic!("{other:?}"),
                }
            }
            handler.stop();
        };
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, true)) | NodeEvent::Signal(()) => {
                pump(&handler, &mut next)
            }
            _ => (),
        });
    });
    world.run_until_idle();
    assert!(*full.lock().unwrap() > 5, "the 64 KiB queue filled repeatedly");
    let got: Vec<String> = log.lines().into_iter().filter(|l| l.starts_with("got")).collect();
    assert_eq!(got.len(), CHUNKS as usize, "every chunk arrived");
    let arrivals = deliveries_to(&world.trace(), "receiver");
    let last = stamp(arrivals.last().unwrap());
    assert!((1.5..2.5).contains(&last), "bandwidth-bound: the last chunk arrived at {last} s");
}

/// A link with a bandwidth and a small buffer drops the datagrams that overflow it.
#[test]
fn a_full_link_queue_drops_datagrams() {
    let log = Log::default();
    let mut world = World::with_seed(4);
    world.set_default_link(Link {
        bandwidth: Some(100_000),
        queue: Some(10_000),
        ..Link::default()
    });
    world.node("receiver", udp_sink(4000, Duration::from_secs(5), log.clone()));
    world.node("sender", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (peer, _) = handler.network().connect(Transport::Udp, "receiver:4000").unwrap();
        for _ in 0..100 {
            handler.network().send(peer, &[7; 1000]);
        }
        handler.stop();
        listener.for_each(|_| ());
    });
    world.run_until_idle();
    let received = log.lines().iter().filter(|l| l.starts_with("got")).count();
    assert!((5..=15).contains(&received), "about 10 KB fit the queue: {received} arrived");
    assert!(world.trace().iter().any(|l| l.contains("link queue full")));
}

/// A sender waiting for its queue to drain is told when the peer goes away instead, as
/// natively: its next send then answers `ResourceNotFound`.
#[test]
fn a_waiting_sender_is_signalled_when_the_peer_disconnects() {
    use portnet::adapters::framed_tcp::FramedTcpConnectConfig;
    use portnet::network::{SendStatus, TransportConnect};
    let log = Log::default();
    let mut world = World::with_seed(5);
    world.set_default_link(Link { bandwidth: Some(10_000), ..Link::default() });
    world.node("receiver", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Accepted(endpoint, _)) = event {
                handler.network().remove(endpoint.resource_id());
            }
        });
    });
    let out = log.clone();
    world.node("sender", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let config = FramedTcpConnectConfig::default().with_send_queue_limit(4096);
        let (peer, _) = handler
            .network()
            .connect_with(TransportConnect::FramedTcp(config), "receiver:3000")
            .unwrap();
        handler.signals().send_with_timer((), Duration::from_secs(30));
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(_, true)) => {
                while handler.network().send(peer, &[0; 1024]) == SendStatus::Sent {}
                out.push("queue full");
                handler.signal_when_writable(peer, ());
            }
            NodeEvent::Network(NetEvent::Disconnected(_)) => out.push("disconnected"),
            NodeEvent::Signal(()) => {
                out.push(format!("signal: {:?}", handler.network().send(peer, b"x")));
                handler.stop();
            }
            _ => (),
        });
    });
    world.run_until(|w| w.is_finished("sender"));
    let lines = log.lines();
    assert_eq!(lines.first().map(String::as_str), Some("queue full"), "{lines:?}");
    assert!(lines.contains(&"signal: ResourceNotFound".to_string()), "{lines:?}");
    assert!(world.now() < Duration::from_secs(30), "signalled by the disconnection, not the timer");
}

/// Plain Tcp is a byte stream both ways: sends may be cut, and sends that arrive together are
/// read together. An application that takes one `Message` for one send breaks on some seed.
#[test]
fn tcp_sends_that_arrive_together_are_read_together() {
    let mut merged = 0;
    for seed in 0..10 {
        let log = Log::default();
        let mut world = World::with_seed(seed);
        world.node("receiver", stream_sink(Transport::Tcp, 3000, log.clone()));
        world.node("sender", |handler: NodeHandler<()>, listener: NodeListener<()>| {
            let (peer, _) = handler.network().connect(Transport::Tcp, "receiver:3000").unwrap();
            listener.for_each(|event| {
                if let NodeEvent::Network(NetEvent::Connected(_, true)) = event {
                    handler.network().send(peer, b"ab");
                    handler.network().send(peer, b"cd");
                    handler.stop();
                }
            });
        });
        world.run_until_idle();
        let got: Vec<String> = log
            .lines()
            .into_iter()
            .filter_map(|l| l.strip_prefix("got ").map(str::to_string))
            .collect();
        assert_eq!(got.concat(), "abcd", "seed {seed}: the stream, whole and in order");
        if got.iter().any(|m| m.contains("bc")) {
            merged += 1;
        }
    }
    assert!(merged > 0, "on some seed, bytes of both sends arrive in one Message");
}

/// One-way delays (beyond the link's fixed latency) of `count` datagrams sent 1 ms apart over a
/// link with 10 ms of `jitter` spread as `spread`, in microseconds.
fn extra_delays(spread: portnet::sim::Spread, count: u64) -> Vec<u64> {
    let delays = Arc::new(Mutex::new(Vec::new()));
    let mut world = World::with_seed(21);
    world.set_default_link(Link { latency: ms(1), jitter: ms(10), spread, ..Link::default() });
    let d = delays.clone();
    world.node("receiver", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, "0.0.0.0:4000").unwrap();
        handler.signals().send_with_timer((), Duration::from_secs(5));
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                let sent = u64::from_be_bytes(data.try_into().unwrap());
                let now = handler.now().as_micros() as u64;
                d.lock().unwrap().push(now - sent - 1_000);
            }
            NodeEvent::Signal(()) => handler.stop(),
            _ => (),
        });
    });
    world.node("sender", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (peer, _) = handler.network().connect(Transport::Udp, "receiver:4000").unwrap();
        let mut sent = 0;
        handler.signals().send(());
        listener.for_each(|event| {
            if let NodeEvent::Signal(()) = event {
                let now = handler.now().as_micros() as u64;
                handler.network().send(peer, &now.to_be_bytes());
                sent += 1;
                match sent < count {
                    true => drop(handler.signals().send_with_timer((), ms(1))),
                    false => handler.stop(),
                }
            }
        });
    });
    world.run_until_idle();
    let mut delays = delays.lock().unwrap().clone();
    assert_eq!(delays.len() as u64, count, "no loss configured");
    delays.sort();
    delays
}

#[test]
fn jitter_spreads_follow_their_distributions() {
    use portnet::sim::Spread;
    let stats = |d: &[u64]| {
        let mean = d.iter().sum::<u64>() as f64 / d.len() as f64;
        (mean / 1000.0, d[d.len() / 2] as f64 / 1000.0, *d.last().unwrap() as f64 / 1000.0)
    };
    // Means in ms, jitter 10 ms: uniform 0..=10 (mean 5, never above 10).
    let (mean, median, max) = stats(&extra_delays(Spread::Uniform, 2000));
    assert!((4.5..5.5).contains(&mean), "uniform mean {mean}");
    assert!(max <= 10.0, "uniform max {max}");
    assert!((4.0..6.0).contains(&median), "uniform median {median}");
    // Exponential, mean 10: median ln 2 × 10 ≈ 6.9; a tail well past 10.
    let (mean, median, max) = stats(&extra_delays(Spread::Exponential, 2000));
    assert!((9.0..11.0).contains(&mean), "exponential mean {mean}");
    assert!((6.0..8.0).contains(&median), "exponential median {median}");
    assert!(max > 40.0 && max <= 200.0, "exponential max {max}");
    // Pareto(1.5), mean 10: most packets near the minimum 3.3 ms, a few very late.
    let (_, median, max) = stats(&extra_delays(Spread::Pareto(1.5), 2000));
    assert!((4.0..6.5).contains(&median), "pareto median {median}");
    assert!(max > 100.0 && max <= 1000.0, "pareto max {max}");
}
