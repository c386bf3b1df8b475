//! Golden vectors: the exact bytes portnet puts on the wire and accepts from it.
//!
//! The peer is a plain `std::net` socket, so these tests pin the format itself rather than
//! agreement between two portnet nodes: `FramedTcp` is an unsigned LEB128 length followed by
//! the payload (as message-io frames it), and a `Ws` connect to a bare socket address requests
//! `/message-io-default` (as message-io does).
//!
//! Every wait has a deadline, and a watchdog thread aborts the test binary if a test still runs
//! after [`TEST_LIMIT`].

mod util;

use portnet::network::{Endpoint, SendStatus, StoredNetEvent, Transport};
use portnet::node::{self, NodeHandler, NodeTask, StoredNodeEvent};
use portnet::util::encoding::{self, Decoder, FrameError, MAX_ENCODED_SIZE};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use util::AbortAfter;

/// A test still running after this long aborts the process (a hang is a failure).
const TEST_LIMIT: Duration = Duration::from_secs(20);

/// How long one test may wait, in total, for what it expects.
const WAIT_LIMIT: Duration = Duration::from_secs(15);

/// A portnet node on its own thread, its events queued for the test.
struct Node {
    handler: NodeHandler<()>,
    events: portnet::events::EventReceiver<StoredNodeEvent<()>>,
    deadline: Instant,
    _task: NodeTask,
}

impl Node {
    fn new() -> Self {
        let (handler, listener) = node::split::<()>();
        let (task, events) = listener.enqueue();
        Node { handler, events, deadline: Instant::now() + WAIT_LIMIT, _task: task }
    }

    /// The next network event; fails the test if none comes in time.
    fn next(&mut self, waiting_for: &str) -> StoredNetEvent {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.events.receive_timeout(left) {
            Some(StoredNodeEvent::Network(event)) => event,
            Some(StoredNodeEvent::Signal(())) => panic!("unexpected signal"),
            None => panic!("no event within {WAIT_LIMIT:?} while waiting for {waiting_for}"),
        }
    }

