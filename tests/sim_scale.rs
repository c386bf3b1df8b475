//! A large world in the suite: 1 000 nodes gossiping over FramedTcp, each to its ring
//! successor, a node 7 places on and a peer of its own random choice (`NodeHandler::rng`).
//! Every message must arrive once, in order per sender, and the run must replay from its seed.

use portnet::network::{NetEvent, Transport};
use portnet::node::NodeEvent;
use portnet::sim::{Link, World};
use rand::Rng;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODES: usize = 1_000;
/// Messages each node sends to each of its three peers.
const MESSAGES: u32 = 4;

/// Per receiver, per sender, the sequence numbers in the order received.
type Received = BTreeMap<usize, BTreeMap<usize, Vec<u32>>>;

/// What one run gave: per receiver, per sender, the sequence numbers in the order received;
/// per sender, whom it chose; the trace's digest and length; the deliveries.
#[derive(Debug, PartialEq)]
struct Outcome {
    received: Received,
    peers: BTreeMap<usize, [usize; 3]>,
    trace_digest: u64,
    trace_lines: usize,
    deliveries: u64,
}

fn gossip(seed: u64) -> Outcome {
    let received: Arc<Mutex<Received>> = Arc::default();
    let peers: Arc<Mutex<BTreeMap<usize, [usize; 3]>>> = Arc::default();
    let mut world = World::with_seed(seed);
    world.set_default_link(Link {
        latency: Duration::from_millis(2),
        jitter: Duration::from_millis(3),
        ..Link::default()
    });
    for me in 0..NODES {
        let (received, peers) = (received.clone(), peers.clone());
        world.node::<(), _>(&format!("n{me}"), move |handler, listener| {
            let network = handler.network();
            network.listen(Transport::FramedTcp, "0.0.0.0:9000").unwrap();
            let chosen = (me + handler.rng().random_range(1..NODES)) % NODES;
            let mine = [(me + 1) % NODES, (me + 7) % NODES, chosen];
            peers.lock().unwrap().insert(me, mine);
            for peer in mine {
                network.connect(Transport::FramedTcp, format!("n{peer}:9000")).unwrap();
            }
            let mut sender_of = BTreeMap::new();
            listener.for_each(|event| match event {
                NodeEvent::Network(NetEvent::Connected(endpoint, ok)) => {
                    assert!(ok, "n{me}: a connect failed");
                    for seq in 0..MESSAGES {
                        handler.network().send(endpoint, format!("{me}:{seq}").as_bytes());
                    }
                }
                NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
                    let text = std::str::from_utf8(data).unwrap();
                    let (from, seq) = text.split_once(':').unwrap();
                    let (from, seq): (usize, u32) = (from.parse().unwrap(), seq.parse().unwrap());
                    // One connection carries one sender's messages.
                    assert_eq!(*sender_of.entry(endpoint).or_insert(from), from);
                    received
                        .lock()
                        .unwrap()
                        .entry(me)
                        .or_default()
                        .entry(from)
                        .or_default()
                        .push(seq);
                }
                _ => (),
            });
        });
    }
    world.run_until_idle();
    let trace = world.trace();
    let mut hasher = DefaultHasher::new();
    trace.hash(&mut hasher);
    let (received, peers) = (received.lock().unwrap().clone(), peers.lock().unwrap().clone());
    Outcome {
        received,
        peers,
        trace_digest: hasher.finish(),
        trace_lines: trace.len(),
        deliveries: world.deliveries(),
    }
}

/// Every message sent arrived exactly once, in order, at the peer it was sent to.
fn check_delivered(outcome: &Outcome) {
    assert_eq!(outcome.peers.len(), NODES, "not every node started");
    let mut expected: BTreeMap<usize, BTreeMap<usize, u32>> = BTreeMap::new();
    for (&sender, mine) in &outcome.peers {
        for &peer in mine {
            *expected.entry(peer).or_default().entry(sender).or_default() += MESSAGES;
        }
    }
    let mut total = 0;
    for (receiver, senders) in &expected {
        let got = outcome.received.get(receiver).unwrap_or_else(|| panic!("n{receiver}: nothing"));
        assert_eq!(got.len(), senders.len(), "n{receiver}: heard from the wrong senders");
        for (sender, &count) in senders {
            let mut seqs = got[sender].clone();
            // Two connections from one sender (its chosen peer is also a fixed one) interleave.
            if count > MESSAGES {
                seqs.sort_unstable();
                let want: Vec<u32> = (0..MESSAGES).flat_map(|s| [s, s]).collect();
                assert_eq!(seqs, want, "n{receiver} from n{sender}");
            } else {
                assert_eq!(seqs, (0..MESSAGES).collect::<Vec<_>>(), "n{receiver} from n{sender}");
            }
            total += seqs.len();
        }
    }
    assert_eq!(total, NODES * 3 * MESSAGES as usize);
}

#[test]
fn a_thousand_node_gossip_delivers_everything_and_replays_from_its_seed() {
    let start = Instant::now();
    let first = gossip(1_000);
    let one_run = start.elapsed();
    check_delivered(&first);
    assert!(first.deliveries >= (NODES * 3 * MESSAGES as usize) as u64);
    let second = gossip(1_000);
    assert_eq!(first, second, "the same seed gave a different run");
    let other = gossip(1_001);
    check_delivered(&other);
    assert_ne!(first.trace_digest, other.trace_digest, "another seed gave the same trace");
    assert_ne!(first.peers, other.peers, "another seed gave the same random peer choices");
    eprintln!(
        "{NODES} nodes: {} trace lines, {} deliveries, {one_run:.2?} per run",
        first.trace_lines, first.deliveries
    );
}
