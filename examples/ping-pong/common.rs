//! What client and server share: transport names and the line protocol.
//!
//! Messages are text lines (`ping\n`, `pong 3\n`) so that the same code works on every
//! transport, plain `Tcp` included: a byte stream may split a line or join two.

use portnet::network::{Endpoint, Transport};
use std::collections::HashMap;

pub const TRANSPORT_NAMES: &str = "tcp | framed-tcp | udp | ws";

pub fn parse_transport(name: &str) -> Option<Transport> {
    match name {
        "tcp" => Some(Transport::Tcp),
        "framed-tcp" => Some(Transport::FramedTcp),
        "udp" => Some(Transport::Udp),
        "ws" => Some(Transport::Ws),
        _ => None,
    }
}

/// A line longer than this is not ping-pong: the peer is dropped rather than buffered.
const MAX_LINE_LEN: usize = 256;

/// Splits messages into lines, reassembling them per endpoint on `Tcp`.
#[derive(Default)]
pub struct Lines {
    partial: HashMap<Endpoint, Vec<u8>>,
}

impl Lines {
    /// The complete lines `data` finishes, or `Err` if a `Tcp` endpoint sent an over-long
    /// line (its buffered bytes are dropped).
    pub fn feed(&mut self, endpoint: Endpoint, data: &[u8]) -> Result<Vec<String>, ()> {
        if endpoint.transport().is_packet_based() {
            // Each message arrives whole: nothing to keep (and no state per Udp sender).
            let text = String::from_utf8_lossy(data);
            return Ok(text.lines().map(|line| line.trim().to_string()).collect());
        }
        let pending = self.partial.entry(endpoint).or_default();
        pending.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            lines.push(String::from_utf8_lossy(&line[..end]).trim().to_string());
        }
        if pending.len() > MAX_LINE_LEN {
            self.partial.remove(&endpoint);
            return Err(());
        }
        Ok(lines)
    }

    pub fn forget(&mut self, endpoint: Endpoint) {
        self.partial.remove(&endpoint);
    }
}
