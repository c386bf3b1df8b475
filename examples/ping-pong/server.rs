use super::common::Lines;
use portnet::network::{Endpoint, NetEvent, Transport};
use portnet::node::{self, NodeHandler, NodeListener};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Listens on `addr` and answers pings until the process ends.
pub fn run(transport: Transport, addr: SocketAddr) {
    let (handler, listener) = node::split();
    match handler.network().listen(transport, addr) {
        Ok((_, local)) => println!("Server listening on {local} with {transport}"),
        Err(e) => return eprintln!("Cannot listen on {addr} with {transport}: {e}"),
    }
    serve(handler, listener);
}

/// Answers every `ping` with `pong <n>`, `n` counting that client's pings, until the node is
/// stopped. The node must already listen.
pub fn serve(handler: NodeHandler<()>, listener: NodeListener<()>) {
    // Udp has no connections: its clients are told apart by address and never leave.
    let mut pings: HashMap<Endpoint, u64> = HashMap::new();
    let mut lines = Lines::default();
    listener.for_each(move |event| match event.network() {
        NetEvent::Connected(_, _) => (), // the server connects to no one
        NetEvent::Accepted(endpoint, _) => {
            pings.insert(endpoint, 0);
            println!("Client {} connected (clients: {})", endpoint.addr(), pings.len());
        }
        NetEvent::Message(endpoint, data) => {
            let Ok(received) = lines.feed(endpoint, data) else {
                println!("Client {} sent something other than pings: dropped", endpoint.addr());
                pings.remove(&endpoint);
                handler.network().remove(endpoint.resource_id());
                return;
            };
            for line in received {
                if line != "ping" {
                    println!("Client {} sent {line:?}: ignored", endpoint.addr());
                    continue;
                }
                let count = pings.entry(endpoint).or_insert(0);
                *count += 1;
                println!("Ping #{count} from {}", endpoint.addr());
                handler.network().send(endpoint, format!("pong {count}\n").as_bytes());
            }
        }
        NetEvent::Disconnected(endpoint) => {
            pings.remove(&endpoint);
            lines.forget(endpoint);
            println!("Client {} disconnected (clients: {})", endpoint.addr(), pings.len());
        }
    });
}
