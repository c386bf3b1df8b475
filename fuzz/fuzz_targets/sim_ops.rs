//! The whole node API driven in the simulator by an arbitrary sequence of operations, over all
//! four transports: listen, connect, send (binary, or text on `Ws`), remove and stop (from the
//! test's thread, from inside the node through a signal, or later through a timer), crash,
//! restart, partitions (both ways and one way), heal, reset, hold/release, pause/resume, link
//! settings (latency, jitter, loss, duplication), stepping and advancing virtual time.
//!
//! Checked on every input:
//! - nothing panics (a node's panic fails the world's run, which panics: libFuzzer reports it);
//! - per endpoint, events come in the README's order: `Connected`/`Accepted` first, then
//!   `Message`s, then at most one `Disconnected`, then nothing; nothing after `remove`; no
//!   `Accepted` for a listener that was removed; `Connected(ep, false)` ends the endpoint;
//! - every message arrives intact (each payload names its stream, sequence number and length,
//!   and its bytes are a function of those); `Udp` may lose, duplicate and reorder, never corrupt;
//! - a `Ws` message sent with `send_text` is read as `MessageKind::Text`, every other message
//!   as `Binary` (text frames carry the payload in hex);
//! - `FramedTcp` and `Ws` deliver, per connection, exactly the messages `send` accepted, in order,
//!   without gaps or duplicates, under every fault (faults may only cut the tail); `Tcp` delivers
//!   a prefix of the byte stream, re-chunked at will;
//! - after the faults end (heal, release, resume, clean links) and time passes, every connection
//!   still open at both ends has delivered everything its peer's `send` accepted;
//! - the run is deterministic: the same input twice gives the same trace and the same events.
//!
//! `PORTNET_FUZZ_VERBOSE=1` prints each run's operations and figures (for replaying a crash
//! with `cargo fuzz run sim_ops <artifact>`). What it found is in tests/fuzz_regressions.rs.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use portnet::adapters::udp::MAX_LOCAL_PAYLOAD_LEN;
use portnet::adapters::ws::MessageKind;
use portnet::network::{Endpoint, NetEvent, ResourceId, SendStatus, Transport};
use portnet::node::{NodeEvent, NodeHandler, NodeListener};
use portnet::sim::{Link, World};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const MAX_OPS: usize = 40;
const HEADER: usize = 12;

#[derive(Clone, Debug)]
enum NodeOp {
    /// Listen with a transport on one of its three ports.
    Listen(Transport, u16),
    /// Connect with a transport to a node's port of that transport.
    Connect(Transport, usize, u16),
    /// Send `count` messages of `size` bytes on one of the node's endpoints; on `Ws` as text
    /// frames (the bytes in hex) when `text`.
    Send {
        pick: u8,
        size: u32,
        count: u8,
        text: bool,
    },
    /// Remove one of the node's resources (endpoints and listeners).
    Remove(u8),
    Stop,
}

#[derive(Debug)]
enum Op {
    /// From the test's thread, between runs of the world.
    Direct(usize, NodeOp),
    /// Inside the node, through a signal.
    Signal(usize, NodeOp),
    /// Inside the node, through a timer.
    Timer(usize, u16, NodeOp),
    Crash(usize),
    Restart(usize),
    Partition(usize, usize),
    PartitionOneWay(usize, usize),
    Heal,
    Reset(usize, usize),
    Hold(usize, usize),
    Release(usize, usize),
    Pause(usize),
    Resume(usize),
    SetLink(usize, usize, Link),
    Advance(u16),
    Steps(u8),
}

/// The port of a transport's `index`-th listener: each transport has ports of its own, so a
/// connection's two ends always speak the same transport.
fn port(transport: Transport, index: u16) -> u16 {
    1000 + 10 * u16::from(transport.id()) + index % 3
}

fn transport(u: &mut Unstructured<'_>) -> Result<Transport> {
    Ok(Transport::ALL[usize::from(u.arbitrary::<u8>()? % 4)])
}

