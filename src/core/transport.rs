#[cfg(feature = "tcp")]
use crate::adapters::framed_tcp::{self, FramedTcpConnectConfig, FramedTcpListenConfig};
#[cfg(feature = "tcp")]
use crate::adapters::tcp::{TcpConnectConfig, TcpListenConfig};
#[cfg(feature = "udp")]
use crate::adapters::udp::{self, UdpConnectConfig, UdpListenConfig};
#[cfg(feature = "websocket")]
use crate::adapters::ws::{self, WsConnectConfig, WsListenConfig};
// A mounted transport takes the stream options of `Tcp` (its carrier natively).
#[cfg(all(feature = "adapter", not(feature = "tcp")))]
use crate::adapters::tcp::{TcpConnectConfig, TcpListenConfig};

/// The id of a transport mounted on a network at run time ([`Transport::Custom`]).
///
/// Handed out by `NetworkController::mount` (see [`crate::adapter`]), above the built-ins' ids
/// and at most [`ResourceId::MAX_ADAPTER_ID`](crate::network::ResourceId::MAX_ADAPTER_ID), so
/// that the resource ids of its connections carry it as they carry a built-in's. It names a
/// transport of the network that mounted it, in the order things were mounted there: another
/// network may give the same id to another protocol.
#[cfg(feature = "adapter")]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "u8", into = "u8"))]
pub struct AdapterId(u8);

#[cfg(feature = "adapter")]
impl AdapterId {
    /// The first id a mount gets: the built-ins have 0 to 3, whichever features are on.
    pub const FIRST: u8 = 4;
    /// The last id a mount can get.
    pub const LAST: u8 = crate::core::resource_id::ResourceId::MAX_ADAPTER_ID;

    /// The id, if `id` is one a mount can have (from [`FIRST`](Self::FIRST) to
    /// [`LAST`](Self::LAST)).
    pub const fn new(id: u8) -> Option<Self> {
        if id >= Self::FIRST && id <= Self::LAST { Some(AdapterId(id)) } else { None }
    }

    /// The number, as in [`Transport::id`] and `ResourceId::adapter_id`.
    pub const fn get(self) -> u8 {
        self.0
    }
}

#[cfg(feature = "adapter")]
impl TryFrom<u8> for AdapterId {
    type Error = String;

    fn try_from(id: u8) -> Result<Self, Self::Error> {
        AdapterId::new(id).ok_or_else(|| {
            format!(
                "{id} is not the id of a mounted transport ({} to {})",
                AdapterId::FIRST,
                AdapterId::LAST
            )
        })
    }
}

#[cfg(feature = "adapter")]
impl From<AdapterId> for u8 {
    fn from(id: AdapterId) -> u8 {
        id.0
    }
}

/// The transport a connection or listener uses.
///
/// Each variant exists when its cargo feature is on, as in message-io: `tcp` (`Tcp`,
/// `FramedTcp`), `udp` (`Udp`), `websocket` (`Ws`); all are on by default. The ids stay the
/// same whichever are on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "strum", derive(strum::EnumIter))]
pub enum Transport {
    /// TCP as a byte stream: a `Message` is whatever bytes arrived, not what one `send` sent.
    #[cfg(feature = "tcp")]
    Tcp,
    /// TCP with message boundaries: an unsigned LEB128 length prefix before each message.
    /// Most applications want this rather than `Tcp`.
    #[cfg(feature = "tcp")]
    FramedTcp,
    /// UDP datagrams: unreliable, unordered, limited in size. Listening on a multicast address
    /// joins the group.
    #[cfg(feature = "udp")]
    Udp,
    /// WebSocket binary messages. `connect` takes a `ws://` URL or a socket address (which
    /// requests `ws://{addr}/message-io-default`).
    #[cfg(feature = "websocket")]
    Ws,
    /// A transport of your own, mounted on a network with `NetworkController::mount` (see
    /// [`crate::adapter`]). Not in [`Transport::ALL`] nor in strum's `Transport::iter()`, which
    /// list the built-ins; serialised as `{"Custom":4}`.
    #[cfg(feature = "adapter")]
    #[cfg_attr(feature = "strum", strum(disabled))]
    Custom(AdapterId),
}

/// How many transports this build has (the length of [`Transport::ALL`]).
const TRANSPORT_COUNT: usize = 2 * cfg!(feature = "tcp") as usize
    + cfg!(feature = "udp") as usize
    + cfg!(feature = "websocket") as usize;

impl Transport {
    /// Every transport this build has, in id order.
    pub const ALL: [Transport; TRANSPORT_COUNT] = [
        #[cfg(feature = "tcp")]
        Transport::Tcp,
        #[cfg(feature = "tcp")]
        Transport::FramedTcp,
        #[cfg(feature = "udp")]
        Transport::Udp,
        #[cfg(feature = "websocket")]
        Transport::Ws,
    ];

