//! The messages, one per FramedTcp frame: a tag byte, then a hand-encoded body.
//!
//! ```text
//! sender                                  receiver
//!   | -- Offer(size, name) ------------------> |
//!   | <------------------- Answer(accepted) -- |
//!   | -- Chunk(bytes) -----------------------> |   as fast as the receiver reads
//!   | -- Chunk(bytes) -----------------------> |
//!   | <-------------------- Received(size) --- |   the whole file is on disk
//! ```

const OFFER: u8 = 1;
const ANSWER: u8 = 2;
pub const CHUNK: u8 = 3;
const RECEIVED: u8 = 4;

pub enum Message<'a> {
    /// The file's size in bytes and its name.
    Offer(u64, &'a str),
    Answer(bool),
    Chunk(&'a [u8]),
    Received(u64),
}

impl<'a> Message<'a> {
    /// Encodes every message but `Chunk`, which the sender builds in place to avoid a copy.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Offer(size, name) => {
                [&[OFFER][..], &size.to_le_bytes(), name.as_bytes()].concat()
            }
            Message::Answer(accepted) => vec![ANSWER, u8::from(*accepted)],
            Message::Chunk(data) => [&[CHUNK][..], data].concat(),
            Message::Received(size) => [&[RECEIVED][..], &size.to_le_bytes()].concat(),
        }
    }

    /// `None` for anything malformed: it came from the network.
    pub fn decode(data: &'a [u8]) -> Option<Message<'a>> {
        let (&tag, body) = data.split_first()?;
        let u64_at_start = |body: &[u8]| Some(u64::from_le_bytes(body.get(..8)?.try_into().ok()?));
        Some(match tag {
            OFFER => Message::Offer(u64_at_start(body)?, std::str::from_utf8(body.get(8..)?).ok()?),
            ANSWER => Message::Answer(*body.first()? == 1),
            CHUNK => Message::Chunk(body),
            RECEIVED => Message::Received(u64_at_start(body)?),
            _ => return None,
        })
    }
}
