//! The run's trace.

use std::fmt::Write as _;
use std::time::Duration;

/// The run's trace: lines in one buffer, so writing one allocates nothing most of the time.
#[derive(Clone, Default)]
pub(crate) struct Trace {
    text: String,
    /// Where each line ends in `text`.
    ends: Vec<usize>,
}

impl Trace {
    /// Writes a line stamped with the virtual time `now`, with `write`, straight into the
    /// buffer.
    pub(super) fn line(&mut self, now: Duration, write: impl FnOnce(&mut String)) {
        let (secs, micros) = (now.as_secs(), now.subsec_micros());
        let _ = write!(self.text, "{secs:>5}.{micros:06} ");
        write(&mut self.text);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Lines `from..` as owned strings.
    pub fn lines_from(&self, from: usize) -> Vec<String> {
        let mut start = if from == 0 { 0 } else { self.ends[from - 1] };
        self.ends[from..]
            .iter()
            .map(|&end| {
                let line = self.text[start..end].to_owned();
                start = end;
                line
            })
            .collect()
    }
}
