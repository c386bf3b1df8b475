//! A bounded queue of bytes waiting for a stream to become writable.
//!
//! A send is accepted while fewer than `limit` bytes are queued, so a single message larger than
//! the limit still goes through when the queue is nearly empty, and memory stays below
//! `limit + largest message`.

/// An empty queue keeps at most this much capacity.
const SHRINK_ABOVE: usize = 4 << 20;

/// Bytes accepted for sending but not yet written.
#[derive(Debug)]
pub(crate) struct Outbox {
    buf: Vec<u8>,
    start: usize,
    limit: usize,
}

/// The queue holds `limit` bytes or more: the caller must wait until it drains.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Self { buf: Vec::new(), start: 0, limit }
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a new message would be refused. An empty queue always takes one message, so
    /// a limit of zero means "one message at a time", not "nothing ever".
    pub fn is_full(&self) -> bool {
        !self.is_empty() && self.len() >= self.limit
    }

    /// Whether the queue has drained enough to tell waiting senders to go on.
    pub fn is_below_low_water(&self) -> bool {
        self.len() <= self.limit / 2
    }

    /// Queues the concatenation of `parts`, unless the queue is full.
    pub fn push(&mut self, parts: &[&[u8]]) -> Result<(), Full> {
        if self.is_full() {
            return Err(Full);
        }
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        Ok(())
    }

    /// Queues the rest of a message that was partly written: it must go out whole, whatever
    /// the limit.
    pub fn push_remainder(&mut self, parts: &[&[u8]]) {
        for part in parts {
            self.buf.extend_from_slice(part);
        }
    }

    /// The bytes to write next.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Marks the first `n` pending bytes as written.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            // Give back the memory of a burst once it is written.
            if self.buf.capacity() > SHRINK_ABOVE {
                self.buf = Vec::new();
            }
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_across_partial_writes() {
        let mut out = Outbox::new(100);
        out.push(&[b"ab", b"cd"]).unwrap();
        out.push(&[b"ef"]).unwrap();
        assert_eq!(out.pending(), b"abcdef");
        out.consume(3);
        assert_eq!(out.pending(), b"def");
        out.push(&[b"g"]).unwrap();
        out.consume(4);
        assert!(out.is_empty());
    }

    #[test]
    fn zero_limit_still_takes_one_message_and_remainders() {
        let mut out = Outbox::new(0);
        out.push(&[b"ab"]).unwrap();
        assert_eq!(out.push(&[b"c"]), Err(Full));
        out.push_remainder(&[b"c"]);
        assert_eq!(out.pending(), b"abc");
    }

    #[test]
    fn refuses_when_limit_reached_and_accepts_after_drain() {
        let mut out = Outbox::new(4);
        out.push(&[&[0; 10]]).unwrap(); // one large message fits an empty queue
        assert!(out.is_full());
        assert_eq!(out.push(&[b"x"]), Err(Full));
        out.consume(7);
        assert!(!out.is_full());
        assert!(!out.is_below_low_water());
        out.consume(1);
        assert!(out.is_below_low_water());
        out.push(&[b"x"]).unwrap();
        assert_eq!(out.pending(), &[0, 0, b'x']);
    }
}
