//! The world's stream connections (`Tcp`, `FramedTcp`, `Ws`): the handshake (SYN, SYN-ACK,
//! the `Ws` request and answer), segments in order per direction with retransmits over lossy
//! links, send queues drained at the link's bandwidth, and the close.

use super::bytes::Carrier;
use super::{Core, Ev, NodeId, RETRANSMIT, Res, Status, Verdict, addresses};
use crate::adapter::Protocol;
use crate::adapters::ws::{MessageKind, WsClose, WsHandshake};
use crate::core::{
    Endpoint, EventDetail, RemoteAddr, ResourceId, ResourceType, SendStatus, StoredNetEvent,
    Transport,
};
use rand::Rng;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

pub(super) struct End {
    pub(super) node: NodeId,
    pub(super) life: u64,
    pub(super) id: Option<ResourceId>,
    pub(super) addr: SocketAddr,
}

pub(super) struct Conn {
    pub(super) transport: Transport,
    pub(super) ends: [End; 2],
    /// Side 0 (the client) got `Connected(_, true)`; the server side is open once accepted.
    pub(super) open: [bool; 2],
    pub(super) closed: [bool; 2],
    pub(super) listener: Option<ResourceId>,
    /// The latest arrival scheduled per direction (index: sending side), for realistic timing.
    pub(super) last_arrival: [Duration; 2],
    /// Per direction: the next sequence number to send and to deliver, and what arrived early.
    /// Delivery goes by sequence number, so no retransmit or release can reorder a stream.
    pub(super) sent: [u64; 2],
    pub(super) delivered: [u64; 2],
    pub(super) early: [BTreeMap<u64, Ev>; 2],
    pub(super) max_frame: usize,
    /// Per direction: the send queue limit, and the bytes not yet on the wire (with the time
    /// their last byte leaves).
    pub(super) queue_limit: [usize; 2],
    pub(super) unsent: [VecDeque<(Duration, usize)>; 2],
    /// Per direction: who waits for the send queue to drain.
    pub(super) waiting: [Vec<Box<dyn FnOnce() + Send>>; 2],
    /// `Ws`: the client's handshake request until the server answers it, then per side the
    /// handshake as `ws_handshake` reports it.
    pub(super) ws: Option<WsRequest>,
    pub(super) handshakes: [Option<WsHandshake>; 2],
    /// The client will refuse the server's answer (no common subprotocol).
    pub(super) ws_refused: bool,
    /// A mounted transport's: the bytes in flight and the decoders (see [`super::bytes`]).
    pub(super) carrier: Option<Box<Carrier>>,
}

