//! `Ws`: WebSocket (RFC 6455) binary messages. Text messages from a peer are delivered too, as
//! their UTF-8 bytes.
//!
//! Connecting to a bare socket address requests `ws://{addr}/message-io-default`, the path
//! message-io requests, so portnet and message-io nodes talk to each other.

/// The largest message accepted and sent.
pub const MAX_PAYLOAD_LEN: usize = 32 << 20;

/// The request path used when connecting to a bare socket address (message-io's).
pub const DEFAULT_PATH: &str = "/message-io-default";
