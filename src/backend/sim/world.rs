//! The simulated network: nodes, sockets, links and a queue of timed events. No threads and
//! no real clock here: the world (`crate::sim::World`) pops events in time order and runs
//! nodes; everything random is drawn from one seeded generator, so a seed replays a run.

use crate::adapters::udp::MAX_LOCAL_PAYLOAD_LEN;
use crate::adapters::ws::{MessageKind, WsHandshake};
use crate::core::resource_id::ResourceIdGenerator;
use crate::core::{
    Endpoint, EventDetail, ResourceId, ResourceType, SendStatus, StoredNetEvent, Transport,
};
use addresses::is_broadcast;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) mod addresses;
mod bytes;
mod datagram;
mod faults;
mod linger;
mod link;
mod stream;
mod trace;

pub use link::{Link, Spread, UDP_OVERHEAD_V4, UDP_OVERHEAD_V6};
use stream::Conn;
pub(crate) use stream::StreamConfig;
#[cfg(feature = "websocket")]
pub(crate) use stream::WsRequest;
pub(crate) use trace::Trace;

/// A node's index in the world.
pub(crate) type NodeId = usize;

/// How long a stream segment lost to a fault waits before TCP would have retransmitted it.
pub(crate) const RETRANSMIT: Duration = Duration::from_millis(200);

/// First port handed out for `connect` and port-0 `listen`.
const EPHEMERAL_PORTS: u16 = 49152;

/// What a per-packet rule decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver normally.
    Pass,
    /// Lose it (a stream segment is retransmitted later instead: streams stay reliable).
    Drop,
    /// Deliver it this much later than the link would.
    Delay(Duration),
    /// Deliver it twice (datagrams only; streams ignore duplicates as TCP does).
    Duplicate,
    /// Flip bits in it at seeded places, as a link's `corrupt` does (datagrams only: streams
    /// are never corrupted, their checksums and retransmits hide it).
    Corrupt,
    /// Deliver only its first this many bytes (datagrams only; no effect if not shorter).
    Truncate(usize),
}

/// A packet as a rule sees it.
#[derive(Debug)]
pub struct Packet<'a> {
    /// Sending node.
    pub from: &'a str,
    /// Receiving node.
    pub to: &'a str,
    /// Its transport.
    pub transport: Transport,
    /// The application bytes it carries (a whole message on packet-based transports; on a
    /// mounted transport, a segment of the bytes its protocol framed).
    pub payload: &'a [u8],
    /// The path's MTU ([`Link::mtu`]) drops this `Udp` datagram, after the rule's verdict.
    pub over_mtu: bool,
}

/// One fault decision of a run, as recorded on its tape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Its place among the run's fault decisions.
    pub index: usize,
    /// What it did, e.g. `"client -> server: lose a datagram"`.
    pub description: String,
    /// Whether it took effect (a shrinking replay suppresses some).
    pub applied: bool,
    /// How long it lasted, for faults that last: a partition until `heal`, a hold until
    /// `release`, a pause until `resume`, a crash until `restart`, a rule's `Delay`. `None`
    /// for instant faults and for those still in effect when the run ended.
    pub duration: Option<Duration>,
    /// A shrinking replay cut it short to this (see [`crate::sim::shrink`]).
    pub softened: Option<Duration>,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}: {}", self.index, self.description)?;
        match (self.duration, self.softened) {
            (Some(lasted), Some(cut)) if cut < lasted => {
                write!(f, " (lasted {lasted:?}; still fails cut to {cut:?})")
            }
            (Some(lasted), _) => write!(f, " (lasted {lasted:?})"),
            _ => Ok(()),
        }
    }
}

/// How a lasting fault ends, when a shrinking replay cuts it short.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FaultEnd {
    /// A one-way partition: unblock `from -> to`.
    Unblock(NodeId, NodeId),
    /// A hold: release `from -> to`.
    Release(NodeId, NodeId),
    /// A pause: resume the node.
    Resume(NodeId),
    /// A crash: restart the node.
    Restart(NodeId),
}

