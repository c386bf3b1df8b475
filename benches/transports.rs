//! Latency and throughput per transport: portnet beside a plain blocking std socket (and
//! beside message-io 0.19), in the same run, on loopback.
//!
//! ```text
//! cargo bench --bench transports                 # full run, a few minutes on 2 cores
//! cargo bench --bench transports -- --quick      # smoke run for CI, well under a minute
//! PORTNET_BENCH_QUICK=1 cargo bench --bench transports   # the same sizes as --quick
//! cargo bench --bench transports -- latency/Tcp  # one group (criterion filter)
//! ```
//!
//! Every case is a group `latency/<transport>` or `throughput/<transport>` whose members
//! `raw`, `portnet` and `message-io` run one after the other, so they share the machine's
//! current mood. Criterion keeps the median of each case in
//! `target/criterion/<group>/<member>/new/estimates.json`.
//!
//! - **latency**: one 1-byte message to an echo server and back, per iteration. The echo server
//!   runs on its own thread (a portnet/message-io node with `for_each_async`, or a blocking
//!   thread for raw); the client is driven on the bench thread (`network::split()` and
//!   `process_poll_event` for the libraries, blocking `read` for raw).
//! - **throughput**: per iteration, a round of 256 messages (16 when quick) of 64 KiB
//!   (`udp::MAX_LOCAL_PAYLOAD_LEN` = 65 507 bytes for `Udp`) sent one way from the bench thread;
//!   the round ends when the receiving thread has counted every byte (it tells the bench
//!   thread through an in-process channel, so no acknowledgement crosses the network). The
//!   library senders are nodes on their own thread, so queued bytes are flushed as the socket
//!   drains; on `SendStatus::QueueFull` the bench thread waits for
//!   `signal_when_writable`. `Udp` can lose datagrams, so there the sender sends until the
//!   receiver has counted a round's worth (goodput, as message-io's throughput example
//!   measures it); datagrams carry the round number in their first byte so late ones from a
//!   previous round do not count.
//!
//! Raw baselines are what a careful user writes with std alone: `TcpStream` with
//! `TCP_NODELAY` (portnet sets it too), `FramedTcp` as a hand-written LEB128 header sent with
//! the payload in one vectored write and read back through a `BufReader`, `UdpSocket`, and
//! `Ws` as blocking tungstenite over a std `TcpStream`.

#[path = "common/mod.rs"]
mod common;

use common::library::{library, portnet_queue_full, portnet_when_writable};
use common::{
    Blaster, LOCALHOST, Pinger, Plan, STALL, Watchdog, measure_latency, measure_rounds, member,
    payload,
};
use criterion::{Criterion, Throughput};
use std::io::{self, BufReader, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The four transports, independent of which library names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    FramedTcp,
    Udp,
    Ws,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Tcp, Kind::FramedTcp, Kind::Udp, Kind::Ws];

    fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "Tcp",
            Kind::FramedTcp => "FramedTcp",
            Kind::Udp => "Udp",
            Kind::Ws => "Ws",
        }
    }

    /// Bytes per throughput message.
    fn message_size(self) -> usize {
        match self {
            Kind::Udp => portnet::adapters::udp::MAX_LOCAL_PAYLOAD_LEN,
            _ => 64 * 1024,
        }
    }
}

impl Plan {
    fn round_bytes(self, kind: Kind) -> u64 {
        (self.round_messages * kind.message_size()) as u64
    }
}

// ---------------------------------------------------------------------------------------------
// portnet and message-io: the same code for both (`benches/common/library.rs`), since portnet
// keeps message-io's API.
// ---------------------------------------------------------------------------------------------

/// message-io has no queue: its `send` spins until the socket takes everything.
fn message_io_queue_full(_: &message_io::network::SendStatus) -> bool {
    false
}

fn message_io_when_writable(
    _: &message_io::node::NodeHandler<()>,
    _: message_io::network::Endpoint,
) {
    unreachable!("message-io never reports a full queue");
}

