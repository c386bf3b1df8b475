//! Helpers kept at message-io's paths.

pub mod encoding;
