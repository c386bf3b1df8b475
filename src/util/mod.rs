//! Helpers kept at message-io's paths.

pub mod encoding;
#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
pub mod thread;
