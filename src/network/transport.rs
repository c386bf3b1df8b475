use crate::adapters::framed_tcp::{FramedTcpConnectConfig, FramedTcpListenConfig};
use crate::adapters::tcp::{TcpConnectConfig, TcpListenConfig};
use crate::adapters::udp::{self, UdpConnectConfig, UdpListenConfig};
use crate::adapters::ws::{WsConnectConfig, WsListenConfig};
use crate::adapters::{framed_tcp, ws};

/// The transport a connection or listener uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Transport {
    /// TCP as a byte stream: a `Message` is whatever bytes arrived, not what one `send` sent.
    Tcp,
    /// TCP with message boundaries: an unsigned LEB128 length prefix before each message.
    /// Most applications want this rather than `Tcp`.
    FramedTcp,
    /// UDP datagrams: unreliable, unordered, limited in size. Listening on a multicast address
    /// joins the group.
    Udp,
    /// WebSocket binary messages. `connect` takes a `ws://` URL or a socket address (which
    /// requests `ws://{addr}/message-io-default`).
    Ws,
}

impl Transport {
    /// Every transport, in id order.
    pub const ALL: [Transport; 4] =
        [Transport::Tcp, Transport::FramedTcp, Transport::Udp, Transport::Ws];

    /// The largest message one `send` may carry on this transport with default settings.
    pub const fn max_message_size(self) -> usize {
        match self {
            Transport::Tcp => usize::MAX,
            Transport::FramedTcp => framed_tcp::DEFAULT_MAX_FRAME_SIZE,
            Transport::Udp => udp::MAX_LOCAL_PAYLOAD_LEN,
            Transport::Ws => ws::MAX_PAYLOAD_LEN,
        }
    }

    /// Whether the transport has connections, and so `Connected`/`Accepted`/`Disconnected`
    /// events.
    pub const fn is_connection_oriented(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Whether each `send` arrives as exactly one `Message` (all but `Tcp`).
    pub const fn is_packet_based(self) -> bool {
        !matches!(self, Transport::Tcp)
    }

    /// A small number identifying the transport, stored in every [`super::ResourceId`].
    pub const fn id(self) -> u8 {
        self as u8
    }
}

impl From<u8> for Transport {
    /// The transport with this id. An id that names no transport maps to `Tcp`; use
    /// [`Transport::try_from_id`] for untrusted input.
    fn from(id: u8) -> Self {
        Self::try_from_id(id).unwrap_or(Transport::Tcp)
    }
}

impl Transport {
    /// The transport with this id, if there is one.
    pub const fn try_from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Transport::Tcp),
            1 => Some(Transport::FramedTcp),
            2 => Some(Transport::Udp),
            3 => Some(Transport::Ws),
            _ => None,
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Transport::Tcp => "Tcp",
            Transport::FramedTcp => "FramedTcp",
            Transport::Udp => "Udp",
            Transport::Ws => "Ws",
        })
    }
}

/// A transport with its connect options, for `connect_with`.
#[derive(Debug, Clone)]
pub enum TransportConnect {
    /// `Tcp` with options.
    Tcp(TcpConnectConfig),
    /// `FramedTcp` with options.
    FramedTcp(FramedTcpConnectConfig),
    /// `Udp` with options.
    Udp(UdpConnectConfig),
    /// `Ws` with default options.
    Ws,
    /// `Ws` with options: subprotocols, headers, size limits, TLS trust (new in portnet).
    WsWith(WsConnectConfig),
}

impl TransportConnect {
    /// The transport.
    pub fn transport(&self) -> Transport {
        match self {
            Self::Tcp(_) => Transport::Tcp,
            Self::FramedTcp(_) => Transport::FramedTcp,
            Self::Udp(_) => Transport::Udp,
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
            Transport::Tcp => Self::Tcp(TcpConnectConfig::default()),
            Transport::FramedTcp => Self::FramedTcp(FramedTcpConnectConfig::default()),
            Transport::Udp => Self::Udp(UdpConnectConfig::default()),
            Transport::Ws => Self::Ws,
        }
    }
}

/// A transport with its listen options, for `listen_with`.
#[derive(Debug, Clone)]
pub enum TransportListen {
    /// `Tcp` with options.
    Tcp(TcpListenConfig),
    /// `FramedTcp` with options.
    FramedTcp(FramedTcpListenConfig),
    /// `Udp` with options.
    Udp(UdpListenConfig),
    /// `Ws` with default options.
    Ws,
    /// `Ws` with options: TLS (`wss://`), subprotocols, size limits (new in portnet).
    WsWith(WsListenConfig),
}

impl TransportListen {
    /// The transport.
    pub fn transport(&self) -> Transport {
        match self {
            Self::Tcp(_) => Transport::Tcp,
            Self::FramedTcp(_) => Transport::FramedTcp,
            Self::Udp(_) => Transport::Udp,
            Self::Ws | Self::WsWith(_) => Transport::Ws,
        }
    }

    /// The transport's id.
    pub fn id(&self) -> u8 {
        self.transport().id()
    }
}

impl From<WsConnectConfig> for TransportConnect {
    fn from(config: WsConnectConfig) -> Self {
        Self::WsWith(config)
    }
}

impl From<WsListenConfig> for TransportListen {
    fn from(config: WsListenConfig) -> Self {
        Self::WsWith(config)
    }
}

impl From<Transport> for TransportListen {
    fn from(transport: Transport) -> Self {
        match transport {
            Transport::Tcp => Self::Tcp(TcpListenConfig::default()),
            Transport::FramedTcp => Self::FramedTcp(FramedTcpListenConfig::default()),
            Transport::Udp => Self::Udp(UdpListenConfig::default()),
            Transport::Ws => Self::Ws,
        }
    }
}
