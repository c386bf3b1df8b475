use super::protocol::Message;
use portnet::network::{Endpoint, NetEvent, Transport};
use portnet::node::{NodeHandler, NodeListener};
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;

struct Registered {
    /// Where the participant receives greetings (Udp).
    udp_addr: SocketAddr,
    /// Its connection to this server (FramedTcp).
    endpoint: Endpoint,
}

/// Runs a discovery server on the node until it is stopped: participants register over
/// `FramedTcp` at `listen_addr`; each newcomer gets the list of the others, the others hear of
/// the newcomer, and everyone hears when a participant's connection closes.
///
/// `on_listening` gets the bound address (useful with port 0) before events are handled.
pub fn discovery_server(
    handler: NodeHandler<()>,
    listener: NodeListener<()>,
    listen_addr: SocketAddr,
    on_listening: impl FnOnce(SocketAddr),
) -> io::Result<()> {
    let (_, local) = handler.network().listen(Transport::FramedTcp, listen_addr)?;
    println!("[discovery] listening on {local}");
    on_listening(local);

    let mut participants: BTreeMap<String, Registered> = BTreeMap::new();
    let send = |endpoint, message: &Message| {
        handler.network().send(endpoint, &message.encode());
    };
    listener.for_each(|event| match event.network() {
        NetEvent::Connected(..) => (), // the server connects to no one
        NetEvent::Accepted(..) => (),  // nothing to do before the participant registers
        NetEvent::Message(endpoint, data) => {
            let Some(Message::Register(name, mut udp_addr)) = Message::decode(data) else {
                println!("[discovery] {} sent an unexpected message: dropped", endpoint.addr());
                handler.network().remove(endpoint.resource_id());
                return;
            };
            if participants.values().any(|p| p.endpoint == endpoint) {
                send(endpoint, &Message::Rejected("already registered".into()));
                return;
            }
            if participants.contains_key(&name) {
                send(endpoint, &Message::Rejected(format!("the name {name} is taken")));
                return;
            }
            if udp_addr.ip().is_unspecified() {
                udp_addr.set_ip(endpoint.addr().ip());
            }
            println!("[discovery] registered {name} at {udp_addr}");
            let others = participants.iter().map(|(n, p)| (n.clone(), p.udp_addr)).collect();
            send(endpoint, &Message::List(others));
            for participant in participants.values() {
                send(participant.endpoint, &Message::Added(name.clone(), udp_addr));
            }
            participants.insert(name, Registered { udp_addr, endpoint });
        }
        NetEvent::Disconnected(endpoint) => {
            let gone = participants.iter().find(|(_, p)| p.endpoint == endpoint);
            let Some(name) = gone.map(|(name, _)| name.clone()) else { return };
            participants.remove(&name);
            println!("[discovery] {name} left");
            for participant in participants.values() {
                send(participant.endpoint, &Message::Removed(name.clone()));
            }
        }
    });
    Ok(())
}
