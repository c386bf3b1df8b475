//! The first thing to run: one server node and a few client nodes, in one process, exchange
//! messages over every native transport and the process exits on its own.
//!
//! ```text
//! cargo run --example demo
//! RUST_LOG=debug cargo run --example demo    # also shows what portnet itself logs
//! ```
//!
//! The server node listens on `127.0.0.1` (port 0) with `Tcp`, `FramedTcp`, `Udp` and `Ws`
//! and echoes whatever it receives. For each transport in turn, a few client nodes (each on
//! its own thread) connect, send some greetings, wait for every echo and close the connection.
//! A watchdog timer bounds the whole run; the exit code is non-zero if anything went missing.

use portnet::network::{Endpoint, NetEvent, Transport};
use portnet::node::{self, NodeEvent};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

const CLIENTS: usize = 2;
const GREETINGS_PER_CLIENT: usize = 2;
/// The whole run must be over by then; on a healthy machine it takes a few milliseconds.
const WATCHDOG: Duration = Duration::from_secs(5);

enum Signal {
    Watchdog,
}

static START: OnceLock<Instant> = OnceLock::new();

fn log(who: &str, transport: Transport, text: std::fmt::Arguments<'_>) {
    let millis = START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3;
    let transport = transport.to_string();
    println!("{millis:7.1} ms  {who:<9} {transport:<10} {text}");
}

/// Appends `data` to `pending` and returns the complete `\n`-terminated lines. `Tcp` is a byte
/// stream, so a line may arrive in pieces or several lines at once; the other transports
/// deliver each message whole and this just strips the newline.
fn take_lines(pending: &mut Vec<u8>, data: &[u8]) -> Vec<String> {
    pending.extend_from_slice(data);
    let mut lines = Vec::new();
    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=end).collect();
        lines.push(String::from_utf8_lossy(&line[..end]).into_owned());
    }
    lines
}

/// What the server saw on one transport.
#[derive(Default)]
struct ServerTally {
    accepted: usize,
    greetings: usize,
    disconnected: usize,
}

impl ServerTally {
    fn is_complete(&self, transport: Transport) -> bool {
        let connections = if transport.is_connection_oriented() { CLIENTS } else { 0 };
        self.greetings == CLIENTS * GREETINGS_PER_CLIENT
            && self.accepted == connections
            && self.disconnected == connections
    }
}

