//! Async nodes: an application written as a future, polled by the world on virtual time.

use super::World;
use crate::node::{NodeHandler, NodeStream};
use std::future::Future;

impl World {
    /// Adds a node named `name` whose application is async: `app` gets the node's handler and
    /// its events as a [`NodeStream`] (as
    /// [`NodeListener::into_stream`](crate::node::NodeListener::into_stream) gives them natively)
    /// and returns the future to run. So the same `async fn` runs natively, on any executor,
    /// and here.
    ///
    /// The world polls the future on the node's coroutine, on virtual time: when it is
    /// pending, the node waits for its next event, signal or timer exactly as a callback node
    /// waits in `for_each` (a [`NodeStream::delay`] is one of its timers), and a waker wakes
    /// the node at the current virtual time. No thread, no real clock: the seed fixes
    /// everything, as for [`node`](Self::node). The node finishes when the future completes;
    /// after [`restart`](Self::restart), `app` runs again from the start. See `docs/async.md`.
    ///
    /// The future must not wait on anything outside the world (another runtime's timers, a
    /// thread): only the world wakes its nodes. It need not be `Send`.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use portnet::network::{StoredNetEvent, Transport};
    /// use portnet::node::{NodeHandler, NodeStream};
    /// use portnet::sim::World;
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    ///
    /// async fn echo(handler: NodeHandler<()>, mut events: NodeStream<()>) {
    ///     handler.network().listen(Transport::FramedTcp, "0.0.0.0:3000").unwrap();
    ///     while let Some(event) = events.next().await {
    ///         if let StoredNetEvent::Message(endpoint, data) = event.network() {
    ///             handler.network().send(endpoint, &data);
    ///         }
    ///     }
    /// }
    ///
    /// let echoed = Arc::new(Mutex::new(Vec::new()));
    /// let got = echoed.clone();
    /// let mut world = World::with_seed(7);
    /// world.node_async("server", echo);
    /// world.node_async("client", move |handler: NodeHandler<()>, mut events: NodeStream<()>| {
    ///     let got = got.clone();
    ///     async move {
    ///         events.delay(Duration::from_millis(5)).await; // virtual time
    ///         let (server, _) =
    ///             handler.network().connect(Transport::FramedTcp, "server:3000").unwrap();
    ///         events.connected(server).await.unwrap();
    ///         handler.network().send(server, b"hello");
    ///         while let Some(event) = events.next().await {
    ///             if let StoredNetEvent::Message(_, data) = event.network() {
    ///                 got.lock().unwrap().push(data);
    ///                 handler.stop();
    ///             }
    ///         }
    ///     }
    /// });
    /// world.run_until_idle();
    /// assert_eq!(*echoed.lock().unwrap(), vec![b"hello".to_vec()]);
    /// ```
    pub fn node_async<S, F, Fut>(&mut self, name: &str, app: F)
    where
        S: Send + 'static,
        F: Fn(NodeHandler<S>, NodeStream<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()>,
    {
        self.node(name, move |handler, listener| {
            crate::node::run_simulated_async(handler, listener, &app)
        });
    }
}
