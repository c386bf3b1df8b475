//! `FramedTcp`: an unsigned LEB128 length before each message, as message-io frames it
//! ([`crate::core::framing`]).

use crate::adapter::{Decoder, Frame, Io, ProtocolError, SendError, Side, StreamProtocol};
use crate::core::framing::{FrameDecoder, MAX_ENCODED_SIZE, encode_len};

/// LEB128 length-prefixed messages, none longer than `max_frame_size`.
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
        let mut header = [0; MAX_ENCODED_SIZE];
        frame.set_header(encode_len(message.len(), &mut header));
        Ok(())
    }
}

impl Decoder for Frames {
    #[inline]
    fn decode(&mut self, input: &[u8], io: &mut Io<'_>) -> Result<(), ProtocolError> {
        self.0.decode(input, |frame| io.deliver(frame)).map_err(ProtocolError::new)
    }
}
