use super::common::Lines;
use portnet::network::{NetEvent, RemoteAddr, SendStatus, Transport};
use portnet::node::{self, NodeEvent};
use std::time::Duration;

enum Signal {
    /// Sends the next ping; re-armed on a timer.
    Ping,
    /// The pongs did not all come back in time (Udp may lose them).
    GiveUp,
}

/// Connects to the server and pings it every `interval`: forever, or `limit` times and then
/// waits for the last pong. Returns whether it connected and every ping was answered.
pub fn run(
    transport: Transport,
    remote: RemoteAddr,
    limit: Option<u64>,
    interval: Duration,
) -> bool {
    let (handler, listener) = node::split();
    let (server, local) = match handler.network().connect(transport, remote.clone()) {
        Ok(connection) => connection,
        Err(e) => {
            eprintln!("Cannot connect to {remote} with {transport}: {e}");
            return false;
        }
    };
    if let Some(limit) = limit {
        let patience = interval * u32::try_from(limit).unwrap_or(u32::MAX) + Duration::from_secs(2);
        handler.signals().send_with_timer(Signal::GiveUp, patience);
    }

    let mut lines = Lines::default();
    let (mut sent, mut answered, mut refused) = (0, 0, false);
    listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Connected(_, true)) => {
            println!("Connected to {} with {transport} from port {}", server.addr(), local.port());
            handler.signals().send(Signal::Ping);
        }
        NodeEvent::Network(NetEvent::Connected(_, false)) => {
            println!("Cannot connect to {remote} with {transport}");
            refused = true;
            handler.stop();
        }
        NodeEvent::Network(NetEvent::Message(_, data)) => {
            let Ok(received) = lines.feed(server, data) else {
                println!("The server sent something other than pongs");
                return handler.stop();
            };
            for line in received {
                match line.strip_prefix("pong ").and_then(|n| n.parse::<u64>().ok()) {
                    Some(count) => {
                        answered += 1;
                        println!("Pong from the server (ping #{count})");
                    }
                    None => println!("The server sent {line:?}: ignored"),
                }
            }
            if limit.is_some_and(|limit| answered >= limit) {
                // Closing lets the server see the client leave (Udp has nothing to close).
                handler.network().remove(server.resource_id());
                handler.stop();
            }
        }
        NodeEvent::Network(NetEvent::Disconnected(_)) => {
            println!("The server disconnected");
            handler.stop();
        }
        NodeEvent::Network(NetEvent::Accepted(..)) => (), // the client does not listen
        NodeEvent::Signal(Signal::Ping) => {
            match handler.network().send(server, b"ping\n") {
                SendStatus::Sent => sent += 1,
                status => println!("Ping not sent: {status:?}"),
            }
            if limit.is_none_or(|limit| sent < limit) {
                handler.signals().send_with_timer(Signal::Ping, interval);
            }
        }
        NodeEvent::Signal(Signal::GiveUp) => {
            println!("Gave up: {answered} of {sent} pings answered");
            handler.stop();
        }
    });
    !refused && limit.is_none_or(|limit| answered >= limit)
}