/// A per-packet rule.
pub(crate) type Rule = Box<dyn FnMut(&Packet<'_>) -> Verdict + Send>;

/// What the world must do at some virtual time.
pub(crate) enum Ev {
    /// Run a node that was just created or restarted.
    Start(NodeId, u64),
    /// A node's wait ends (its timeout, or a signal): run it.
    Wake(NodeId, u64),
    /// A connect's first packet reaches the server.
    Syn(u64),
    /// The server's answer reaches the client (first in the server's stream).
    SynAck {
        conn: u64,
        seq: u64,
    },
    /// No listener: the client learns it was refused.
    Refused(u64),
    ConnectTimeout(u64),
    /// A side's send queue may have drained: tell who waits.
    Writable {
        conn: u64,
        side: usize,
    },
    /// Stream bytes reach side `!from`.
    Segment {
        conn: u64,
        from: usize,
        seq: u64,
        data: Vec<u8>,
        kind: MessageKind,
    },
    /// Side `side` of a mounted transport's connection reads the bytes that arrived.
    Read {
        conn: u64,
        side: usize,
    },
    /// The connection ended at side `from` (closed or reset): the other side is told.
    Fin {
        conn: u64,
        from: usize,
        /// The application closed (`remove`): a `Ws` peer reads a Close frame with code 1000.
        goodbye: bool,
        seq: u64,
    },
    /// A datagram reaches `to_node`.
    Datagram {
        from_node: NodeId,
        to_node: NodeId,
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    },
    /// An action the test scheduled.
    Action(u64),
    /// A shrinking replay ends this lasting fault (by its tape index) early.
    EndFault(usize),
}

/// What happened to a node's thread, as the world tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Created, not run yet.
    Starting,
    /// Holds the baton.
    Running,
    /// Waiting in its event loop.
    Waiting,
    /// Its application function returned.
    Finished,
    /// Crashed (until restarted).
    Dead,
}

pub(crate) struct NodeState {
    pub name: String,
    pub ip: IpAddr,
    pub status: Status,
    pub paused: bool,
    /// Bumped on crash and restart: events for an older life are dropped.
    pub life: u64,
    /// Events for the application, each with what `message_kind` and `ws_close` answer for it.
    pub inbox: VecDeque<(StoredNetEvent, EventDetail)>,
    /// The event the application is handling now, when its detail is not the default.
    pub in_hand: Option<(Endpoint, EventDetail)>,
    resources: BTreeMap<ResourceId, Res>,
    /// Bound sockets by (udp, port, address): see [`addresses`].
    ports: BTreeMap<(bool, u16, IpAddr), ResourceId>,
    next_port: u16,
    ids: ResourceIdGenerator,
    /// The sequence number of the pending `Wake`, if any: older wakes are stale.
    pub wake: Option<u64>,
    /// Resources the application removed since the node last waited: events already gathered
    /// for them are not delivered.
    pub removed: Vec<ResourceId>,
}

enum Res {
    /// `subprotocols`: what a `Ws` listener speaks; `protocol`: a mounted transport's.
    Listener {
        transport: Transport,
        queue_limit: usize,
        subprotocols: Vec<String>,
        protocol: Option<crate::adapter::Protocol>,
    },
    Stream {
        conn: u64,
        side: usize,
    },
    /// `bound`: the address it is bound to (a wildcard, its own, or a group it joined).
    Udp {
        port: u16,
        peer: Option<SocketAddr>,
        bound: IpAddr,
    },
}

/// The world's state.
pub(crate) struct Core {
    pub now: Duration,
    pub clock: Arc<Mutex<Duration>>,
    rng: ChaCha8Rng,
    queue: BTreeMap<(Duration, u64, u64), Ev>,
    seq: u64,
    pub nodes: Vec<NodeState>,
    names: BTreeMap<String, NodeId>,
    by_ip: BTreeMap<IpAddr, NodeId>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    pub default_link: Link,
    pub links: BTreeMap<(NodeId, NodeId), Link>,
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    pub held: BTreeSet<(NodeId, NodeId)>,
    parked: Vec<Ev>,
    /// The latest datagram arrival per path, to keep jitter-free paths in order.
    last_datagram: BTreeMap<(NodeId, NodeId), Duration>,
    /// Per path with a bandwidth: when it has sent everything queued on it.
    link_free: BTreeMap<(NodeId, NodeId), Duration>,
    /// Send-queue waiters whose queue drained: the world calls them outside the lock.
    pub drained: Vec<Box<dyn FnOnce() + Send>>,
    pub rule: Option<Rule>,
    /// Every fault decision of the run, in order.
    pub tape: Vec<Fault>,
    /// When replaying to shrink: the only fault decisions (by index) that may take effect.
    pub allowed: Option<BTreeSet<usize>>,
    /// A shrinking replay cuts these lasting faults (by tape index) short: at most this long.
    pub soften: BTreeMap<usize, Duration>,
    /// Lasting faults in effect: how each ends, and when it began.
    pub open: BTreeMap<usize, (FaultEnd, Duration)>,
    pub trace: Trace,
    /// Nodes that got events since they last ran, in the order they got them.
    pub to_run: Vec<NodeId>,
    /// Counters, for the benchmark and the curious.
    pub delivered: u64,
}

