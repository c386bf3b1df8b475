//! `FramedTcp`: an unsigned LEB128 length before each message, as message-io frames it
//! ([`crate::core::framing`]).

use crate::adapter::{Decoder, Frame, Io, ProtocolError, SendError, Side, StreamProtocol};
use crate::core::framing::FrameDecoder;

/// LEB128 length-prefixed messages, none longer than `max_frame_size`.
#[derive(Clone, Copy)]
pub(crate) struct FramedTcp {
    pub max_frame_size: usize,
}

/// The receiving state of one `FramedTcp` connection.
pub(crate) struct Frames(FrameDecoder);

impl StreamProtocol for FramedTcp {
    type Decoder = Frames;

    fn decoder(&self, _side: Side) -> Frames {
        Frames(FrameDecoder::with_max_frame_size(self.max_frame_size))
    }

    #[inline]
    fn encode(&self, message: &[u8], frame: &mut Frame) -> Result<(), SendError> {
        if message.len() > self.max_frame_size {
            return Err(SendError::new(format!(
                "a message of {} bytes exceeds the maximum frame size of {} bytes",
                message.len(),
                self.max_frame_size
            )));
        }
        // LEB128 straight into the frame (`core::framing::encode_len`'s bytes, without a copy).
        let mut len = message.len() as u64;
        while len >= 0x80 {
            frame.push_header_byte((len & 0x7f) as u8 | 0x80);
            len >>= 7;
        }
        frame.push_header_byte(len as u8);
        Ok(())
    }
}

impl Frames {
    /// [`Decoder::decode`] with the delivery known to the compiler (see `protocols::Framing`).
    #[inline]
    pub fn decode_into(
        &mut self,
        input: &[u8],
        deliver: impl FnMut(&[u8]),
    ) -> Result<(), ProtocolError> {
        self.0.decode(input, deliver).map_err(ProtocolError::new)
    }
}

impl Decoder for Frames {
    #[inline]
    fn decode(&mut self, input: &[u8], io: &mut Io<'_>) -> Result<(), ProtocolError> {
        self.decode_into(input, |frame| io.deliver(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::framing::{MAX_ENCODED_SIZE, encode_len};

    #[test]
    fn the_header_is_core_framings_leb128() {
        let protocol = FramedTcp { max_frame_size: usize::MAX };
        for len in [0, 1, 127, 128, 300, 16_383, 16_384, 1 << 20] {
            let message = vec![0; len];
            let mut frame = Frame::new();
            StreamProtocol::encode(&protocol, &message, &mut frame).unwrap();
            let mut expected = [0; MAX_ENCODED_SIZE];
            assert_eq!(frame.header(), encode_len(len, &mut expected), "{len}");
            assert!(frame.trailer().is_empty());
        }
        let small = FramedTcp { max_frame_size: 3 };
        assert!(StreamProtocol::encode(&small, &[0; 4], &mut Frame::new()).is_err());
        assert!(StreamProtocol::encode(&small, &[0; 3], &mut Frame::new()).is_ok());
    }
}