fn node_op(u: &mut Unstructured<'_>, nodes: usize) -> Result<NodeOp> {
    Ok(match u.arbitrary::<u8>()? % 9 {
        0 | 1 => NodeOp::Listen(transport(u)?, u.arbitrary()?),
        2 | 3 => NodeOp::Connect(
            transport(u)?,
            usize::from(u.arbitrary::<u8>()?) % nodes,
            u.arbitrary()?,
        ),
        4..=6 => {
            let raw: u16 = u.arbitrary()?;
            let size = match raw >> 14 {
                3 if raw & 0x100 != 0 => {
                    MAX_LOCAL_PAYLOAD_LEN as u32 + 1 - HEADER as u32 + u32::from(raw & 1)
                }
                3 => 4000 + u32::from(raw & 0x3fff),
                _ => u32::from(raw % 300),
            };
            NodeOp::Send {
                pick: u.arbitrary()?,
                size,
                count: 1 + u.arbitrary::<u8>()? % 4,
                text: u.arbitrary()?,
            }
        }
        7 => NodeOp::Remove(u.arbitrary()?),
        _ => NodeOp::Stop,
    })
}

fn decode(data: &[u8]) -> Result<(u64, usize, Vec<Op>)> {
    let mut u = Unstructured::new(data);
    let seed = u64::from(u.arbitrary::<u16>()?);
    let nodes = 2 + usize::from(u.arbitrary::<u8>()? % 3);
    let mut ops = Vec::new();
    let node = |u: &mut Unstructured<'_>| -> Result<usize> {
        Ok(usize::from(u.arbitrary::<u8>()?) % nodes)
    };
    while !u.is_empty() && ops.len() < MAX_OPS {
        let op = match u.arbitrary::<u8>()? % 24 {
            0..=5 => Op::Direct(node(&mut u)?, node_op(&mut u, nodes)?),
            6 => Op::Signal(node(&mut u)?, node_op(&mut u, nodes)?),
            7 => Op::Timer(node(&mut u)?, u.arbitrary::<u16>()? % 3000, node_op(&mut u, nodes)?),
            8 => Op::Crash(node(&mut u)?),
            9 => Op::Restart(node(&mut u)?),
            10 => Op::Partition(node(&mut u)?, node(&mut u)?),
            11 => Op::PartitionOneWay(node(&mut u)?, node(&mut u)?),
            12 => Op::Heal,
            13 => Op::Reset(node(&mut u)?, node(&mut u)?),
            14 => Op::Hold(node(&mut u)?, node(&mut u)?),
            15 => Op::Release(node(&mut u)?, node(&mut u)?),
            16 => Op::Pause(node(&mut u)?),
            17 => Op::Resume(node(&mut u)?),
            18 => {
                let (a, b) = (node(&mut u)?, node(&mut u)?);
                let [latency, jitter, loss, duplicate]: [u8; 4] = u.arbitrary()?;
                let link = Link {
                    latency: Duration::from_millis(u64::from(latency % 50)),
                    jitter: Duration::from_millis(u64::from(jitter % 4) * 10),
                    loss: f64::from(loss % 5) * 0.2,
                    duplicate: f64::from(duplicate % 3) * 0.5,
                    ..Link::default()
                };
                Op::SetLink(a, b, link)
            }
            19 | 20 => Op::Advance(u.arbitrary::<u16>()? % 2000),
            _ => Op::Steps(1 + u.arbitrary::<u8>()? % 8),
        };
        ops.push(op);
    }
    Ok((seed, nodes, ops))
}

// ----- the model: what each node did and saw -----

enum Sig {
    Do(NodeOp),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Pending,
    Open,
    Closed,
}

struct Ep {
    endpoint: Endpoint,
    /// This end's address (the listener's, for an accepted connection).
    local: SocketAddr,
    phase: Phase,
}

#[derive(Default)]
struct Recv {
    uid: Option<u32>,
    next: u32,
    buf: Vec<u8>,
}

