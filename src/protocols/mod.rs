//! The built-in stream transports, written on the public adapter API ([`crate::adapter`]):
//! `Tcp` passes bytes through, `FramedTcp` puts a LEB128 length before each message.

mod framed_tcp;
mod tcp;

pub(crate) use framed_tcp::FramedTcp;
pub(crate) use tcp::Tcp;