impl Core {
    pub fn new(seed: u64, clock: Arc<Mutex<Duration>>) -> Self {
        Core {
            now: Duration::ZERO,
            clock,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queue: BTreeMap::new(),
            seq: 0,
            nodes: Vec::new(),
            names: BTreeMap::new(),
            by_ip: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            default_link: Link::default(),
            links: BTreeMap::new(),
            blocked: BTreeSet::new(),
            held: BTreeSet::new(),
            parked: Vec::new(),
            last_datagram: BTreeMap::new(),
            link_free: BTreeMap::new(),
            drained: Vec::new(),
            rule: None,
            tape: Vec::new(),
            allowed: None,
            soften: BTreeMap::new(),
            open: BTreeMap::new(),
            trace: Trace::default(),
            to_run: Vec::new(),
            delivered: 0,
        }
    }

    /// Writes a line of the trace, stamped with the virtual time.
    pub fn log(&mut self, line: std::fmt::Arguments<'_>) {
        self.trace.line(self.now, |text| {
            let _ = text.write_fmt(line);
        });
    }

    /// Queues `event` at `at`. Events at the same time run in an order drawn from the seed.
    pub fn schedule(&mut self, at: Duration, event: Ev) -> u64 {
        self.seq += 1;
        // Nodes start in the order they were added, before anything else due then: a test
        // that adds the server first can count on it listening.
        let tiebreak = if matches!(event, Ev::Start(..)) { 0 } else { self.rng.random::<u64>() };
        self.queue.insert((at.max(self.now), tiebreak, self.seq), event);
        self.seq
    }

    /// The next event, advancing the clock to it.
    pub fn pop(&mut self) -> Option<(u64, Ev)> {
        let ((at, _, seq), event) = self.queue.pop_first()?;
        self.now = at;
        *self.clock.lock().unwrap_or_else(|e| e.into_inner()) = at;
        Some((seq, event))
    }

    /// The next event if it is a packet due at the current time.
    pub fn pop_network_due_now(&mut self) -> Option<Ev> {
        let entry = self.queue.first_entry()?;
        let due_now = entry.key().0 == self.now;
        let packet =
            !matches!(entry.get(), Ev::Start(..) | Ev::Wake(..) | Ev::Action(_) | Ev::EndFault(_));
        (due_now && packet).then(|| entry.remove())
    }

    pub fn next_time(&self) -> Option<Duration> {
        self.queue.keys().next().map(|(at, ..)| *at)
    }

