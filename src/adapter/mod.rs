//! Transports of your own: a framing protocol over a carrier the backend provides, mounted on a
//! network at run time and then used like a built-in transport.
//!
//! A transport here is *sans-IO*: it never touches a socket. It says how one message goes on
//! the wire ([`StreamProtocol::encode`]) and how the bytes arriving on one connection turn back
//! into messages ([`Decoder::decode`]); the backend owns the sockets, the queues, the timeouts
//! and the events. Mounting it ([`NetworkController::mount`](crate::network::NetworkController::mount))
//! gives a [`Transport`](crate::network::Transport) (`Transport::Custom`) that `connect`,
//! `connect_sync`, `listen`, `send` and `remove` take like `Transport::FramedTcp`, with the same
//! events: `Connected`, `Accepted`, `Message`, `Disconnected`.
//!
//! The carrier of a [`StreamProtocol`] is a reliable, ordered byte stream with connections:
//! natively TCP. A decoder sees the bytes as they arrive, in pieces of any size (one byte, half
//! a message, several messages), and an error from it ends that connection alone, with its
//! reason in the log and `NetEvent::Disconnected`, as a bad frame ends a `FramedTcp`
//! connection. The built-in `Tcp` and `FramedTcp` are written on this same API.
//!
//! The stream can also ride on WebSocket ([`Carrier::WebSocket`], with
//! [`NetworkController::mount_with`](crate::network::NetworkController::mount_with)): each
//! frame one binary WebSocket message, each message received decoder input. That is the carrier
//! a browser page has; natively and in a simulated world both carriers work (a world cuts each
//! connection's bytes into segments drawn from its seed, so decoders see partial and joined
//! reads replayably). See `docs/adapters.md`.
//!
//! # Example: a line protocol
//!
//! Each message is one line of text ending in `\n`; a message holding a `\n` cannot be sent.
//!
//! ```
//! use portnet::adapter::{Decoder, Frame, Io, ProtocolError, SendError, Side, StreamProtocol};
//! use portnet::network::{NetEvent, Transport};
//! use portnet::node::{self, NodeEvent};
//!
//! struct Lines;
//!
//! #[derive(Default)]
//! struct LineDecoder {
//!     partial: Vec<u8>,
//! }
//!
//! impl StreamProtocol for Lines {
//!     type Decoder = LineDecoder;
//!
//!     fn decoder(&self, _side: Side) -> LineDecoder {
//!         LineDecoder::default()
//!     }
//!
//!     fn encode(&self, message: &[u8], frame: &mut Frame) -> Result<(), SendError> {
//!         if message.contains(&b'\n') {
//!             return Err(SendError::new("a line cannot hold a newline"));
//!         }
//!         frame.set_trailer(b"\n");
//!         Ok(())
//!     }
//! }
//!
//! impl Decoder for LineDecoder {
//!     fn decode(&mut self, mut input: &[u8], io: &mut Io<'_>) -> Result<(), ProtocolError> {
//!         while let Some(end) = input.iter().position(|&b| b == b'\n') {
//!             if self.partial.is_empty() {
//!                 io.deliver(&input[..end]); // arrived whole: no copy
//!             } else {
//!                 self.partial.extend_from_slice(&input[..end]);
//!                 io.deliver(&self.partial);
//!                 self.partial.clear();
//!             }
//!             input = &input[end + 1..];
//!         }
//!         if self.partial.len() + input.len() > 4096 {
//!             return Err(ProtocolError::new("line longer than 4096 bytes"));
//!         }
//!         self.partial.extend_from_slice(input);
//!         Ok(())
//!     }
//! }
//!
//! let (handler, listener) = node::split::<()>();
//! let lines: Transport = handler.network().mount(Lines).unwrap();
//! let (_, addr) = handler.network().listen(lines, "127.0.0.1:0").unwrap();
//! let (server, _) = handler.network().connect(lines, addr).unwrap();
//! listener.for_each(move |event| match event {
//!     NodeEvent::Network(NetEvent::Connected(_, true)) => {
//!         handler.network().send(server, b"hello");
//!     }
//!     NodeEvent::Network(NetEvent::Message(_, line)) => {
//!         assert_eq!(line, b"hello");
//!         handler.stop();
//!     }
//!     _ => (),
//! });
//! ```