/// What this bench adds to the shared library side: listening and connecting by transport on
/// loopback, and the `Udp` case.
macro_rules! transports_items {
    () => {
        fn transport(kind: Kind) -> network::Transport {
            match kind {
                Kind::Tcp => network::Transport::Tcp,
                Kind::FramedTcp => network::Transport::FramedTcp,
                Kind::Udp => network::Transport::Udp,
                Kind::Ws => network::Transport::Ws,
            }
        }

        fn listen(controller: &NetworkController, kind: Kind) -> SocketAddr {
            controller.listen(transport(kind), LOCALHOST).unwrap().1
        }

        fn connect(controller: &NetworkController, kind: Kind, addr: SocketAddr) -> Endpoint {
            controller.connect(transport(kind), addr).unwrap().0
        }

        impl Sender {
            /// Sends one datagram, retrying while the socket buffer is full.
            fn send_datagram(&self, data: &[u8]) {
                let deadline = Instant::now() + STALL;
                loop {
                    match self.handler.network().send(self.endpoint, data) {
                        SendStatus::Sent => return,
                        status if queue_full(&status) => {
                            assert!(Instant::now() < deadline, "socket never drained");
                            std::hint::spin_loop();
                        }
                        status => panic!("send failed: {status:?}"),
                    }
                }
            }
        }

        /// A `Udp` socket whose receiver counts the current round's datagrams.
        pub struct DatagramSink {
            sender: Sender,
            _server: Server,
            message: Vec<u8>,
            /// Rounds the receiver has completed.
            done: Arc<AtomicU64>,
        }

        impl DatagramSink {
            pub fn new(plan: Plan) -> Self {
                let round_bytes = plan.round_bytes(Kind::Udp);
                let (handler, listener) = node::split::<()>();
                let addr = listen(handler.network(), Kind::Udp);
                let done = Arc::new(AtomicU64::new(0));
                let rounds = done.clone();
                let (mut round, mut count) = (0u64, 0u64);
                let task = listener.for_each_async(move |event| {
                    if let NodeEvent::Network(NetEvent::Message(_, data)) = event {
                        if data.first() == Some(&(round as u8)) {
                            count += data.len() as u64;
                            if count >= round_bytes {
                                (round, count) = (round + 1, 0);
                                rounds.store(round, Ordering::Release);
                            }
                        }
                    }
                });
                DatagramSink {
                    sender: Sender::connect(Kind::Udp, addr),
                    _server: Server { handler, _task: task },
                    message: payload(Kind::Udp.message_size()),
                    done,
                }
            }
        }

        impl Blaster for DatagramSink {
            fn round(&mut self, round: u64) {
                self.message[0] = round as u8;
                let deadline = Instant::now() + STALL;
                while self.done.load(Ordering::Acquire) <= round {
                    self.sender.send_datagram(&self.message);
                    assert!(Instant::now() < deadline, "the receiver stopped counting");
                }
            }
        }
    };
}

library!(with_portnet, portnet, portnet_queue_full, portnet_when_writable, {
    transports_items!();
});
library!(with_message_io, message_io, message_io_queue_full, message_io_when_writable, {
    transports_items!();
});

// ---------------------------------------------------------------------------------------------
// Raw blocking std sockets.
// ---------------------------------------------------------------------------------------------

mod raw {
    use super::*;
    use tungstenite::{Bytes, Message, WebSocket};