#[derive(Default)]
struct NodeState {
    running: bool,
    listeners: BTreeMap<ResourceId, (Transport, SocketAddr)>,
    eps: BTreeMap<ResourceId, Ep>,
    /// Where a `Udp` listener heard from: endpoints to answer on.
    udp_peers: BTreeSet<Endpoint>,
    removed: BTreeSet<ResourceId>,
    send_uid: BTreeMap<Endpoint, u32>,
    recv: BTreeMap<ResourceId, Recv>,
}

struct Stream {
    transport: Transport,
    /// The length of every message `send` accepted, in order.
    lens: Vec<u32>,
    /// Whether each of those went as a `Ws` text frame.
    texts: Vec<bool>,
}

#[derive(Default)]
struct Model {
    names: Vec<String>,
    handlers: Vec<Option<NodeHandler<Sig>>>,
    lives: Vec<u32>,
    nodes: Vec<NodeState>,
    streams: Vec<Stream>,
    log: Vec<String>,
    checks: u64,
    sent: u64,
    delivered: u64,
    complete_pairs: u64,
}

fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(|e| e.into_inner())
}

fn message(uid: u32, seq: u32, len: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity(HEADER + len as usize);
    data.extend_from_slice(&uid.to_le_bytes());
    data.extend_from_slice(&seq.to_le_bytes());
    data.extend_from_slice(&len.to_le_bytes());
    data.extend((0..len).map(|i| filler(uid, seq, i)));
    data
}

fn filler(uid: u32, seq: u32, i: u32) -> u8 {
    (uid.wrapping_mul(7).wrapping_add(seq.wrapping_mul(13)).wrapping_add(i.wrapping_mul(31)) >> 1)
        as u8
}

/// A message as a text frame carries it: its bytes in hex.
fn hex(data: &[u8]) -> String {
    data.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &[u8]) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "a text message of odd length {}", text.len());
    let digit = |c: u8| (c as char).to_digit(16).expect("a text message of hex digits") as u8;
    text.chunks(2).map(|pair| digit(pair[0]) << 4 | digit(pair[1])).collect()
}

/// Parses one whole message and checks it is one that `send` accepted, intact, and of the kind
/// it was sent as.
fn check_message(m: &mut Model, data: &[u8], transport: Transport, text: bool) -> (u32, u32) {
    assert!(data.len() >= HEADER, "a {transport} message of {} bytes: cut", data.len());
    let word = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().unwrap());
    let (uid, seq, len) = (word(0), word(4), word(8));
    assert_eq!(data.len(), HEADER + len as usize, "a {transport} message of the wrong size");
    let stream = m.streams.get(uid as usize).unwrap_or_else(|| panic!("no stream #{uid}"));
    assert_eq!(stream.transport, transport, "stream #{uid} arrived over another transport");
    assert_eq!(
        stream.lens.get(seq as usize),
        Some(&len),
        "stream #{uid} message {seq}: never sent"
    );
    let sent_as_text = stream.texts[seq as usize];
    assert_eq!(text, sent_as_text, "stream #{uid} message {seq}: sent as text {sent_as_text}");
    for (i, &byte) in data[HEADER..].iter().enumerate() {
        assert_eq!(
            byte,
            filler(uid, seq, i as u32),
            "stream #{uid} message {seq}: corrupted at {i}"
        );
    }
    m.checks += 1;
    m.delivered += 1;
    (uid, seq)
}

/// An in-order, gap-free check of a stream's next message on one connection.
fn check_order(recv: &mut Recv, uid: u32, seq: u32) {
    match recv.uid {
        None => {
            assert_eq!(seq, 0, "stream #{uid} starts at message {seq}: earlier ones lost");
            recv.uid = Some(uid);
        }
        Some(expected) => {
            assert_eq!(uid, expected, "one connection carries two streams");
            assert_eq!(seq, recv.next, "stream #{uid}: message {seq} where {} was due", recv.next);
        }
    }
    recv.next = seq + 1;
}

