//! Bulk throughput of each transport over loopback, one sender node and one receiver node.
//!
//! ```text
//! cargo run --release --example throughput
//! ```
//!
//! The sender sends until `send` answers `SendStatus::QueueFull`, then waits for
//! `signal_when_writable`: it runs at the receiver's pace, never busy-waits and never queues
//! more than the send queue's limit. Each transport sends up to `TARGET_BYTES` or for
//! `MAX_SENDING_TIME`, whichever comes first, so the whole run takes a few seconds even in a
//! debug build. `benches/` compares these numbers with plain std sockets.

use portnet::adapters::udp;
use portnet::network::{NetEvent, SendStatus, Transport};
use portnet::node::{self, NodeEvent, NodeHandler};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const TARGET_BYTES: u64 = 1 << 30;
const MAX_SENDING_TIME: Duration = Duration::from_millis(1500);
/// Ends a run that stalls; a healthy one finishes within `MAX_SENDING_TIME` and a bit.
const WATCHDOG: Duration = Duration::from_secs(5);
const STREAM_MESSAGE_LEN: usize = 64 * 1024;
/// Messages sent per event-loop turn, so the sender's own network events are not held up.
const MESSAGES_PER_TURN: usize = 256;
/// How often the receiver checks whether the sender has finished.
const TICK: Duration = Duration::from_millis(10);

fn message_len(transport: Transport) -> usize {
    match transport {
        Transport::Udp => udp::MAX_LOCAL_PAYLOAD_LEN,
        _ => STREAM_MESSAGE_LEN,
    }
}

/// What the sender tells the receiver. Both nodes are in this process, so plain atomics do.
#[derive(Default)]
struct SenderProgress {
    sent_bytes: AtomicU64,
    done: AtomicBool,
}

enum SenderSignal {
    Send,
}

enum ReceiverSignal {
    Tick,
    Watchdog,
}

struct Measurement {
    sent: u64,
    received: u64,
    elapsed: Duration,
    /// How often the sender found the send queue full and waited for room.
    queue_full_waits: u64,
}