    fn expect_connected(&mut self, endpoint: Endpoint, ok: bool) {
        match self.next("Connected") {
            StoredNetEvent::Connected(ep, got) if ep == endpoint => {
                assert_eq!(got, ok, "Connected({endpoint}, {got}), want {ok}")
            }
            other => panic!("expected Connected({endpoint}, {ok}), got {other:?}"),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.handler.stop();
    }
}

/// A std stream with a read timeout, so a missing byte fails instead of hanging.
fn guarded(stream: TcpStream) -> TcpStream {
    stream.set_read_timeout(Some(WAIT_LIMIT)).unwrap();
    stream.set_write_timeout(Some(WAIT_LIMIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

fn loopback_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A recognisable payload of `len` bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Payload lengths with the prefix each must get, written out by hand.
fn golden_frames() -> Vec<(Vec<u8>, &'static [u8])> {
    vec![
        (Vec::new(), &[0x00]),
        (vec![0x7f], &[0x01]),
        (pattern(300, 1), &[0xac, 0x02]),
        (pattern(128, 2), &[0x80, 0x01]),
        (pattern(16384, 3), &[0x80, 0x80, 0x01]),
    ]
}

#[test]
fn framed_tcp_sends_leb128_prefix_then_payload() {
    let _watchdog = AbortAfter::start("framed_tcp_sends_leb128_prefix_then_payload", TEST_LIMIT);
    let (listener, addr) = loopback_listener();
    let mut node = Node::new();
    let (endpoint, local) = node.handler.network().connect(Transport::FramedTcp, addr).unwrap();
    let (peer, from) = listener.accept().unwrap();
    assert_eq!(from, local);
    let mut peer = guarded(peer);
    node.expect_connected(endpoint, true);

    let mut expected = Vec::new();
    for (payload, prefix) in golden_frames() {
        assert_eq!(node.handler.network().send(endpoint, &payload), SendStatus::Sent);
        expected.extend_from_slice(prefix);
        expected.extend_from_slice(&payload);
    }
    // Removing flushes what was sent, then closes: the peer reads exactly those bytes, then EOF.
    assert!(node.handler.network().remove(endpoint.resource_id()));
    let mut received = Vec::new();
    peer.read_to_end(&mut received).expect("reading until portnet closes");
    assert_eq!(received.len(), expected.len(), "byte count on the wire");
    for (offset, (got, want)) in received.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "byte {offset} on the wire");
    }
    assert!(node.events.try_receive().is_none(), "an event after remove");
}

/// A byte stream of hand-made frames, cut where the decoder is most likely to trip: inside
/// prefixes, right after them, inside payloads and right after frames.
#[test]
fn framed_tcp_receives_hand_made_frames_in_awkward_chunks() {
    let _watchdog =
        AbortAfter::start("framed_tcp_receives_hand_made_frames_in_awkward_chunks", TEST_LIMIT);
    let mut node = Node::new();
    let (listener_id, addr) =
        node.handler.network().listen(Transport::FramedTcp, "127.0.0.1:0").unwrap();
    let mut peer = guarded(TcpStream::connect(addr).unwrap());
    let endpoint = match node.next("Accepted") {
        StoredNetEvent::Accepted(ep, id) => {
            assert_eq!(id, listener_id);
            assert_eq!(ep.addr(), peer.local_addr().unwrap());
            ep
        }
        other => panic!("expected Accepted, got {other:?}"),
    };

    let mut frames = golden_frames();
    frames.push((b"end".to_vec(), &[0x03]));
    // A second round of the same frames, written one byte at a time.
    let first_round = frames.len();
    frames.extend(golden_frames().into_iter().take(4));

    let mut stream = Vec::new();
    let mut frame_ends = Vec::new();
    for (payload, prefix) in &frames {
        stream.extend_from_slice(prefix);
        stream.extend_from_slice(payload);
        frame_ends.push(stream.len());
    }
    let e = &frame_ends;
    let round_end = e[first_round - 1];
    // Offsets (in the first round) after which a write ends.
    let mut cuts = vec![
        e[0],     // the empty frame alone
        e[1] + 1, // [01 7f], then the first byte of the 300-byte frame's prefix [ac|02]
        e[1] + 2, // the prefix's last byte alone
        e[1] + 3, // one payload byte
        e[2] - 1, // all but the last payload byte
        e[2] + 1, // the last payload byte, then the 128-byte frame's first prefix byte
        e[2] + 2, // the rest of that prefix
        e[3],     // its whole payload, exactly to the frame's end
        e[3] + 1, // [80|80|01]: the three bytes of a prefix, one write each
        e[3] + 2,
        e[3] + 3,
        e[3] + 3 + 8000, // half of the 16384-byte payload
        e[4] + 2,        // the rest, then the "end" frame's prefix and first byte
        round_end,
    ];
    cuts.extend(round_end + 1..=stream.len());

    let mut written = 0;
    let mut delivered = 0;
    for cut in cuts {
        assert!(cut > written, "cuts must increase");
        peer.write_all(&stream[written..cut]).unwrap();
        written = cut;
        // Wait for every frame this write completed, so the next write arrives on its own.
        let complete = frame_ends.iter().filter(|&&end| end <= written).count();
        while delivered < complete {
            let what = format!("frame {delivered} (stream offset {written})");
            match node.next(&what) {
                StoredNetEvent::Message(ep, data) => {
                    assert_eq!(ep, endpoint);
                    assert!(
                        data == frames[delivered].0,
                        "{what}: got {} bytes, want {} bytes",
                        data.len(),
                        frames[delivered].0.len()
                    );
                }
                other => panic!("got {other:?} while waiting for {what}"),
            }
            delivered += 1;
        }
    }
    assert_eq!(delivered, frames.len());

    drop(peer);
    match node.next("Disconnected") {
        StoredNetEvent::Disconnected(ep) => assert_eq!(ep, endpoint),
        other => panic!("expected Disconnected({endpoint}) and nothing before it, got {other:?}"),
    }
}

/// Plain `Tcp` hands out the stream as it arrives, in `Message`s no larger than the documented
/// `adapters::tcp::INPUT_BUFFER_SIZE`, bytes unchanged.
#[test]
fn tcp_messages_are_stream_chunks_of_at_most_input_buffer_size() {
    let _watchdog = AbortAfter::start(
        "tcp_messages_are_stream_chunks_of_at_most_input_buffer_size",
        TEST_LIMIT,
    );
    let mut node = Node::new();
    let (_, addr) = node.handler.network().listen(Transport::Tcp, "127.0.0.1:0").unwrap();
    let mut peer = guarded(TcpStream::connect(addr).unwrap());
    let endpoint = match node.next("Accepted") {
        StoredNetEvent::Accepted(ep, _) => ep,
        other => panic!("expected Accepted, got {other:?}"),
    };
    let sent = pattern(1 << 20, 9);
    peer.write_all(&sent).unwrap();
    let mut received = Vec::new();
    let mut largest = 0;
    while received.len() < sent.len() {
        match node.next("the stream's bytes") {
            StoredNetEvent::Message(ep, data) => {
                assert_eq!(ep, endpoint);
                largest = largest.max(data.len());
                received.extend_from_slice(&data);
            }
            other => panic!("got {other:?} after {} bytes", received.len()),
        }
    }
    assert!(received == sent, "the bytes differ");
    let limit = portnet::adapters::tcp::INPUT_BUFFER_SIZE;
    assert!(largest <= limit, "a Tcp Message of {largest} bytes, documented maximum {limit}");
}

/// Reads an HTTP request head (up to the empty line) from `stream`.
fn read_request_head(stream: &TcpStream) -> Vec<String> {
    let mut reader = BufReader::new(stream);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).expect("reading the request head");
        assert!(read > 0, "connection closed inside the request head: {lines:?}");
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return lines;
        }
        lines.push(line);
    }
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[test]
fn ws_connect_to_socket_address_requests_message_io_path() {
    let _watchdog =
        AbortAfter::start("ws_connect_to_socket_address_requests_message_io_path", TEST_LIMIT);
    let (listener, addr) = loopback_listener();
    let mut node = Node::new();
    let (endpoint, _) = node.handler.network().connect(Transport::Ws, addr).unwrap();
    assert_eq!(endpoint.addr(), addr);
    let (peer, _) = listener.accept().unwrap();
    let peer = guarded(peer);

    let head = read_request_head(&peer);
    assert_eq!(head.first().map(String::as_str), Some("GET /message-io-default HTTP/1.1"));
    assert_eq!(portnet::adapters::ws::DEFAULT_PATH, "/message-io-default");
    assert_eq!(header(&head, "Host"), Some(addr.to_string().as_str()), "{head:?}");
    assert!(
        header(&head, "Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{head:?}"
    );
    assert_eq!(header(&head, "Sec-WebSocket-Version"), Some("13"), "{head:?}");

    // No answer yet: the endpoint exists but cannot send.
    assert_eq!(node.handler.network().is_ready(endpoint.resource_id()), Some(false));
    assert_eq!(node.handler.network().send(endpoint, b"early"), SendStatus::ResourceNotAvailable);
    // The socket closes without an answer: the connect fails, and the endpoint is gone.
    drop(peer);
    node.expect_connected(endpoint, false);
    assert_eq!(node.handler.network().is_ready(endpoint.resource_id()), None);
    assert_eq!(node.handler.network().send(endpoint, b"late"), SendStatus::ResourceNotFound);
}

/// The path portnet requests is the one message-io requests: asked of message-io itself.
#[test]
fn ws_request_line_is_the_one_message_io_sends() {
    let _watchdog = AbortAfter::start("ws_request_line_is_the_one_message_io_sends", TEST_LIMIT);
    let (listener, addr) = loopback_listener();
    let (handler, listener_mio) = message_io::node::split::<()>();
    let (_task, _events) = listener_mio.enqueue();
    handler.network().connect(message_io::network::Transport::Ws, addr).unwrap();
    let (peer, _) = listener.accept().unwrap();
    let head = read_request_head(&guarded(peer));
    handler.stop();
    assert_eq!(head.first().map(String::as_str), Some("GET /message-io-default HTTP/1.1"));
    assert_eq!(header(&head, "Host"), Some(addr.to_string().as_str()), "{head:?}");
}

/// What `decode_size` answers: `(payload length, prefix length)` for a complete prefix.
type Decoded = Option<(usize, usize)>;

#[test]
fn encoding_golden_vectors() {
    let _watchdog = AbortAfter::start("encoding_golden_vectors", TEST_LIMIT);
    let cases: &[(usize, &[u8])] = &[
        (0, &[0x00]),
        (1, &[0x01]),
        (127, &[0x7f]),
        (128, &[0x80, 0x01]),
        (300, &[0xac, 0x02]),
        (16_383, &[0xff, 0x7f]),
        (16_384, &[0x80, 0x80, 0x01]),
        ((1 << 21) - 1, &[0xff, 0xff, 0x7f]),
        (1 << 21, &[0x80, 0x80, 0x80, 0x01]),
    ];
    for &(len, prefix) in cases {
        let message = vec![0; len];
        let mut buf = [0; MAX_ENCODED_SIZE];
        assert_eq!(encoding::encode_size(&message, &mut buf), prefix, "encode_size, length {len}");
        let mut theirs = [0; message_io::util::encoding::MAX_ENCODED_SIZE];
        assert_eq!(
            message_io::util::encoding::encode_size(&message, &mut theirs),
            prefix,
            "message-io's encode_size, length {len}"
        );
    }

    let mut decodes: Vec<(&[u8], Decoded)> =
        cases.iter().map(|&(len, prefix)| (prefix, Some((len, prefix.len())))).collect();
    decodes.extend::<[(&[u8], Decoded); 8]>([
        // Lengths too large to allocate a message for.
        (&[0xff, 0xff, 0xff, 0xff, 0x0f], Some((u32::MAX as usize, 5))),
        (&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20], Some((1 << 40, 6))),
        // Bytes after a complete prefix are not part of it.
        (&[0xac, 0x02, 0xff, 0xff], Some((300, 2))),
        (&[0x00, 0x80], Some((0, 1))),
        // Not complete yet.
        (&[], None),
        (&[0x80], None),
        (&[0xac], None),
        (&[0x80, 0x80], None),
    ]);
    if usize::BITS == 64 {
        let max: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        decodes.push((max, Some((usize::MAX, 10))));
    }
    for (bytes, want) in decodes {
        assert_eq!(encoding::decode_size(bytes), want, "decode_size({bytes:02x?})");
        assert_eq!(
            message_io::util::encoding::decode_size(bytes),
            want,
            "message-io's decode_size({bytes:02x?})"
        );
    }
    // A prefix longer than any u64 needs is rejected, not read past.
    assert_eq!(encoding::decode_size(&[0x80; 11]), None);
    assert_eq!(MAX_ENCODED_SIZE, message_io::util::encoding::MAX_ENCODED_SIZE);

    // The decoder: frames split anywhere come out whole; an oversized announcement is an error.
    let mut decoder = Decoder::default();
    let mut frames = Vec::new();
    for chunk in [&[0x00, 0x03, b'a'][..], b"b", &[b'c', 0xac], &[0x02]] {
        decoder.decode(chunk, |frame| frames.push(frame.to_vec())).unwrap();
    }
    assert_eq!(frames, vec![Vec::new(), b"abc".to_vec()]);
    assert_eq!(decoder.stored_size(), 2, "the 300-byte frame's prefix is held");
    let mut bounded = Decoder::with_max_frame_size(1024);
    let error = bounded.decode(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20], |_| panic!("no frame"));
    assert_eq!(error, Err(FrameError::TooLarge { announced: 1 << 40, max: 1024 }));
}
