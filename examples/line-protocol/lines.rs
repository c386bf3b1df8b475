//! A newline-delimited text protocol, written outside portnet with its public adapter API only.
//!
//! Each message is one line of UTF-8 text followed by `\n`. A message that holds a `\n` or is
//! not UTF-8 cannot be sent (`SendStatus::MaxPacketSizeExceeded`); a peer that sends a line
//! that is not UTF-8, or longer than the maximum, is disconnected with the reason logged.
//! `tests/adapter.rs` and `tests/adapter_parity.rs` (one test body, native and simulated) include
//! this file and test it.

use portnet::adapter::{Decoder, Frame, Io, ProtocolError, SendError, Side, StreamProtocol};

/// The longest line accepted by default, without its `\n`.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// The protocol: mount it with `NetworkController::mount(Lines::default())`.
#[derive(Clone, Copy, Debug)]
pub struct Lines {
    max_line: usize,
}

impl Default for Lines {
    fn default() -> Self {
        Lines { max_line: DEFAULT_MAX_LINE }
    }
}

impl Lines {
    /// The longest line this end sends or accepts, in bytes without the `\n`.
    pub fn with_max_line(self, max_line: usize) -> Self {
        Lines { max_line }
    }
}

/// What one connection has received of a line not finished yet.
#[derive(Debug)]
pub struct LineDecoder {
    partial: Vec<u8>,
    max_line: usize,
    /// Lines received so far, to say which one was bad.
    lines: u64,
}

impl StreamProtocol for Lines {
    type Decoder = LineDecoder;

    fn decoder(&self, _side: Side) -> LineDecoder {
        LineDecoder { partial: Vec::new(), max_line: self.max_line, lines: 0 }
    }

    fn encode(&self, message: &[u8], frame: &mut Frame) -> Result<(), SendError> {
        if message.len() > self.max_line {
            return Err(SendError::new(format!(
                "a line of {} bytes is longer than the maximum of {}",
                message.len(),
                self.max_line
            )));
        }
        if message.contains(&b'\n') {
            return Err(SendError::new("a line cannot hold a newline"));
        }
        std::str::from_utf8(message).map_err(SendError::new)?;
        frame.set_trailer(b"\n");
        Ok(())
    }
}

impl LineDecoder {
    /// Checks one complete line and hands it over.
    fn line(&mut self, line: &[u8], io: &mut Io<'_>) -> Result<(), ProtocolError> {
        self.lines += 1;
        if line.len() > self.max_line {
            return Err(self.too_long(line.len()));
        }
        if let Err(e) = std::str::from_utf8(line) {
            return Err(ProtocolError::new(format!("line {} is not UTF-8: {e}", self.lines)));
        }
        io.deliver(line);
        Ok(())
    }

    fn too_long(&self, len: usize) -> ProtocolError {
        ProtocolError::new(format!(
            "line {} is longer than the maximum of {} bytes ({len} bytes so far)",
            self.lines, self.max_line
        ))
    }
}

impl Decoder for LineDecoder {
    fn decode(&mut self, mut input: &[u8], io: &mut Io<'_>) -> Result<(), ProtocolError> {
        while let Some(end) = input.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                // The whole line is in this read: hand it over without copying.
                self.line(&input[..end], io)?;
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&input[..end]);
                self.line(&line, io)?;
                line.clear();
                self.partial = line; // keep the buffer for the next split line
            }
            input = &input[end + 1..];
            if !io.is_open() {
                return Ok(()); // removed by the application: the rest is not wanted
            }
        }
        // Grow with what arrived, never beyond the maximum.
        if self.partial.len() + input.len() > self.max_line {
            self.lines += 1;
            return Err(self.too_long(self.partial.len() + input.len()));
        }
        self.partial.extend_from_slice(input);
        Ok(())
    }
}
