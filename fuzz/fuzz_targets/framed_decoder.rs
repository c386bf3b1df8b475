//! The FramedTcp decoder (`portnet::util::encoding::Decoder`, the very `FrameDecoder` the
//! native and simulated FramedTcp connections use) fed arbitrary bytes in arbitrary chunkings,
//! checked against a byte-at-a-time reference parser written from the wire format alone.
//!
//! Input layout (see `decode_input`): a byte choosing the maximum frame size, a byte choosing
//! how the stream is built (raw bytes, or well-formed frames built from the input, optionally
//! followed by raw bytes), a list of cut points, then the bytes.
//!
//! Invariants, for every input and every chunking:
//! - the frames handed out are exactly the frames the reference finds, in order;
//! - no frame is longer than the maximum;
//! - an error comes only where the reference finds bad input (a prefix over 10 bytes or over
//!   64 bits, or an announced length over the maximum), and it is the same error;
//! - without an error, the decoder holds exactly the bytes of the unfinished last frame, and
//!   never more than a prefix plus the maximum;
//! - feeding more after an error does not panic.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use portnet::util::encoding::{self, Decoder, FrameError, MAX_ENCODED_SIZE};

const MAX_SIZES: [usize; 8] = [0, 1, 5, 127, 128, 300, 16_384, usize::MAX];

#[derive(Debug, PartialEq)]
enum Outcome {
    /// Every byte was read; the unfinished last frame (prefix included) has this many bytes.
    Ok {
        pending: usize,
    },
    Err(FrameError),
}

/// The wire format, read the plain way: an unsigned LEB128 length of at most 10 bytes whose
/// value fits in 64 bits (and in usize), then that many payload bytes.
fn reference(stream: &[u8], max: usize) -> (Vec<Vec<u8>>, Outcome) {
    let mut frames = Vec::new();
    let mut pos = 0;
    loop {
        if pos == stream.len() {
            return (frames, Outcome::Ok { pending: 0 });
        }
        let mut value: u128 = 0;
        let mut used = None;
        for i in 0..MAX_ENCODED_SIZE {
            let Some(&byte) = stream.get(pos + i) else { break };
            value |= u128::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                used = Some(i + 1);
                break;
            }
        }
        let Some(used) = used else {
            if stream.len() - pos >= MAX_ENCODED_SIZE {
                return (frames, Outcome::Err(FrameError::InvalidHeader));
            }
            return (frames, Outcome::Ok { pending: stream.len() - pos });
        };
        // Over 64 bits (or over usize): no sender produces it.
        let Ok(len) = usize::try_from(value) else {
            return (frames, Outcome::Err(FrameError::InvalidHeader));
        };
        if len > max {
            return (frames, Outcome::Err(FrameError::TooLarge { announced: len, max }));
        }
        let start = pos + used;
        if stream.len() - start < len {
            return (frames, Outcome::Ok { pending: stream.len() - pos });
        }
        frames.push(stream[start..start + len].to_vec());
        pos = start + len;
    }
}

struct Input {
    max: usize,
    stream: Vec<u8>,
    cuts: Vec<usize>,
}

fn decode_input(data: &[u8]) -> Result<Input> {
    let mut u = Unstructured::new(data);
    let max = MAX_SIZES[usize::from(u.arbitrary::<u8>()? % 8)];
    let mode: u8 = u.arbitrary()?;
    let cut_count = usize::from(u.arbitrary::<u8>()? % 33);
    let mut cuts = Vec::with_capacity(cut_count);
    for _ in 0..cut_count {
        cuts.push(usize::from(u.arbitrary::<u16>()?));
    }
    let stream = match mode % 3 {
        // Raw bytes.
        0 => u.take_rest().to_vec(),
        // Well-formed frames (payload lengths from the input), then raw bytes.
        m => {
            let mut stream = Vec::new();
            let frames = usize::from(u.arbitrary::<u8>()? % 16);
            for i in 0..frames {
                let len = usize::from(u.arbitrary::<u16>()? % 600);
                let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
                let mut buf = [0; MAX_ENCODED_SIZE];
                stream.extend_from_slice(encoding::encode_size(&payload, &mut buf));
                stream.extend_from_slice(&payload);
            }
            if m == 2 {
                stream.extend_from_slice(u.take_rest());
            }
            stream
        }
    };
    Ok(Input { max, stream, cuts })
}

fuzz_target!(|data: &[u8]| {
    let Ok(Input { max, stream, mut cuts }) = decode_input(data) else { return };
    for cut in &mut cuts {
        *cut %= stream.len() + 1;
    }
    cuts.sort_unstable();
    cuts.dedup();

    let (expected_frames, expected) = reference(&stream, max);

    let mut decoder = Decoder::with_max_frame_size(max);
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut outcome = None;
    let mut start = 0;
    let ends = cuts.iter().copied().chain([stream.len()]);
    for end in ends {
        let chunk = &stream[start..end];
        start = end;
        if outcome.is_some() {
            // The caller should close the connection now; going on must not panic either.
            let _ = decoder.decode(chunk, |frame| assert!(frame.len() <= max));
            continue;
        }
        let result = decoder.decode(chunk, |frame| {
            assert!(frame.len() <= max, "a frame of {} bytes over the maximum {max}", frame.len());
            frames.push(frame.to_vec());
        });
        match result {
            Ok(()) => {
                let stored = decoder.stored_size();
                assert!(
                    stored <= MAX_ENCODED_SIZE.saturating_add(max),
                    "{stored} bytes buffered with a maximum frame size of {max}"
                );
            }
            Err(e) => outcome = Some(Outcome::Err(e)),
        }
    }
    let outcome = outcome.unwrap_or(Outcome::Ok { pending: decoder.stored_size() });
    assert_eq!(frames.len(), expected_frames.len(), "frame count, chunks cut at {cuts:?}");
    assert!(frames == expected_frames, "frames differ, chunks cut at {cuts:?}");
    assert_eq!(outcome, expected, "outcome, chunks cut at {cuts:?}");
});