    pub fn add_node(&mut self, name: &str) -> NodeId {
        let id = self.nodes.len();
        let ip = IpAddr::V4(addresses::node_v4(id));
        assert!(!self.by_ip.contains_key(&ip), "portnet sim: more nodes than simulated addresses");
        self.nodes.push(NodeState {
            name: name.to_string(),
            ip,
            status: Status::Starting,
            paused: false,
            life: 0,
            inbox: VecDeque::new(),
            in_hand: None,
            resources: BTreeMap::new(),
            ports: BTreeMap::new(),
            next_port: EPHEMERAL_PORTS,
            ids: ResourceIdGenerator::default(),
            wake: None,
            removed: Vec::new(),
        });
        self.names.insert(name.to_string(), id);
        self.by_ip.insert(ip, id);
        self.by_ip.insert(addresses::node_v6(id).into(), id);
        id
    }

    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.names.get(name).copied()
    }

    /// Forgets a node's sockets (crash or restart); its peers learn as from a reset.
    pub fn reset_node(&mut self, node: NodeId) {
        let state = &mut self.nodes[node];
        state.life += 1;
        state.inbox.clear();
        state.in_hand = None;
        state.wake = None;
        state.ports.clear();
        state.next_port = EPHEMERAL_PORTS;
        state.ids = ResourceIdGenerator::default();
        let resources = std::mem::take(&mut state.resources);
        for res in resources.into_values() {
            if let Res::Stream { conn, side } = res {
                // Waiters of the old life die with it: they must not wake the new one.
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.waiting[side].clear();
                }
                self.close_stream(conn, side, false);
            }
        }
    }

    /// Arranges for `node` to run at `at` (replacing an earlier wake).
    pub fn wake_at(&mut self, node: NodeId, at: Duration) {
        let life = self.nodes[node].life;
        let seq = self.schedule(at, Ev::Wake(node, life));
        self.nodes[node].wake = Some(seq);
    }

    pub fn is_current_wake(&self, node: NodeId, seq: u64) -> bool {
        self.nodes[node].wake == Some(seq)
    }

    fn deliver(&mut self, node: NodeId, event: StoredNetEvent) {
        self.deliver_with(node, event, EventDetail::default());
    }

    fn deliver_with(&mut self, node: NodeId, event: StoredNetEvent, detail: EventDetail) {
        let name = &self.nodes[node].name;
        self.trace.line(self.now, |line| {
            let _ = write!(line, "{name} <- {:?}", event.borrow());
            if let Some(close) = &detail.close {
                let _ = write!(line, " (close {})", close.code);
            }
            if let StoredNetEvent::Message(_, data) = &event {
                // The first bytes, so a trace tells messages apart (and catches reordering).
                line.push_str(if detail.kind == MessageKind::Text { " (text): " } else { ": " });
                for byte in data.iter().take(16) {
                    let _ = write!(line, "{byte:02x}");
                }
                if data.len() > 16 {
                    line.push_str("..");
                }
            }
        });
        self.delivered += 1;
        let inbox = &mut self.nodes[node].inbox;
        // Plain Tcp is a byte stream: bytes that arrived before the node reads are read
        // together, as from a socket (with the seeded cuts, this catches framing bugs).
        if let (
            StoredNetEvent::Message(endpoint, data),
            Some((StoredNetEvent::Message(last, buffered), _)),
        ) = (&event, inbox.back_mut())
        {
            if endpoint == last && endpoint.transport().is_tcp() {
                buffered.extend_from_slice(data);
                return;
            }
        }
        inbox.push_back((event, detail));
        if !self.to_run.contains(&node) {
            self.to_run.push(node);
        }
    }

    fn link(&self, from: NodeId, to: NodeId) -> Link {
        self.links.get(&(from, to)).copied().unwrap_or(self.default_link)
    }

    fn delay(&mut self, from: NodeId, to: NodeId) -> Duration {
        let link = self.link(from, to);
        let jitter = match link.spread {
            _ if link.jitter.is_zero() => Duration::ZERO,
            // Integer draw: the seeded runs recorded before other spreads existed stay the same.
            Spread::Uniform => {
                Duration::from_nanos(self.rng.random_range(0..=link.jitter.as_nanos() as u64))
            }
            spread => spread.sample(link.jitter, self.rng.random::<f64>()),
        };
        link.latency + jitter
    }

    fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && self.rng.random::<f64>() < probability
    }

    fn allocate_port(&mut self, node: NodeId, udp: bool) -> u16 {
        let state = &mut self.nodes[node];
        loop {
            let port = state.next_port;
            state.next_port = state.next_port.checked_add(1).unwrap_or(EPHEMERAL_PORTS);
            if !state.port_used(udp, port) {
                return port;
            }
        }
    }

    // ----- what nodes ask (their `NetworkController`) -----

    pub fn listen(
        &mut self,
        node: NodeId,
        transport: Transport,
        addr: SocketAddr,
        queue_limit: usize,
        subprotocols: Vec<String>,
        protocol: Option<crate::adapter::Protocol>,
    ) -> io::Result<(ResourceId, SocketAddr)> {
        let udp = transport.is_udp();
        let (bound, reported) = self.bind_ip(node, addr.ip())?;
        let port = if addr.port() == 0 { self.allocate_port(node, udp) } else { addr.port() };
        let state = &self.nodes[node];
        if !bound.is_multicast() && state.port_taken(udp, port, bound) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{transport} listen on {addr}: port {port} in use on {}", state.name),
            ));
        }
        let id = state.ids.generate(transport.id(), ResourceType::Local);
        let state = &mut self.nodes[node];
        state.ports.entry((udp, port, bound)).or_insert(id);
        let res = if udp {
            Res::Udp { port, peer: None, bound }
        } else {
            Res::Listener { transport, queue_limit, subprotocols, protocol }
        };
        state.resources.insert(id, res);
        let local = SocketAddr::new(reported, port);
        let line = format!("{} listens on {local} over {transport} as {id}", state.name);
        self.log(format_args!("{line}"));
        Ok((id, local))
    }

    /// Sends `data`; `kind` matters to `Ws` only (a text frame), as natively.
    pub fn send(
        &mut self,
        node: NodeId,
        endpoint: Endpoint,
        data: &[u8],
        kind: MessageKind,
    ) -> SendStatus {
        let id = endpoint.resource_id();
        match self.nodes[node].resources.get(&id) {
            None | Some(Res::Listener { .. }) => SendStatus::ResourceNotFound,
            Some(&Res::Stream { conn, side }) => self.send_stream(conn, side, data, kind),
            Some(&Res::Udp { port, peer, bound }) => {
                if data.len() > MAX_LOCAL_PAYLOAD_LEN {
                    return SendStatus::MaxPacketSizeExceeded;
                }
                let to = peer.unwrap_or(endpoint.addr());
                let from = SocketAddr::new(self.source_ip(node, bound, to.ip()), port);
                self.send_datagram(node, endpoint.transport(), from, to, data);
                SendStatus::Sent
            }
        }
    }

    /// Sends a datagram (`transport` is `Udp`: named by the caller, which exists only in a build
    /// with `udp`).
    fn send_datagram(
        &mut self,
        from_node: NodeId,
        transport: Transport,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) {
        // However the application wrote it (`::ffff:a.b.c.d`), an IPv4 peer is reached over IPv4.
        let to = SocketAddr::new(to.ip().to_canonical(), to.port());
        let targets: Vec<NodeId> = if to.ip().is_multicast() || is_broadcast(to.ip()) {
            (0..self.nodes.len()).collect()
        } else {
            self.route(from_node, to.ip()).into_iter().collect()
        };
        for target in targets {
            let fate = self.datagram_fate(from_node, target, transport, to, data);
            for _ in 0..fate.copies {
                let leaves = self.transmit(from_node, target, data.len());
                let mut at = leaves + self.delay(from_node, target) + fate.extra;
                if self.link(from_node, target).jitter.is_zero() {
                    // Without jitter a path does not reorder, as loopback does not.
                    let last = self.last_datagram.entry((from_node, target)).or_default();
                    at = at.max(*last + Duration::from_nanos(1));
                    *last = at;
                }
                let data = fate.payload.to_vec();
                let event = Ev::Datagram { from_node, to_node: target, from, to, data };
                self.schedule(at, event);
            }
        }
    }

    pub fn remove(&mut self, node: NodeId, id: ResourceId) -> bool {
        let state = &mut self.nodes[node];
        let Some(res) = state.resources.remove(&id) else { return false };
        state.ports.retain(|_, owner| *owner != id);
        state.removed.push(id);
        // Events already waiting for the node (a Udp connect's `Connected`) go too: nothing is
        // reported for a resource after `remove`. A removed listener's connections that were
        // not reported yet go with it, as a closed listener's backlog does.
        let orphans: Vec<ResourceId> = state
            .inbox
            .iter()
            .filter_map(|(event, _)| match event {
                StoredNetEvent::Accepted(e, listener) if *listener == id => Some(e.resource_id()),
                _ => None,
            })
            .collect();
        state.inbox.retain(|(event, _)| {
            let (StoredNetEvent::Connected(e, _)
            | StoredNetEvent::Accepted(e, _)
            | StoredNetEvent::Message(e, _)
            | StoredNetEvent::Disconnected(e)) = event;
            e.resource_id() != id && !orphans.contains(&e.resource_id())
        });
        let line = format!("{} removes {id}", state.name);
        self.log(format_args!("{line}"));
        if let Res::Stream { conn, side } = res {
            self.close_stream(conn, side, true);
        }
        for orphan in orphans {
            self.remove(node, orphan);
        }
        true
    }

    /// The handshake of an open `Ws` connection, as this side sees it.
    pub fn ws_handshake(&self, node: NodeId, id: ResourceId) -> Option<WsHandshake> {
        match self.nodes[node].resources.get(&id)? {
            Res::Stream { conn, side } => {
                let c = self.conns.get(conn)?;
                if c.open[*side] { c.handshakes[*side].clone() } else { None }
            }
            _ => None,
        }
    }

    pub fn is_ready(&self, node: NodeId, id: ResourceId) -> Option<bool> {
        match self.nodes[node].resources.get(&id)? {
            Res::Stream { conn, side } => Some(self.conns.get(conn).is_some_and(|c| c.open[*side])),
            _ => Some(true),
        }
    }

    // ----- what the world does when an event comes due -----

    /// Handles a network event. Returns false for events the world handles itself.
    pub fn handle(&mut self, event: Ev) -> Option<Ev> {
        if let Some(event) = self.gate(event) {
            match event {
                Ev::Syn(conn) => self.on_syn(conn),
                Ev::Refused(conn) => self.fail_connect(conn, "refused"),
                Ev::ConnectTimeout(conn) => self.fail_connect(conn, "timed out"),
                Ev::Writable { conn, side } => self.on_writable(conn, side),
                Ev::Read { conn, side } => self.on_read(conn, side),
                Ev::SynAck { conn, seq } => self.arrive(conn, 1, seq, Ev::SynAck { conn, seq }),
                event @ (Ev::Segment { conn, from, seq, .. } | Ev::Fin { conn, from, seq, .. }) => {
                    self.arrive(conn, from, seq, event)
                }
                Ev::Datagram { to_node, from, to, data, .. } => {
                    self.on_datagram(to_node, from, to, data)
                }
                other => return Some(other),
            }
        }
        None
    }

    /// A datagram reaches node `at` (one copy per node, even for a group or a broadcast).
    fn on_datagram(&mut self, at: NodeId, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        let mut receivers = Vec::new();
        // Only the node it reaches: cost per datagram does not grow with the world.
        for (node, state) in self.nodes.iter().enumerate().skip(at).take(1) {
            if state.status == Status::Dead {
                continue;
            }
            let for_node =
                self.owns(node, to.ip()) || to.ip().is_multicast() || is_broadcast(to.ip());
            if !for_node {
                continue;
            }
            for (&id, res) in &state.resources {
                let Res::Udp { port, peer, bound } = res else { continue };
                let matches = *port == to.port()
                    && match peer {
                        Some(peer) => addresses::same_addr(*peer, from),
                        None => addresses::accepts(*bound, to.ip()),
                    };
                if matches {
                    receivers.push((node, id, addresses::as_seen(*bound, from)));
                }
            }
        }
        for (node, id, from) in receivers {
            self.deliver(node, StoredNetEvent::Message(Endpoint::new(id, from), data.clone()));
        }
    }

    /// Closes every stream between the two nodes at once, as a reset would.
    pub fn reset_between(&mut self, a: NodeId, b: NodeId) {
        let conns: Vec<(u64, usize)> = self
            .conns
            .iter()
            .filter_map(|(&id, c)| {
                let (x, y) = (c.ends[0].node, c.ends[1].node);
                ((x, y) == (a, b) || (x, y) == (b, a)).then_some((id, 0))
            })
            .collect();
        for (conn, _) in conns {
            for side in 0..2 {
                let Some(c) = self.conns.get(&conn) else { continue };
                let end = &c.ends[side];
                let (node, life, id, peer) = (end.node, end.life, end.id, c.ends[1 - side].addr);
                if c.closed[side] || self.nodes[node].life != life {
                    continue;
                }
                let Some(id) = id else { continue };
                let open = c.open[side];
                let state = &mut self.nodes[node];
                if state.resources.remove(&id).is_some() {
                    state.ports.retain(|_, owner| *owner != id);
                    let endpoint = Endpoint::new(id, peer);
                    match (open, side) {
                        (true, _) => self.deliver(node, StoredNetEvent::Disconnected(endpoint)),
                        // Still connecting: the connect fails, as natively on a reset.
                        (false, 0) => {
                            self.deliver(node, StoredNetEvent::Connected(endpoint, false))
                        }
                        // Not accepted yet: nothing was ever reported for it.
                        (false, _) => (),
                    }
                }
            }
            if let Some(c) = self.conns.get_mut(&conn) {
                let waiting: Vec<_> = c.waiting.iter_mut().flat_map(std::mem::take).collect();
                self.drained.extend(waiting);
            }
            self.conns.remove(&conn);
        }
    }
}
