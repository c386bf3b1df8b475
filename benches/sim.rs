//! The simulator's speed: deliveries per second of wall time, and virtual time per wall time
//! for a mostly idle world. Not a criterion benchmark: each figure is one long run.
//!
//! ```text
//! cargo bench --bench sim                        # full sizes
//! PORTNET_BENCH_QUICK=1 cargo bench --bench sim  # small sizes, for CI to check it runs
//! cargo bench --bench sim -- scale               # only the 1 000 and 10 000 node worlds
//! ```

use portnet::network::{Endpoint, NetEvent, Transport};
use portnet::node::{NodeEvent, NodeHandler, NodeListener};
use portnet::sim::World;
use std::time::{Duration, Instant};

fn quick() -> bool {
    std::env::var_os("PORTNET_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}

fn echo_server(handler: NodeHandler<()>, listener: NodeListener<()>) {
    handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
    listener.for_each(|event| {
        if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
            handler.network().send(endpoint, data);
        }
    });
}

/// Two nodes ping-ponging one small message: round trips per second.
fn ping_pong(round_trips: u32) {
    let mut world = World::with_seed(1);
    world.node("server", echo_server);
    world.node("client", move |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().connect(Transport::FramedTcp, "server:3000").unwrap();
        let mut count = 0;
        listener.for_each(|event| match event {
            NodeEvent::Network(NetEvent::Connected(endpoint, true)) => {
                handler.network().send(endpoint, b"ping");
            }
            NodeEvent::Network(NetEvent::Message(endpoint, _)) => {
                count += 1;
                if count == round_trips {
                    handler.stop();
                } else {
                    handler.network().send(endpoint, b"ping");
                }
            }
            _ => (),
        });
    });
    let start = Instant::now();
    world.run_until(|w| w.is_finished("client"));
    let wall = start.elapsed();
    println!(
        "ping-pong, 2 nodes, FramedTcp: {round_trips} round trips in {wall:.2?}: {:.0} round trips/s",
        f64::from(round_trips) / wall.as_secs_f64()
    );
}

/// One node receiving from many senders: deliveries per second.
fn fan_in(senders: usize, messages: u32) {
    let mut world = World::with_seed(2);
    world.node("sink", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, "0.0.0.0:4000").unwrap();
        listener.for_each(|_| ());
    });
    for i in 0..senders {
        world.node(&format!("sender{i}"), move |handler: NodeHandler<()>, listener| {
            let (sink, _) = handler.network().connect(Transport::Udp, "sink:4000").unwrap();
            for _ in 0..messages {
                handler.network().send(sink, b"data");
            }
            handler.stop();
            listener.for_each(|_| ());
        });
    }
    let start = Instant::now();
    world.run_until_idle();
    let wall = start.elapsed();
    let deliveries = world.deliveries();
    println!(
        "fan-in, {senders} Udp senders -> 1 node: {deliveries} deliveries in {wall:.2?}: {:.0} deliveries/s",
        deliveries as f64 / wall.as_secs_f64()
    );
}

/// Many nodes sending a heartbeat to a coordinator every 10 s: virtual time per wall time.
fn heartbeats(nodes: usize, virtual_time: Duration) {
    let mut world = World::with_seed(3);
    world.node("coordinator", |handler: NodeHandler<()>, listener: NodeListener<()>| {
        handler.network().listen(Transport::Udp, "0.0.0.0:5000").unwrap();
        listener.for_each(|_| ());
    });
    for i in 0..nodes {
        world.node(&format!("n{i}"), |handler: NodeHandler<Endpoint>, listener| {
            let (coordinator, _) =
                handler.network().connect(Transport::Udp, "coordinator:5000").unwrap();
            handler.signals().send_with_timer(coordinator, Duration::from_secs(10));
            listener.for_each(|event| {
                if let NodeEvent::Signal(coordinator) = event {
                    handler.network().send(coordinator, b"alive");
                    handler.signals().send_with_timer(coordinator, Duration::from_secs(10));
                }
            });
        });
    }
    let start = Instant::now();
    world.run_for(virtual_time);
    let wall = start.elapsed();
    println!(
        "heartbeats, {nodes} nodes every 10 s: {virtual_time:?} of virtual time in {wall:.2?} \
         ({:.0}x real time, {} deliveries)",
        virtual_time.as_secs_f64() / wall.as_secs_f64(),
        world.deliveries()
    );
}

/// The resident memory of this process, in bytes (Linux; `None` elsewhere).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// `nodes` nodes gossiping over FramedTcp, each sending 4 messages to its ring successor and
/// to the node 7 places on (the world of tests/sim_scale.rs): wall time and memory per node.
fn scale(nodes: usize) {
    let before = resident_bytes();
    let start = Instant::now();
    let mut world = World::with_seed(4);
    world.set_default_link(portnet::sim::Link {
        latency: Duration::from_millis(2),
        jitter: Duration::from_millis(3),
        ..Default::default()
    });
    for me in 0..nodes {
        world.node(&format!("n{me}"), move |handler: NodeHandler<()>, listener| {
            handler.network().listen(Transport::FramedTcp, "0.0.0.0:9000").unwrap();
            for peer in [(me + 1) % nodes, (me + 7) % nodes] {
                handler.network().connect(Transport::FramedTcp, format!("n{peer}:9000")).unwrap();
            }
            listener.for_each(|event| {
                if let NodeEvent::Network(NetEvent::Connected(endpoint, true)) = event {
                    for _ in 0..4 {
                        handler.network().send(endpoint, b"gossip");
                    }
                }
            });
        });
    }
    let built = start.elapsed();
    world.run_until_idle();
    let wall = start.elapsed();
    let after = resident_bytes();
    let per_node = match (before, after) {
        (Some(b), Some(a)) => {
            format!("{} KiB resident per node", a.saturating_sub(b) / 1024 / nodes as u64)
        }
        _ => "memory not measured here".into(),
    };
    println!(
        "scale, {nodes} nodes gossiping (2 peers x 4 FramedTcp messages each): {} deliveries, \
         {} trace lines, {wall:.2?} ({built:.2?} to add the nodes): {:.1} us per node; {per_node}",
        world.deliveries(),
        world.trace().len(),
        wall.as_secs_f64() * 1e6 / nodes as f64,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `scale` alone runs the large worlds only.
    if std::env::args().any(|a| a == "scale") {
        scale(1_000);
        scale(10_000);
        return;
    }
    if quick() {
        ping_pong(2_000);
        fan_in(100, 20);
        heartbeats(100, Duration::from_secs(60));
    } else {
        ping_pong(200_000);
        fan_in(100, 2_000);
        heartbeats(1_000, Duration::from_secs(3600));
    }
}
