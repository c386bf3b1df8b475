//! `Ws` over TLS (`wss://`) beside plain `Ws`: latency and throughput of portnet and of
//! blocking tungstenite, in the same run, on loopback. Needs the `tls` feature (on by default).
//!
//! ```text
//! cargo bench --bench wss                 # full run, a couple of minutes on 2 cores
//! cargo bench --bench wss -- --quick      # smoke run for CI, well under a minute
//! PORTNET_BENCH_QUICK=1 cargo bench --bench wss   # the same sizes as --quick
//! cargo bench --bench wss -- throughput/Wss       # one group (criterion filter)
//! ```
//!
//! Groups `latency/Ws`, `latency/Wss`, `throughput/Ws` and `throughput/Wss`, each with members
//! `raw` and `portnet` run one after the other; criterion keeps each median in
//! `target/criterion/<group>/<member>/new/estimates.json`. The designs are those of
//! `benches/transports.rs`, so its `Ws` numbers and these are comparable:
//!
//! - **latency**: one 1-byte binary message to an echo server and back, per iteration. The
//!   server runs on its own thread (a portnet node with `for_each_async`, or a blocking thread
//!   for raw); the client is driven on the bench thread (`network::split()` and
//!   `process_poll_event` for portnet, blocking `read` for raw).
//! - **throughput**: per iteration, a round of 256 binary messages (16 when quick) of 64 KiB
//!   sent one way from the bench thread; the round ends when the receiving thread has counted
//!   every byte and says so through an in-process channel. The portnet sender is a node on its
//!   own thread, so queued bytes are flushed as the socket drains; on `SendStatus::QueueFull`
//!   the bench thread waits for `signal_when_writable`.
//!
//! TLS on both members is rustls with the ring provider and its safe default protocol
//! versions (TLS 1.3 is negotiated), with a self-signed certificate for `localhost` and
//! `127.0.0.1` made by rcgen at start-up; clients trust it as a root and verify the name
//! `localhost`. The raw baseline is blocking tungstenite over a std `TcpStream` with
//! `TCP_NODELAY`, wrapped in `rustls::StreamOwned` for `Wss`, with tungstenite's default
//! config as in `transports.rs`. The TLS handshake happens once per connection, before
//! measuring: these numbers are the cost of encrypted traffic, not of connection set-up.

#[path = "common/mod.rs"]
mod common;

use common::library::{library, portnet_queue_full, portnet_when_writable};
use common::{
    Blaster, LOCALHOST, Pinger, Plan, STALL, Watchdog, measure_latency, measure_rounds, member,
    payload,
};
use criterion::{Criterion, Throughput};
use portnet::adapters::ws::{WsConnectConfig, WsListenConfig};
use portnet::network::{Transport, TransportConnect, TransportListen};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ws,
    Wss,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Ws, Kind::Wss];

    fn name(self) -> &'static str {
        match self {
            Kind::Ws => "Ws",
            Kind::Wss => "Wss",
        }
    }

    /// The URL a client requests.
    fn url(self, addr: SocketAddr) -> String {
        match self {
            Kind::Ws => format!("ws://{addr}/bench"),
            Kind::Wss => format!("wss://{addr}/bench"),
        }
    }
}

/// Bytes per throughput message.
const MESSAGE_SIZE: usize = 64 * 1024;

impl Kind {
    fn message_size(self) -> usize {
        MESSAGE_SIZE
    }
}

impl Plan {
    fn round_bytes(self, kind: Kind) -> u64 {
        (self.round_messages * kind.message_size()) as u64
    }
}

/// The name clients verify the server's certificate against.
const SERVER_NAME: &str = "localhost";

/// The server's self-signed certificate and key, made once per run.
struct Identity {
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let names = vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()];
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(names).unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: signing_key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: signing_key.serialize_der(),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// portnet.
// ---------------------------------------------------------------------------------------------

