//! `Ws`: WebSocket (RFC 6455) messages, binary and text, over plain TCP or TLS (`wss://`).
//!
//! Connecting to a bare socket address requests `ws://{addr}/message-io-default`, the path
//! message-io requests, so portnet and message-io nodes talk to each other.
//!
//! A text frame from the peer arrives as a `NetEvent::Message` holding its UTF-8 bytes;
//! [`NetworkController::message_kind`](crate::network::NetworkController::message_kind) tells
//! it from a binary one, and
//! [`NetworkController::send_text`](crate::network::NetworkController::send_text) sends one.
//!
//! Options go in [`WsConnectConfig`] and [`WsListenConfig`], passed as
//! `TransportConnect::WsWith(..)` / `TransportListen::WsWith(..)` (or `.into()`):
//!
//! ```no_run
//! use portnet::adapters::ws::{WsConnectConfig, WsListenConfig};
//! use portnet::node;
//!
//! let (handler, _listener) = node::split::<()>();
//! # #[cfg(feature = "tls")]
//! # {
//! // A wss:// server: certificate chain and key, PEM or DER.
//! let chain = std::fs::read("cert.pem").unwrap();
//! let key = std::fs::read("key.pem").unwrap();
//! let config = WsListenConfig::default().with_tls(chain, key).with_subprotocols(["chat"]);
//! handler.network().listen_with(config.into(), "0.0.0.0:8443").unwrap();
//! # }
//!
//! // A client offering a subprotocol and sending a header.
//! let config = WsConnectConfig::default()
//!     .with_subprotocols(["chat"])
//!     .with_header("Authorization", "Bearer abc");
//! handler.network().connect_with(config.into(), "wss://example.com/chat").unwrap();
//! ```

use super::{StreamOptions, connect_builders, stream_builders};

/// The largest message accepted and sent by default.
pub const MAX_PAYLOAD_LEN: usize = 32 << 20;

/// The request path used when connecting to a bare socket address (message-io's).
pub const DEFAULT_PATH: &str = "/message-io-default";

/// Whether a WebSocket message came as a text or a binary frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MessageKind {
    /// A binary frame (and every message of the other transports).
    #[default]
    Binary,
    /// A text frame: its bytes are valid UTF-8.
    Text,
}

/// The handshake of an open `Ws` connection, as
/// [`NetworkController::ws_handshake`](crate::network::NetworkController::ws_handshake) reports
/// it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WsHandshake {
    /// The request path (with its query), e.g. `/chat?room=1`: what the client asked for, on
    /// both sides.
    pub path: String,
    /// The request's headers (server side) or the response's (client side), names lowercase.
    pub headers: Vec<(String, String)>,
    /// The subprotocol both sides agreed on, if any.
    pub subprotocol: Option<String>,
}

/// How a `Ws` connection ended, when the peer said so with a Close frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsClose {
    /// The close code (RFC 6455 section 7.4), e.g. 1000 for a normal closure.
    pub code: u16,
    /// The reason the peer gave, possibly empty.
    pub reason: String,
}

/// Size limits and subprotocols, common to both sides.
#[derive(Clone, Debug)]
pub(crate) struct WsOptions {
    pub max_message_size: usize,
    pub max_frame_size: usize,
    pub subprotocols: Vec<String>,
}

impl Default for WsOptions {
    fn default() -> Self {
        Self {
            max_message_size: MAX_PAYLOAD_LEN,
            max_frame_size: MAX_PAYLOAD_LEN,
            subprotocols: Vec::new(),
        }
    }
}

/// TLS settings of a client: trust anchors and the name to verify.
#[derive(Clone, Debug, Default)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))] // set only by the `tls` builders
pub(crate) struct TlsConnectOptions {
    /// Extra root certificates (PEM or DER) trusted beside the webpki roots.
    pub roots: Vec<Vec<u8>>,
    /// Verify the server's certificate against this name instead of the URL's host.
    pub server_name: Option<String>,
}

/// A TLS listener's identity: certificate chain and private key, PEM or DER.
#[derive(Clone, Debug)]
// Read only by the native TLS code: browsers do TLS themselves.
#[cfg_attr(
    any(not(feature = "tls"), all(target_family = "wasm", target_os = "unknown")),
    allow(dead_code)
)]
pub(crate) struct TlsIdentity {
    pub chain: Vec<u8>,
    pub key: Vec<u8>,
}

/// Options for `connect_with(TransportConnect::WsWith(..))`.
#[derive(Clone, Debug, Default)]
pub struct WsConnectConfig {
    pub(crate) options: StreamOptions,
    pub(crate) ws: WsOptions,
    pub(crate) path: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))] // read only by the native TLS code
    pub(crate) tls: TlsConnectOptions,
}

/// How many accepted `Ws` connections may be in their handshake at once, per listener, by
/// default: more are closed as they arrive, so slow or silent clients cannot use up the
/// process's file descriptors.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1024;

