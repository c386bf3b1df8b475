//! The sans-IO core: state machines and data structures shared by every backend.
//!
//! Nothing in here touches a socket, a thread or the system clock (the [`clock`] module is the
//! one place a clock is read, and it can be virtual). Backends feed the core bytes, readiness and
//! the current time, and carry out what it asks.

pub(crate) mod clock;
pub(crate) mod framing;
// The browser queues in the WebSocket itself (`bufferedAmount`); only native sockets need it.
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub(crate) mod outbox;
pub(crate) mod timers;
