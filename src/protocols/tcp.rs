//! `Tcp`: no framing. A `Message` is whatever bytes one read brought.

use crate::adapter::{Decoder, Frame, Io, ProtocolError, SendError, Side, StreamProtocol};

/// The byte stream as it comes.
pub(crate) struct Tcp;

/// Delivers each read whole.
pub(crate) struct Passthrough;

impl StreamProtocol for Tcp {
    type Decoder = Passthrough;

    fn decoder(&self, _side: Side) -> Passthrough {
        Passthrough
    }

    #[inline]
    fn encode(&self, _message: &[u8], _frame: &mut Frame) -> Result<(), SendError> {
        Ok(())
    }
}

impl Decoder for Passthrough {
    #[inline]
    fn decode(&mut self, input: &[u8], io: &mut Io<'_>) -> Result<(), ProtocolError> {
        io.deliver(input);
        Ok(())
    }
}
