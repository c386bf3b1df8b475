//! One message to an echo server and back, one round trip at a time: the subject of the
//! report's per-function instruction breakdown (`portnet-perf-report rtt ...` under callgrind).
//!
//! The same shape as the latency groups of `benches/transports.rs`: the echo server runs on
//! its own thread (a portnet node, or for raw a blocking thread), the client on the caller's
//! thread (for portnet `network::split()` and `process_poll_event`, for raw blocking reads).

use crate::{Handling, Kind, LOCALHOST, Lib, STALL, ScaleProgress, payload, raw};
use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Round trips of one message.
pub trait RoundTrip {
    /// Sends one message and waits for its echo, `round_trips` times.
    fn run(&mut self, round_trips: u64);
}

/// Round trips of `size`-byte messages, `lib` at both ends: raw or portnet.
pub fn round_trip(lib: Lib, kind: Kind, size: usize) -> Option<Box<dyn RoundTrip>> {
    match lib {
        Lib::Raw => Some(Box::new(RawEcho::new(kind, size))),
        Lib::Portnet => Some(Box::new(with_portnet::Echo::new(kind, size))),
        Lib::MessageIo => None,
    }
}

/// A raw blocking client and a raw echo server.
struct RawEcho {
    client: raw::Client,
    message: Vec<u8>,
    buf: Vec<u8>,
    /// Dropped after the client is closed.
    _server: Box<dyn Send>,
}

impl RawEcho {
    fn new(kind: Kind, size: usize) -> Self {
        let (server, addr): (Box<dyn Send>, SocketAddr) = match kind {
            Kind::Udp => {
                let (thread, addr) = udp_echo();
                (Box::new(thread), addr)
            }
            _ => {
                // A target never reached: the progress lines stay unprinted.
                let handling = Handling::Echo(ScaleProgress::new(u64::MAX));
                let (server, addr) = raw::ThreadPerConnection::start(kind, handling);
                (Box::new(server), addr)
            }
        };
        let client = raw::Client::connect(kind, addr);
        RawEcho { client, message: payload(size), buf: vec![0; size], _server: server }
    }
}

impl RoundTrip for RawEcho {
    fn run(&mut self, round_trips: u64) {
        for _ in 0..round_trips {
            self.client.send(&self.message).expect("send");
            self.client.receive_exact(&mut self.buf).expect("echo");
        }
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        self.client.close();
    }
}

/// A thread echoing datagrams until an empty one comes (the raw client's close).
fn udp_echo() -> (JoinHandle<()>, SocketAddr) {
    let socket = UdpSocket::bind(LOCALHOST).unwrap();
    let addr = socket.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        while let Ok((n @ 1.., from)) = socket.recv_from(&mut buf) {
            if socket.send_to(&buf[..n], from).is_err() {
                return;
            }
        }
    });
    (thread, addr)
}

mod with_portnet {
    use super::*;
    use portnet::network::{
        self, Endpoint, NetEvent, NetworkController, NetworkProcessor, SendStatus, Transport,
    };
    use portnet::node::{self, NodeEvent, NodeHandler, NodeTask};

    fn transport(kind: Kind) -> Transport {
        match kind {
            Kind::Tcp => Transport::Tcp,
            Kind::FramedTcp => Transport::FramedTcp,
            Kind::Udp => Transport::Udp,
            Kind::Ws => Transport::Ws,
        }
    }

    /// An echo node on its own thread and a client driven on the caller's.
    pub struct Echo {
        server: NodeHandler<()>,
        _task: NodeTask,
        controller: NetworkController,
        processor: NetworkProcessor,
        endpoint: Endpoint,
        message: Vec<u8>,
        received: u64,
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.server.stop();
        }
    }

    impl Echo {
        pub fn new(kind: Kind, size: usize) -> Self {
            let (server, listener) = node::split::<()>();
            let (_, addr) = server.network().listen(transport(kind), LOCALHOST).unwrap();
            let network = server.clone();
            let task = listener.for_each_async(move |event| {
                if let NodeEvent::Network(NetEvent::Message(endpoint, data)) = event {
                    network.network().send(endpoint, data);
                }
            });
            let (controller, processor) = network::split();
            let (endpoint, _) = controller.connect(transport(kind), addr).unwrap();
            let mut echo = Echo {
                server,
                _task: task,
                controller,
                processor,
                endpoint,
                message: payload(size),
                received: 0,
            };
            let deadline = Instant::now() + STALL;
            while echo.controller.is_ready(endpoint.resource_id()) != Some(true) {
                assert!(Instant::now() < deadline, "could not connect to {addr}");
                echo.pump();
            }
            echo
        }

        /// Processes one batch of events, counting received messages.
        fn pump(&mut self) {
            let received = &mut self.received;
            self.processor.process_poll_event(Some(Duration::from_millis(100)), |event| {
                if let NetEvent::Message(..) = event {
                    *received += 1;
                }
            });
        }
    }

    impl RoundTrip for Echo {
        fn run(&mut self, round_trips: u64) {
            for _ in 0..round_trips {
                match self.controller.send(self.endpoint, &self.message) {
                    SendStatus::Sent => (),
                    status => panic!("send failed: {status:?}"),
                }
                let expected = self.received + 1;
                // The clock is read only when a batch brought no echo: callgrind counts every
                // instruction here.
                let mut deadline = None;
                while self.received < expected {
                    self.pump();
                    if self.received < expected {
                        let deadline = *deadline.get_or_insert_with(|| Instant::now() + STALL);
                        assert!(Instant::now() < deadline, "no echo within {STALL:?}");
                    }
                }
            }
        }
    }
}