    /// The largest message one `send` may carry on this transport with default settings.
    pub const fn max_message_size(self) -> usize {
        match self {
            #[cfg(feature = "tcp")]
            Transport::Tcp => usize::MAX,
            #[cfg(feature = "tcp")]
            Transport::FramedTcp => framed_tcp::DEFAULT_MAX_FRAME_SIZE,
            #[cfg(feature = "udp")]
            Transport::Udp => udp::MAX_LOCAL_PAYLOAD_LEN,
            #[cfg(feature = "websocket")]
            Transport::Ws => ws::MAX_PAYLOAD_LEN,
            // Its encoder decides (a refusal is `SendStatus::MaxPacketSizeExceeded`).
            #[cfg(feature = "adapter")]
            Transport::Custom(_) => usize::MAX,
        }
    }

    /// Whether the transport has connections, and so `Connected`/`Accepted`/`Disconnected`
    /// events.
    pub const fn is_connection_oriented(self) -> bool {
        !self.is_udp()
    }

    /// Whether each `send` arrives as exactly one `Message` (all but `Tcp`; a mounted
    /// transport delivers one `Message` per message its decoder completes).
    pub const fn is_packet_based(self) -> bool {
        !self.is_tcp()
    }

    /// A small number identifying the transport, stored in every [`ResourceId`](crate::network::ResourceId).
    pub const fn id(self) -> u8 {
        match self {
            #[cfg(feature = "tcp")]
            Transport::Tcp => 0,
            #[cfg(feature = "tcp")]
            Transport::FramedTcp => 1,
            #[cfg(feature = "udp")]
            Transport::Udp => 2,
            #[cfg(feature = "websocket")]
            Transport::Ws => 3,
            #[cfg(feature = "adapter")]
            Transport::Custom(id) => id.get(),
        }
    }

    /// The transport of a resource id's adapter id: a built-in, or the mounted transport of
    /// that id (on the network the resource belongs to).
    pub(crate) const fn from_adapter_id(id: u8) -> Option<Self> {
        match Self::try_from_id(id) {
            Some(transport) => Some(transport),
            #[cfg(feature = "adapter")]
            None => match AdapterId::new(id) {
                Some(id) => Some(Transport::Custom(id)),
                None => None,
            },
            #[cfg(not(feature = "adapter"))]
            None => None,
        }
    }

