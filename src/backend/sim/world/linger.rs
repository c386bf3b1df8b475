//! What a stopping simulated node still has to send, and giving up on it: the world's side of
//! the linger (`NetworkController::set_linger`), in virtual time.
//!
//! The simulated network has no receive windows: a stream's bytes wait only for the link (its
//! bandwidth). So what a native node's send queue holds for a slow peer is, here, the bytes of
//! a connection that have not left for the link yet.

use super::{Core, NodeId, Res};
use crate::core::{Endpoint, ResourceId, StoredNetEvent};
use std::time::Duration;

/// A connection of a node whose bytes have not all left for the link.
pub(crate) struct Unsent {
    pub endpoint: Endpoint,
    pub bytes: usize,
    /// When its last byte leaves, if nothing gives up on it.
    pub leaves: Duration,
}

impl Core {
    /// `node`'s connections with bytes still waiting for the link, in resource order.
    pub fn unsent(&mut self, node: NodeId) -> Vec<Unsent> {
        let now = self.now;
        let streams: Vec<(ResourceId, u64, usize)> = self.nodes[node]
            .resources
            .iter()
            .filter_map(|(id, res)| match res {
                Res::Stream { conn, side } => Some((*id, *conn, *side)),
                _ => None,
            })
            .collect();
        let mut unsent = Vec::new();
        for (id, conn, side) in streams {
            let Some(c) = self.conns.get_mut(&conn) else { continue };
            let bytes = c.backlog(side, now);
            if bytes > 0 {
                let leaves = c.unsent[side].back().map_or(now, |(leaves, _)| *leaves);
                let endpoint = Endpoint::new(id, c.ends[1 - side].addr);
                unsent.push(Unsent { endpoint, bytes, leaves });
            }
        }
        unsent
    }

    /// Gives up on `node`'s connection `id` with bytes unsent: it is reset, so what had not
    /// arrived is lost and the peer gets `Disconnected`, as when a closing socket is aborted.
    pub fn abandon(&mut self, node: NodeId, id: ResourceId) {
        let state = &mut self.nodes[node];
        let Some(Res::Stream { conn, side }) = state.resources.remove(&id) else { return };
        state.ports.retain(|_, owner| *owner != id);
        let line = format!("{} gives up on {id}: linger over, the rest is dropped", state.name);
        self.log(format_args!("{line}"));
        let Some(c) = self.conns.remove(&conn) else { return };
        self.drained.extend(c.waiting.into_iter().flatten());
        let peer = &c.ends[1 - side];
        let Some(peer_id) = peer.id else { return };
        if peer.node == usize::MAX || c.closed[1 - side] || self.nodes[peer.node].life != peer.life
        {
            return;
        }
        let state = &mut self.nodes[peer.node];
        if state.resources.remove(&peer_id).is_some() {
            state.ports.retain(|_, owner| *owner != peer_id);
            if c.open[1 - side] {
                let endpoint = Endpoint::new(peer_id, c.ends[side].addr);
                self.deliver(peer.node, StoredNetEvent::Disconnected(endpoint));
            }
        }
    }
}
