//! # portnet
//!
//! Event-driven, message-oriented networking: messages and endpoints instead of sockets.
//! One API — [`node::split`] into a [`node::NodeHandler`] (actions) and a
//! [`node::NodeListener`] (events) — over `Tcp`, `FramedTcp`, `Udp` and `Ws`.
//!
//! portnet succeeds message-io 0.19: the same paths, types and events, so an application ports
//! by renaming the crate (see `docs/migrating-from-message-io.md`).
//!
//! ```
//! use portnet::node::{self, NodeEvent};
//! use portnet::network::{NetEvent, Transport};
//!
//! let (handler, listener) = node::split::<()>();
//! let (_id, addr) = handler.network().listen(Transport::Udp, "127.0.0.1:0").unwrap();
//! let (server, _) = handler.network().connect(Transport::Udp, addr).unwrap();
//! listener.for_each(move |event| match event {
//!     NodeEvent::Network(NetEvent::Connected(_, _)) => {
//!         handler.network().send(server, b"ping");
//!     }
//!     NodeEvent::Network(NetEvent::Message(_, data)) => {
//!         assert_eq!(data, b"ping");
//!         handler.stop();
//!     }
//!     _ => (),
//! });
//! ```
//!
//! The crate is laid out in layers: [`core`](crate) (sans-IO framing, queues, timers, the
//! clock), `backend` (the drivers that touch sockets), then the public [`network`],
//! [`events`] and [`node`] APIs on top.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// A build with no transport (`default-features = false` and none added) compiles, as
// message-io's does, but has nothing to connect with: every path that would use one is
// unreachable, and so are the values it would use.
#![cfg_attr(not(any(feature = "tcp", feature = "udp")), allow(unused, unreachable_code))]

// Public with the `adapter` feature; built-in transports are written on it whatever the features.
#[cfg(feature = "adapter")]
pub mod adapter;
#[cfg(not(feature = "adapter"))]
mod adapter;
pub mod adapters;
mod backend;
mod core;
pub mod events;
pub mod network;
pub mod node;
// Written for the native stream carrier; the browser has none yet.
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
mod protocols;
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub mod sim;
pub mod util;
