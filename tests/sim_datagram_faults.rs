//! Datagram faults per link — corruption, truncation and an MTU — and what they leave alone:
//! streams (their checksums and retransmits hide corruption; TCP segments to fit the MTU).
//! Rules can corrupt and cut too, and see the MTU's decision; shrinking removes these faults
//! like any other. Every test asserts what the fault must change, or must not.

use portnet::network::{NetEvent, SendStatus, Transport};
use portnet::node::{NodeEvent, NodeHandler, NodeListener};
use portnet::sim::{
    Link, Packet, UDP_OVERHEAD_V4, UDP_OVERHEAD_V6, Verdict, World, check_determinism, run_seeds,
    shrink,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the receiver got, in arrival order.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Vec<u8>>>>);

impl Received {
    fn all(&self) -> Vec<Vec<u8>> {
        self.0.lock().unwrap().clone()
    }
}

/// A payload that tells its datagrams apart: `len` bytes from `index`.
fn payload(index: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + index * 13) as u8).collect()
}

/// A world with a Udp receiver on `listen` and a sender that sends `payloads` to `target` (the
/// receiver's address, `{v4}`/`{v6}` filled in), over `link`; runs it to the end.
fn send_datagrams(
    world: &mut World,
    link: Link,
    listen: &'static str,
    target: &str,
    payloads: Vec<Vec<u8>>,
) -> Received {
    let received = Received::default();
    let got = received.clone();
    world.node("receiver", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, listen).unwrap();
        handler.signals().send_with_timer((), Duration::from_secs(1));
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Message(_, data)) => {
                got.0.lock().unwrap().push(data.to_vec())
            }
            NodeEvent::Signal(()) => handler.stop(),
            _ => (),
        });
    });
    let target = target
        .replace("{v4}", &world.ipv4("receiver").to_string())
        .replace("{v6}", &world.ipv6("receiver").to_string());
    world.node("sender", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        let (peer, _) = handler.network().connect(Transport::Udp, target.as_str()).unwrap();
        for data in &payloads {
            assert_eq!(handler.network().send(peer, data), SendStatus::Sent);
        }
        handler.stop();
        listener.for_each(|_| ());
    });
    world.set_link("sender", "receiver", link);
    world.run_until_idle();
    received
}

