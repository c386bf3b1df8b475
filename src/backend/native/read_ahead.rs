//! Large socket reads under a small per-connection read buffer.
//!
//! tungstenite keeps one read buffer per connection, zero-fills it up to its configured size
//! before every socket read, and reads at most that size at a time. A large buffer is resident
//! for every connection that has read once (16 KiB made an idle `Ws` connection 17.6 KiB); a
//! small one splits a 64 KiB message into many `read` calls. So `Ws` gives tungstenite a small
//! buffer ([`WS_READ_BUFFER`]) and reads the socket through [`ReadAhead`]: once a read has
//! filled tungstenite's slice (more is likely waiting), the next one is vectored, into the
//! slice and past it into a [`SPILL_SIZE`] buffer lent by the thread's pool. Bytes that land
//! there stay with the connection until tungstenite has taken them all, then the buffer goes
//! back to the pool: an idle connection holds none. Reads that do not fill the slice (small
//! messages, the last read that finds the socket empty) stay plain `recv`s: a vectored read
//! costs the kernel a little more.

use std::cell::RefCell;
use std::io::{self, IoSliceMut, Read};

/// tungstenite's read buffer per `Ws` connection (its `read_buffer_size`), resident once the
/// connection has read.
pub(crate) const WS_READ_BUFFER: usize = 4 * 1024;

/// The read-ahead buffer: one socket read takes up to this much beyond tungstenite's slice.
pub(crate) const SPILL_SIZE: usize = 64 * 1024;

/// Spare buffers a thread keeps for the next read (more are freed).
const POOLED: usize = 2;

