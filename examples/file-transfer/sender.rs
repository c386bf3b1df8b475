use super::protocol::{self, Message};
use portnet::adapters::framed_tcp::FramedTcpConnectConfig;
use portnet::network::{NetEvent, SendStatus, TransportConnect};
use portnet::node::{NodeEvent, NodeHandler, NodeListener};
use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

/// File bytes per `Chunk` message.
const CHUNK_SIZE: usize = 64 * 1024;

/// How much the connection may queue before `send` answers `QueueFull`. Small, so the
/// sender runs at the receiver's pace with little memory; portnet's default is 16 MiB.
const SEND_QUEUE_LIMIT: usize = 1024 * 1024;

/// Chunks sent per event-loop turn, so network events are not held up behind a long burst.
const CHUNKS_PER_TURN: usize = 64;

pub enum Signal {
    /// Send the next chunks: when the receiver accepts, then whenever the send queue has
    /// room again after being full.
    SendChunk,
    /// Abandon the transfer (a caller may arm this on a timer).
    GiveUp,
}

/// Offers the file at `path` to the receiver at `receiver` over `FramedTcp` and, if it
/// accepts, sends it paced by the connection's send queue. Returns the bytes sent once the
/// receiver confirms it has them all.
pub fn send_file(
    handler: NodeHandler<Signal>,
    listener: NodeListener<Signal>,
    path: &Path,
    receiver: SocketAddr,
) -> Result<u64, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let size = file.metadata().map_err(|e| format!("cannot stat {}: {e}", path.display()))?.len();
    let name = match path.file_name().and_then(|n| n.to_str()) {
        Some(name) => name.to_string(),
        None => return Err(format!("{} has no usable file name", path.display())),
    };
    let config = FramedTcpConnectConfig::default().with_send_queue_limit(SEND_QUEUE_LIMIT);
    let (endpoint, _) = handler
        .network()
        .connect_with(TransportConnect::FramedTcp(config), receiver)
        .map_err(|e| format!("cannot connect to {receiver}: {e}"))?;

    // The chunk being sent, as a whole message: tag byte then file bytes. It stays here when
    // the queue is full, to be sent first on the next `SendChunk`.
    let mut chunk = Vec::with_capacity(1 + CHUNK_SIZE);
    let mut chunk_unsent = false;
    let mut sent: u64 = 0;
    let mut queue_full_waits = 0;
    let mut reported_percent = 0;
    let started = Instant::now();
    let mut outcome = Err("stopped before the transfer finished".to_string());
    let fail = |reason: String, outcome: &mut Result<u64, String>| {
        *outcome = Err(reason);
        handler.stop();
    };

    listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Connected(_, true)) => {
            println!("Offering {name} ({size} bytes) to {receiver}");
            handler.network().send(endpoint, &Message::Offer(size, &name).encode());
        }
        NodeEvent::Network(NetEvent::Connected(_, false)) => {
            fail(format!("cannot connect to {receiver}"), &mut outcome)
        }
        NodeEvent::Network(NetEvent::Message(_, data)) => match Message::decode(data) {
            Some(Message::Answer(true)) => handler.signals().send(Signal::SendChunk),
            Some(Message::Answer(false)) => {
                fail("the receiver refused the file".into(), &mut outcome)
            }
            Some(Message::Received(total)) if total == size => {
                let seconds = started.elapsed().as_secs_f64();
                println!(
                    "The receiver has all {size} bytes ({seconds:.2} s, {:.1} MB/s); \
                     the send queue was full {queue_full_waits} times",
                    size as f64 / seconds / 1e6,
                );
                outcome = Ok(size);
                handler.network().remove(endpoint.resource_id());
                handler.stop();
            }
            _ => fail("unexpected message from the receiver".into(), &mut outcome),
        },
        NodeEvent::Network(NetEvent::Disconnected(_)) => {
            fail(format!("the receiver closed the connection after {sent} bytes"), &mut outcome)
        }
        NodeEvent::Network(NetEvent::Accepted(..)) => (), // the sender does not listen
        NodeEvent::Signal(Signal::SendChunk) => {
            for _ in 0..CHUNKS_PER_TURN {
                if !chunk_unsent {
                    if sent == size {
                        // Everything is sent or queued; the receiver's `Received` ends it.
                        return println!("All sent; waiting for the receiver to confirm");
                    }
                    // Never more than offered, even if the file grows meanwhile.
                    let len = CHUNK_SIZE.min(usize::try_from(size - sent).unwrap_or(CHUNK_SIZE));
                    chunk.clear();
                    chunk.push(protocol::CHUNK);
                    chunk.resize(1 + len, 0);
                    let read = match file.read(&mut chunk[1..]) {
                        Ok(0) => return fail(format!("{name} shrank while sending"), &mut outcome),
                        Ok(read) => read,
                        Err(e) => return fail(format!("cannot read {name}: {e}"), &mut outcome),
                    };
                    chunk.truncate(1 + read);
                    chunk_unsent = true;
                }
                match handler.network().send(endpoint, &chunk) {
                    SendStatus::Sent => {
                        chunk_unsent = false;
                        sent += (chunk.len() - 1) as u64;
                        let percent = (sent * 100).checked_div(size).unwrap_or(100);
                        if percent >= reported_percent + 10 {
                            reported_percent = percent - percent % 10;
                            println!("Sent {reported_percent:3}% ({sent} bytes)");
                        }
                    }
                    SendStatus::QueueFull => {
                        // Nothing was queued: retry this chunk once there is room. No timer.
                        queue_full_waits += 1;
                        return handler.signal_when_writable(endpoint, Signal::SendChunk);
                    }
                    status => return fail(format!("send failed: {status:?}"), &mut outcome),
                }
            }
            // Let the loop handle network events, then carry on.
            handler.signals().send(Signal::SendChunk);
        }
        NodeEvent::Signal(Signal::GiveUp) => fail("gave up: too slow".into(), &mut outcome),
    });
    outcome
}
