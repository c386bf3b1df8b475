//! `Udp` sockets: listeners (many peers, one socket) and connected sockets (one peer).

use super::{Cx, READ_BUDGET};
use crate::adapters::udp::MAX_LOCAL_PAYLOAD_LEN;
use crate::core::{Endpoint, NetEvent, ResourceId, SendStatus};
use mio::net::UdpSocket;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

fn status(result: io::Result<usize>, to: SocketAddr) -> SendStatus {
    match result {
        Ok(_) => SendStatus::Sent,
        Err(e) if e.raw_os_error() == Some(EMSGSIZE) => SendStatus::MaxPacketSizeExceeded,
        // The socket buffer is full; UDP drops rather than queues, so let the caller decide.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => SendStatus::QueueFull,
        Err(e) => {
            log::debug!("Udp send to {to} failed: {e}");
            SendStatus::ResourceNotFound
        }
    }
}

/// Consecutive receive errors tolerated in one readiness event before yielding.
const MAX_ERRORS_PER_EVENT: usize = 64;

#[cfg(any(target_os = "linux", target_os = "android"))]
const EMSGSIZE: i32 = 90;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const EMSGSIZE: i32 = 40;

/// A listening socket: every datagram is a `Message` from its source address.
pub(crate) struct Local {
    id: ResourceId,
    pub socket: UdpSocket,
    closed: AtomicBool,
}

impl Local {
    pub fn new(id: ResourceId, socket: UdpSocket) -> Self {
        Self { id, socket, closed: AtomicBool::new(false) }
    }

    pub fn send_to(&self, addr: SocketAddr, data: &[u8]) -> SendStatus {
        if data.len() > MAX_LOCAL_PAYLOAD_LEN {
            return SendStatus::MaxPacketSizeExceeded;
        }
        status(self.socket.send_to(data, addr), addr)
    }

    pub fn on_event(&self, cx: &mut Cx<'_>) {
        receive_all(&self.socket, self.id, None, &self.closed, cx);
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// A connected socket: one peer, reported `Connected(_, true)` on the first poll.
pub(crate) struct Remote {
    endpoint: Endpoint,
    pub socket: UdpSocket,
    announced: AtomicBool,
    closed: AtomicBool,
}

impl Remote {
    pub fn new(endpoint: Endpoint, socket: UdpSocket) -> Self {
        Self { endpoint, socket, announced: AtomicBool::new(false), closed: AtomicBool::new(false) }
    }

    fn resource_id(&self) -> ResourceId {
        self.endpoint.resource_id()
    }

    pub fn send(&self, data: &[u8]) -> SendStatus {
        if data.len() > MAX_LOCAL_PAYLOAD_LEN {
            return SendStatus::MaxPacketSizeExceeded;
        }
        let mut result = self.socket.send(data);
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused) {
            // A port-unreachable from an earlier datagram; this one was not sent yet.
            result = self.socket.send(data);
        }
        status(result, self.endpoint.addr())
    }

    /// Reports `Connected` once, before anything else of this endpoint.
    pub fn announce(&self, cx: &mut Cx<'_>) {
        if !self.announced.swap(true, Ordering::AcqRel) && !self.closed.load(Ordering::Acquire) {
            (cx.callback)(NetEvent::Connected(self.endpoint, true));
        }
    }

    pub fn on_event(&self, cx: &mut Cx<'_>) {
        self.announce(cx);
        receive_all(&self.socket, self.resource_id(), Some(self.endpoint.addr()), &self.closed, cx);
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Receives datagrams until the socket is drained, the read budget is spent (it is read again
/// next turn) or the resource is removed. `peer` is the connected peer, if any. Errors (ICMP
/// reports for earlier sends surface here) end nothing.
fn receive_all(
    socket: &UdpSocket,
    id: ResourceId,
    peer: Option<SocketAddr>,
    closed: &AtomicBool,
    cx: &mut Cx<'_>,
) {
    let mut errors = 0;
    for _ in 0..READ_BUDGET {
        if closed.load(Ordering::Acquire) {
            return;
        }
        let received = match peer {
            Some(peer) => socket.recv(cx.input).map(|n| (n, peer)),
            None => socket.recv_from(cx.input),
        };
        match received {
            Ok((n, from)) => {
                (cx.callback)(NetEvent::Message(Endpoint::new(id, from), &cx.input[..n]))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::debug!("Udp {id} receive: {e}");
                errors += 1;
                if errors > MAX_ERRORS_PER_EVENT {
                    return;
                }
            }
        }
    }
    cx.again.push(id);
}