/// `kind`: what `message_kind` answered for a `Message` while it was handled.
fn on_event(m: &mut Model, node: usize, event: NetEvent<'_>, kind: MessageKind) {
    let name = m.names[node].clone();
    m.log.push(format!("{name} <- {event:?}"));
    m.checks += 1;
    let id = match &event {
        NetEvent::Connected(e, _)
        | NetEvent::Accepted(e, _)
        | NetEvent::Message(e, _)
        | NetEvent::Disconnected(e) => e.resource_id(),
    };
    let state = &mut m.nodes[node];
    assert!(!state.removed.contains(&id), "{name}: {event:?} after remove");
    match event {
        NetEvent::Connected(endpoint, ok) => {
            let ep = state
                .eps
                .get_mut(&id)
                .unwrap_or_else(|| panic!("{name}: Connected for an unknown {endpoint}"));
            assert_eq!(ep.phase, Phase::Pending, "{name}: Connected twice or late for {endpoint}");
            ep.phase = if ok { Phase::Open } else { Phase::Closed };
        }
        NetEvent::Accepted(endpoint, listener) => {
            assert!(!state.removed.contains(&listener), "{name}: Accepted on a removed listener");
            let state = &mut m.nodes[node];
            let (transport, local) = *state
                .listeners
                .get(&listener)
                .unwrap_or_else(|| panic!("{name}: Accepted on unknown listener {listener}"));
            assert_eq!(transport, endpoint.transport());
            assert!(transport.is_connection_oriented());
            assert!(!state.eps.contains_key(&id), "{name}: Accepted for a known {endpoint}");
            state.eps.insert(id, Ep { endpoint, local, phase: Phase::Open });
        }
        NetEvent::Message(endpoint, data) => {
            let transport = endpoint.transport();
            if let Some(ep) = state.eps.get(&id) {
                assert_eq!(
                    ep.phase,
                    Phase::Open,
                    "{name}: Message on {endpoint} while {:?}",
                    ep.phase
                );
            } else {
                assert!(
                    transport == Transport::Udp && state.listeners.contains_key(&id),
                    "{name}: Message on an unknown {endpoint}"
                );
                state.udp_peers.insert(endpoint);
            }
            let text = kind == MessageKind::Text;
            assert!(!text || transport == Transport::Ws, "{name}: a text message over {transport}");
            let decoded;
            let data = if text {
                decoded = unhex(data);
                &decoded[..]
            } else {
                data
            };
            match transport {
                Transport::Udp => {
                    check_message(m, data, transport, false);
                }
                Transport::FramedTcp | Transport::Ws => {
                    let (uid, seq) = check_message(m, data, transport, text);
                    check_order(m.nodes[node].recv.entry(id).or_default(), uid, seq);
                }
                Transport::Tcp => {
                    let recv = m.nodes[node].recv.entry(id).or_default();
                    recv.buf.extend_from_slice(data);
                    let mut buf = std::mem::take(&mut recv.buf);
                    loop {
                        if buf.len() < HEADER {
                            break;
                        }
                        let len = u32::from_le_bytes(buf[8..12].try_into().unwrap()) as usize;
                        if buf.len() < HEADER + len {
                            break;
                        }
                        let rest = buf.split_off(HEADER + len);
                        let (uid, seq) = check_message(m, &buf, transport, false);
                        check_order(m.nodes[node].recv.get_mut(&id).unwrap(), uid, seq);
                        buf = rest;
                    }
                    m.nodes[node].recv.get_mut(&id).unwrap().buf = buf;
                }
            }
        }
        NetEvent::Disconnected(endpoint) => {
            let ep = state
                .eps
                .get_mut(&id)
                .unwrap_or_else(|| panic!("{name}: Disconnected for an unknown {endpoint}"));
            assert_eq!(
                ep.phase,
                Phase::Open,
                "{name}: Disconnected for {endpoint} while {:?}",
                ep.phase
            );
            ep.phase = Phase::Closed;
        }
    }
}