fn differing_bits(a: &[u8], b: &[u8]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

fn faults_like(world: &World, what: &str) -> usize {
    world.trace().iter().filter(|line| line.contains("fault #") && line.contains(what)).count()
}

/// `corrupt: 1.0` flips one to three bits of every datagram (same length, different bytes);
/// the same seed flips the same bits, another seed others.
#[test]
fn corruption_flips_bits_and_replays_from_the_seed() {
    let sent: Vec<Vec<u8>> = (0..20).map(|i| payload(i, 64)).collect();
    let link = Link { corrupt: 1.0, ..Link::default() };
    let run = |seed| {
        let mut world = World::with_seed(seed);
        let got = send_datagrams(&mut world, link, "0.0.0.0:4000", "receiver:4000", sent.clone());
        assert_eq!(faults_like(&world, "corrupt a datagram"), 20);
        got.all()
    };
    let first = run(5);
    assert_eq!(first.len(), 20, "corruption loses nothing");
    for (got, sent) in first.iter().zip(&sent) {
        assert_eq!(got.len(), sent.len());
        let flipped = differing_bits(got, sent);
        assert!((1..=3).contains(&flipped), "{flipped} bits flipped");
    }
    assert_eq!(run(5), first, "the same seed corrupts identically");
    assert_ne!(run(6), first, "another seed corrupts elsewhere");
}

/// A probability below 1 corrupts about that share, and only those.
#[test]
fn corruption_hits_about_its_probability() {
    let sent: Vec<Vec<u8>> = (0..200).map(|i| payload(i, 32)).collect();
    let link = Link { corrupt: 0.25, ..Link::default() };
    let mut world = World::with_seed(9);
    let got = send_datagrams(&mut world, link, "0.0.0.0:4000", "receiver:4000", sent.clone());
    let corrupted = got.all().iter().zip(&sent).filter(|(g, s)| g != s).count();
    assert!((25..=75).contains(&corrupted), "{corrupted} of 200 corrupted at 0.25");
    assert_eq!(faults_like(&world, "corrupt a datagram"), corrupted);
}

/// `truncate: 1.0` delivers every datagram as a strict prefix of what was sent.
#[test]
fn truncation_delivers_a_shorter_prefix() {
    let sent: Vec<Vec<u8>> = (0..20).map(|i| payload(i, 100)).collect();
    let link = Link { truncate: 1.0, ..Link::default() };
    let mut world = World::with_seed(2);
    let got = send_datagrams(&mut world, link, "0.0.0.0:4000", "receiver:4000", sent.clone());
    let got = got.all();
    assert_eq!(got.len(), 20);
    // Without jitter the path keeps the order, so the i-th arrival is the i-th send.
    for (got, sent) in got.iter().zip(&sent) {
        assert!(got.len() < sent.len() && sent.starts_with(got), "{} of {}", got.len(), sent.len());
    }
    let lengths: std::collections::BTreeSet<usize> = got.iter().map(Vec::len).collect();
    assert!(lengths.len() > 5, "cut at seeded places: {lengths:?}");
}

/// Over IPv4 and IPv6, a datagram at the path MTU (payload plus headers) arrives, one a byte
/// over it is dropped, as on a path that does not fragment.
#[test]
fn the_mtu_drops_datagrams_over_it() {
    let mtu = 1500;
    for (listen, target, overhead) in [
        ("0.0.0.0:4000", "{v4}:4000", UDP_OVERHEAD_V4),
        ("[::]:4000", "[{v6}]:4000", UDP_OVERHEAD_V6),
    ] {
        let fits = mtu - overhead;
        let sent = vec![payload(0, fits), payload(1, fits + 1), payload(2, 10)];
        let link = Link { mtu: Some(mtu), ..Link::default() };
        let mut world = World::with_seed(4);
        let got = send_datagrams(&mut world, link, listen, target, sent.clone());
        assert_eq!(link.max_datagram(overhead == UDP_OVERHEAD_V6), Some(fits));
        assert_eq!(got.all(), [sent[0].clone(), sent[2].clone()], "{target}");
        assert_eq!(faults_like(&world, "over the path MTU"), 1, "{target}");
    }
}

/// Streams are never corrupted, cut or dropped by these faults: a link that corrupts and cuts
/// every datagram, with a small MTU, still carries every stream transport's bytes intact.
#[test]
fn streams_are_not_touched_by_datagram_faults() {
    let hostile = Link { corrupt: 1.0, truncate: 1.0, mtu: Some(576), ..Link::default() };
    for transport in [Transport::Tcp, Transport::FramedTcp, Transport::Ws] {
        let message = payload(3, 20_000);
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut world = World::with_seed(7);
        world.set_default_link(hostile);
        world.node("receiver", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
            handler.network().listen(transport, "0.0.0.0:3000").unwrap();
            listener.for_each(|event| {
                if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                    handler.network().send(endpoint, data);
                }
            });
        });
        let (sent, echoed) = (message.clone(), got.clone());
        world.node("sender", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
            handler.network().connect(transport, "receiver:3000").unwrap();
            handler.signals().send_with_timer((), Duration::from_secs(5));
            listener.for_each(|event| match event {
                NodeEvent::Network(NetEvent::Connected(endpoint, true)) => {
                    assert_eq!(handler.network().send(endpoint, &sent), SendStatus::Sent);
                }
                NodeEvent::Network(NetEvent::Message(_, data)) => {
                    let mut echoed = echoed.lock().unwrap();
                    echoed.extend_from_slice(data);
                    if echoed.len() >= sent.len() {
                        handler.stop();
                    }
                }
                _ => handler.stop(),
            });
        });
        world.run_until(|w| w.is_finished("sender"));
        assert!(*got.lock().unwrap() == message, "{transport}: the echo is intact");
        assert_eq!(faults_like(&world, "datagram"), 0, "{transport}: no datagram fault taped");
    }
}

/// A rule corrupts and cuts datagrams, and learns which ones the MTU drops; on a stream the
/// same verdicts change nothing.
#[test]
fn a_rule_corrupts_truncates_and_sees_the_mtu() {
    let seen_over_mtu = Arc::new(Mutex::new(Vec::new()));
    let seen = seen_over_mtu.clone();
    let mut world = World::with_seed(3);
    world.set_rule(move |packet: &Packet<'_>| {
        if packet.transport == Transport::Udp {
            seen.lock().unwrap().push((packet.payload.len(), packet.over_mtu));
        }
        match packet.payload {
            b"corrupt me" => Verdict::Corrupt,
            b"cut me short" => Verdict::Truncate(3),
            _ => Verdict::Pass,
        }
    });
    let big = payload(0, 2000);
    let sent =
        vec![b"corrupt me".to_vec(), b"cut me short".to_vec(), big.clone(), b"as sent".to_vec()];
    let link = Link { mtu: Some(1500), ..Link::default() };
    let got = send_datagrams(&mut world, link, "0.0.0.0:4000", "receiver:4000", sent).all();
    assert_eq!(got.len(), 3, "the one over the MTU is dropped");
    assert_eq!(got[0].len(), 10);
    assert!((1..=3).contains(&differing_bits(&got[0], b"corrupt me")));
    assert_eq!(got[1], b"cut");
    assert_eq!(got[2], b"as sent");
    assert_eq!(
        *seen_over_mtu.lock().unwrap(),
        [(10, false), (12, false), (2000, true), (7, false)]
    );
    assert_eq!(faults_like(&world, "rule: Corrupt"), 1);
    assert_eq!(faults_like(&world, "rule: Truncate(3)"), 1);
}

