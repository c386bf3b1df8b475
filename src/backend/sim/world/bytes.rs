//! The world's byte-stream carrier for mounted transports (`Transport::Custom`): what travels
//! on such a connection is bytes, not messages.
//!
//! A send is framed by the sender's protocol (`StreamProtocol::encode`: header, message,
//! trailer) and the framed bytes are cut into segments whose sizes are drawn from the world's
//! seeded generator. Each segment is a stream segment like a `Tcp` one (in order per
//! direction, retransmitted after a loss or a partition, behind the link's bandwidth). At the
//! receiver, arrived bytes wait in the connection's receive buffer until a read, scheduled at
//! the instant the first of them arrives (in seeded order among what else happens then), hands
//! them all to the receiving side's decoder: so a decoder sees partial messages and several
//! messages at once, as from a socket, and the same seed replays the same cuts.

use super::{Core, Ev};
use crate::adapter::{Decoder, Io, Protocol, Side, Sink};
use crate::core::{Endpoint, ResourceId, SendStatus, StoredNetEvent};
use rand::Rng;

/// The largest segment the carrier cuts (a typical TCP MSS on Ethernet).
const MAX_SEGMENT: usize = 1460;

/// The byte-stream state of a connection of a mounted transport.
pub(crate) struct Carrier {
    /// Per side: the protocol its node mounted, which frames what that side sends.
    protocols: [Option<Protocol>; 2],
    /// Per side: the decoder of what that side receives.
    decoders: [Option<Box<dyn Decoder>>; 2],
    /// Per side: bytes arrived and not read yet.
    unread: [Vec<u8>; 2],
    /// Per side: a read is scheduled.
    reading: [bool; 2],
}

impl Carrier {
    /// The carrier of a connect: the client side's half (the server's comes with the accept).
    pub(super) fn client(protocol: Protocol) -> Box<Self> {
        let decoder = protocol.decoder(Side::Client);
        Box::new(Carrier {
            protocols: [Some(protocol), None],
            decoders: [Some(decoder), None],
            unread: [Vec::new(), Vec::new()],
            reading: [false, false],
        })
    }

    /// The accepting side's half, with the protocol of the listener that accepted.
    pub(super) fn accept(&mut self, protocol: Protocol) {
        self.decoders[1] = Some(protocol.decoder(Side::Server));
        self.protocols[1] = Some(protocol);
    }
}

/// Hands what a decoder completes to the application of the receiving node.
struct ToNode<'a> {
    core: &'a mut Core,
    node: usize,
    endpoint: Endpoint,
}

impl Sink for ToNode<'_> {
    fn deliver(&mut self, message: &[u8]) {
        if self.is_open() {
            let event = StoredNetEvent::Message(self.endpoint, message.to_vec());
            self.core.deliver(self.node, event);
        }
    }

    fn is_open(&self) -> bool {
        self.core.nodes[self.node].resources.contains_key(&self.endpoint.resource_id())
    }
}

impl Core {
    /// Frames `data` for side `side` of `conn` if it is a mounted transport's connection:
    /// `Ok(None)` for the built-in transports, `Err` if the protocol refuses the message (as
    /// natively: `MaxPacketSizeExceeded`, nothing sent).
    pub(super) fn frame(
        &self,
        conn: u64,
        side: usize,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, SendStatus> {
        let Some(c) = self.conns.get(&conn) else { return Ok(None) };
        let Some(protocol) = c.carrier.as_ref().and_then(|k| k.protocols[side].as_ref()) else {
            return Ok(None);
        };
        match crate::adapter::framed(&**protocol, data) {
            Ok(framed) => Ok(Some(framed)),
            Err(e) => {
                log::debug!("{}: message of {} bytes refused: {e}", c.transport, data.len());
                Err(SendStatus::MaxPacketSizeExceeded)
            }
        }
    }

    /// Cuts a mounted transport's framed bytes into segments of seeded sizes: a quarter of the
    /// time the rest whole (up to [`MAX_SEGMENT`]), else a size drawn evenly from one byte on.
    pub(super) fn segments(&mut self, mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut pieces = Vec::new();
        while !bytes.is_empty() {
            let most = bytes.len().min(MAX_SEGMENT);
            let size = if self.chance(0.25) { most } else { self.rng.random_range(1..=most) };
            pieces.push(bytes[..size].to_vec());
            bytes = &bytes[size..];
        }
        pieces
    }

    /// Bytes of a mounted transport's connection reached side `1 - from`: buffered until the
    /// read scheduled now.
    pub(super) fn on_bytes(&mut self, conn: u64, from: usize, data: Vec<u8>) {
        if self.receiver(conn, from).is_none() {
            return;
        }
        let side = 1 - from;
        let Some(carrier) = self.conns.get_mut(&conn).and_then(|c| c.carrier.as_mut()) else {
            return;
        };
        carrier.unread[side].extend_from_slice(&data);
        if !carrier.reading[side] {
            carrier.reading[side] = true;
            let now = self.now;
            self.schedule(now, Ev::Read { conn, side });
        }
    }

    /// Side `side` reads what arrived: its decoder turns it into messages. A decoder error
    /// ends this connection alone, as natively: the reason is logged, this side gets
    /// `Disconnected` and the peer sees the close.
    pub(super) fn on_read(&mut self, conn: u64, side: usize) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(carrier) = c.carrier.as_mut() else { return };
        carrier.reading[side] = false;
        let input = std::mem::take(&mut carrier.unread[side]);
        let Some(mut decoder) = carrier.decoders[side].take() else { return };
        let Some((node, id, peer)) = self.receiver(conn, 1 - side) else { return };
        let endpoint = Endpoint::new(id, peer);
        let result = {
            let mut sink = ToNode { core: self, node, endpoint };
            decoder.decode(&input, &mut Io::new(&mut sink))
        };
        let Err(e) = result else {
            if let Some(carrier) = self.conns.get_mut(&conn).and_then(|c| c.carrier.as_mut()) {
                carrier.decoders[side] = Some(decoder);
            }
            return;
        };
        self.end_on_error(node, id, endpoint, conn, side, &e.to_string());
    }

    /// A decoder refused the bytes of `node`'s connection `id`: it ends, as natively.
    fn end_on_error(
        &mut self,
        node: usize,
        id: ResourceId,
        endpoint: Endpoint,
        conn: u64,
        side: usize,
        reason: &str,
    ) {
        let name = &self.nodes[node].name;
        log::debug!("{name}: {endpoint}: closed by its protocol: {reason}");
        let line = format!("{name}: {id} closed by its protocol: {reason}");
        self.log(format_args!("{line}"));
        let state = &mut self.nodes[node];
        if state.resources.remove(&id).is_some() {
            state.ports.retain(|_, owner| *owner != id);
            self.deliver(node, StoredNetEvent::Disconnected(endpoint));
        }
        self.close_stream(conn, side, false);
    }
}
