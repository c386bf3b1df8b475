//! The messages, as one line of text per FramedTcp frame or Udp datagram: readable on the
//! wire and needing no serialization crate. Decoding never panics: anything malformed is
//! `None`.

use std::net::SocketAddr;

pub enum Message {
    // Participant -> discovery server.
    /// Registers `name`, reachable over Udp at the address (an unspecified IP means "the
    /// address you see me connect from").
    Register(String, SocketAddr),

    // Discovery server -> participant.
    /// The participants registered before you.
    List(Vec<(String, SocketAddr)>),
    Added(String, SocketAddr),
    Removed(String),
    /// Registration refused, with the reason.
    Rejected(String),

    // Participant -> participant, over Udp.
    /// A greeting from the named participant.
    Greeting(String, String),
}

const MAX_NAME_LEN: usize = 32;

/// Names travel as single words: no spaces, no `=`, not empty, not huge.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.contains('=')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let text = match self {
            Message::Register(name, addr) => format!("register {name} {addr}"),
            Message::List(participants) => {
                let entries: Vec<String> =
                    participants.iter().map(|(name, addr)| format!(" {name}={addr}")).collect();
                format!("list{}", entries.concat())
            }
            Message::Added(name, addr) => format!("added {name} {addr}"),
            Message::Removed(name) => format!("removed {name}"),
            Message::Rejected(reason) => format!("rejected {reason}"),
            Message::Greeting(name, text) => format!("greeting {name} {text}"),
        };
        text.into_bytes()
    }

    pub fn decode(data: &[u8]) -> Option<Message> {
        let text = std::str::from_utf8(data).ok()?;
        let (kind, rest) = text.split_once(' ').unwrap_or((text, ""));
        let name = |s: &str| is_valid_name(s).then(|| s.to_string());
        let name_and_addr = |s: &str| {
            let (n, addr) = s.split_once(' ')?;
            Some((name(n)?, addr.parse().ok()?))
        };
        Some(match kind {
            "register" => {
                let (n, addr) = name_and_addr(rest)?;
                Message::Register(n, addr)
            }
            "list" => {
                let entries = rest.split_whitespace().map(|entry| {
                    let (n, addr) = entry.split_once('=')?;
                    Some((name(n)?, addr.parse().ok()?))
                });
                Message::List(entries.collect::<Option<_>>()?)
            }
            "added" => {
                let (n, addr) = name_and_addr(rest)?;
                Message::Added(n, addr)
            }
            "removed" => Message::Removed(name(rest)?),
            "rejected" => Message::Rejected(rest.to_string()),
            "greeting" => {
                let (n, text) = rest.split_once(' ')?;
                Message::Greeting(name(n)?, text.to_string())
            }
            _ => return None,
        })
    }
}