fn exec(m: &mut Model, node: usize, handler: &NodeHandler<Sig>, op: &NodeOp) {
    let name = m.names[node].clone();
    let network = handler.network();
    match *op {
        NodeOp::Listen(transport, index) => {
            let result = network.listen(transport, format!("0.0.0.0:{}", port(transport, index)));
            m.log.push(format!(
                "{name} listen {transport} {index}: {:?}",
                result.as_ref().map_err(|e| e.kind())
            ));
            if let Ok((id, addr)) = result {
                m.nodes[node].listeners.insert(id, (transport, addr));
            }
        }
        NodeOp::Connect(transport, target, index) => {
            let port = port(transport, index);
            let target = &m.names[target];
            let result = match transport {
                Transport::Ws => network.connect(transport, format!("ws://{target}:{port}/fuzz")),
                _ => network.connect(transport, format!("{target}:{port}")),
            };
            m.log.push(format!(
                "{name} connect {transport} {target}:{port}: {:?}",
                result.as_ref().map_err(|e| e.kind())
            ));
            let (endpoint, local) =
                result.unwrap_or_else(|e| panic!("{name}: connect to a node by name failed: {e}"));
            let state = &mut m.nodes[node];
            assert!(!state.eps.contains_key(&endpoint.resource_id()), "a resource id used twice");
            state.eps.insert(endpoint.resource_id(), Ep { endpoint, local, phase: Phase::Pending });
        }
        NodeOp::Send { pick, size, count, text } => {
            let state = &m.nodes[node];
            let candidates: Vec<Endpoint> = state
                .eps
                .iter()
                .filter(|(id, ep)| ep.phase != Phase::Closed && !state.removed.contains(id))
                .map(|(_, ep)| ep.endpoint)
                .chain(
                    state
                        .udp_peers
                        .iter()
                        .filter(|e| !state.removed.contains(&e.resource_id()))
                        .copied(),
                )
                .collect();
            let Some(&endpoint) = candidates.get(usize::from(pick) % candidates.len().max(1))
            else {
                return;
            };
            for _ in 0..count {
                let uid = match m.nodes[node].send_uid.get(&endpoint) {
                    Some(&uid) => uid,
                    None => {
                        let uid = m.streams.len() as u32;
                        let transport = endpoint.transport();
                        m.streams.push(Stream { transport, lens: Vec::new(), texts: Vec::new() });
                        m.nodes[node].send_uid.insert(endpoint, uid);
                        uid
                    }
                };
                let seq = m.streams[uid as usize].lens.len() as u32;
                let data = message(uid, seq, size);
                let text = text && endpoint.transport() == Transport::Ws;
                let status = if text {
                    network.send_text(endpoint, &hex(&data))
                } else {
                    network.send(endpoint, &data)
                };
                let how = if text { " as text" } else { "" };
                m.log.push(format!("{name} send {} bytes{how} on {endpoint}: {status:?}", data.len()));
                if endpoint.transport() == Transport::Udp && data.len() > MAX_LOCAL_PAYLOAD_LEN {
                    assert_eq!(
                        status,
                        SendStatus::MaxPacketSizeExceeded,
                        "{name}: a Udp datagram over the maximum"
                    );
                }
                if status == SendStatus::Sent {
                    m.streams[uid as usize].lens.push(size);
                    m.streams[uid as usize].texts.push(text);
                    m.sent += 1;
                }
            }
        }
        NodeOp::Remove(pick) => {
            let state = &m.nodes[node];
            let candidates: Vec<ResourceId> = state
                .eps
                .keys()
                .chain(state.listeners.keys())
                .filter(|id| !state.removed.contains(id))
                .copied()
                .collect();
            let Some(&id) = candidates.get(usize::from(pick) % candidates.len().max(1)) else {
                return;
            };
            let removed = network.remove(id);
            m.log.push(format!("{name} remove {id}: {removed}"));
            if removed {
                m.nodes[node].removed.insert(id);
            }
        }
        NodeOp::Stop => {
            m.log.push(format!("{name} stop"));
            handler.stop();
        }
    }
}

