//! The built-in stream transports, written on the public adapter API ([`crate::adapter`]):
//! `Tcp` passes bytes through, `FramedTcp` puts a LEB128 length before each message.

// Without `tcp`, nothing constructs them (mounted transports need no built-in protocol).
#![cfg_attr(not(feature = "tcp"), allow(dead_code, unused_imports))]

mod framed_tcp;
mod tcp;

pub(crate) use framed_tcp::FramedTcp;
pub(crate) use tcp::Tcp;

use crate::adapter::{
    Decoder, Frame, Io, Protocol, ProtocolError, SendError, Side, Sink, StreamProtocol,
};

/// A stream protocol as a connection holds it: the built-ins by value, so that their
/// `encode` and `decode`, called through this enum, are direct calls the compiler inlines (the
/// per-message path of `Tcp` and `FramedTcp`); a mounted one behind its trait object.
#[derive(Clone)]
pub(crate) enum Framing {
    Tcp,
    FramedTcp(FramedTcp),
    #[cfg_attr(not(feature = "adapter"), allow(dead_code))]
    Mounted(Protocol),
}

impl Framing {
    #[inline]
    pub fn encode(&self, message: &[u8], frame: &mut Frame) -> Result<(), SendError> {
        match self {
            Framing::Tcp => StreamProtocol::encode(&Tcp, message, frame),
            Framing::FramedTcp(framed) => StreamProtocol::encode(framed, message, frame),
            Framing::Mounted(protocol) => protocol.encode(message, frame),
        }
    }

    pub fn decoder(&self, side: Side) -> Decoding {
        match self {
            Framing::Tcp => Decoding::Tcp,
            Framing::FramedTcp(framed) => Decoding::FramedTcp(framed.decoder(side)),
            Framing::Mounted(protocol) => Decoding::Mounted(protocol.decoder(side)),
        }
    }

    /// The protocol of a mounted transport (not of a built-in).
    #[cfg_attr(not(all(feature = "adapter", feature = "websocket")), allow(dead_code))]
    pub fn mounted(&self) -> Option<&Protocol> {
        match self {
            Framing::Mounted(protocol) => Some(protocol),
            _ => None,
        }
    }
}

/// The receiving state of one connection, as [`Framing`] holds its protocol.
pub(crate) enum Decoding {
    Tcp,
    FramedTcp(framed_tcp::Frames),
    Mounted(Box<dyn Decoder>),
}

impl Decoding {
    /// Decodes `input`, delivering what it completes to `sink` (directly for the built-ins).
    #[inline]
    pub fn decode<S: Sink>(&mut self, input: &[u8], sink: &mut S) -> Result<(), ProtocolError> {
        match self {
            Decoding::Tcp => {
                sink.deliver(input);
                Ok(())
            }
            Decoding::FramedTcp(frames) => frames.decode_into(input, |frame| sink.deliver(frame)),
            Decoding::Mounted(decoder) => decoder.decode(input, &mut Io::new(sink)),
        }
    }
}