/// How a node connects a stream: its limits, and what its transport needs.
pub(crate) struct StreamConfig {
    /// How long the connect may take.
    pub timeout: Duration,
    /// The largest message a send takes (`usize::MAX`: no limit).
    pub max_frame: usize,
    /// The send queue limit.
    pub queue_limit: usize,
    /// The handshake request of a `Ws` connect.
    pub ws: Option<WsRequest>,
    /// A mounted transport's protocol.
    pub protocol: Option<Protocol>,
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
    pub(super) fn answer(&self, supported: &[String]) -> ([WsHandshake; 2], bool) {
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
    pub(super) fn backlog(&mut self, side: usize, now: Duration) -> usize {
        while self.unsent[side].front().is_some_and(|(leaves, _)| *leaves <= now) {
            self.unsent[side].pop_front();
        }
        self.unsent[side].iter().map(|(_, bytes)| bytes).sum()
    }

    /// When side `side`'s backlog falls to half its limit.
    pub(super) fn drains_at(&self, side: usize) -> Duration {
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

impl Core {
    pub fn connect(
        &mut self,
        node: NodeId,
        transport: Transport,
        addr: &RemoteAddr,
        config: StreamConfig,
    ) -> io::Result<(Endpoint, SocketAddr)> {
        let StreamConfig { timeout, max_frame, queue_limit, ws, protocol } = config;
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
                carrier: protocol.map(Carrier::client),
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

    pub(super) fn send_stream(
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
        let custom = c.carrier.is_some();
        let framed = match self.frame(conn, side, data) {
            Ok(framed) => framed,
            Err(status) => return status,
        };
        let data = framed.as_deref().unwrap_or(data);
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
        if custom {
            // A mounted transport's bytes: cut into seeded segment sizes.
            pieces = self.segments(data);
        } else if transport.is_tcp() && data.len() > 1 && self.chance(0.5) {
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
    pub(super) fn transmit(&mut self, from: NodeId, to: NodeId, bytes: usize) -> Duration {
        let Some(bandwidth) = self.link(from, to).bandwidth else { return self.now };
        let free = self.link_free.get(&(from, to)).copied().unwrap_or_default().max(self.now);
        let leaves = free + Duration::from_secs_f64(bytes as f64 / bandwidth.max(1) as f64);
        self.link_free.insert((from, to), leaves);
        leaves
    }

    /// Bytes waiting on the path `from → to` (with a bandwidth) at `now`.
    pub(super) fn link_backlog(&self, from: NodeId, to: NodeId, bandwidth: u64) -> usize {
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

    pub(super) fn on_writable(&mut self, conn: u64, side: usize) {
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
    pub(super) fn send_in_order(
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
    pub(super) fn reschedule_in_order(&mut self, conn: u64, side: usize, at: Duration, event: Ev) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        // Never before what is in flight; at the same instant is fine (sequence numbers keep
        // the order), and lets plain Tcp bytes sent together be read together.
        let at = at.max(c.last_arrival[side]);
        c.last_arrival[side] = at;
        self.schedule(at, event);
    }

    /// A stream event arrived: deliver it and what it unblocks, in sequence order.
    pub(super) fn arrive(&mut self, conn: u64, from: usize, seq: u64, event: Ev) {
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

    /// Side `side` closes (`goodbye`: the application did, with `remove`): the other side is
    /// told after what is in flight.
    pub(super) fn close_stream(&mut self, conn: u64, side: usize, goodbye: bool) {
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

    pub(super) fn on_syn(&mut self, conn: u64) {
        let Some(c) = self.conns.get(&conn) else { return };
        let (client, target, transport) = (c.ends[0].node, c.ends[1].addr, c.transport);
        let Some(server) = self.route(client, target.ip()) else { return };
        let state = &self.nodes[server];
        let found = state.listener_at(target);
        let bound = found.map_or(target.ip(), |(_, ip)| ip);
        let custom = c.carrier.is_some();
        let (queue_limit, supported, listener, protocol, transport) =
            match found.map(|(id, _)| (id, state.resources.get(&id))) {
                Some((
                    id,
                    Some(Res::Listener { transport: t, queue_limit, subprotocols, protocol }),
                )) => {
                    // Mounted transports meet whatever id each network gave them, as natively.
                    let same = *t == transport || custom && protocol.is_some();
                    (*queue_limit, subprotocols.clone(), same.then_some(id), protocol.clone(), *t)
                }
                _ => (crate::adapters::DEFAULT_SEND_QUEUE_LIMIT, Vec::new(), None, None, transport),
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
            if let (Some(carrier), Some(protocol)) = (c.carrier.as_mut(), protocol) {
                carrier.accept(protocol);
            }
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

    pub(super) fn on_syn_ack(&mut self, conn: u64) {
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

    pub(super) fn fail_connect(&mut self, conn: u64, why: &str) {
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
    pub(super) fn receiver(
        &self,
        conn: u64,
        from: usize,
    ) -> Option<(NodeId, ResourceId, SocketAddr)> {
        let c = self.conns.get(&conn)?;
        let end = &c.ends[1 - from];
        if c.closed[1 - from] || !c.open[1 - from] || self.nodes.get(end.node)?.life != end.life {
            return None;
        }
        Some((end.node, end.id?, c.ends[from].addr))
    }

    pub(super) fn on_segment(&mut self, conn: u64, from: usize, data: Vec<u8>, kind: MessageKind) {
        if self.conns.get(&conn).is_some_and(|c| c.carrier.is_some()) {
            return self.on_bytes(conn, from, data);
        }
        let Some((node, id, peer)) = self.receiver(conn, from) else { return };
        let message = StoredNetEvent::Message(Endpoint::new(id, peer), data);
        self.deliver_with(node, message, EventDetail { kind, close: None });
    }

    pub(super) fn on_fin(&mut self, conn: u64, from: usize, goodbye: bool) {
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
}