fn app(
    model: Arc<Mutex<Model>>,
    node: usize,
) -> impl Fn(NodeHandler<Sig>, NodeListener<Sig>) + Send + Sync + 'static {
    move |handler: NodeHandler<Sig>, listener: NodeListener<Sig>| {
        let life = {
            let mut m = lock(&model);
            m.lives[node] += 1;
            m.nodes[node] = NodeState { running: true, ..NodeState::default() };
            m.handlers[node] = Some(handler.clone());
            let (name, life) = (m.names[node].clone(), m.lives[node]);
            m.log.push(format!("{name} starts, life {life}"));
            life
        };
        listener.for_each(|event| {
            let mut m = lock(&model);
            assert_eq!(m.lives[node], life, "a node ran an event of a past life");
            match event {
                NodeEvent::Network(event) => {
                    let kind = match event {
                        NetEvent::Message(endpoint, _) => handler.network().message_kind(endpoint),
                        _ => MessageKind::Binary,
                    };
                    on_event(&mut m, node, event, kind)
                }
                NodeEvent::Signal(Sig::Do(op)) => exec(&mut m, node, &handler, &op),
            }
        });
        let mut m = lock(&model);
        m.nodes[node].running = false;
        m.handlers[node] = None;
    }
}

/// The handler of a node whose application runs (started, not crashed, not stopped).
fn handler(model: &Mutex<Model>, node: usize) -> Option<NodeHandler<Sig>> {
    let m = lock(model);
    m.handlers[node].clone().filter(|h| h.is_running() && m.nodes[node].running)
}

struct Run {
    trace: Vec<String>,
    log: Vec<String>,
    figures: String,
}

