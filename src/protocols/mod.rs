//! The built-in stream transports, written on the public adapter API ([`crate::adapter`]):
//! `Tcp` passes bytes through, `FramedTcp` puts a LEB128 length before each message.

// Without `tcp`, nothing constructs them (mounted transports need no built-in protocol).
#![cfg_attr(not(feature = "tcp"), allow(dead_code, unused_imports))]

mod framed_tcp;
mod tcp;

pub(crate) use framed_tcp::FramedTcp;
pub(crate) use tcp::Tcp;
