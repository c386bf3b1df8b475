//! An async echo server and client on tokio, over the node's async face (`NodeStream`).
//!
//! ```text
//! cargo run --example async-echo                 # a server and a client in one process
//! cargo run --example async-echo server          # prints `listening on 127.0.0.1:PORT`, serves until killed
//! cargo run --example async-echo client ADDR     # sends to a server elsewhere
//! cargo run --example async-echo sim [SEED]       # the same two functions in a simulated world
//! ```
//!
//! Each node is one `Stream` of events on its own tokio task; sending stays synchronous. The
//! client awaits its connect (`NodeStream::connected`), sends its lines at once and, when a
//! send answers `QueueFull`, awaits `NodeHandler::writable` while it keeps reading its stream
//! (`tokio::select!`): the stream drives the node, so it must be polled for the queue to drain.
//!
//! `sim` runs the very same `serve` and `client` as nodes of a `portnet::sim::World`
//! (`World::node_async`), on virtual time, under a lossy link: no tokio there, the world polls
//! them.

use futures::StreamExt;
use portnet::network::RemoteAddr;
use portnet::network::{Endpoint, SendStatus, StoredNetEvent, Transport};
use portnet::node::{self, NodeHandler, NodeStream, Writable};
use std::io;
use std::sync::{Arc, Mutex};

const LINES: usize = 1000;

/// Echoes every message until the node stops.
async fn serve(mut stream: NodeStream<()>) {
    let handler = stream.handler().clone();
    while let Some(event) = stream.next().await {
        match event.network() {
            StoredNetEvent::Message(endpoint, data) => {
                // Anything but `Sent` means the client is going away: nothing to do.
                let _status = handler.network().send(endpoint, &data);
            }
            StoredNetEvent::Accepted(endpoint, _) => println!("server: {endpoint} connected"),
            StoredNetEvent::Disconnected(endpoint) => println!("server: {endpoint} left"),
            StoredNetEvent::Connected(..) => (),
        }
    }
}

/// Sends `LINES` lines to `server` and waits for every echo. Returns how many came back.
async fn client(mut stream: NodeStream<()>, server: RemoteAddr) -> io::Result<usize> {
    let handler = stream.handler().clone();
    let (endpoint, _) = handler.network().connect(Transport::FramedTcp, server)?;
    stream.connected(endpoint).await?;
    let (mut next_line, mut echoes) = (0, 0);
    // Set while the send queue is full: the rest of the lines wait for it.
    let mut writable = send_lines(&handler, endpoint, &mut next_line)?;
    loop {
        let event = match writable.as_mut() {
            // Both are cancellation safe: the branch that loses takes nothing. `biased`: the
            // branches in order, not in an order drawn from tokio's own random source, so a
            // simulated run depends on the world's seed alone.
            Some(room) => tokio::select! {
                biased;
                () = room => {
                    writable = send_lines(&handler, endpoint, &mut next_line)?;
                    continue;
                }
                event = stream.next() => event,
            },
            None => stream.next().await,
        };
        let Some(event) = event else { break };
        match event.network() {
            // `connected` left it in the stream.
            StoredNetEvent::Connected(..) => (),
            StoredNetEvent::Message(..) => {
                echoes += 1;
                if echoes == LINES {
                    handler.stop();
                }
            }
            StoredNetEvent::Disconnected(_) => handler.stop(),
            StoredNetEvent::Accepted(..) => (),
        }
    }
    Ok(echoes)
}

/// Sends the lines from `next_line` on until the queue is full (then returns what to await)
/// or every line is sent.
fn send_lines(
    handler: &NodeHandler<()>,
    endpoint: Endpoint,
    next_line: &mut usize,
) -> io::Result<Option<Writable>> {
    while *next_line < LINES {
        let text = format!("line {next_line} of the async echo example");
        match handler.network().send(endpoint, text.as_bytes()) {
            SendStatus::Sent => *next_line += 1,
            SendStatus::QueueFull => return Ok(Some(handler.writable(endpoint))),
            status => return Err(io::Error::other(format!("send: {status:?}"))),
        }
    }
    Ok(None)
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["server"] => {
            let (handler, listener) = node::split::<()>();
            let (_, addr) = handler.network().listen(Transport::FramedTcp, "127.0.0.1:0")?;
            println!("listening on {addr}");
            serve(listener.into_stream()?).await;
        }
        ["client", addr] => {
            let addr: std::net::SocketAddr = addr.parse().map_err(io::Error::other)?;
            let (_, listener) = node::split::<()>();
            let echoes = client(listener.into_stream()?, RemoteAddr::Socket(addr)).await?;
            println!("client: {echoes} of {LINES} lines came back");
        }
        [] => {
            let (server, server_listener) = node::split::<()>();
            let (_, addr) = server.network().listen(Transport::FramedTcp, "127.0.0.1:0")?;
            let serving = tokio::spawn(serve(server_listener.into_stream()?));
            let (_, listener) = node::split::<()>();
            let echoes =
                tokio::spawn(client(listener.into_stream()?, RemoteAddr::Socket(addr))).await??;
            println!("client: {echoes} of {LINES} lines came back");
            server.stop();
            serving.await?;
        }
        ["sim"] => simulate(7)?,
        ["sim", seed] => simulate(seed.parse().map_err(io::Error::other)?)?,
        _ => eprintln!("usage: async-echo [server | client ADDR | sim [SEED]]"),
    }
    Ok(())
}

/// `serve` and `client` as nodes of a simulated world, over a lossy, bandwidth-limited
/// link, in virtual time.
fn simulate(seed: u64) -> io::Result<()> {
    use portnet::sim::{Link, World};
    use std::time::Duration;
    let mut world = World::with_seed(seed);
    world.set_default_link(Link {
        latency: Duration::from_millis(10),
        loss: 0.05,
        bandwidth: Some(200_000),
        ..Link::default()
    });
    world.node_async("server", |handler: NodeHandler<()>, stream| async move {
        handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
        serve(stream).await
    });
    let result = Arc::new(Mutex::new(None));
    let out = result.clone();
    world.node_async("client", move |_handler: NodeHandler<()>, stream| {
        let out = out.clone();
        async move {
            let echoes = client(stream, RemoteAddr::Str("server:3000".into())).await;
            *out.lock().unwrap() = Some(echoes);
        }
    });
    let start = std::time::Instant::now();
    world.run_until(|world| world.is_finished("client"));
    let echoes = result.lock().unwrap().take().ok_or_else(|| io::Error::other("no result"))??;
    println!(
        "sim (seed {seed}): {echoes} of {LINES} lines came back in {:?} of virtual time \
         ({:?} of real time, {} trace lines)",
        world.now(),
        start.elapsed(),
        world.trace().len()
    );
    Ok(())
}
