//! The library side of the benchmarks, written once. portnet keeps message-io's API, so the same
//! code drives both libraries in `benches/transports.rs` and portnet over TLS in `benches/wss.rs`.

/// Defines module `$module` on library `$krate`: a node `Server`, a `Client` driven on the bench
/// thread, an `Echo` (a [`Pinger`](super::Pinger)), a node `Sender` and a `StreamSink` (a
/// [`Blaster`](super::Blaster)).
///
/// The invoking file has in scope `Kind` (with `message_size()`), `Plan::round_bytes(kind)`
/// and what `common` exports. `$hooks` are items pasted into the module; they say how this
/// bench listens and connects, and may add cases of their own:
///
/// ```text
/// fn listen(controller: &NetworkController, kind: Kind) -> SocketAddr
/// fn connect(controller: &NetworkController, kind: Kind, addr: SocketAddr) -> Endpoint
/// ```
macro_rules! library {
    ($module:ident, $krate:ident, $queue_full:path, $when_writable:path, { $($hooks:item)* }) => {
        mod $module {
            use super::*;
            use $krate::network::{
                self, Endpoint, NetEvent, NetworkController, NetworkProcessor, SendStatus,
            };
            use $krate::node::{self, NodeEvent, NodeHandler, NodeTask};

            /// Whether a send was refused because the connection's queue is full.
            fn queue_full(status: &SendStatus) -> bool {
                $queue_full(status)
            }

            $($hooks)*

            /// A node on its own thread; stopped and joined on drop.
            struct Server {
                handler: NodeHandler<()>,
                _task: NodeTask,
            }

            impl Drop for Server {
                fn drop(&mut self) {
                    self.handler.stop();
                }
            }

            /// A connection driven on the bench thread with the low-level API.
            struct Client {
                controller: NetworkController,
                processor: NetworkProcessor,
                endpoint: Endpoint,
                /// Messages received so far (echoes or acknowledgements).
                received: u64,
                watchdog: Watchdog,
            }

            impl Client {
                fn connect(kind: Kind, addr: SocketAddr) -> Self {
                    let (controller, processor) = network::split();
                    // Not `connect_sync`: message-io's waits for a processor running on
                    // another thread; pump this one until the connection is ready instead.
                    let endpoint = connect(&controller, kind, addr);
                    let watchdog = Watchdog::start("echo client");
                    let mut client =
                        Client { controller, processor, endpoint, received: 0, watchdog };
                    let deadline = Instant::now() + STALL;
                    while client.controller.is_ready(endpoint.resource_id()) != Some(true) {
                        assert!(Instant::now() < deadline, "could not connect to {addr}");
                        client.pump(Some(Duration::from_millis(100)));
                    }
                    client
                }

                /// Waits for events (at most `timeout`, forever if `None`), counting received messages.
                fn pump(&mut self, timeout: Option<Duration>) {
                    let received = &mut self.received;
                    self.processor.process_poll_event(timeout, |event| {
                        if let NetEvent::Message(..) = event {
                            *received += 1;
                        }
                    });
                }

                /// Pumps until `count` messages have been received in all, waiting without a
                /// timeout as the plain socket does; the watchdog ends a run that hangs.
                fn wait_for(&mut self, count: u64) {
                    while self.received < count {
                        self.pump(None);
                    }
                    self.watchdog.progress(count);
                }

                /// Sends one message, pumping the network while its queue is full.
                fn send(&mut self, data: &[u8]) {
                    let deadline = Instant::now() + STALL;
                    loop {
                        match self.controller.send(self.endpoint, data) {
                            SendStatus::Sent => return,
                            status if queue_full(&status) => {
                                assert!(Instant::now() < deadline, "send queue never drained");
                                self.pump(Some(Duration::from_millis(100)));
                            }
                            status => panic!("send failed: {status:?}"),
                        }
                    }
                }
            }

            pub struct Echo {
                _server: Server,
                client: Client,
                echoes: u64,
            }

            impl Echo {
                pub fn new(kind: Kind) -> Self {
                    let (handler, listener) = node::split::<()>();
                    let addr = listen(handler.network(), kind);
                    let network = handler.clone();
                    let task = listener.for_each_async(move |event| {
                        if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                            network.network().send(endpoint, data);
                        }
                    });
                    let client = Client::connect(kind, addr);
                    Echo { _server: Server { handler, _task: task }, client, echoes: 0 }
                }
            }

            impl Pinger for Echo {
                fn round_trip(&mut self) {
                    self.client.send(&[0xFF]);
                    self.echoes += 1;
                    self.client.wait_for(self.echoes);
                }
            }

            /// The sending side of a throughput case: a node on its own thread (it connects,
            /// and flushes queued messages as the socket drains) sent to from the bench thread.
            struct Sender {
                handler: NodeHandler<()>,
                endpoint: Endpoint,
                /// The node's `Signal`s: the send queue has room again.
                writable: mpsc::Receiver<()>,
                _task: NodeTask,
            }

            impl Sender {
                fn connect(kind: Kind, addr: SocketAddr) -> Self {
                    let (handler, listener) = node::split::<()>();
                    let (connected_tx, connected) = mpsc::channel();
                    let (writable_tx, writable) = mpsc::channel();
                    let task = listener.for_each_async(move |event| match event {
                        NodeEvent::Network(NetEvent::Connected(_, ok)) => {
                            let _ = connected_tx.send(ok);
                        }
                        NodeEvent::Signal(()) => {
                            let _ = writable_tx.send(());
                        }
                        NodeEvent::Network(_) => (),
                    });
                    let endpoint = connect(handler.network(), kind, addr);
                    assert_eq!(connected.recv_timeout(STALL), Ok(true), "connect to {addr}");
                    Sender { handler, endpoint, writable, _task: task }
                }

                /// Sends one message; while the connection's queue is full, waits until the
                /// node says it has room.
                fn send(&self, data: &[u8]) {
                    loop {
                        match self.handler.network().send(self.endpoint, data) {
                            SendStatus::Sent => return,
                            status if queue_full(&status) => {
                                $when_writable(&self.handler, self.endpoint);
                                self.writable.recv_timeout(STALL).expect("queue never drained");
                            }
                            status => panic!("send failed: {status:?}"),
                        }
                    }
                }

            }

            impl Drop for Sender {
                fn drop(&mut self) {
                    self.handler.stop();
                }
            }

            /// A stream connection whose receiver reports every `round_bytes` bytes it counts.
            pub struct StreamSink {
                sender: Sender,
                _server: Server,
                message: Vec<u8>,
                messages: usize,
                rounds: mpsc::Receiver<()>,
            }

            impl StreamSink {
                pub fn new(kind: Kind, plan: Plan) -> Self {
                    let round_bytes = plan.round_bytes(kind);
                    let (handler, listener) = node::split::<()>();
                    let addr = listen(handler.network(), kind);
                    let (rounds_tx, rounds) = mpsc::channel();
                    let mut count = 0u64;
                    let task = listener.for_each_async(move |event| {
                        if let NodeEvent::Network(NetEvent::Message(_, data)) = event {
                            count += data.len() as u64;
                            if count >= round_bytes {
                                count -= round_bytes;
                                let _ = rounds_tx.send(());
                            }
                        }
                    });
                    StreamSink {
                        sender: Sender::connect(kind, addr),
                        _server: Server { handler, _task: task },
                        message: payload(kind.message_size()),
                        messages: plan.round_messages,
                        rounds,
                    }
                }
            }

            impl Blaster for StreamSink {
                fn round(&mut self, _round: u64) {
                    for _ in 0..self.messages {
                        self.sender.send(&self.message);
                    }
                    self.rounds.recv_timeout(STALL).expect("the receiver stopped counting");
                }
            }
        }
    };
}

pub(crate) use library;

/// Whether a portnet send was refused because the connection's queue is full.
pub fn portnet_queue_full(status: &portnet::network::SendStatus) -> bool {
    matches!(status, portnet::network::SendStatus::QueueFull)
}

/// Asks the node for a signal once the endpoint's send queue has room.
pub fn portnet_when_writable(
    handler: &portnet::node::NodeHandler<()>,
    endpoint: portnet::network::Endpoint,
) {
    handler.signal_when_writable(endpoint, ());
}