fn main() -> ExitCode {
    env_logger::init();
    println!(
        "Loopback throughput: up to {} MiB per transport or {MAX_SENDING_TIME:?} of sending",
        TARGET_BYTES >> 20
    );
    if cfg!(debug_assertions) {
        println!("(a debug build: run with --release for meaningful numbers)");
    }
    let mut all_ok = true;
    for transport in Transport::ALL {
        let name = transport.to_string();
        let len = message_len(transport);
        match measure(transport) {
            Ok(m) if m.received > 0 => {
                let seconds = m.elapsed.as_secs_f64();
                let rate = m.received as f64 / seconds / 1e6;
                let lost = 100.0 * (m.sent - m.received.min(m.sent)) as f64 / m.sent as f64;
                let loss = if transport == Transport::Udp {
                    format!(", {lost:.1}% of the datagrams lost")
                } else {
                    String::new()
                };
                println!(
                    "{name:<10} {len:>5}-byte messages: {:>7.1} MB in {seconds:.2} s = \
                     {rate:>7.1} MB/s (queue full {} times){loss}",
                    m.received as f64 / 1e6,
                    m.queue_full_waits,
                );
                // Streams are reliable: anything missing is a failure.
                if transport.is_connection_oriented() && m.received != m.sent {
                    println!("{name:<10} received {} of {} bytes", m.received, m.sent);
                    all_ok = false;
                }
            }
            Ok(_) => {
                println!("{name:<10} nothing arrived");
                all_ok = false;
            }
            Err(e) => {
                println!("{name:<10} failed: {e}");
                all_ok = false;
            }
        }
    }
    if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Runs a receiver node on a thread and a sender node on this one.
fn measure(transport: Transport) -> Result<Measurement, String> {
    let (receiver, receiver_listener) = node::split::<ReceiverSignal>();
    let (_, addr) = receiver
        .network()
        .listen(transport, "127.0.0.1:0")
        .map_err(|e| format!("cannot listen: {e}"))?;
    let (sender, sender_listener) = node::split::<SenderSignal>();
    let (to_receiver, _) =
        sender.network().connect(transport, addr).map_err(|e| format!("cannot connect: {e}"))?;

    let progress = Arc::new(SenderProgress::default());
    let receiving = {
        let progress = progress.clone();
        let sender = sender.clone();
        thread::spawn(move || receive(receiver, receiver_listener, transport, &progress, &sender))
    };

    let message = vec![0xA5; message_len(transport)];
    let mut started = None;
    let mut failure = None;
    let mut queue_full_waits = 0;
    sender_listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Connected(_, true)) => {
            started = Some(Instant::now());
            sender.signals().send(SenderSignal::Send);
        }
        NodeEvent::Network(NetEvent::Connected(_, false)) => {
            failure = Some("the connection was refused".to_string());
            progress.done.store(true, Ordering::Release);
        }
        NodeEvent::Network(NetEvent::Disconnected(_)) => {
            failure = Some("the receiver closed the connection".to_string());
            progress.done.store(true, Ordering::Release);
        }
        NodeEvent::Network(_) => (),
        NodeEvent::Signal(SenderSignal::Send) => {
            let Some(started) = started else { return };
            for _ in 0..MESSAGES_PER_TURN {
                let sent = progress.sent_bytes.load(Ordering::Relaxed);
                if sent >= TARGET_BYTES || started.elapsed() >= MAX_SENDING_TIME {
                    // Keep running: queued bytes are written by this node's event loop. The
                    // receiver stops this node once it has them.
                    progress.done.store(true, Ordering::Release);
                    return;
                }
                match sender.network().send(to_receiver, &message) {
                    SendStatus::Sent => {
                        progress.sent_bytes.fetch_add(message.len() as u64, Ordering::Release);
                    }
                    SendStatus::QueueFull => {
                        queue_full_waits += 1;
                        return sender.signal_when_writable(to_receiver, SenderSignal::Send);
                    }
                    status => {
                        failure = Some(format!("send failed: {status:?}"));
                        progress.done.store(true, Ordering::Release);
                        return;
                    }
                }
            }
            sender.signals().send(SenderSignal::Send);
        }
    });

    let (received, last_arrival) =
        receiving.join().map_err(|_| "the receiver panicked".to_string())??;
    if let Some(failure) = failure {
        return Err(failure);
    }
    let started = started.ok_or("never connected")?;
    let elapsed = last_arrival.map_or(Duration::ZERO, |last| last.duration_since(started));
    let sent = progress.sent_bytes.load(Ordering::Acquire);
    Ok(Measurement { sent, received, elapsed, queue_full_waits })
}

/// Counts bytes until the sender is done and everything it sent arrived (for `Udp`: until
/// nothing more arrives), then stops both nodes. Returns the bytes received and when the last
/// ones arrived.
fn receive(
    receiver: NodeHandler<ReceiverSignal>,
    listener: node::NodeListener<ReceiverSignal>,
    transport: Transport,
    progress: &SenderProgress,
    sender: &NodeHandler<SenderSignal>,
) -> Result<(u64, Option<Instant>), String> {
    receiver.signals().send_with_timer(ReceiverSignal::Tick, TICK);
    receiver.signals().send_with_timer(ReceiverSignal::Watchdog, WATCHDOG);
    let mut received: u64 = 0;
    let mut received_at_last_tick = 0;
    let mut last_arrival = None;
    let mut timed_out = false;
    let finish = |timed_out: bool| {
        sender.stop();
        receiver.stop();
        timed_out
    };
    listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Message(_, data)) => {
            received += data.len() as u64;
            last_arrival = Some(Instant::now());
            if progress.done.load(Ordering::Acquire)
                && received >= progress.sent_bytes.load(Ordering::Acquire)
            {
                finish(false);
            }
        }
        NodeEvent::Network(_) => (),
        NodeEvent::Signal(ReceiverSignal::Tick) => {
            if progress.done.load(Ordering::Acquire) {
                let everything = received >= progress.sent_bytes.load(Ordering::Acquire);
                // Udp may lose datagrams: it is over when they stop coming.
                let udp_quiet = transport == Transport::Udp && received == received_at_last_tick;
                if everything || udp_quiet {
                    finish(false);
                    return;
                }
            }
            received_at_last_tick = received;
            receiver.signals().send_with_timer(ReceiverSignal::Tick, TICK);
        }
        NodeEvent::Signal(ReceiverSignal::Watchdog) => timed_out = finish(true),
    });
    if timed_out {
        return Err(format!("stalled: {received} bytes received after {WATCHDOG:?}"));
    }
    Ok((received, last_arrival))
}
