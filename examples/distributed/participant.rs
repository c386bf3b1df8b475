use super::protocol::Message;
use portnet::network::{Endpoint, NetEvent, ResourceId, Transport};
use portnet::node::{NodeEvent, NodeHandler, NodeListener};
use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

pub enum Signal {
    /// Unregisters (by closing the connection to the discovery server) and stops.
    Leave,
}

pub struct Config {
    pub name: String,
    pub discovery_addr: SocketAddr,
    /// Where to receive greetings; an unspecified IP lets the discovery server fill in the
    /// address it sees this participant connect from.
    pub udp_addr: SocketAddr,
    /// Leave after this long; `None` stays until the discovery server goes away.
    pub leave_after: Option<Duration>,
}

/// Runs a participant on the node until it leaves or the discovery server goes away:
/// registers over `FramedTcp`, then greets every participant it learns of directly over
/// `Udp`. Returns the names of the participants that greeted it.
pub fn participant(
    handler: NodeHandler<Signal>,
    listener: NodeListener<Signal>,
    config: Config,
) -> io::Result<BTreeSet<String>> {
    let Config { name, discovery_addr, udp_addr, leave_after } = config;
    let (greetings_id, udp_addr) = handler.network().listen(Transport::Udp, udp_addr)?;
    let (discovery, _) = handler.network().connect(Transport::FramedTcp, discovery_addr)?;
    if let Some(delay) = leave_after {
        handler.signals().send_with_timer(Signal::Leave, delay);
    }

    let greet = |to: &str, addr: SocketAddr, text: &str| {
        let greeting = Message::Greeting(name.clone(), format!("hi {to}, {text}"));
        // A Udp listener sends to any address, without a connection.
        let endpoint = Endpoint::from_listener(greetings_id, addr);
        handler.network().send(endpoint, &greeting.encode());
    };
    let mut greeted_by = BTreeSet::new();
    listener.for_each(|event| match event {
        NodeEvent::Network(NetEvent::Connected(_, true)) => {
            handler.network().send(discovery, &Message::Register(name.clone(), udp_addr).encode());
        }
        NodeEvent::Network(NetEvent::Connected(_, false)) => {
            println!("[{name}] cannot reach the discovery server at {discovery_addr}");
            handler.stop();
        }
        NodeEvent::Network(NetEvent::Message(from, data)) => match Message::decode(data) {
            Some(message) if from == discovery => {
                on_discovery_message(&name, message, &greet, &handler)
            }
            Some(Message::Greeting(sender, text)) if from.resource_id() == greetings_id => {
                println!("[{name}] {sender} says: {text}");
                greeted_by.insert(sender);
            }
            _ => println!("[{name}] unexpected message from {}: ignored", from.addr()),
        },
        NodeEvent::Network(NetEvent::Disconnected(_)) => {
            println!("[{name}] the discovery server went away");
            handler.stop();
        }
        NodeEvent::Network(NetEvent::Accepted(..)) => (), // Udp listeners accept nothing
        NodeEvent::Signal(Signal::Leave) => {
            println!("[{name}] leaving");
            leave(&handler, discovery.resource_id());
        }
    });
    Ok(greeted_by)
}

fn on_discovery_message(
    name: &str,
    message: Message,
    greet: &impl Fn(&str, SocketAddr, &str),
    handler: &NodeHandler<Signal>,
) {
    match message {
        Message::List(others) => {
            println!("[{name}] registered; {} other participant(s)", others.len());
            for (other, addr) in others {
                greet(&other, addr, "I found you in the list");
            }
        }
        Message::Added(other, addr) => {
            println!("[{name}] {other} joined");
            greet(&other, addr, "welcome!");
        }
        Message::Removed(other) => println!("[{name}] {other} left"),
        Message::Rejected(reason) => {
            println!("[{name}] registration refused: {reason}");
            handler.stop();
        }
        Message::Register(..) | Message::Greeting(..) => {
            println!("[{name}] unexpected message from the discovery server: ignored")
        }
    }
}

/// Closing the connection is the unregistration: the server sees it close.
fn leave(handler: &NodeHandler<Signal>, discovery: ResourceId) {
    handler.network().remove(discovery);
    handler.stop();
}