// Without the `adapter` feature only the built-in transports use this module, and the browser's
// backend carries no mounted transport yet: there, the parts they do not need go unused.
#![cfg_attr(
    any(not(feature = "adapter"), all(target_family = "wasm", target_os = "unknown")),
    allow(dead_code)
)]

use std::error::Error;
use std::fmt;
use std::sync::Arc;

#[cfg(feature = "adapter")]
pub use crate::core::transport::AdapterId;

/// Which end of a connection a decoder serves.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Side {
    /// This end called `connect`.
    Client,
    /// This end accepted the connection on a listener.
    Server,
}

/// A framing protocol over a stream carrier (natively TCP): how a message goes on the wire, and
/// a fresh [`Decoder`] for each connection.
///
/// One value serves every connection of the network it is mounted on, from any thread: `encode`
/// runs on the thread that calls `send`.
pub trait StreamProtocol: Send + Sync + 'static {
    /// The receiving state of one connection. Only the network's event thread touches it.
    type Decoder: Decoder;

    /// A decoder for a connection that just opened.
    fn decoder(&self, side: Side) -> Self::Decoder;

    /// Frames one message: the bytes that go before it into [`Frame::set_header`], those after
    /// it into [`Frame::set_trailer`] (both empty by default). The message itself follows the
    /// header unchanged: the driver writes header, message and trailer with one vectored write,
    /// without copying the message. An error refuses the message: `send` answers
    /// `SendStatus::MaxPacketSizeExceeded` and nothing is written.
    fn encode(&self, message: &[u8], frame: &mut Frame) -> Result<(), SendError>;
}

/// The receiving half of a [`StreamProtocol`] on one connection.
pub trait Decoder: Send + 'static {
    /// Takes the next bytes of the stream, as they arrived: any number, from one byte on.
    /// Calls [`Io::deliver`] for each message they complete (the slice may borrow `input`, so
    /// a message that arrived whole is not copied). An error ends the connection: its reason
    /// is logged and the application gets `NetEvent::Disconnected`; nothing more is read.
    fn decode(&mut self, input: &[u8], io: &mut Io<'_>) -> Result<(), ProtocolError>;
}

/// What a decoder can do with the connection it decodes for.
pub struct Io<'a> {
    sink: &'a mut dyn Sink,
}

/// The driver's side of an [`Io`].
pub(crate) trait Sink {
    /// Hands a message to the application (`NetEvent::Message`).
    fn deliver(&mut self, message: &[u8]);
    /// Whether the connection still delivers (the application may remove it from its callback).
    fn is_open(&self) -> bool;
}

impl<'a> Io<'a> {
    pub(crate) fn new(sink: &'a mut dyn Sink) -> Self {
        Io { sink }
    }

    /// Hands one message to the application, as `NetEvent::Message` (at once: the callback
    /// runs before `deliver` returns). Nothing happens once the application removed the
    /// connection.
    #[inline]
    pub fn deliver(&mut self, message: &[u8]) {
        self.sink.deliver(message)
    }

    /// Whether the connection is still open for the application. A decoder with a long input
    /// may stop early once it is not.
    pub fn is_open(&self) -> bool {
        self.sink.is_open()
    }
}

/// The bytes [`StreamProtocol::encode`] puts around one message: a header before it and a
/// trailer after it, each at most [`Frame::MAX_HEADER`] / [`Frame::MAX_TRAILER`] bytes.
#[derive(Clone, Debug)]
pub struct Frame {
    header: [u8; Frame::MAX_HEADER],
    header_len: u8,
    trailer: [u8; Frame::MAX_TRAILER],
    trailer_len: u8,
}

impl Default for Frame {
    fn default() -> Self {
        Frame::new()
    }
}

impl Frame {
    /// The longest header a frame can have.
    pub const MAX_HEADER: usize = 32;
    /// The longest trailer a frame can have.
    pub const MAX_TRAILER: usize = 16;

    /// A frame with no header and no trailer.
    pub const fn new() -> Self {
        Frame {
            header: [0; Self::MAX_HEADER],
            header_len: 0,
            trailer: [0; Self::MAX_TRAILER],
            trailer_len: 0,
        }
    }