thread_local! {
    /// Spare read-ahead buffers of this thread; the last one is the next read's.
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// Bytes read from the socket that the reader has not taken yet.
struct Spill {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// A connection's read-ahead state: nothing while idle, a buffer lent by the thread's pool
/// while bytes read ahead wait to be taken.
#[derive(Default)]
pub(crate) struct ReadAhead {
    spill: Option<Spill>,
    /// The last socket read filled what it was given: the next one reads ahead.
    ahead: bool,
}

impl ReadAhead {
    /// Reads into `out` what was read ahead, or else from `socket`: after a read that filled
    /// its buffer, one vectored read into `out` and a pooled buffer, whose part past `out` is
    /// kept for the next calls. Returns the socket's error (`WouldBlock` included) only when
    /// nothing is read ahead.
    pub fn read(&mut self, socket: &mut impl Read, out: &mut [u8]) -> io::Result<usize> {
        if let Some(spill) = &mut self.spill {
            let n = (spill.end - spill.start).min(out.len());
            out[..n].copy_from_slice(&spill.buf[spill.start..spill.start + n]);
            spill.start += n;
            if spill.start == spill.end
                && let Some(spill) = self.spill.take()
            {
                give_back(spill.buf);
            }
            return Ok(n);
        }
        if out.is_empty() {
            return socket.read(out);
        }
        if !self.ahead {
            let read = socket.read(out);
            self.ahead = read.as_ref().is_ok_and(|&n| n == out.len());
            return read;
        }
        // The pool's next buffer is read into where it lies: taken out only if bytes land in it.
        let read = POOL.try_with(|pool| {
            let Ok(mut pool) = pool.try_borrow_mut() else { return socket.read(out) };
            if pool.is_empty() {
                pool.push(new_buffer());
            }
            let Some(buf) = pool.last_mut() else { return socket.read(out) };
            let n = socket.read_vectored(&mut [IoSliceMut::new(out), IoSliceMut::new(buf)]);
            self.ahead = n.as_ref().is_ok_and(|&n| n >= out.len());
            let n = n?;
            if n > out.len()
                && let Some(buf) = pool.pop()
            {
                self.spill = Some(Spill { buf, start: 0, end: n - out.len() });
            }
            Ok(n.min(out.len()))
        });
        // Without the thread's pool (its locals are being torn down): a plain read.
        read.unwrap_or_else(|_| socket.read(out))
    }

    /// Whether bytes read from the socket wait here.
    #[cfg(test)]
    fn holds_bytes(&self) -> bool {
        self.spill.is_some()
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Some(spill) = self.spill.take() {
            give_back(spill.buf);
        }
    }
}

fn new_buffer() -> Box<[u8]> {
    vec![0; SPILL_SIZE].into_boxed_slice()
}

fn give_back(buf: Box<[u8]>) {
    // `try_with`: a connection dropped while the thread's locals are torn down frees it.
    let _ = POOL.try_with(|pool| {
        // A read of this thread holds the pool only while in the socket (no reentry).
        if let Ok(mut pool) = pool.try_borrow_mut()
            && pool.len() < POOLED
        {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io::Cursor;

    /// A socket whose bytes arrive in the chunks given: a read takes what it can of the
    /// chunks that have arrived, one more arriving per read; then `WouldBlock`.
    #[derive(Default)]
    struct Chunks {
        arriving: VecDeque<Vec<u8>>,
        queued: VecDeque<u8>,
        vectored: usize,
    }

    impl Chunks {
        fn new(chunks: Vec<Vec<u8>>) -> Self {
            Chunks { arriving: chunks.into(), ..Chunks::default() }
        }

        fn fill(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
            if let Some(chunk) = self.arriving.pop_front() {
                self.queued.extend(chunk);
            }
            if self.queued.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for buf in bufs {
                for byte in buf.iter_mut() {
                    let Some(b) = self.queued.pop_front() else { return Ok(n) };
                    *byte = b;
                    n += 1;
                }
            }
            Ok(n)
        }
    }

    impl Read for Chunks {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.fill(&mut [IoSliceMut::new(out)])
        }

        fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
            self.vectored += 1;
            self.fill(bufs)
        }
    }

    fn drain(ahead: &mut ReadAhead, socket: &mut impl Read, step: usize) -> (Vec<u8>, io::Error) {
        let mut got = Vec::new();
        let mut out = vec![0; step];
        for _ in 0..100_000 {
            match ahead.read(socket, &mut out) {
                Ok(n) => got.extend_from_slice(&out[..n]),
                Err(e) => return (got, e),
            }
        }
        panic!("no end");
    }

    #[test]
    fn bytes_come_out_in_order_and_the_buffer_goes_back() {
        let data: Vec<u8> = (0..3 * SPILL_SIZE).map(|i| (i % 251) as u8).collect();
        let cuts = [0, 10, 10 + 4096 + SPILL_SIZE + 7, 2 * SPILL_SIZE, 3 * SPILL_SIZE];
        let chunks = cuts.windows(2).map(|w| data[w[0]..w[1]].to_vec()).collect();
        let mut socket = Chunks::new(chunks);
        let mut ahead = ReadAhead::default();
        let (got, end) = drain(&mut ahead, &mut socket, 4096);
        assert_eq!(end.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(got, data);
        assert!(socket.vectored > 0, "large reads read ahead");
        assert!(!ahead.holds_bytes(), "an idle connection holds no buffer");
        assert!(POOL.with(|p| !p.borrow().is_empty()), "the buffer went back to the pool");
    }

    #[test]
    fn small_reads_stay_plain() {
        let mut socket = Chunks::new(vec![vec![1; 7], vec![2; 3], vec![3; 100]]);
        let mut ahead = ReadAhead::default();
        let mut out = [0; 4096];
        for expected in [7, 3, 100] {
            assert_eq!(ahead.read(&mut socket, &mut out).unwrap(), expected);
        }
        let end = ahead.read(&mut socket, &mut out).unwrap_err();
        assert_eq!(end.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(socket.vectored, 0);
        assert!(!ahead.holds_bytes());
    }

    #[test]
    fn would_block_comes_only_once_everything_is_taken() {
        let mut socket = Chunks::new(vec![vec![7; 2 * 4096 + 100]]);
        let mut ahead = ReadAhead::default();
        let mut out = [0; 4096];
        assert_eq!(ahead.read(&mut socket, &mut out).unwrap(), 4096); // plain, filled
        assert_eq!(ahead.read(&mut socket, &mut out).unwrap(), 4096); // vectored: 100 ahead
        assert!(ahead.holds_bytes());
        assert_eq!(ahead.read(&mut socket, &mut out).unwrap(), 100);
        assert!(!ahead.holds_bytes());
        let end = ahead.read(&mut socket, &mut out).unwrap_err();
        assert_eq!(end.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn end_of_stream_after_the_bytes_read_ahead() {
        let mut socket = Cursor::new(vec![1; 5000]);
        let mut ahead = ReadAhead::default();
        let mut out = [0; 1000];
        let mut total = 0;
        for _ in 0..10 {
            match ahead.read(&mut socket, &mut out).unwrap() {
                0 => break,
                n => total += n,
            }
        }
        assert_eq!(total, 5000);
        assert_eq!(ahead.read(&mut socket, &mut out).unwrap(), 0);
    }
}
