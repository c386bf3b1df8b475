//! What a simulated world records of the events its applications see, for
//! [`check_determinism`](crate::sim::check_determinism): a line per event, cheap to compare.

use crate::network::NetEvent;
use std::fmt;

/// Told of every event a node's listener delivers to its application.
pub(crate) type EventObserver = Box<dyn FnMut(fmt::Arguments<'_>) + Send>;

/// An event as one line: a message by its length and a hash of its bytes (a whole payload
/// per line would make a large world's record as big as its traffic).
pub(crate) struct Described<'a, 'b>(pub &'a NetEvent<'b>);

impl fmt::Display for Described<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self.0 {
            NetEvent::Connected(endpoint, ok) => write!(f, "connected {endpoint} {ok}"),
            NetEvent::Accepted(endpoint, listener) => {
                write!(f, "accepted {endpoint} on {listener}")
            }
            NetEvent::Message(endpoint, data) => {
                write!(f, "message {endpoint} {} bytes {:016x}", data.len(), fnv1a(data))
            }
            NetEvent::Disconnected(endpoint) => write!(f, "disconnected {endpoint}"),
        }
    }
}

/// FNV-1a: a hash fixed by its definition (std's hashers may change between versions).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
