//! FramedTcp framing: an unsigned LEB128 length prefix followed by the payload, as message-io
//! puts it on the wire (length 300 → `AC 02`, length 0 → `00`).
//!
//! The decoder enforces a maximum frame size *before* buffering anything, so a peer announcing
//! a 2^40-byte frame gets an error instead of an allocation.

use std::fmt;

/// The most bytes an encoded length can take: `ceil(64 / 7)`.
pub const MAX_ENCODED_SIZE: usize = 10;

/// Encodes `len` into `buf`, returning the bytes to send before a payload of that length.
pub fn encode_len(len: usize, buf: &mut [u8; MAX_ENCODED_SIZE]) -> &[u8] {
    let mut value = len as u64;
    let mut used = 0;
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            buf[used] = byte;
            used += 1;
            break;
        }
        buf[used] = byte | 0x80;
        used += 1;
    }
    &buf[..used]
}

/// The result of reading a length prefix from the start of some bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Header {
    /// The prefix is complete: the payload length and the bytes the prefix used.
    Complete { len: usize, used: usize },
    /// More bytes are needed to finish the prefix.
    Incomplete,
    /// The prefix is longer than [`MAX_ENCODED_SIZE`] or encodes a value beyond `usize`.
    Invalid,
}

/// Reads a length prefix from the start of `data`.
pub fn decode_len(data: &[u8]) -> Header {
    let mut value: u64 = 0;
    for (i, &byte) in data.iter().enumerate().take(MAX_ENCODED_SIZE) {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && bits > 1 {
            return Header::Invalid;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return match usize::try_from(value) {
                Ok(len) => Header::Complete { len, used: i + 1 },
                Err(_) => Header::Invalid,
            };
        }
    }
    if data.len() >= MAX_ENCODED_SIZE { Header::Invalid } else { Header::Incomplete }
}