/// Options for `listen_with(TransportListen::WsWith(..))`, applied to accepted connections.
#[derive(Clone, Debug)]
pub struct WsListenConfig {
    pub(crate) options: StreamOptions,
    pub(crate) ws: WsOptions,
    pub(crate) max_pending_handshakes: usize,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))] // set only by `with_tls`
    pub(crate) tls: Option<TlsIdentity>,
}

/// Builders both sides share.
macro_rules! ws_builders {
    ($config:ty) => {
        impl $config {
            /// The largest message sent or accepted (default [`MAX_PAYLOAD_LEN`]). A peer
            /// sending more is disconnected with a logged reason.
            pub fn with_max_message_size(mut self, bytes: usize) -> Self {
                self.ws.max_message_size = bytes;
                self
            }

            /// The largest single frame accepted (default [`MAX_PAYLOAD_LEN`]).
            pub fn with_max_frame_size(mut self, bytes: usize) -> Self {
                self.ws.max_frame_size = bytes;
                self
            }
        }
    };
}

ws_builders!(WsConnectConfig);
ws_builders!(WsListenConfig);
stream_builders!(WsConnectConfig);
connect_builders!(WsConnectConfig);
stream_builders!(WsListenConfig);

impl WsConnectConfig {
    /// The default WebSocket options with these stream options: how a mounted transport
    /// carried over WebSocket connects.
    #[cfg_attr(not(all(feature = "adapter", feature = "websocket")), allow(dead_code))]
    pub(crate) fn from_options(options: StreamOptions) -> Self {
        Self { options, ..Self::default() }
    }

    /// Subprotocols to offer, in order of preference (`Sec-WebSocket-Protocol`). The one the
    /// server picked is in [`WsHandshake::subprotocol`]; a server picking one not offered
    /// fails the handshake.
    pub fn with_subprotocols<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        subprotocols: I,
    ) -> Self {
        self.ws.subprotocols = subprotocols.into_iter().map(Into::into).collect();
        self
    }

    /// The request path (with query) used when connecting to a bare socket address or a
    /// `"host:port"` string (default [`DEFAULT_PATH`]). A URL's own path always wins.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Adds a header to the handshake request (native backend; browsers do not let pages set
    /// headers, and ignore this).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Trusts this root certificate (PEM or DER) for `wss://`, besides the webpki roots: for
    /// servers with a self-signed or private-CA certificate. Checked when connecting; a bad
    /// certificate makes `connect_with` return an error.
    #[cfg(feature = "tls")]
    pub fn with_root_certificate(mut self, certificate: impl Into<Vec<u8>>) -> Self {
        self.tls.roots.push(certificate.into());
        self
    }

    /// Verifies the server's certificate against `name` instead of the URL's host (e.g. when
    /// connecting to an IP address).
    #[cfg(feature = "tls")]
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls.server_name = Some(name.into());
        self
    }
}

impl Default for WsListenConfig {
    fn default() -> Self {
        Self {
            options: StreamOptions::default(),
            ws: WsOptions::default(),
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            tls: None,
        }
    }
}

impl WsListenConfig {
    /// The default WebSocket options with these stream options: how a mounted transport
    /// carried over WebSocket listens.
    #[cfg_attr(
        any(
            not(all(feature = "adapter", feature = "websocket")),
            all(target_family = "wasm", target_os = "unknown")
        ),
        allow(dead_code)
    )]
    pub(crate) fn from_options(options: StreamOptions) -> Self {
        Self { options, ..Self::default() }
    }

    /// How long an accepted connection may take to finish its (TLS and) WebSocket handshake
    /// before it is closed (default
    /// [`DEFAULT_CONNECT_TIMEOUT`](crate::adapters::DEFAULT_CONNECT_TIMEOUT)).
    pub fn with_handshake_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// How many accepted connections may be in their handshake at once (default
    /// [`DEFAULT_MAX_PENDING_HANDSHAKES`]); connections beyond are closed at once, with a
    /// logged reason.
    pub fn with_max_pending_handshakes(mut self, count: usize) -> Self {
        self.max_pending_handshakes = count;
        self
    }

    /// Subprotocols this server speaks. Of those a client offers, it picks the client's first
    /// that is in this list. With none in common the server answers with no subprotocol, and
    /// a client that insisted on one (portnet, browsers) fails its handshake.
    pub fn with_subprotocols<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        subprotocols: I,
    ) -> Self {
        self.ws.subprotocols = subprotocols.into_iter().map(Into::into).collect();
        self
    }

    /// Serves `wss://`: TLS with this certificate chain (leaf first) and private key, each PEM
    /// or DER (a DER chain holds one certificate). Checked by `listen_with`, which returns an
    /// error for an unusable chain or key.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, chain: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.tls = Some(TlsIdentity { chain: chain.into(), key: key.into() });
        self
    }
}