    /// Sets the bytes written before the message.
    ///
    /// # Panics
    ///
    /// If `header` is longer than [`Frame::MAX_HEADER`]: a bug of the protocol, never of the
    /// peer's input.
    #[inline]
    pub fn set_header(&mut self, header: &[u8]) {
        assert!(
            header.len() <= Self::MAX_HEADER,
            "a frame header holds at most {} bytes",
            Self::MAX_HEADER
        );
        self.header[..header.len()].copy_from_slice(header);
        self.header_len = header.len() as u8;
    }

    /// Appends one byte to the header, for headers built a byte at a time (a varint length).
    ///
    /// # Panics
    ///
    /// If the header already holds [`Frame::MAX_HEADER`] bytes.
    #[inline]
    pub fn push_header_byte(&mut self, byte: u8) {
        let len = usize::from(self.header_len);
        assert!(len < Self::MAX_HEADER, "a frame header holds at most {} bytes", Self::MAX_HEADER);
        self.header[len] = byte;
        self.header_len += 1;
    }

    /// Sets the bytes written after the message.
    ///
    /// # Panics
    ///
    /// If `trailer` is longer than [`Frame::MAX_TRAILER`].
    #[inline]
    pub fn set_trailer(&mut self, trailer: &[u8]) {
        assert!(
            trailer.len() <= Self::MAX_TRAILER,
            "a frame trailer holds at most {} bytes",
            Self::MAX_TRAILER
        );
        self.trailer[..trailer.len()].copy_from_slice(trailer);
        self.trailer_len = trailer.len() as u8;
    }

    /// The header set so far.
    pub fn header(&self) -> &[u8] {
        &self.header[..usize::from(self.header_len)]
    }

    /// The trailer set so far.
    pub fn trailer(&self) -> &[u8] {
        &self.trailer[..usize::from(self.trailer_len)]
    }
}

/// Defines an error type that carries a reason (a message or any error), shown as the reason.
macro_rules! reason_error {
    ($(#[$doc:meta])* $name:ident, $new_doc:literal) => {
        $(#[$doc])*
        pub struct $name {
            reason: Box<dyn Error + Send + Sync>,
        }

        impl $name {
            #[doc = $new_doc]
            pub fn new(reason: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
                $name { reason: reason.into() }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.reason, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.reason).finish()
            }
        }

        impl Error for $name {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&*self.reason)
            }
        }
    };
}

reason_error!(
    /// Why a decoder ends its connection: the reason logged with the disconnection.
    ProtocolError,
    "An error with this reason: a message (`&str`, `String`) or any error."
);

reason_error!(
    /// Why [`StreamProtocol::encode`] refused a message (logged at debug level; `send` answers
    /// `SendStatus::MaxPacketSizeExceeded`).
    SendError,
    "A refusal with this reason: a message (`&str`, `String`) or any error."
);

/// What carries a mounted [`StreamProtocol`]'s bytes between two nodes (see
/// [`NetworkController::mount_with`](crate::network::NetworkController::mount_with)).
///
/// Both ends of a connection must mount the protocol on the same carrier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum Carrier {
    /// A TCP connection: the bytes as a stream. Natively and in a simulated world; a web page
    /// has no raw sockets.
    #[default]
    Tcp,
    /// A WebSocket connection (as `Transport::Ws`, with its default options): each message
    /// sent is one binary WebSocket message holding the encoded frame (header, message,
    /// trailer), and the payload of each WebSocket message received is decoder input, as if
    /// read from a stream. Natively, in the browser (over the page's `WebSocket`, as a client)
    /// and in a simulated world (where it is carried like [`Carrier::Tcp`]). A connect takes
    /// what `Transport::Ws` takes: `"127.0.0.1:8000"` or a `ws://` URL. Needs the
    /// `websocket` feature.
    WebSocket,
}

/// A [`StreamProtocol`] with its decoder type erased, as the drivers hold it.
pub(crate) trait ErasedStreamProtocol: Send + Sync + 'static {
    fn decoder(&self, side: Side) -> Box<dyn Decoder>;
    fn encode(&self, message: &[u8], frame: &mut Frame) -> Result<(), SendError>;
}

impl<P: StreamProtocol> ErasedStreamProtocol for P {
    fn decoder(&self, side: Side) -> Box<dyn Decoder> {
        Box::new(StreamProtocol::decoder(self, side))
    }

    #[inline]
    fn encode(&self, message: &[u8], frame: &mut Frame) -> Result<(), SendError> {
        StreamProtocol::encode(self, message, frame)
    }
}

