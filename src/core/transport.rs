#[cfg(feature = "tcp")]
use crate::adapters::framed_tcp::{self, FramedTcpConnectConfig, FramedTcpListenConfig};
#[cfg(feature = "tcp")]
use crate::adapters::tcp::{TcpConnectConfig, TcpListenConfig};
#[cfg(feature = "udp")]
use crate::adapters::udp::{self, UdpConnectConfig, UdpListenConfig};
#[cfg(feature = "websocket")]
use crate::adapters::ws::{self, WsConnectConfig, WsListenConfig};

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
    Tcp = 0,
    /// TCP with message boundaries: an unsigned LEB128 length prefix before each message.
    /// Most applications want this rather than `Tcp`.
    #[cfg(feature = "tcp")]
    FramedTcp = 1,
    /// UDP datagrams: unreliable, unordered, limited in size. Listening on a multicast address
    /// joins the group.
    #[cfg(feature = "udp")]
    Udp = 2,
    /// WebSocket binary messages. `connect` takes a `ws://` URL or a socket address (which
    /// requests `ws://{addr}/message-io-default`).
    #[cfg(feature = "websocket")]
    Ws = 3,
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
        }
    }

    /// Whether the transport has connections, and so `Connected`/`Accepted`/`Disconnected`
    /// events.
    pub const fn is_connection_oriented(self) -> bool {
        !self.is_udp()
    }

    /// Whether each `send` arrives as exactly one `Message` (all but `Tcp`).
    pub const fn is_packet_based(self) -> bool {
        !self.is_tcp()
    }

    /// A small number identifying the transport, stored in every [`ResourceId`](crate::network::ResourceId).
    pub const fn id(self) -> u8 {
        self as u8
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

    /// `FramedTcp`.
    #[cfg_attr(all(target_family = "wasm", target_os = "unknown"), allow(dead_code))]
    pub(crate) const fn is_framed_tcp(self) -> bool {
        #[cfg(feature = "tcp")]
        return matches!(self, Transport::FramedTcp);
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
    /// The transport with this id, if there is one.
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
        }
    }
}
