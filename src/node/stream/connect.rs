//! Awaitable connect: [`NodeStream::connected`].

use super::{Driver, NodeStream};
use crate::network::{Endpoint, StoredNetEvent};
use crate::node::{Gathered, NodeHandler, NodeListener, StoredNodeEvent};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

impl<S> NodeStream<S> {
    /// A future that completes once the connect that made `endpoint` is decided: `Ok(())`
    /// once it can send, or the error of a connect that failed (refused, unreachable, timed
    /// out: kind `ConnectionRefused`), of an endpoint that is gone, or of a node that stopped
    /// meanwhile (kind `ConnectionAborted`). At once if it is decided already.
    ///
    /// It drives the stream while it waits (it borrows it), so `events.connected(e).await?`
    /// needs nothing polled beside it. Events that arrive meanwhile, and the `Connected`
    /// event itself, stay in the stream, in order: the stream still hands them all out.
    ///
    /// Cancellation safe: dropping it takes nothing out of the stream.
    ///
    /// ```no_run
    /// # async fn run(handler: portnet::node::NodeHandler<()>, mut events: portnet::node::NodeStream<()>) -> std::io::Result<()> {
    /// use portnet::network::Transport;
    /// let (server, _) = handler.network().connect(Transport::FramedTcp, "127.0.0.1:3000")?;
    /// events.connected(server).await?;
    /// handler.network().send(server, b"hello");
    /// # Ok(())
    /// # }
    /// ```
    pub fn connected(&mut self, endpoint: Endpoint) -> Connecting<'_, S> {
        Connecting { stream: self, endpoint }
    }
}

/// Completes once a connect is decided (see [`NodeStream::connected`]).
#[must_use = "futures do nothing unless awaited"]
pub struct Connecting<'a, S> {
    stream: &'a mut NodeStream<S>,
    endpoint: Endpoint,
}

impl<S> Future for Connecting<'_, S> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let endpoint = this.endpoint;
        let stream = &mut *this.stream;
        stream.delays.fire_due();
        match &stream.driver {
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Driver::Waiter(waiter) => {
                waiter.poll_with(cx, |handler, gathered| outcome(handler, gathered, endpoint))
            }
            #[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
            Driver::Sim(state) => {
                let check = |listener: &NodeListener<S>| {
                    outcome(&listener.handler, &listener.pending, endpoint)
                };
                state.poll_with(cx, check, || Err(gone(endpoint)))
            }
            #[cfg(all(target_family = "wasm", target_os = "unknown"))]
            Driver::Browser(page) => {
                let check = |listener: &NodeListener<S>| {
                    outcome(&listener.handler, &listener.pending, endpoint)
                };
                page.poll_with(cx, check, || Err(gone(endpoint)))
            }
        }
    }
}

/// Whether `endpoint`'s connect is decided, by the events gathered and not handed out yet
/// (a `Connected` or `Disconnected` for it) and else by the network.
fn outcome<S>(
    handler: &NodeHandler<S>,
    gathered: &Gathered<S>,
    endpoint: Endpoint,
) -> Option<io::Result<()>> {
    if !handler.is_running() {
        return Some(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("connect of {endpoint}: the node stopped before it was decided"),
        )));
    }
    let decided = gathered.iter().find_map(|(event, _)| match event {
        StoredNodeEvent::Network(StoredNetEvent::Connected(e, ok)) if *e == endpoint => Some(*ok),
        StoredNodeEvent::Network(StoredNetEvent::Disconnected(e)) if *e == endpoint => Some(false),
        _ => None,
    });
    let ready = match decided {
        Some(ok) => Some(ok),
        None => match handler.network().is_ready(endpoint.resource_id()) {
            Some(true) => Some(true),
            Some(false) => None,
            None => Some(false),
        },
    };
    ready.map(|ok| if ok { Ok(()) } else { Err(gone(endpoint)) })
}

fn gone(endpoint: Endpoint) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("connect of {endpoint} failed (refused, unreachable or timed out), or it is gone"),
    )
}
