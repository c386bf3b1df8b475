//! Receiving allocates nothing per message on `Tcp`, `FramedTcp` and `Udp`.
//!
//! A portnet node receives from a plain std socket on another thread. After a warm-up, the
//! node's loop runs on this thread under `allocation_counter::measure`, which counts this
//! thread's allocations: they must stay below a tiny constant, whatever the number of
//! messages. Senders pace themselves by what the node has received (atomics, no sleeps).

mod util;

use portnet::network::{NetEvent, Transport};
use portnet::node::{self, NodeEvent};
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;
use util::AbortAfter;

/// Messages received before the window opens: buffers reach their steady size.
const WARMUP: usize = 2_000;
/// Messages received inside the window.
const MESSAGES: usize = 10_000;
/// Bytes per message.
const SIZE: usize = 100;
/// Allocations tolerated in the window: a small constant, where allocating per message would
/// mean at least 10 000. Today's count is 0.
const TOLERATED: u64 = 4;
/// `Udp` datagrams allowed in flight, far fewer than the socket's receive buffer holds, so
/// none is dropped on loopback.
const UDP_WINDOW: usize = 32;

/// What the receiving node measured in the window.
#[derive(Debug)]
struct Window {
    allocations: u64,
    /// `Message` events delivered.
    events: usize,
    bytes: usize,
}

/// Runs a node listening on `transport`, lets `send` feed it `WARMUP + MESSAGES` messages of
/// `SIZE` bytes from a std socket on another thread, and measures the node's loop, on this
/// thread, while it receives the last `MESSAGES` of them.
///
/// `received` counts messages as the node sees them (in whole `SIZE` units, since a `Tcp`
/// stream may be cut anywhere); `send` paces itself by it.
fn measure(
    transport: Transport,
    send: impl FnOnce(SocketAddr, &AtomicUsize) + Send + 'static,
) -> Window {
    let (handler, mut listener) = node::split::<()>();
    let (_, addr) = handler.network().listen(transport, "127.0.0.1:0").unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let sender = thread::spawn(move || send(addr, &counter));

    let (mut bytes, mut events) = (0usize, 0usize);
    let mut pump = |bytes: &mut usize, events: &mut usize| {
        listener.poll_events(Duration::from_millis(100), |event| {
            if let NodeEvent::Network(NetEvent::Message(_, data)) = event {
                *bytes += data.len();
                *events += 1;
                received.store(*bytes / SIZE, Ordering::Release);
            }
        });
    };
    while bytes / SIZE < WARMUP {
        pump(&mut bytes, &mut events);
    }
    let (bytes_at_start, events_at_start) = (bytes, events);
    let info = allocation_counter::measure(|| {
        while bytes / SIZE < WARMUP + MESSAGES {
            pump(&mut bytes, &mut events);
        }
    });
    sender.join().unwrap();
    Window {
        allocations: info.count_total,
        events: events - events_at_start,
        bytes: bytes - bytes_at_start,
    }
}

fn message(i: usize) -> [u8; SIZE] {
    [i as u8; SIZE]
}

/// Waits until the node has received all but `window` of the first `sent` messages.
fn pace(sent: usize, received: &AtomicUsize, window: usize) {
    while sent >= received.load(Ordering::Acquire) + window {
        thread::yield_now();
    }
}

fn check(transport: Transport, window: Window) {
    println!(
        "{transport}: {} allocations while receiving {} bytes in {} message events",
        window.allocations, window.bytes, window.events
    );
    // The window opens between two turns of the loop, so a few messages may fall before it.
    let least = MESSAGES - UDP_WINDOW;
    assert!(window.bytes >= least * SIZE, "{transport}: {window:?}");
    assert!(window.events >= least, "{transport}: fewer events than messages: {window:?}");
    assert!(
        window.allocations <= TOLERATED,
        "{transport}: receiving {MESSAGES} messages allocated {} times (tolerated: \
         {TOLERATED}): something allocates per message",
        window.allocations
    );
}

#[test]
fn receiving_allocates_nothing_per_message() {
    let _watchdog =
        AbortAfter::start("receiving_allocates_nothing_per_message", Duration::from_secs(60));

    // Tcp: one 100-byte write at a time, each received before the next is written, so every
    // message is its own read and its own event.
    let window = measure(Transport::Tcp, |addr, received| {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        for i in 0..WARMUP + MESSAGES {
            pace(i, received, 1);
            stream.write_all(&message(i)).unwrap();
        }
    });
    check(Transport::Tcp, window);

    // FramedTcp: LEB128 header (100 < 128: one byte) + payload, each frame written in two
    // parts, so the node often reads half a frame and reassembles it in its decoder.
    let window = measure(Transport::FramedTcp, |addr, received| {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut frame = [0; SIZE + 1];
        frame[0] = SIZE as u8;
        for i in 0..WARMUP + MESSAGES {
            pace(i, received, 1);
            frame[1..].copy_from_slice(&message(i));
            let (first, second) = frame.split_at(1 + SIZE / 2);
            stream.write_all(first).unwrap();
            stream.write_all(second).unwrap();
        }
    });
    check(Transport::FramedTcp, window);

    // Udp: datagrams, a few in flight.
    let window = measure(Transport::Udp, |addr, received| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(addr).unwrap();
        for i in 0..WARMUP + MESSAGES {
            pace(i, received, UDP_WINDOW);
            socket.send(&message(i)).unwrap();
        }
    });
    check(Transport::Udp, window);
}