/// A stream protocol shared by a listener and every connection it accepts.
pub(crate) type Protocol = Arc<dyn ErasedStreamProtocol>;

/// A mounted transport over a message carrier ([`Carrier::WebSocket`]), on one connection:
/// each message sent is one carrier message holding its frame, and each carrier message
/// received is decoder input. `D` holds the decoder as the backend needs it (natively in a
/// lock: `send` encodes from any thread, even from inside a delivery, while it decodes).
#[cfg_attr(not(feature = "websocket"), allow(dead_code))]
pub(crate) struct Carried<D> {
    protocol: Protocol,
    pub decoder: D,
}

#[cfg_attr(not(feature = "websocket"), allow(dead_code))]
impl<D> Carried<D> {
    pub fn new(protocol: Protocol, side: Side, hold: impl FnOnce(Box<dyn Decoder>) -> D) -> Self {
        let decoder = hold(protocol.decoder(side));
        Carried { protocol, decoder }
    }

    /// The carrier message that holds `message`'s frame.
    pub fn encode(&self, message: &[u8]) -> Result<Vec<u8>, SendError> {
        framed(&*self.protocol, message)
    }
}

/// `message` framed by `protocol` (header, message, trailer) in one buffer: for carriers that
/// take whole buffers (WebSocket messages, the simulator's segments).
pub(crate) fn framed(
    protocol: &dyn ErasedStreamProtocol,
    message: &[u8],
) -> Result<Vec<u8>, SendError> {
    let mut frame = Frame::new();
    protocol.encode(message, &mut frame)?;
    let (header, trailer) = (frame.header(), frame.trailer());
    let mut bytes = Vec::with_capacity(header.len() + message.len() + trailer.len());
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(message);
    bytes.extend_from_slice(trailer);
    Ok(bytes)
}

/// A mounted transport: its protocol and what carries it.
#[cfg(feature = "adapter")]
#[derive(Clone)]
pub(crate) struct Mount {
    pub protocol: Protocol,
    pub carrier: Carrier,
}

#[cfg(feature = "adapter")]
impl Mount {
    /// This mount, if this build has its carrier.
    pub fn supported(self) -> std::io::Result<Self> {
        #[cfg(not(feature = "websocket"))]
        if self.carrier == Carrier::WebSocket {
            return Err(no_websocket());
        }
        Ok(self)
    }
}

/// A mounted transport's carrier is WebSocket, which this build leaves out.
#[cfg(all(feature = "adapter", not(feature = "websocket")))]
pub(crate) fn no_websocket() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "a transport carried over WebSocket needs portnet's `websocket` feature",
    )
}

/// The transports mounted on one network, by id from [`AdapterId::FIRST`] on: what `mount`
/// hands out and what `connect` and `listen` of a `Transport::Custom` look up, whatever the
/// backend.
#[cfg(feature = "adapter")]
#[derive(Default)]
pub(crate) struct Mounted {
    mounts: std::sync::RwLock<Vec<Mount>>,
}

#[cfg(feature = "adapter")]
impl Mounted {
    /// Mounts a transport of the application's: the next free id names it.
    pub fn mount(&self, mount: Mount) -> std::io::Result<crate::core::Transport> {
        let mut mounts = self.mounts.write().unwrap_or_else(|e| e.into_inner());
        let next = usize::from(AdapterId::FIRST) + mounts.len();
        let id = u8::try_from(next).ok().and_then(AdapterId::new).ok_or_else(|| {
            std::io::Error::other(format!(
                "mount: this network has all the transports it can tell apart ({} mounted)",
                mounts.len()
            ))
        })?;
        mounts.push(mount);
        Ok(crate::core::Transport::Custom(id))
    }

    /// A mounted transport's protocol and carrier.
    pub fn get(&self, transport: crate::core::Transport) -> std::io::Result<Mount> {
        use std::io::{Error, ErrorKind};
        let Some(id) = transport.adapter_id() else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{transport} is a built-in transport, not a mounted one"),
            ));
        };
        let mounts = self.mounts.read().unwrap_or_else(|e| e.into_inner());
        mounts.get(usize::from(id.get() - AdapterId::FIRST)).cloned().ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("{transport} is not mounted on this network"))
        })
    }
}