    fn spawn<T: Send + 'static>(
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        std::thread::Builder::new().name(name.into()).spawn(f).unwrap()
    }

    /// A connected TCP pair: (client, server), both with `TCP_NODELAY`.
    fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind(LOCALHOST).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_nodelay(true).unwrap();
        server.set_nodelay(true).unwrap();
        (client, server)
    }

    /// Encodes `len` as an unsigned LEB128 prefix (FramedTcp's header).
    fn leb128(mut len: usize, buf: &mut [u8; 10]) -> &[u8] {
        let mut used = 0;
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                buf[used] = byte;
                return &buf[..used + 1];
            }
            buf[used] = byte | 0x80;
            used += 1;
        }
    }

    /// Writes header and payload with as few system calls as the socket allows.
    fn write_frame(stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
        let mut buf = [0; 10];
        let header = leb128(data.len(), &mut buf);
        let total = header.len() + data.len();
        let mut written = 0;
        while written < total {
            let n = if written < header.len() {
                stream.write_vectored(&[IoSlice::new(&header[written..]), IoSlice::new(data)])?
            } else {
                stream.write(&data[written - header.len()..])?
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            written += n;
        }
        Ok(())
    }

    /// Reads one frame into `buf`, returning its length.
    fn read_frame(reader: &mut BufReader<TcpStream>, buf: &mut Vec<u8>) -> io::Result<usize> {
        let mut len = 0usize;
        for shift in (0..64).step_by(7) {
            let mut byte = [0];
            reader.read_exact(&mut byte)?;
            len |= usize::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                reader.read_exact(&mut buf[..len])?;
                return Ok(len);
            }
        }
        Err(io::ErrorKind::InvalidData.into())
    }

    /// Connects a blocking tungstenite pair: (client, server).
    fn ws_pair() -> (WebSocket<TcpStream>, WebSocket<TcpStream>) {
        let listener = TcpListener::bind(LOCALHOST).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn("raw-ws-accept", move || {
            let (stream, _) = listener.accept().unwrap();
            stream.set_nodelay(true).unwrap();
            tungstenite::accept(stream).unwrap()
        });
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let (client, _) = tungstenite::client(format!("ws://{addr}/bench"), stream).unwrap();
        (client, server.join().unwrap())
    }

    /// The client's end of an echo or sink connection; the server thread ends when it closes.
    pub enum Conn {
        Tcp(TcpStream),
        Framed(TcpStream, BufReader<TcpStream>),
        Udp(UdpSocket),
        Ws(Box<WebSocket<TcpStream>>),
    }

    pub struct Echo {
        client: Conn,
        buf: Vec<u8>,
        server: Option<JoinHandle<()>>,
        stop: Arc<AtomicBool>,
    }

    impl Echo {
        pub fn new(kind: Kind) -> Self {
            let stop = Arc::new(AtomicBool::new(false));
            let (client, server) = match kind {
                Kind::Tcp => {
                    let (client, mut server) = tcp_pair();
                    let thread = spawn("raw-echo", move || {
                        let mut buf = [0; 64];
                        while let Ok(n @ 1..) = server.read(&mut buf) {
                            if server.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                    (Conn::Tcp(client), thread)
                }
                Kind::FramedTcp => {
                    let (client, server) = tcp_pair();
                    let mut writer = server.try_clone().unwrap();
                    let mut reader = BufReader::new(server);
                    let thread = spawn("raw-echo", move || {
                        let mut buf = Vec::new();
                        while let Ok(n) = read_frame(&mut reader, &mut buf) {
                            if write_frame(&mut writer, &buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                    let reader = BufReader::new(client.try_clone().unwrap());
                    (Conn::Framed(client, reader), thread)
                }
                Kind::Udp => {
                    let server = UdpSocket::bind(LOCALHOST).unwrap();
                    let client = UdpSocket::bind(LOCALHOST).unwrap();
                    client.connect(server.local_addr().unwrap()).unwrap();
                    // Only a fallback to notice `stop`: `close` wakes it with an empty datagram.
                    server.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                    let stop = stop.clone();
                    let thread = spawn("raw-echo", move || {
                        let mut buf = [0; 64];
                        while !stop.load(Ordering::Acquire) {
                            if let Ok((n, from)) = server.recv_from(&mut buf) {
                                let _ = server.send_to(&buf[..n], from);
                            }
                        }
                    });
                    (Conn::Udp(client), thread)
                }
                Kind::Ws => {
                    let (client, mut server) = ws_pair();
                    let thread = spawn("raw-echo", move || {
                        while let Ok(message) = server.read() {
                            if message.is_binary() && server.send(message).is_err() {
                                break;
                            }
                        }
                    });
                    (Conn::Ws(Box::new(client)), thread)
                }
            };
            Echo { client, buf: vec![0; 64], server: Some(server), stop }
        }
    }

    impl Pinger for Echo {
        fn round_trip(&mut self) {
            let ping = [0xFF];
            match &mut self.client {
                Conn::Tcp(stream) => {
                    stream.write_all(&ping).unwrap();
                    stream.read_exact(&mut self.buf[..1]).unwrap();
                }
                Conn::Framed(stream, reader) => {
                    write_frame(stream, &ping).unwrap();
                    assert_eq!(read_frame(reader, &mut self.buf).unwrap(), 1);
                }
                Conn::Udp(socket) => {
                    socket.send(&ping).unwrap();
                    socket.recv(&mut self.buf).unwrap();
                }
                Conn::Ws(ws) => {
                    ws.send(Message::Binary(Bytes::from_static(&[0xFF]))).unwrap();
                    while !ws.read().unwrap().is_binary() {}
                }
            }
        }
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            close(&mut self.client);
            if let Some(server) = self.server.take() {
                server.join().unwrap();
            }
        }
    }

    /// Ends the server thread: closes the stream, or wakes the `Udp` server to see `stop`
    /// (its read timeout covers the unlikely loss of that datagram).
    fn close(conn: &mut Conn) {
        match conn {
            Conn::Tcp(stream) | Conn::Framed(stream, _) => {
                let _ = stream.shutdown(Shutdown::Both);
            }
            Conn::Ws(ws) => {
                let _ = ws.get_ref().shutdown(Shutdown::Both);
            }
            Conn::Udp(socket) => {
                let _ = socket.send(&[]);
            }
        }
    }

    pub struct Sink {
        client: Conn,
        message: Vec<u8>,
        bytes: Bytes,
        messages: usize,
        /// One `()` per round the stream receiver counted.
        rounds: mpsc::Receiver<()>,
        /// Rounds the `Udp` receiver completed.
        done: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
        server: Option<JoinHandle<()>>,
    }

    impl Sink {
        pub fn new(kind: Kind, plan: Plan) -> Self {
            let round_bytes = plan.round_bytes(kind);
            let size = kind.message_size();
            let stop = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicU64::new(0));
            let (rounds_tx, rounds) = mpsc::channel();
            let (client, server) = match kind {
                Kind::Tcp => {
                    let (client, mut server) = tcp_pair();
                    let thread = spawn("raw-sink", move || {
                        let mut buf = vec![0; 64 * 1024];
                        let mut count = 0;
                        while let Ok(n @ 1..) = server.read(&mut buf) {
                            count += n as u64;
                            if count >= round_bytes {
                                count -= round_bytes;
                                let _ = rounds_tx.send(());
                            }
                        }
                    });
                    (Conn::Tcp(client), thread)
                }
                Kind::FramedTcp => {
                    let (client, server) = tcp_pair();
                    let mut reader = BufReader::with_capacity(64 * 1024, server);
                    let thread = spawn("raw-sink", move || {
                        let mut buf = Vec::new();
                        let mut count = 0;
                        while let Ok(n) = read_frame(&mut reader, &mut buf) {
                            count += n as u64;
                            if count >= round_bytes {
                                count -= round_bytes;
                                let _ = rounds_tx.send(());
                            }
                        }
                    });
                    let reader = BufReader::new(client.try_clone().unwrap());
                    (Conn::Framed(client, reader), thread)
                }
                Kind::Udp => {
                    let server = UdpSocket::bind(LOCALHOST).unwrap();
                    let client = UdpSocket::bind(LOCALHOST).unwrap();
                    client.connect(server.local_addr().unwrap()).unwrap();
                    server.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                    let (stop, rounds) = (stop.clone(), done.clone());
                    let thread = spawn("raw-sink", move || {
                        let mut buf = vec![0; 64 * 1024];
                        let (mut round, mut count) = (0u64, 0u64);
                        while !stop.load(Ordering::Acquire) {
                            if let Ok(n) = server.recv(&mut buf) {
                                if n > 0 && buf[0] == round as u8 {
                                    count += n as u64;
                                    if count >= round_bytes {
                                        (round, count) = (round + 1, 0);
                                        rounds.store(round, Ordering::Release);
                                    }
                                }
                            }
                        }
                    });
                    (Conn::Udp(client), thread)
                }
                Kind::Ws => {
                    let (client, mut server) = ws_pair();
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
                    (Conn::Ws(Box::new(client)), thread)
                }
            };
            let message = payload(size);
            Sink {
                client,
                bytes: Bytes::from(message.clone()),
                message,
                messages: plan.round_messages,
                rounds,
                done,
                stop,
                server: Some(server),
            }
        }
    }

    impl Blaster for Sink {
        fn round(&mut self, round: u64) {
            match &mut self.client {
                Conn::Tcp(stream) => {
                    for _ in 0..self.messages {
                        stream.write_all(&self.message).unwrap();
                    }
                }
                Conn::Framed(stream, _) => {
                    for _ in 0..self.messages {
                        write_frame(stream, &self.message).unwrap();
                    }
                }
                Conn::Udp(socket) => {
                    self.message[0] = round as u8;
                    let deadline = Instant::now() + STALL;
                    while self.done.load(Ordering::Acquire) <= round {
                        // Refusals (ICMP from an earlier datagram) do not matter here.
                        let _ = socket.send(&self.message);
                        assert!(Instant::now() < deadline, "the receiver stopped counting");
                    }
                    return;
                }
                Conn::Ws(ws) => {
                    for _ in 0..self.messages {
                        ws.send(Message::Binary(self.bytes.clone())).unwrap();
                    }
                }
            }
            self.rounds.recv_timeout(STALL).expect("the receiver stopped counting");
        }
    }

    impl Drop for Sink {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            close(&mut self.client);
            if let Some(server) = self.server.take() {
                server.join().unwrap();
            }
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
        member(
            &mut group,
            "raw",
            || -> Box<dyn Pinger> { Box::new(raw::Echo::new(kind)) },
            measure,
        );
        member(
            &mut group,
            "portnet",
            || -> Box<dyn Pinger> { Box::new(with_portnet::Echo::new(kind)) },
            measure,
        );
        member(
            &mut group,
            "message-io",
            || -> Box<dyn Pinger> { Box::new(with_message_io::Echo::new(kind)) },
            measure,
        );
        group.finish();
    }
}

fn throughput(c: &mut Criterion) {
    let plan = Plan::from_env();
    for kind in Kind::ALL {
        let mut group = c.benchmark_group(format!("throughput/{}", kind.name()));
        plan.configure(&mut group, true);
        group.throughput(Throughput::Bytes(plan.round_bytes(kind)));
        // Rounds are numbered across samples so `Udp` receivers can drop late datagrams.
        let next_round = std::cell::Cell::new(0);
        let measure = |blaster: &mut (dyn Blaster + 'static), iters| {
            let mut round = next_round.get();
            let elapsed = measure_rounds(blaster, &mut round, iters);
            next_round.set(round);
            elapsed
        };
        member(
            &mut group,
            "raw",
            || -> Box<dyn Blaster> { Box::new(raw::Sink::new(kind, plan)) },
            measure,
        );
        next_round.set(0);
        member(
            &mut group,
            "portnet",
            || -> Box<dyn Blaster> {
                match kind {
                    Kind::Udp => Box::new(with_portnet::DatagramSink::new(plan)),
                    _ => Box::new(with_portnet::StreamSink::new(kind, plan)),
                }
            },
            measure,
        );
        next_round.set(0);
        member(
            &mut group,
            "message-io",
            || -> Box<dyn Blaster> {
                match kind {
                    Kind::Udp => Box::new(with_message_io::DatagramSink::new(plan)),
                    _ => Box::new(with_message_io::StreamSink::new(kind, plan)),
                }
            },
            measure,
        );
        group.finish();
    }
}

criterion::criterion_group!(benches, latency, throughput);
criterion::criterion_main!(benches);