/// A rule's `Corrupt` and `Truncate` on a stream message: delivered intact, nothing taped.
#[test]
fn a_rule_cannot_corrupt_a_stream() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut world = World::with_seed(3);
    world.set_rule(|packet: &Packet<'_>| match packet.payload {
        b"corrupt me" => Verdict::Corrupt,
        _ => Verdict::Truncate(1),
    });
    let echoed = got.clone();
    world.node("receiver", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Message(_, data)) = event {
                echoed.lock().unwrap().push(data.to_vec());
            }
        });
    });
    world.node("sender", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().connect(Transport::FramedTcp, "receiver:3000").unwrap();
        listener.for_each(|event| {
            if let NodeEvent::Network(NetEvent::Connected(endpoint, true)) = event {
                handler.network().send(endpoint, b"corrupt me");
                handler.network().send(endpoint, b"cut me short");
            }
        });
    });
    world.run_for(Duration::from_secs(1));
    assert_eq!(*got.lock().unwrap(), [b"corrupt me".to_vec(), b"cut me short".to_vec()]);
    assert_eq!(faults_like(&world, "rule"), 0);
}

/// A scenario that fails when a datagram goes missing, on a link that also corrupts and cuts
/// datagrams and drops one over its MTU: only the MTU drop matters.
fn every_datagram_arrives(world: &mut World) {
    let mut sent: Vec<Vec<u8>> = (0..12).map(|i| payload(i, 50)).collect();
    sent[7] = payload(7, 1600); // over the MTU
    let link = Link { corrupt: 0.5, truncate: 0.3, mtu: Some(1500), ..Link::default() };
    let got = send_datagrams(world, link, "0.0.0.0:4000", "receiver:4000", sent);
    assert_eq!(got.all().len(), 12, "a datagram went missing");
}

/// Shrinking removes the irrelevant corruptions and truncations and keeps the MTU drop.
#[test]
fn shrinking_removes_irrelevant_corruption_and_keeps_the_mtu_drop() {
    let failures = run_seeds([21], every_datagram_arrives);
    let failure = failures.first().expect("the MTU drop fails the scenario");
    let described = |what: &str| failure.faults.iter().any(|f| f.description.contains(what));
    assert!(
        described("corrupt a datagram") && described("truncate a datagram"),
        "{:?}",
        failure.faults
    );
    let shrunk = shrink(21, every_datagram_arrives).expect("still fails");
    assert_eq!(shrunk.faults.len(), 1, "{shrunk}");
    assert!(shrunk.faults[0].description.contains("over the path MTU"), "{shrunk}");
}

/// A scenario that fails when a payload arrives altered, on a link that also loses and
/// duplicates: shrinking keeps a single corruption.
fn every_payload_arrives_intact(world: &mut World) {
    let sent: Vec<Vec<u8>> = (0..30).map(|i| payload(i, 40)).collect();
    let link = Link { corrupt: 0.2, loss: 0.2, duplicate: 0.2, ..Link::default() };
    let got = send_datagrams(world, link, "0.0.0.0:4000", "receiver:4000", sent.clone());
    for data in got.all() {
        assert!(sent.contains(&data), "an altered payload arrived");
    }
}

#[test]
fn shrinking_keeps_the_one_corruption_that_matters() {
    let failures = run_seeds([8], every_payload_arrives_intact);
    let failure = failures.first().expect("a corruption fails the scenario");
    assert!(failure.faults.len() > 3, "{:?}", failure.faults);
    let shrunk = shrink(8, every_payload_arrives_intact).expect("still fails");
    assert_eq!(shrunk.faults.len(), 1, "{shrunk}");
    assert!(shrunk.faults[0].description.contains("corrupt a datagram"), "{shrunk}");
}

/// A world with every datagram fault replays from its seed.
#[test]
fn datagram_faults_replay_from_the_seed() {
    check_determinism(13, |world| {
        let sent: Vec<Vec<u8>> = (0..50).map(|i| payload(i, 30 + i * 40)).collect();
        let link = Link {
            corrupt: 0.3,
            truncate: 0.3,
            mtu: Some(1280),
            jitter: Duration::from_millis(3),
            ..Link::default()
        };
        send_datagrams(world, link, "[::]:4000", "[{v6}]:4000", sent);
    })
    .unwrap();
}
