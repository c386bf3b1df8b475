use super::protocol::Message;
use portnet::network::{Endpoint, NetEvent, Transport};
use portnet::node::{NodeHandler, NodeListener};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Config {
    pub listen_addr: SocketAddr,
    /// Where received files go, as `<name>.recv`.
    pub dir: PathBuf,
    /// Stop once this many files arrived and their senders left; `None` runs until stopped.
    pub files_to_receive: Option<usize>,
    /// Extra time spent on each chunk, standing in for a slow disk so that a local run shows
    /// the sender being paced. Blocking here is what a synchronous write to a slow disk does.
    pub slow_disk: Option<Duration>,
}

struct Transfer {
    file: BufWriter<File>,
    path: PathBuf,
    size: u64,
    received: u64,
    reported_percent: u64,
    started: Instant,
}

/// Receives files over `FramedTcp`, several senders at a time. `on_listening` gets the bound
/// address (useful with port 0) before events are handled.
pub fn receive_files(
    handler: NodeHandler<()>,
    listener: NodeListener<()>,
    config: Config,
    on_listening: impl FnOnce(SocketAddr),
) -> io::Result<()> {
    let (_, local) = handler.network().listen(Transport::FramedTcp, config.listen_addr)?;
    println!("Receiving files on {local} into {}", config.dir.display());
    on_listening(local);

    let mut transfers: HashMap<Endpoint, Transfer> = HashMap::new();
    let mut completed = 0;
    // Drops a sender that broke the protocol or whose file cannot be written.
    let drop_sender = |endpoint: Endpoint, why: String| {
        println!("{}: {why}; closing the connection", endpoint.addr());
        handler.network().remove(endpoint.resource_id());
    };
    listener.for_each(|event| match event.network() {
        NetEvent::Connected(..) => (), // the receiver connects to no one
        NetEvent::Accepted(endpoint, _) => println!("{} connected", endpoint.addr()),
        NetEvent::Message(endpoint, data) => match Message::decode(data) {
            Some(Message::Offer(size, name)) if !transfers.contains_key(&endpoint) => {
                match start_transfer(&config.dir, name, size) {
                    Ok(transfer) => {
                        println!(
                            "Accepting {name} ({size} bytes) into {}",
                            transfer.path.display()
                        );
                        handler.network().send(endpoint, &Message::Answer(true).encode());
                        transfers.insert(endpoint, transfer);
                        // An empty file is complete already.
                        if size == 0 && finish(&handler, endpoint, &mut transfers, &drop_sender) {
                            completed += 1;
                        }
                    }
                    Err(e) => {
                        println!("Refusing {name:?}: {e}");
                        handler.network().send(endpoint, &Message::Answer(false).encode());
                    }
                }
            }
            Some(Message::Chunk(bytes)) => {
                let Some(transfer) = transfers.get_mut(&endpoint) else {
                    return drop_sender(endpoint, "a chunk before any offer".into());
                };
                let received = transfer.received.saturating_add(bytes.len() as u64);
                if received > transfer.size {
                    transfers.remove(&endpoint);
                    return drop_sender(endpoint, "more bytes than offered".into());
                }
                if let Some(delay) = config.slow_disk {
                    std::thread::sleep(delay);
                }
                if let Err(e) = transfer.file.write_all(bytes) {
                    transfers.remove(&endpoint);
                    return drop_sender(endpoint, format!("cannot write: {e}"));
                }
                transfer.received = received;
                // In u128: a peer may offer any size, up to u64::MAX.
                let percent = (u128::from(received) * 100 / u128::from(transfer.size)) as u64;
                if percent >= transfer.reported_percent + 10 {
                    transfer.reported_percent = percent - percent % 10;
                    println!(
                        "Received {:3}% ({} bytes)",
                        transfer.reported_percent, transfer.received
                    );
                }
                if transfer.received == transfer.size
                    && finish(&handler, endpoint, &mut transfers, &drop_sender)
                {
                    completed += 1;
                }
            }
            _ => drop_sender(endpoint, "unexpected message".into()),
        },
        NetEvent::Disconnected(endpoint) => {
            if let Some(transfer) = transfers.remove(&endpoint) {
                println!(
                    "{} left after {} of {} bytes; partial file kept at {}",
                    endpoint.addr(),
                    transfer.received,
                    transfer.size,
                    transfer.path.display()
                );
            } else {
                println!("{} disconnected", endpoint.addr());
                if config.files_to_receive.is_some_and(|n| completed >= n) {
                    handler.stop();
                }
            }
        }
    });
    Ok(())
}

/// Creates `<dir>/<name>.recv`. Only the last component of the offered name is used, so a
/// sender cannot write outside `dir`.
fn start_transfer(dir: &Path, name: &str, size: u64) -> io::Result<Transfer> {
    let base = Path::new(name)
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut file_name = base.to_os_string();
    file_name.push(".recv");
    let path = dir.join(file_name);
    let file = BufWriter::new(File::create(&path)?);
    Ok(Transfer { file, path, size, received: 0, reported_percent: 0, started: Instant::now() })
}

/// Flushes a complete file and confirms it to the sender. Returns whether it was saved.
fn finish(
    handler: &NodeHandler<()>,
    endpoint: Endpoint,
    transfers: &mut HashMap<Endpoint, Transfer>,
    drop_sender: &impl Fn(Endpoint, String),
) -> bool {
    let Some(mut transfer) = transfers.remove(&endpoint) else { return false };
    if let Err(e) = transfer.file.flush() {
        drop_sender(endpoint, format!("cannot write: {e}"));
        return false;
    }
    let seconds = transfer.started.elapsed().as_secs_f64();
    println!(
        "Saved {} ({} bytes, {seconds:.2} s, {:.1} MB/s)",
        transfer.path.display(),
        transfer.size,
        transfer.size as f64 / seconds.max(1e-9) / 1e6
    );
    handler.network().send(endpoint, &Message::Received(transfer.size).encode());
    true
}
