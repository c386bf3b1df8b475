//! FramedTcp's length-prefix encoding, for applications that frame bytes themselves.
//!
//! The prefix is an unsigned LEB128 integer: 300 encodes as `AC 02`, 0 as `00`.
//!
//! ```
//! use portnet::util::encoding::{self, Decoder, MAX_ENCODED_SIZE};
//!
//! let mut buf = [0; MAX_ENCODED_SIZE];
//! assert_eq!(encoding::encode_size(&[0; 300], &mut buf), &[0xAC, 0x02]);
//! assert_eq!(encoding::decode_size(&[0xAC, 0x02]), Some((300, 2)));
//!
//! let mut decoder = Decoder::default();
//! let mut frames = Vec::new();
//! decoder.decode(&[3, b'a', b'b'], |f| frames.push(f.to_vec())).unwrap();
//! decoder.decode(&[b'c', 0], |f| frames.push(f.to_vec())).unwrap();
//! assert_eq!(frames, vec![b"abc".to_vec(), vec![]]);
//! ```

use crate::core::framing::{self, Header};

pub use crate::core::framing::{FrameError, MAX_ENCODED_SIZE};

/// Splits a byte stream into frames. `Decoder::default()` accepts any frame size, as
/// message-io's did; `Decoder::with_max_frame_size` bounds what a peer can make it buffer.
/// Unlike message-io's, `decode` returns an error for a frame over the maximum or a malformed
/// prefix instead of buffering or panicking.
pub use crate::core::framing::FrameDecoder as Decoder;

/// The prefix to send before `message`, written into `buf`.
pub fn encode_size<'a>(message: &[u8], buf: &'a mut [u8; MAX_ENCODED_SIZE]) -> &'a [u8] {
    framing::encode_len(message.len(), buf)
}

/// Reads a prefix: `Some((payload length, prefix length))`, or `None` if `data` does not hold
/// a complete, valid prefix.
pub fn decode_size(data: &[u8]) -> Option<(usize, usize)> {
    match framing::decode_len(data) {
        Header::Complete { len, used } => Some((len, used)),
        Header::Incomplete | Header::Invalid => None,
    }
}