fn listen_config(kind: Kind) -> TransportListen {
    match kind {
        Kind::Ws => Transport::Ws.into(),
        Kind::Wss => {
            let id = identity();
            WsListenConfig::default().with_tls(id.cert_pem.clone(), id.key_pem.clone()).into()
        }
    }
}

fn connect_config(kind: Kind) -> TransportConnect {
    match kind {
        Kind::Ws => Transport::Ws.into(),
        Kind::Wss => WsConnectConfig::default()
            .with_root_certificate(identity().cert_pem.clone())
            .with_server_name(SERVER_NAME)
            .into(),
    }
}

library!(with_portnet, portnet, portnet_queue_full, portnet_when_writable, {
    fn listen(controller: &NetworkController, kind: Kind) -> SocketAddr {
        controller.listen_with(listen_config(kind), LOCALHOST).unwrap().1
    }

    fn connect(controller: &NetworkController, kind: Kind, addr: SocketAddr) -> Endpoint {
        controller.connect_with(connect_config(kind), kind.url(addr)).unwrap().0
    }
});

// ---------------------------------------------------------------------------------------------
// Raw: blocking tungstenite over std sockets, through rustls for `Wss`.
// ---------------------------------------------------------------------------------------------

mod raw {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};
    use tungstenite::{Bytes, Message, WebSocket};

    fn spawn<T: Send + 'static>(
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        std::thread::Builder::new().name(name.into()).spawn(f).unwrap()
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn client_config() -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(identity().cert_der.clone())).unwrap();
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    fn server_config() -> Arc<ServerConfig> {
        let id = identity();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone()));
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(id.cert_der.clone())], key)
            .unwrap();
        Arc::new(config)
    }

    /// A blocking socket, plain or TLS.
    pub enum Stream {
        Plain(TcpStream),
        Client(Box<StreamOwned<ClientConnection, TcpStream>>),
        Server(Box<StreamOwned<ServerConnection, TcpStream>>),
    }

    impl Stream {
        fn tcp(&self) -> &TcpStream {
            match self {
                Stream::Plain(tcp) => tcp,
                Stream::Client(tls) => tls.get_ref(),
                Stream::Server(tls) => tls.get_ref(),
            }
        }
    }

    impl Read for Stream {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self {
                Stream::Plain(s) => s.read(buf),
                Stream::Client(s) => s.read(buf),
                Stream::Server(s) => s.read(buf),
            }
        }
    }

    impl Write for Stream {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match self {
                Stream::Plain(s) => s.write(buf),
                Stream::Client(s) => s.write(buf),
                Stream::Server(s) => s.write(buf),
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            match self {
                Stream::Plain(s) => s.flush(),
                Stream::Client(s) => s.flush(),
                Stream::Server(s) => s.flush(),
            }
        }
    }

    /// Connects a blocking tungstenite pair: (client, server). The TLS handshake runs inside
    /// the WebSocket handshake, on the first read or write.
    fn ws_pair(kind: Kind) -> (WebSocket<Stream>, WebSocket<Stream>) {
        let listener = TcpListener::bind(LOCALHOST).unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = (kind == Kind::Wss).then(server_config);
        let server = spawn("raw-ws-accept", move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_nodelay(true).unwrap();
            let stream = match tls {
                Some(config) => {
                    let connection = ServerConnection::new(config).unwrap();
                    Stream::Server(Box::new(StreamOwned::new(connection, tcp)))
                }
                None => Stream::Plain(tcp),
            };
            tungstenite::accept(stream).unwrap()
        });
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_nodelay(true).unwrap();
        let stream = match kind {
            Kind::Ws => Stream::Plain(tcp),
            Kind::Wss => {
                let name = ServerName::try_from(SERVER_NAME).unwrap();
                let connection = ClientConnection::new(client_config(), name).unwrap();
                Stream::Client(Box::new(StreamOwned::new(connection, tcp)))
            }
        };
        let (client, _) = tungstenite::client(kind.url(addr), stream).unwrap();
        (client, server.join().unwrap())
    }

    /// The client's end of an echo or sink connection; closing it ends the server thread.
    struct Conn {
        ws: WebSocket<Stream>,
        server: Option<JoinHandle<()>>,
    }

    impl Drop for Conn {
        fn drop(&mut self) {
            let _ = self.ws.get_ref().tcp().shutdown(Shutdown::Both);
            if let Some(server) = self.server.take() {
                server.join().unwrap();
            }
        }
    }

    pub struct Echo(Conn);

    impl Echo {
        pub fn new(kind: Kind) -> Self {
            let (ws, mut server) = ws_pair(kind);
            let thread = spawn("raw-echo", move || {
                while let Ok(message) = server.read() {
                    if message.is_binary() && server.send(message).is_err() {
                        break;
                    }
                }
            });
            Echo(Conn { ws, server: Some(thread) })
        }
    }

    impl Pinger for Echo {
        fn round_trip(&mut self) {
            let ws = &mut self.0.ws;
            ws.send(Message::Binary(Bytes::from_static(&[0xFF]))).unwrap();
            while !ws.read().unwrap().is_binary() {}
        }
    }

    pub struct Sink {
        conn: Conn,
        bytes: Bytes,
        messages: usize,
        /// One `()` per round the receiver counted.
        rounds: mpsc::Receiver<()>,
    }

    impl Sink {
        pub fn new(kind: Kind, plan: Plan) -> Self {
            let round_bytes = plan.round_bytes(kind);
            let (rounds_tx, rounds) = mpsc::channel();
            let (ws, mut server) = ws_pair(kind);
            let thread = spawn("raw-sink", move || {
                let mut count = 0;
                while let Ok(message) = server.read() {
                    count += message.len() as u64;
                    if count >= round_bytes {
                        count -= round_bytes;
                        let _ = rounds_tx.send(());
                    }
                }
            });
            Sink {
                conn: Conn { ws, server: Some(thread) },
                bytes: Bytes::from(payload(MESSAGE_SIZE)),
                messages: plan.round_messages,
                rounds,
            }
        }
    }

    impl Blaster for Sink {
        fn round(&mut self, _round: u64) {
            for _ in 0..self.messages {
                self.conn.ws.send(Message::Binary(self.bytes.clone())).unwrap();
            }
            self.rounds.recv_timeout(STALL).expect("the receiver stopped counting");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.
// ---------------------------------------------------------------------------------------------

fn latency(c: &mut Criterion) {
    let plan = Plan::from_env();
    for kind in Kind::ALL {
        let mut group = c.benchmark_group(format!("latency/{}", kind.name()));
        plan.configure(&mut group, false);
        let measure = |pinger: &mut (dyn Pinger + 'static), iters| measure_latency(pinger, iters);
        let raw = || -> Box<dyn Pinger> { Box::new(raw::Echo::new(kind)) };
        member(&mut group, "raw", raw, measure);
        let portnet = || -> Box<dyn Pinger> { Box::new(with_portnet::Echo::new(kind)) };
        member(&mut group, "portnet", portnet, measure);
        group.finish();
    }
}

fn throughput(c: &mut Criterion) {
    let plan = Plan::from_env();
    for kind in Kind::ALL {
        let mut group = c.benchmark_group(format!("throughput/{}", kind.name()));
        plan.configure(&mut group, true);
        group.throughput(Throughput::Bytes(plan.round_bytes(kind)));
        let measure =
            |blaster: &mut (dyn Blaster + 'static), iters| measure_rounds(blaster, &mut 0, iters);
        let raw = || -> Box<dyn Blaster> { Box::new(raw::Sink::new(kind, plan)) };
        member(&mut group, "raw", raw, measure);
        let portnet =
            || -> Box<dyn Blaster> { Box::new(with_portnet::StreamSink::new(kind, plan)) };
        member(&mut group, "portnet", portnet, measure);
        group.finish();
    }
}

criterion::criterion_group!(benches, latency, throughput);
criterion::criterion_main!(benches);
