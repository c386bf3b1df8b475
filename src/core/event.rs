use super::endpoint::Endpoint;
use super::resource_id::ResourceId;
use crate::adapters::ws::{MessageKind, WsClose};

/// Something that happened on the network.
///
/// For one endpoint, events come in this order: `Connected` or `Accepted` first, then any
/// number of `Message`s, then at most one `Disconnected`, after which nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum NetEvent<'a> {
    /// A `connect` finished: `true` if the connection is ready (sending works from now on),
    /// `false` if it was refused, timed out or its handshake failed; a refused endpoint is
    /// already removed. `Udp` connects report `true` at once.
    Connected(Endpoint, bool),
    /// A listener (the id) accepted a connection from the endpoint.
    Accepted(Endpoint, ResourceId),
    /// Bytes from the endpoint: one whole message on packet-based transports, a chunk of the
    /// stream on `Tcp`. The slice borrows the node's read buffer: copy what must outlive the
    /// callback.
    Message(Endpoint, &'a [u8]),
    /// The connection closed: by the peer, by an error or by a protocol violation (the reason
    /// is logged). Never reported for connections the application removed itself.
    Disconnected(Endpoint),
}

impl std::fmt::Debug for NetEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connected(endpoint, ok) => write!(f, "Connected({endpoint}, {ok})"),
            Self::Accepted(endpoint, id) => write!(f, "Accepted({endpoint}, {id})"),
            Self::Message(endpoint, data) => write!(f, "Message({endpoint}, {} bytes)", data.len()),
            Self::Disconnected(endpoint) => write!(f, "Disconnected({endpoint})"),
        }
    }
}

/// A [`NetEvent`] that owns its data, to keep or send elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredNetEvent {
    /// See [`NetEvent::Connected`].
    Connected(Endpoint, bool),
    /// See [`NetEvent::Accepted`].
    Accepted(Endpoint, ResourceId),
    /// See [`NetEvent::Message`].
    Message(Endpoint, Vec<u8>),
    /// See [`NetEvent::Disconnected`].
    Disconnected(Endpoint),
}

impl From<NetEvent<'_>> for StoredNetEvent {
    fn from(event: NetEvent<'_>) -> Self {
        match event {
            NetEvent::Connected(endpoint, ok) => Self::Connected(endpoint, ok),
            NetEvent::Accepted(endpoint, id) => Self::Accepted(endpoint, id),
            NetEvent::Message(endpoint, data) => Self::Message(endpoint, data.to_vec()),
            NetEvent::Disconnected(endpoint) => Self::Disconnected(endpoint),
        }
    }
}

impl StoredNetEvent {
    /// The borrowed view of this event.
    pub fn borrow(&self) -> NetEvent<'_> {
        match self {
            Self::Connected(endpoint, ok) => NetEvent::Connected(*endpoint, *ok),
            Self::Accepted(endpoint, id) => NetEvent::Accepted(*endpoint, *id),
            Self::Message(endpoint, data) => NetEvent::Message(*endpoint, data),
            Self::Disconnected(endpoint) => NetEvent::Disconnected(*endpoint),
        }
    }
}

/// What became of a `send`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SendStatus {
    /// The message was handed to the operating system, or queued in order behind earlier ones.
    /// It says nothing about the peer receiving it.
    Sent,
    /// The message is larger than the transport allows (a `Udp` datagram over
    /// [`crate::adapters::udp::MAX_LOCAL_PAYLOAD_LEN`], a frame over the configured maximum).
    MaxPacketSizeExceeded,
    /// No such resource: it was removed, was disconnected, or never existed.
    ResourceNotFound,
    /// The resource exists but cannot send yet: its connect or handshake is in progress.
    ResourceNotAvailable,
    /// The connection's send queue is full because the peer reads slower than the application
    /// writes. Nothing was queued; try again after the queue drains
    /// ([`crate::node::NodeHandler::signal_when_writable`] says when). New in portnet:
    /// message-io busy-waited instead.
    QueueFull,
}

/// What `message_kind` and `ws_close` say about an event, kept with it when it is stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct EventDetail {
    pub(crate) kind: MessageKind,
    pub(crate) close: Option<WsClose>,
}