    /// The mounted transport's id, if this is one.
    #[cfg(feature = "adapter")]
    pub const fn adapter_id(self) -> Option<AdapterId> {
        match self {
            #[cfg(feature = "adapter")]
            Transport::Custom(id) => Some(id),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    // Questions the backends ask, answered `false` for a transport this build lacks, so that
    // their code reads the same whichever features are on.

    /// `Tcp` (the byte stream, not `FramedTcp`).
    pub(crate) const fn is_tcp(self) -> bool {
        #[cfg(feature = "tcp")]
        return matches!(self, Transport::Tcp);
        #[cfg(not(feature = "tcp"))]
        false
    }

    /// `Udp`.
    pub(crate) const fn is_udp(self) -> bool {
        #[cfg(feature = "udp")]
        return matches!(self, Transport::Udp);
        #[cfg(not(feature = "udp"))]
        false
    }

    /// `Ws`.
    pub(crate) const fn is_ws(self) -> bool {
        #[cfg(feature = "websocket")]
        return matches!(self, Transport::Ws);
        #[cfg(not(feature = "websocket"))]
        false
    }
}

impl From<u8> for Transport {
    /// The transport with this id. An id that names no transport of this build maps to the
    /// first of [`Transport::ALL`] (message-io panics); use [`Transport::try_from_id`] for
    /// untrusted input. A build with no transport has no `Transport` to return, and panics.
    fn from(id: u8) -> Self {
        Self::try_from_id(id)
            .or(Self::ALL.first().copied())
            .expect("a build without transports has no Transport value")
    }
}

impl Transport {
    /// The built-in transport with this id, if there is one. A mounted transport's id names it
    /// only on its own network, so no number alone gives a `Transport::Custom`.
    pub const fn try_from_id(id: u8) -> Option<Self> {
        match id {
            #[cfg(feature = "tcp")]
            0 => Some(Transport::Tcp),
            #[cfg(feature = "tcp")]
            1 => Some(Transport::FramedTcp),
            #[cfg(feature = "udp")]
            2 => Some(Transport::Udp),
            #[cfg(feature = "websocket")]
            3 => Some(Transport::Ws),
            _ => None,
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match *self {
            #[cfg(feature = "tcp")]
            Transport::Tcp => "Tcp",
            #[cfg(feature = "tcp")]
            Transport::FramedTcp => "FramedTcp",
            #[cfg(feature = "udp")]
            Transport::Udp => "Udp",
            #[cfg(feature = "websocket")]
            Transport::Ws => "Ws",
            #[cfg(feature = "adapter")]
            Transport::Custom(id) => return write!(f, "Custom({})", id.get()),
        })
    }
}

/// A transport with its connect options, for `connect_with`.
#[derive(Debug, Clone)]
pub enum TransportConnect {
    /// `Tcp` with options.
    #[cfg(feature = "tcp")]
    Tcp(TcpConnectConfig),
    /// `FramedTcp` with options.
    #[cfg(feature = "tcp")]
    FramedTcp(FramedTcpConnectConfig),
    /// `Udp` with options.
    #[cfg(feature = "udp")]
    Udp(UdpConnectConfig),
    /// `Ws` with default options.
    #[cfg(feature = "websocket")]
    Ws,
    /// `Ws` with options: subprotocols, headers, size limits, TLS trust (new in portnet).
    #[cfg(feature = "websocket")]
    WsWith(WsConnectConfig),
    /// A mounted transport ([`Transport::Custom`]) with the stream options it shares with
    /// `Tcp` (its carrier natively): timeouts, send queue limit, keepalive, source address.
    /// A built-in transport here makes the connect fail with `InvalidInput`.
    #[cfg(feature = "adapter")]
    Custom(Transport, TcpConnectConfig),
}

impl TransportConnect {
    /// The transport.
    pub fn transport(&self) -> Transport {
        match *self {
            #[cfg(feature = "tcp")]
            Self::Tcp(_) => Transport::Tcp,
            #[cfg(feature = "tcp")]
            Self::FramedTcp(_) => Transport::FramedTcp,
            #[cfg(feature = "udp")]
            Self::Udp(_) => Transport::Udp,
            #[cfg(feature = "websocket")]
            Self::Ws | Self::WsWith(_) => Transport::Ws,
            #[cfg(feature = "adapter")]
            Self::Custom(transport, _) => transport,
        }
    }

    /// The transport's id.
    pub fn id(&self) -> u8 {
        self.transport().id()
    }
}

impl From<Transport> for TransportConnect {
    fn from(transport: Transport) -> Self {
        match transport {
            #[cfg(feature = "tcp")]
            Transport::Tcp => Self::Tcp(TcpConnectConfig::default()),
            #[cfg(feature = "tcp")]
            Transport::FramedTcp => Self::FramedTcp(FramedTcpConnectConfig::default()),
            #[cfg(feature = "udp")]
            Transport::Udp => Self::Udp(UdpConnectConfig::default()),
            #[cfg(feature = "websocket")]
            Transport::Ws => Self::Ws,
            #[cfg(feature = "adapter")]
            Transport::Custom(_) => Self::Custom(transport, Default::default()),
        }
    }
}

/// A transport with its listen options, for `listen_with`.
#[derive(Debug, Clone)]
pub enum TransportListen {
    /// `Tcp` with options.
    #[cfg(feature = "tcp")]
    Tcp(TcpListenConfig),
    /// `FramedTcp` with options.
    #[cfg(feature = "tcp")]
    FramedTcp(FramedTcpListenConfig),
    /// `Udp` with options.
    #[cfg(feature = "udp")]
    Udp(UdpListenConfig),
    /// `Ws` with default options.
    #[cfg(feature = "websocket")]
    Ws,
    /// `Ws` with options: TLS (`wss://`), subprotocols, size limits (new in portnet).
    #[cfg(feature = "websocket")]
    WsWith(WsListenConfig),
    /// A mounted transport ([`Transport::Custom`]) with the stream options it shares with
    /// `Tcp`. A built-in transport here makes the listen fail with `InvalidInput`.
    #[cfg(feature = "adapter")]
    Custom(Transport, TcpListenConfig),
}

impl TransportListen {
    /// The transport.
    pub fn transport(&self) -> Transport {
        match *self {
            #[cfg(feature = "tcp")]
            Self::Tcp(_) => Transport::Tcp,
            #[cfg(feature = "tcp")]
            Self::FramedTcp(_) => Transport::FramedTcp,
            #[cfg(feature = "udp")]
            Self::Udp(_) => Transport::Udp,
            #[cfg(feature = "websocket")]
            Self::Ws | Self::WsWith(_) => Transport::Ws,
            #[cfg(feature = "adapter")]
            Self::Custom(transport, _) => transport,
        }
    }

    /// The transport's id.
    pub fn id(&self) -> u8 {
        self.transport().id()
    }
}

#[cfg(feature = "websocket")]
impl From<WsConnectConfig> for TransportConnect {
    fn from(config: WsConnectConfig) -> Self {
        Self::WsWith(config)
    }
}

#[cfg(feature = "websocket")]
impl From<WsListenConfig> for TransportListen {
    fn from(config: WsListenConfig) -> Self {
        Self::WsWith(config)
    }
}

impl From<Transport> for TransportListen {
    fn from(transport: Transport) -> Self {
        match transport {
            #[cfg(feature = "tcp")]
            Transport::Tcp => Self::Tcp(TcpListenConfig::default()),
            #[cfg(feature = "tcp")]
            Transport::FramedTcp => Self::FramedTcp(FramedTcpListenConfig::default()),
            #[cfg(feature = "udp")]
            Transport::Udp => Self::Udp(UdpListenConfig::default()),
            #[cfg(feature = "websocket")]
            Transport::Ws => Self::Ws,
            #[cfg(feature = "adapter")]
            Transport::Custom(_) => Self::Custom(transport, Default::default()),
        }
    }
}