/// Why a byte stream could not be split into frames. The connection should be closed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrameError {
    /// A frame announced more bytes than the configured maximum.
    TooLarge {
        /// The announced payload length.
        announced: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A length prefix that no valid sender produces.
    InvalidHeader,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { announced, max } => {
                write!(
                    f,
                    "frame of {announced} bytes exceeds the maximum frame size of {max} bytes"
                )
            }
            FrameError::InvalidHeader => write!(f, "invalid frame length prefix"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Splits a byte stream, arriving in chunks of any size, into frames.
///
/// Complete frames inside a chunk are handed out without copying; only a frame split across
/// chunks is buffered, and never beyond the maximum frame size.
#[derive(Debug)]
pub struct FrameDecoder {
    stored: Vec<u8>,
    max_frame_size: usize,
}

impl Default for FrameDecoder {
    /// A decoder with no maximum frame size (as message-io's `Decoder`).
    fn default() -> Self {
        Self::with_max_frame_size(usize::MAX)
    }
}

impl FrameDecoder {
    /// A decoder that rejects frames whose payload is longer than `max_frame_size`.
    pub fn with_max_frame_size(max_frame_size: usize) -> Self {
        Self { stored: Vec::new(), max_frame_size }
    }

    /// Feeds the next chunk of the stream, calling `on_frame` for every frame it completes.
    ///
    /// After an error the stream cannot be resynchronised: the decoder keeps nothing and the
    /// caller should close the connection.
    pub fn decode(
        &mut self,
        data: &[u8],
        mut on_frame: impl FnMut(&[u8]),
    ) -> Result<(), FrameError> {
        let result = self.decode_inner(data, &mut on_frame);
        if result.is_err() {
            self.stored = Vec::new();
        }
        result
    }

    fn decode_inner(
        &mut self,
        mut data: &[u8],
        on_frame: &mut impl FnMut(&[u8]),
    ) -> Result<(), FrameError> {
        if !self.stored.is_empty() {
            // Finish the prefix one byte at a time, so no payload byte of a later frame is taken.
            let (len, used) = loop {
                match decode_len(&self.stored) {
                    Header::Complete { len, used } => break (len, used),
                    Header::Invalid => return Err(FrameError::InvalidHeader),
                    Header::Incomplete => match data.split_first() {
                        Some((&byte, rest)) => {
                            self.stored.push(byte);
                            data = rest;
                        }
                        None => return Ok(()),
                    },
                }
            };
            self.check_len(len)?;
            let missing = len.saturating_sub(self.stored.len() - used);
            if data.len() < missing {
                self.stored.extend_from_slice(data);
                return Ok(());
            }
            self.stored.extend_from_slice(&data[..missing]);
            data = &data[missing..];
            on_frame(&self.stored[used..]);
            self.stored.clear();
            // Do not keep a large buffer alive after one large frame.
            if self.stored.capacity() > 1 << 20 {
                self.stored = Vec::new();
            }
        }

        while !data.is_empty() {
            match decode_len(data) {
                Header::Complete { len, used } => {
                    self.check_len(len)?;
                    let payload = &data[used..];
                    if payload.len() >= len {
                        on_frame(&payload[..len]);
                        data = &payload[len..];
                    } else {
                        // Grow with what arrives, never with what is announced.
                        self.stored.extend_from_slice(data);
                        return Ok(());
                    }
                }
                Header::Incomplete => {
                    self.stored.extend_from_slice(data);
                    return Ok(());
                }
                Header::Invalid => return Err(FrameError::InvalidHeader),
            }
        }
        Ok(())
    }

    fn check_len(&self, len: usize) -> Result<(), FrameError> {
        if len > self.max_frame_size {
            return Err(FrameError::TooLarge { announced: len, max: self.max_frame_size });
        }
        Ok(())
    }

    /// How many bytes of an unfinished frame (prefix included) the decoder holds.
    pub fn stored_size(&self) -> usize {
        self.stored.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(len: usize) -> Vec<u8> {
        let mut buf = [0; MAX_ENCODED_SIZE];
        encode_len(len, &mut buf).to_vec()
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut bytes = encode(payload.len());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn golden_prefixes() {
        assert_eq!(encode(0), [0x00]);
        assert_eq!(encode(1), [0x01]);
        assert_eq!(encode(127), [0x7f]);
        assert_eq!(encode(128), [0x80, 0x01]);
        assert_eq!(encode(300), [0xac, 0x02]);
        assert_eq!(encode(u32::MAX as usize), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(encode(usize::MAX).len(), MAX_ENCODED_SIZE);
    }

    #[test]
    fn prefixes_round_trip() {
        for len in [0, 1, 127, 128, 300, 16_383, 16_384, 1 << 40, usize::MAX] {
            let bytes = encode(len);
            assert_eq!(decode_len(&bytes), Header::Complete { len, used: bytes.len() });
            assert_eq!(decode_len(&bytes[..bytes.len() - 1]), Header::Incomplete);
        }
    }

    #[test]
    fn overlong_prefix_is_invalid() {
        assert_eq!(decode_len(&[0x80; 10]), Header::Invalid);
        assert_eq!(
            decode_len(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Header::Invalid
        );
    }

    #[test]
    fn every_chunking_yields_the_same_frames() {
        let payloads: Vec<Vec<u8>> =
            vec![vec![], vec![7], (0..300).map(|i| i as u8).collect(), vec![1, 2, 3]];
        let stream: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
        for chunk in 1..stream.len() {
            let mut decoder = FrameDecoder::default();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                decoder.decode(piece, |f| got.push(f.to_vec())).unwrap();
            }
            assert_eq!(got, payloads, "chunk size {chunk}");
            assert_eq!(decoder.stored_size(), 0);
        }
    }

    #[test]
    fn huge_announcement_is_refused_before_buffering() {
        let mut decoder = FrameDecoder::with_max_frame_size(1024);
        let header = encode(1 << 40);
        let err = decoder.decode(&header, |_| panic!("no frame")).unwrap_err();
        assert_eq!(err, FrameError::TooLarge { announced: 1 << 40, max: 1024 });
        assert_eq!(decoder.stored_size(), 0);
        // Split across chunks too.
        let mut decoder = FrameDecoder::with_max_frame_size(1024);
        decoder.decode(&header[..2], |_| ()).unwrap();
        assert!(decoder.decode(&header[2..], |_| ()).is_err());
    }

    #[test]
    fn unbounded_decoder_does_not_allocate_what_is_announced() {
        // 2^40 announced, one byte sent: buffering must follow the bytes, not the header.
        let mut decoder = FrameDecoder::default();
        decoder.decode(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 1], |_| panic!("no frame")).unwrap();
        assert_eq!(decoder.stored_size(), 7);
        assert!(decoder.stored.capacity() < 1 << 20);
    }

    #[test]
    fn frames_at_the_maximum_pass() {
        let mut decoder = FrameDecoder::with_max_frame_size(3);
        let mut got = Vec::new();
        decoder.decode(&frame(&[1, 2, 3]), |f| got.push(f.to_vec())).unwrap();
        assert_eq!(got, vec![vec![1, 2, 3]]);
    }
}
