//! The core every backend builds on: the network's public vocabulary and the sans-IO state
//! machines.
//!
//! The public types (endpoints, resource ids, transports, addresses, events) live here, below
//! the backends, and [`crate::network`] re-exports them: a backend imports what it speaks from
//! the core, never from the network facade above it.
//!
//! Nothing in here touches a socket, a thread or the system clock (the [`clock`] module is the
//! one place a clock is read, and it can be virtual). Backends feed the core bytes, readiness and
//! the current time, and carry out what it asks.

pub(crate) mod clock;
pub(crate) mod endpoint;
pub(crate) mod event;
pub(crate) mod framing;
pub(crate) mod linger;
// The browser queues in the WebSocket itself (`bufferedAmount`); only native sockets need it.
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub(crate) mod outbox;
pub(crate) mod readiness;
pub(crate) mod remote_addr;
pub(crate) mod resource_id;
pub(crate) mod timers;
pub(crate) mod transport;

// The vocabulary the backends import (the browser's, a client of one transport, uses less).
pub(crate) use endpoint::Endpoint;
#[cfg_attr(all(target_family = "wasm", target_os = "unknown"), allow(unused_imports))]
pub(crate) use event::{EventDetail, NetEvent, SendStatus, StoredNetEvent};
pub(crate) use linger::LingerSetting;
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub(crate) use linger::warn_dropped;
pub(crate) use remote_addr::RemoteAddr;
pub(crate) use resource_id::{ResourceId, ResourceType};
#[cfg_attr(all(target_family = "wasm", target_os = "unknown"), allow(unused_imports))]
pub(crate) use transport::{Transport, TransportConnect, TransportListen};
