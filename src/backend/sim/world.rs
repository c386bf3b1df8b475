//! The simulated network: nodes, sockets, links and a queue of timed events. No threads and
//! no real clock here: the world (`crate::sim::World`) pops events in time order and runs
//! nodes; everything random is drawn from one seeded generator, so a seed replays a run.

use crate::adapters::udp::MAX_LOCAL_PAYLOAD_LEN;
use crate::adapters::ws::{MessageKind, WsClose, WsHandshake};
use crate::core::resource_id::ResourceIdGenerator;
use crate::core::{
    Endpoint, EventDetail, RemoteAddr, ResourceId, ResourceType, SendStatus, StoredNetEvent,
    Transport,
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
mod datagram;
mod linger;
mod link;

pub use link::{Link, Spread, UDP_OVERHEAD_V4, UDP_OVERHEAD_V6};

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
    /// The application bytes it carries (a whole message on packet-based transports).
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
    /// `subprotocols`: what a `Ws` listener speaks.
    Listener {
        transport: Transport,
        queue_limit: usize,
        subprotocols: Vec<String>,
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

struct End {
    node: NodeId,
    life: u64,
    id: Option<ResourceId>,
    addr: SocketAddr,
}

struct Conn {
    transport: Transport,
    ends: [End; 2],
    /// Side 0 (the client) got `Connected(_, true)`; the server side is open once accepted.
    open: [bool; 2],
    closed: [bool; 2],
    listener: Option<ResourceId>,
    /// The latest arrival scheduled per direction (index: sending side), for realistic timing.
    last_arrival: [Duration; 2],
    /// Per direction: the next sequence number to send and to deliver, and what arrived early.
    /// Delivery goes by sequence number, so no retransmit or release can reorder a stream.
    sent: [u64; 2],
    delivered: [u64; 2],
    early: [BTreeMap<u64, Ev>; 2],
    max_frame: usize,
    /// Per direction: the send queue limit, and the bytes not yet on the wire (with the time
    /// their last byte leaves).
    queue_limit: [usize; 2],
    unsent: [VecDeque<(Duration, usize)>; 2],
    /// Per direction: who waits for the send queue to drain.
    waiting: [Vec<Box<dyn FnOnce() + Send>>; 2],
    /// `Ws`: the client's handshake request until the server answers it, then per side the
    /// handshake as `ws_handshake` reports it.
    ws: Option<WsRequest>,
    handshakes: [Option<WsHandshake>; 2],
    /// The client will refuse the server's answer (no common subprotocol).
    ws_refused: bool,
}

/// A `Ws` client's handshake request: what the server sees of it, and what it offers.
#[derive(Debug)]
pub(crate) struct WsRequest {
    /// The request path with its query.
    pub path: String,
    /// The request's headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The subprotocols offered, in order of preference.
    pub subprotocols: Vec<String>,
}

impl WsRequest {
    /// Agrees on a subprotocol with a server that speaks `supported`, as a native handshake
    /// does: the client's first that the server speaks. Returns the two sides' handshakes
    /// (client, server), and whether the client refuses the answer (it offered subprotocols and
    /// got none).
    fn answer(&self, supported: &[String]) -> ([WsHandshake; 2], bool) {
        let chosen = self.subprotocols.iter().find(|p| supported.contains(p)).cloned();
        let refused = !self.subprotocols.is_empty() && chosen.is_none();
        let mut response = vec![
            ("upgrade".to_owned(), "websocket".to_owned()),
            ("connection".to_owned(), "Upgrade".to_owned()),
        ];
        response.extend(chosen.iter().map(|p| ("sec-websocket-protocol".to_owned(), p.clone())));
        let side =
            |headers| WsHandshake { path: self.path.clone(), headers, subprotocol: chosen.clone() };
        ([side(response), side(self.headers.clone())], refused)
    }
}

impl Conn {
    /// Bytes of side `side` still waiting for the link at `now`.
    fn backlog(&mut self, side: usize, now: Duration) -> usize {
        while self.unsent[side].front().is_some_and(|(leaves, _)| *leaves <= now) {
            self.unsent[side].pop_front();
        }
        self.unsent[side].iter().map(|(_, bytes)| bytes).sum()
    }

    /// When side `side`'s backlog falls to half its limit.
    fn drains_at(&self, side: usize) -> Duration {
        let mut left: usize = self.unsent[side].iter().map(|(_, bytes)| bytes).sum();
        for (leaves, bytes) in &self.unsent[side] {
            left -= bytes;
            if left <= self.queue_limit[side] / 2 {
                return *leaves;
            }
        }
        Duration::ZERO
    }
}

/// The run's trace: lines in one buffer, so writing one allocates nothing most of the time.
#[derive(Clone, Default)]
pub(crate) struct Trace {
    text: String,
    /// Where each line ends in `text`.
    ends: Vec<usize>,
}

impl Trace {
    /// Writes a line stamped with the virtual time `now`, with `write`, straight into the
    /// buffer.
    fn line(&mut self, now: Duration, write: impl FnOnce(&mut String)) {
        let (secs, micros) = (now.as_secs(), now.subsec_micros());
        let _ = write!(self.text, "{secs:>5}.{micros:06} ");
        write(&mut self.text);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Lines `from..` as owned strings.
    pub fn lines_from(&self, from: usize) -> Vec<String> {
        let mut start = if from == 0 { 0 } else { self.ends[from - 1] };
        self.ends[from..]
            .iter()
            .map(|&end| {
                let line = self.text[start..end].to_owned();
                start = end;
                line
            })
            .collect()
    }
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
            Res::Listener { transport, queue_limit, subprotocols }
        };
        state.resources.insert(id, res);
        let local = SocketAddr::new(reported, port);
        let line = format!("{} listens on {local} over {transport} as {id}", state.name);
        self.log(format_args!("{line}"));
        Ok((id, local))
    }

    /// `ws`: the handshake request of a `Ws` connect.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        &mut self,
        node: NodeId,
        transport: Transport,
        addr: &RemoteAddr,
        timeout: Duration,
        max_frame: usize,
        queue_limit: usize,
        ws: Option<WsRequest>,
    ) -> io::Result<(Endpoint, SocketAddr)> {
        let peer = self.resolve(addr, transport)?;
        let udp = transport.is_udp();
        let port = self.allocate_port(node, udp);
        let ip = self.source_ip(node, addresses::unspecified_like(peer.ip()), peer.ip());
        let state = &mut self.nodes[node];
        let id = state.ids.generate(transport.id(), ResourceType::Remote);
        let local = SocketAddr::new(ip, port);
        state.ports.insert((udp, port, ip), id);
        let endpoint = Endpoint::new(id, peer);
        let line = format!("{} connects to {peer} over {transport} as {id}", state.name);
        if udp {
            state.resources.insert(id, Res::Udp { port, peer: Some(peer), bound: ip });
            self.log(format_args!("{line}"));
            self.deliver(node, StoredNetEvent::Connected(endpoint, true));
            return Ok((endpoint, local));
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        let life = state.life;
        state.resources.insert(id, Res::Stream { conn, side: 0 });
        self.conns.insert(
            conn,
            Conn {
                transport,
                ends: [
                    End { node, life, id: Some(id), addr: local },
                    End { node: usize::MAX, life: 0, id: None, addr: peer },
                ],
                open: [false, false],
                closed: [false, false],
                listener: None,
                last_arrival: [Duration::ZERO; 2],
                sent: [0; 2],
                delivered: [0; 2],
                early: [BTreeMap::new(), BTreeMap::new()],
                max_frame,
                queue_limit: [queue_limit, crate::adapters::DEFAULT_SEND_QUEUE_LIMIT],
                unsent: [VecDeque::new(), VecDeque::new()],
                waiting: [Vec::new(), Vec::new()],
                ws,
                handshakes: [None, None],
                ws_refused: false,
            },
        );
        self.log(format_args!("{line}"));
        // Nobody at that address: the connect hangs until its timeout, as on a real network.
        if let Some(server) = self.route(node, peer.ip()) {
            let at = self.now + self.delay(node, server);
            self.schedule(at, Ev::Syn(conn));
        }
        self.schedule(self.now + timeout, Ev::ConnectTimeout(conn));
        Ok((endpoint, local))
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

    fn send_stream(
        &mut self,
        conn: u64,
        side: usize,
        data: &[u8],
        kind: MessageKind,
    ) -> SendStatus {
        let Some(c) = self.conns.get(&conn) else { return SendStatus::ResourceNotFound };
        if c.closed[side] || c.closed[1 - side] && !c.open[side] {
            return SendStatus::ResourceNotFound;
        }
        if !c.open[side] {
            return SendStatus::ResourceNotAvailable;
        }
        if !c.transport.is_tcp() && data.len() > c.max_frame {
            return SendStatus::MaxPacketSizeExceeded;
        }
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else { return SendStatus::ResourceNotFound };
        let backlog = c.backlog(side, now);
        if backlog > 0 && backlog >= c.queue_limit[side] {
            return SendStatus::QueueFull;
        }
        let (transport, from, to) = (c.transport, c.ends[side].node, c.ends[1 - side].node);
        // Only WebSocket frames have a kind; the other transports carry bytes.
        let kind = if transport.is_ws() { kind } else { MessageKind::Binary };
        // Plain Tcp is a byte stream: cut it at seeded points to catch framing bugs.
        let mut pieces = Vec::new();
        if transport.is_tcp() && data.len() > 1 && self.chance(0.5) {
            let cuts = self.rng.random_range(1..=3.min(data.len() - 1));
            let mut points: Vec<usize> =
                (0..cuts).map(|_| self.rng.random_range(1..data.len())).collect();
            points.sort_unstable();
            points.dedup();
            let mut start = 0;
            for point in points {
                pieces.push(data[start..point].to_vec());
                start = point;
            }
            pieces.push(data[start..].to_vec());
        } else {
            pieces.push(data.to_vec());
        }
        for (index, piece) in pieces.into_iter().enumerate() {
            let leaves = self.transmit(from, to, piece.len());
            if let Some(c) = self.conns.get_mut(&conn) {
                c.unsent[side].push_back((leaves, piece.len()));
            }
            // The pieces of a cut send arrive a little apart, so the cut is seen (whole sends
            // at the same instant are read together instead).
            let apart = Duration::from_micros(10) * index as u32;
            let mut at = leaves + self.delay(from, to) + apart;
            match self.judge(from, to, (transport, &piece, false)) {
                Verdict::Drop => at += RETRANSMIT,
                Verdict::Delay(extra) => at += extra,
                _ => (), // streams are not duplicated, corrupted nor cut
            }
            let lost = self.chance(self.link(from, to).loss);
            if lost
                && self.fault(from, to, format_args!("lose a {transport} segment (retransmitted)"))
            {
                at += RETRANSMIT;
            }
            self.send_in_order(conn, side, at, |seq| Ev::Segment {
                conn,
                from: side,
                seq,
                data: piece,
                kind,
            });
        }
        SendStatus::Sent
    }

    /// Puts `bytes` on the path `from → to`: returns when their last byte leaves (now, on a
    /// link without a bandwidth).
    fn transmit(&mut self, from: NodeId, to: NodeId, bytes: usize) -> Duration {
        let Some(bandwidth) = self.link(from, to).bandwidth else { return self.now };
        let free = self.link_free.get(&(from, to)).copied().unwrap_or_default().max(self.now);
        let leaves = free + Duration::from_secs_f64(bytes as f64 / bandwidth.max(1) as f64);
        self.link_free.insert((from, to), leaves);
        leaves
    }

    /// Bytes waiting on the path `from → to` (with a bandwidth) at `now`.
    fn link_backlog(&self, from: NodeId, to: NodeId, bandwidth: u64) -> usize {
        let free = self.link_free.get(&(from, to)).copied().unwrap_or_default();
        (free.saturating_sub(self.now).as_secs_f64() * bandwidth as f64) as usize
    }

    /// Calls `notify` once the send queue of `endpoint` has room: returns it to call now, or
    /// keeps it for when the queue drains.
    pub fn when_writable(
        &mut self,
        node: NodeId,
        endpoint: Endpoint,
        notify: Box<dyn FnOnce() + Send>,
    ) -> Option<Box<dyn FnOnce() + Send>> {
        let Some(&Res::Stream { conn, side }) =
            self.nodes[node].resources.get(&endpoint.resource_id())
        else {
            return Some(notify);
        };
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else { return Some(notify) };
        if c.backlog(side, now) <= c.queue_limit[side] / 2 {
            return Some(notify);
        }
        c.waiting[side].push(notify);
        let at = c.drains_at(side);
        self.schedule(at, Ev::Writable { conn, side });
        None
    }

    fn on_writable(&mut self, conn: u64, side: usize) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.waiting[side].is_empty() {
            return;
        }
        if c.backlog(side, now) <= c.queue_limit[side] / 2 {
            let waiting = std::mem::take(&mut c.waiting[side]);
            self.drained.extend(waiting);
        } else {
            let at = c.drains_at(side);
            self.schedule(at, Ev::Writable { conn, side });
        }
    }

    /// Sends a stream event with the direction's next sequence number, arriving no earlier
    /// than what is already in flight.
    fn send_in_order(
        &mut self,
        conn: u64,
        side: usize,
        at: Duration,
        make: impl FnOnce(u64) -> Ev,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let seq = c.sent[side];
        c.sent[side] += 1;
        self.reschedule_in_order(conn, side, at, make(seq));
    }

    /// Schedules a stream event (new, retransmitted or released) behind what is in flight.
    fn reschedule_in_order(&mut self, conn: u64, side: usize, at: Duration, event: Ev) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        // Never before what is in flight; at the same instant is fine (sequence numbers keep
        // the order), and lets plain Tcp bytes sent together be read together.
        let at = at.max(c.last_arrival[side]);
        c.last_arrival[side] = at;
        self.schedule(at, event);
    }

    /// A stream event arrived: deliver it and what it unblocks, in sequence order.
    fn arrive(&mut self, conn: u64, from: usize, seq: u64, event: Ev) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if seq != c.delivered[from] {
            c.early[from].insert(seq, event);
            return;
        }
        let mut next = Some(event);
        while let Some(event) = next {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.delivered[from] += 1;
            }
            match event {
                Ev::SynAck { conn, .. } => self.on_syn_ack(conn),
                Ev::Segment { conn, from, data, kind, .. } => {
                    self.on_segment(conn, from, data, kind)
                }
                Ev::Fin { conn, from, goodbye, .. } => self.on_fin(conn, from, goodbye),
                _ => (),
            }
            next = self.conns.get_mut(&conn).and_then(|c| c.early[from].remove(&c.delivered[from]));
        }
    }

    /// The rule's verdict on a packet (`over_mtu`: a datagram the path's MTU drops).
    fn judge(&mut self, from: NodeId, to: NodeId, packet: (Transport, &[u8], bool)) -> Verdict {
        let Some(mut rule) = self.rule.take() else { return Verdict::Pass };
        let (transport, payload, over_mtu) = packet;
        let (from_name, to_name) = (&self.nodes[from].name, &self.nodes[to].name);
        let verdict = rule(&Packet { from: from_name, to: to_name, transport, payload, over_mtu });
        self.rule = Some(rule);
        let len = payload.len();
        let void = match verdict {
            Verdict::Corrupt => !transport.is_udp() || len == 0,
            Verdict::Truncate(keep) => !transport.is_udp() || keep >= len,
            _ => false,
        };
        if verdict == Verdict::Pass
            || void
            || !self.fault(from, to, format_args!("rule: {verdict:?} {transport} {len} bytes"))
        {
            return Verdict::Pass;
        }
        match verdict {
            Verdict::Delay(delay) => {
                let index = self.tape.len() - 1;
                self.tape[index].duration = Some(delay);
                match self.soften.get(&index) {
                    Some(&cap) => {
                        self.tape[index].softened = Some(cap);
                        Verdict::Delay(delay.min(cap))
                    }
                    None => verdict,
                }
            }
            _ => verdict,
        }
    }

    /// Records a fault decision on the tape and says whether to apply it: a shrinking replay
    /// allows only some of them. Randomness is drawn before this, so suppressing a fault does
    /// not shift the draws that follow.
    pub fn fault(&mut self, from: NodeId, to: NodeId, what: std::fmt::Arguments<'_>) -> bool {
        let description = match (self.nodes.get(from), self.nodes.get(to)) {
            (Some(a), Some(b)) if from != to => format!("{} -> {}: {what}", a.name, b.name),
            (Some(a), _) => format!("{}: {what}", a.name),
            _ => what.to_string(),
        };
        self.fault_described(description)
    }

    /// [`fault`](Self::fault) with the description already made.
    pub fn fault_described(&mut self, description: String) -> bool {
        let index = self.tape.len();
        let applied = self.allowed.as_ref().is_none_or(|allowed| allowed.contains(&index));
        let verb = if applied { "fault" } else { "fault suppressed" };
        self.log(format_args!("{verb} #{index}: {description}"));
        self.tape.push(Fault { index, description, applied, duration: None, softened: None });
        applied
    }

    /// Records that the fault just taped (applied) lasts until `end`; a shrinking replay that
    /// softens it schedules its end.
    pub fn lasting(&mut self, end: FaultEnd) {
        let Some(index) = self.tape.len().checked_sub(1) else { return };
        self.open.insert(index, (end, self.now));
        if let Some(&cap) = self.soften.get(&index) {
            self.tape[index].softened = Some(cap);
            let at = self.now + cap;
            self.schedule(at, Ev::EndFault(index));
        }
    }

    /// The lasting faults that `matches` ends now (the application's heal, release, resume or
    /// restart): their durations go on the tape.
    pub fn end_faults(&mut self, matches: impl Fn(&FaultEnd) -> bool) {
        let ended: Vec<usize> =
            self.open.iter().filter(|(_, (end, _))| matches(end)).map(|(&i, _)| i).collect();
        for index in ended {
            if let Some((_, began)) = self.open.remove(&index) {
                self.tape[index].duration = Some(self.now - began);
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

    /// Side `side` closes (`goodbye`: the application did, with `remove`): the other side is
    /// told after what is in flight.
    fn close_stream(&mut self, conn: u64, side: usize, goodbye: bool) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.closed[side] {
            return;
        }
        c.closed[side] = true;
        // Waiting senders learn of the end from their next send, as natively.
        let waiting = std::mem::take(&mut c.waiting[side]);
        self.drained.extend(waiting);
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let (from, to) = (c.ends[side].node, c.ends[1 - side].node);
        if to == usize::MAX || c.closed[1 - side] {
            return;
        }
        let at = self.now + self.delay(from, to);
        self.send_in_order(conn, side, at, |seq| Ev::Fin { conn, from: side, seq, goodbye });
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

    /// Partitions and holds act when a packet arrives.
    fn gate(&mut self, event: Ev) -> Option<Ev> {
        let Some((from, to)) = self.path(&event) else { return Some(event) };
        if self.held.contains(&(from, to)) {
            self.parked.push(event);
            return None;
        }
        if !self.blocked.contains(&(from, to)) {
            return Some(event);
        }
        match event {
            // A stream keeps trying, as TCP retransmits; sequence numbers keep it in order.
            Ev::Segment { conn, from: side, .. } | Ev::Fin { conn, from: side, .. } => {
                let at = self.now + RETRANSMIT;
                self.reschedule_in_order(conn, side, at, event);
            }
            Ev::SynAck { conn, .. } => {
                let at = self.now + RETRANSMIT;
                self.reschedule_in_order(conn, 1, at, event);
            }
            Ev::Syn(conn) => {
                self.schedule(self.now + RETRANSMIT, Ev::Syn(conn));
            }
            // Datagrams and refusals are simply lost.
            _ => (),
        }
        None
    }

    /// The nodes a packet travels between, if it is a packet.
    fn path(&self, event: &Ev) -> Option<(NodeId, NodeId)> {
        let ends = |conn: &u64, from: usize| {
            let c = self.conns.get(conn)?;
            let (a, b) = (c.ends[from].node, c.ends[1 - from].node);
            (b != usize::MAX).then_some((a, b))
        };
        match event {
            Ev::Syn(conn) => {
                let c = self.conns.get(conn)?;
                Some((c.ends[0].node, self.route(c.ends[0].node, c.ends[1].addr.ip())?))
            }
            Ev::SynAck { conn, .. } | Ev::Refused(conn) => ends(conn, 1),
            Ev::Segment { conn, from, .. } | Ev::Fin { conn, from, .. } => ends(conn, *from),
            Ev::Datagram { from_node, to_node, .. } => Some((*from_node, *to_node)),
            _ => None,
        }
    }

    /// Lets held packets on `from → to` go (all pairs if `None`), in their order.
    pub fn release(&mut self, pair: Option<(NodeId, NodeId)>) {
        let parked = std::mem::take(&mut self.parked);
        // One nanosecond apart: released packets arrive in the order they were held.
        let mut at = self.now;
        for event in parked {
            let path = self.path(&event);
            if pair.is_none() || path == pair {
                at += Duration::from_nanos(1);
                match event {
                    Ev::Segment { conn, from, .. } | Ev::Fin { conn, from, .. } => {
                        self.reschedule_in_order(conn, from, at, event);
                    }
                    Ev::SynAck { conn, .. } => self.reschedule_in_order(conn, 1, at, event),
                    other => {
                        self.schedule(at, other);
                    }
                }
            } else {
                self.parked.push(event);
            }
        }
    }

    fn on_syn(&mut self, conn: u64) {
        let Some(c) = self.conns.get(&conn) else { return };
        let (client, target, transport) = (c.ends[0].node, c.ends[1].addr, c.transport);
        let Some(server) = self.route(client, target.ip()) else { return };
        let state = &self.nodes[server];
        let found = state.listener_at(target);
        let bound = found.map_or(target.ip(), |(_, ip)| ip);
        let (queue_limit, supported, listener) =
            match found.map(|(id, _)| (id, state.resources.get(&id))) {
                Some((id, Some(Res::Listener { transport: t, queue_limit, subprotocols }))) => {
                    (*queue_limit, subprotocols.clone(), (*t == transport).then_some(id))
                }
                _ => (crate::adapters::DEFAULT_SEND_QUEUE_LIMIT, Vec::new(), None),
            };
        let alive = state.status != Status::Dead;
        let Some(listener) = listener.filter(|_| alive) else {
            let at = self.now + self.delay(server, client);
            self.schedule(at, Ev::Refused(conn));
            return;
        };
        let life = state.life;
        let id = self.nodes[server].ids.generate(transport.id(), ResourceType::Remote);
        self.nodes[server].resources.insert(id, Res::Stream { conn, side: 1 });
        let client_addr = {
            let c = self.conns.get_mut(&conn).expect("checked above");
            c.ends[1] = End { node: server, life, id: Some(id), addr: target };
            c.ends[0].addr = addresses::as_seen(bound, c.ends[0].addr);
            c.queue_limit[1] = queue_limit;
            c.open[1] = true;
            c.listener = Some(listener);
            if let Some(request) = c.ws.take() {
                let ([client, server], refused) = request.answer(&supported);
                c.handshakes = [Some(client), Some(server)];
                c.ws_refused = refused;
            }
            c.ends[0].addr
        };
        self.deliver(server, StoredNetEvent::Accepted(Endpoint::new(id, client_addr), listener));
        let at = self.now + self.delay(server, client);
        self.send_in_order(conn, 1, at, |seq| Ev::SynAck { conn, seq });
    }

    fn on_syn_ack(&mut self, conn: u64) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.open[0] || c.closed[0] {
            return;
        }
        if c.ws_refused {
            // The server answered; the client drops the connection, as natively.
            return self.fail_connect(conn, "refused: no subprotocol in common");
        }
        c.open[0] = true;
        let end = &c.ends[0];
        let (node, life, id, peer) = (end.node, end.life, end.id, c.ends[1].addr);
        if self.nodes[node].life == life {
            if let Some(id) = id {
                self.deliver(node, StoredNetEvent::Connected(Endpoint::new(id, peer), true));
            }
        }
    }

    fn fail_connect(&mut self, conn: u64, why: &str) {
        let Some(c) = self.conns.get(&conn) else { return };
        if c.open[0] || c.closed[0] {
            return;
        }
        let end = &c.ends[0];
        let (node, life, id, peer) = (end.node, end.life, end.id, c.ends[1].addr);
        let server_side_open = c.open[1];
        self.log(format_args!("connect to {peer} {why}"));
        if server_side_open {
            self.close_stream(conn, 0, false);
        } else {
            self.conns.remove(&conn);
        }
        if self.nodes[node].life == life {
            if let Some(id) = id {
                let state = &mut self.nodes[node];
                state.resources.remove(&id);
                state.ports.retain(|_, owner| *owner != id);
                self.deliver(node, StoredNetEvent::Connected(Endpoint::new(id, peer), false));
            }
        }
    }

    /// The receiving end of a stream event, if it still exists in the same life.
    fn receiver(&self, conn: u64, from: usize) -> Option<(NodeId, ResourceId, SocketAddr)> {
        let c = self.conns.get(&conn)?;
        let end = &c.ends[1 - from];
        if c.closed[1 - from] || !c.open[1 - from] || self.nodes.get(end.node)?.life != end.life {
            return None;
        }
        Some((end.node, end.id?, c.ends[from].addr))
    }

    fn on_segment(&mut self, conn: u64, from: usize, data: Vec<u8>, kind: MessageKind) {
        let Some((node, id, peer)) = self.receiver(conn, from) else { return };
        let message = StoredNetEvent::Message(Endpoint::new(id, peer), data);
        self.deliver_with(node, message, EventDetail { kind, close: None });
    }

    fn on_fin(&mut self, conn: u64, from: usize, goodbye: bool) {
        let receiver = self.receiver(conn, from);
        let ws = self.conns.get(&conn).is_some_and(|c| c.transport.is_ws());
        let close = (ws && goodbye).then(|| WsClose { code: 1000, reason: String::new() });
        if let Some(c) = self.conns.get_mut(&conn) {
            // Who waits to send on the closed side learns from the next send, as natively.
            let waiting = std::mem::take(&mut c.waiting[1 - from]);
            self.drained.extend(waiting);
            let Some(c) = self.conns.get_mut(&conn) else { return };
            c.closed[1 - from] = true;
            if c.closed[from] {
                self.conns.remove(&conn);
            }
        }
        let Some((node, id, peer)) = receiver else { return };
        let state = &mut self.nodes[node];
        state.resources.remove(&id);
        state.ports.retain(|_, owner| *owner != id);
        let disconnected = StoredNetEvent::Disconnected(Endpoint::new(id, peer));
        self.deliver_with(node, disconnected, EventDetail { kind: MessageKind::Binary, close });
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