fn run(seed: u64, nodes: usize, ops: &[Op]) -> Run {
    let model = Arc::new(Mutex::new(Model {
        names: (0..nodes).map(|i| format!("n{i}")).collect(),
        handlers: (0..nodes).map(|_| None).collect(),
        lives: vec![0; nodes],
        nodes: (0..nodes).map(|_| NodeState::default()).collect(),
        ..Model::default()
    }));
    let names: Vec<String> = lock(&model).names.clone();
    let mut world = World::with_seed(seed);
    for (i, name) in names.iter().enumerate() {
        world.node(name, app(model.clone(), i));
    }
    // The nodes start (their handlers become available to the operations).
    world.run_for(Duration::ZERO);
    let mut held = BTreeSet::new();
    let mut links = BTreeSet::new();
    let mut paused = BTreeSet::new();
    for op in ops {
        match op {
            Op::Direct(node, op) => {
                if let Some(handler) = handler(&model, *node) {
                    exec(&mut lock(&model), *node, &handler, op);
                }
            }
            Op::Signal(node, op) => {
                if let Some(handler) = handler(&model, *node) {
                    handler.signals().send(Sig::Do(op.clone()));
                }
            }
            Op::Timer(node, ms, op) => {
                if let Some(handler) = handler(&model, *node) {
                    handler.signals().send_with_timer(
                        Sig::Do(op.clone()),
                        Duration::from_millis(u64::from(*ms)),
                    );
                }
            }
            Op::Crash(node) => {
                world.crash(&names[*node]);
                let mut m = lock(&model);
                m.handlers[*node] = None;
                m.nodes[*node].running = false;
            }
            Op::Restart(node) => {
                {
                    let mut m = lock(&model);
                    m.handlers[*node] = None;
                    m.nodes[*node].running = false;
                }
                world.restart(&names[*node]);
            }
            Op::Partition(a, b) => world.partition(&names[*a], &names[*b]),
            Op::PartitionOneWay(a, b) => world.partition_one_way(&names[*a], &names[*b]),
            Op::Heal => world.heal(),
            Op::Reset(a, b) => world.reset(&names[*a], &names[*b]),
            Op::Hold(a, b) => {
                world.hold(&names[*a], &names[*b]);
                held.insert((*a, *b));
            }
            Op::Release(a, b) => {
                world.release(&names[*a], &names[*b]);
                held.remove(&(*a, *b));
            }
            Op::Pause(node) => {
                world.pause(&names[*node]);
                paused.insert(*node);
            }
            Op::Resume(node) => {
                world.resume(&names[*node]);
                paused.remove(node);
            }
            Op::SetLink(a, b, link) => {
                world.set_link(&names[*a], &names[*b], *link);
                links.insert((*a, *b));
            }
            Op::Advance(ms) => world.run_for(Duration::from_millis(u64::from(*ms))),
            Op::Steps(n) => {
                for _ in 0..*n {
                    if world.step().is_none() {
                        break;
                    }
                }
            }
        }
    }
    // The faults end; everything in flight arrives.
    world.heal();
    for (a, b) in held {
        world.release(&names[a], &names[b]);
    }
    for node in paused {
        world.resume(&names[node]);
    }
    for (a, b) in links {
        world.set_link(&names[a], &names[b], Link::default());
    }
    world.run_for(Duration::from_secs(20));

    // Liveness: a connection open at both ends delivered all that was sent on it.
    let mut m = lock(&model);
    let mut pairs = Vec::new();
    for (a, state) in m.nodes.iter().enumerate() {
        if !state.running {
            continue;
        }
        for (id, ep) in &state.eps {
            if ep.phase != Phase::Open
                || state.removed.contains(id)
                || !ep.endpoint.transport().is_connection_oriented()
            {
                continue;
            }
            for (b, other) in m.nodes.iter().enumerate() {
                if !other.running {
                    continue;
                }
                for (other_id, peer) in &other.eps {
                    if peer.phase == Phase::Open
                        && !other.removed.contains(other_id)
                        && peer.local == ep.endpoint.addr()
                        && peer.endpoint.addr() == ep.local
                        && (a, *id) != (b, *other_id)
                    {
                        pairs.push((a, ep.endpoint, b, *other_id));
                    }
                }
            }
        }
    }
    for (a, endpoint, b, peer_id) in pairs {
        let sent = m.nodes[a]
            .send_uid
            .get(&endpoint)
            .map(|&uid| (uid, m.streams[uid as usize].lens.len() as u32));
        let recv = m.nodes[b].recv.get(&peer_id);
        let got = recv.map(|r| (r.uid, r.next, r.buf.len()));
        m.checks += 1;
        m.complete_pairs += 1;
        match sent {
            None | Some((_, 0)) => assert!(
                got.is_none_or(|(uid, _, _)| uid.is_none()),
                "{endpoint}: received what was never sent"
            ),
            Some((uid, count)) => assert_eq!(
                got,
                Some((Some(uid), count, 0)),
                "{} -> {}: {endpoint} is open at both ends, but not all it sent arrived",
                m.names[a],
                m.names[b]
            ),
        }
    }
    let figures = format!(
        "seed {seed}, {nodes} nodes, {} ops, {} trace lines, {} messages sent, {} delivered, {} checks, {} open pairs complete",
        ops.len(),
        world.trace().len(),
        m.sent,
        m.delivered,
        m.checks,
        m.complete_pairs,
    );
    let log = std::mem::take(&mut m.log);
    drop(m);
    Run { trace: world.trace(), log, figures }
}

fuzz_target!(|data: &[u8]| {
    let Ok((seed, nodes, ops)) = decode(data) else { return };
    let verbose = std::env::var_os("PORTNET_FUZZ_VERBOSE").is_some();
    if verbose {
        eprintln!("{ops:#?}");
    }
    let first = run(seed, nodes, &ops);
    let second = run(seed, nodes, &ops);
    if verbose {
        eprintln!("{}", first.figures);
        for line in &first.trace {
            eprintln!("{line}");
        }
    }
    for (i, (a, b)) in first.trace.iter().zip(&second.trace).enumerate() {
        assert_eq!(a, b, "not deterministic: traces differ at line {i}");
    }
    assert_eq!(first.trace.len(), second.trace.len(), "not deterministic: trace lengths");
    assert!(first.log == second.log, "not deterministic: the nodes saw different events");
});