fn main() {
    env_logger::init();
    START.get_or_init(Instant::now);
    let deadline = Instant::now() + WATCHDOG;
    println!(
        "portnet demo: one server node; per transport {CLIENTS} client nodes send \
         {GREETINGS_PER_CLIENT} greetings each and wait for the echoes\n"
    );

    let (handler, listener) = node::split::<Signal>();
    let mut server_addrs = Vec::new();
    for transport in Transport::ALL {
        match handler.network().listen(transport, "127.0.0.1:0") {
            Ok((_, addr)) => {
                log("server", transport, format_args!("listening on {addr}"));
                server_addrs.push((transport, addr));
            }
            Err(e) => {
                eprintln!("cannot listen with {transport}: {e}");
                std::process::exit(1);
            }
        }
    }
    handler.signals().send_with_timer(Signal::Watchdog, WATCHDOG);

    // The clients run transport by transport on another thread, so the log reads in order.
    let clients = thread::spawn(move || {
        let mut echoes = BTreeMap::new();
        for (transport, addr) in server_addrs {
            let threads: Vec<_> = (1..=CLIENTS)
                .map(|n| {
                    thread::spawn(move || client(format!("client-{n}"), transport, addr, deadline))
                })
                .collect();
            let received: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
            echoes.insert(transport, received);
        }
        echoes
    });

    // The server runs on this thread; its callback borrows these locals.
    let mut tallies: BTreeMap<Transport, ServerTally> =
        Transport::ALL.into_iter().map(|t| (t, ServerTally::default())).collect();
    let mut partial_lines: HashMap<Endpoint, Vec<u8>> = HashMap::new();
    let mut timed_out = false;
    listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Accepted(endpoint, _)) => {
            let transport = endpoint.transport();
            log("server", transport, format_args!("accepted {}", endpoint.addr()));
            tallies.entry(transport).or_default().accepted += 1;
        }
        NodeEvent::Network(NetEvent::Message(endpoint, data)) => {
            let transport = endpoint.transport();
            let pending = partial_lines.entry(endpoint).or_default();
            let lines = take_lines(pending, data);
            if pending.is_empty() {
                // Udp has no connections, so no Disconnected to clean up after.
                partial_lines.remove(&endpoint);
            }
            for line in lines {
                log("server", transport, format_args!("{} says {line:?}", endpoint.addr()));
                tallies.entry(transport).or_default().greetings += 1;
            }
            // Echo the bytes as they came: on Tcp that may be part of a line, which is fine.
            handler.network().send(endpoint, data);
            if tallies.iter().all(|(t, tally)| tally.is_complete(*t)) {
                handler.stop();
            }
        }
        NodeEvent::Network(NetEvent::Disconnected(endpoint)) => {
            let transport = endpoint.transport();
            log("server", transport, format_args!("{} disconnected", endpoint.addr()));
            partial_lines.remove(&endpoint);
            tallies.entry(transport).or_default().disconnected += 1;
            if tallies.iter().all(|(t, tally)| tally.is_complete(*t)) {
                handler.stop();
            }
        }
        NodeEvent::Network(NetEvent::Connected(..)) => (), // the server connects to no one
        NodeEvent::Signal(Signal::Watchdog) => {
            timed_out = true;
            handler.stop();
        }
    });

    // Every client gives up by the deadline too, so this join is bounded.
    let echoes = clients.join().unwrap_or_default();
    println!();
    let mut all_ok = !timed_out;
    for (transport, tally) in &tallies {
        let expected = CLIENTS * GREETINGS_PER_CLIENT;
        let echoed = echoes.get(transport).copied().unwrap_or(0);
        let ok = tally.is_complete(*transport) && echoed == expected;
        all_ok &= ok;
        let connections = if transport.is_connection_oriented() {
            format!(
                "{}/{CLIENTS} accepted, {}/{CLIENTS} closed",
                tally.accepted, tally.disconnected
            )
        } else {
            "connectionless".to_string()
        };
        let name = transport.to_string();
        println!(
            "{name:<10} {}/{expected} greetings received, {echoed}/{expected} echoes back, \
             {connections}: {}",
            tally.greetings,
            if ok { "ok" } else { "MISSING" }
        );
    }
    if timed_out {
        println!("the watchdog fired after {WATCHDOG:?}: something never arrived");
    }
    if !all_ok {
        std::process::exit(1);
    }
}

/// One client node: connects over `transport`, sends its greetings one at a time, each after
/// the echo of the previous one, then closes. Returns how many echoes came back.
fn client(name: String, transport: Transport, server: SocketAddr, deadline: Instant) -> usize {
    let (handler, listener) = node::split::<Signal>();
    let (server_endpoint, _) = match handler.network().connect(transport, server) {
        Ok(connection) => connection,
        Err(e) => {
            log(&name, transport, format_args!("cannot connect: {e}"));
            return 0;
        }
    };
    handler
        .signals()
        .send_with_timer(Signal::Watchdog, deadline.saturating_duration_since(Instant::now()));

    let greet = |number: usize| {
        let greeting = format!("hello #{number} from {name}\n");
        handler.network().send(server_endpoint, greeting.as_bytes());
    };
    let mut echoes = 0;
    let mut pending = Vec::new();
    listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Connected(_, true)) => greet(1),
        NodeEvent::Network(NetEvent::Connected(_, false)) => {
            log(&name, transport, format_args!("could not connect to {server}"));
            handler.stop();
        }
        NodeEvent::Network(NetEvent::Message(_, data)) => {
            echoes += take_lines(&mut pending, data).len();
            if echoes < GREETINGS_PER_CLIENT {
                greet(echoes + 1);
                return;
            }
            log(&name, transport, format_args!("got {echoes}/{GREETINGS_PER_CLIENT} echoes, done"));
            // Removing a connection closes it: the server sees Disconnected. Udp has no
            // connection to close, so the server sees nothing.
            handler.network().remove(server_endpoint.resource_id());
            handler.stop();
        }
        NodeEvent::Network(NetEvent::Disconnected(_)) => {
            log(&name, transport, format_args!("the server closed the connection"));
            handler.stop();
        }
        NodeEvent::Network(NetEvent::Accepted(..)) => (), // clients do not listen
        NodeEvent::Signal(Signal::Watchdog) => {
            log(&name, transport, format_args!("gave up waiting for echoes"));
            handler.stop();
        }
    });
    echoes
}
