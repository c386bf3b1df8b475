//! Raw blocking std sockets: what a careful std-only user writes, the baseline of every
//! comparison.

use super::*;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Message, WebSocket};

/// The stack of a raw server's thread per connection: std's 2 MiB default is address
/// space only, but 10 000 of them is 20 GiB of it; a careful user picks a small one.
const CONNECTION_STACK: usize = 128 * 1024;

/// tungstenite's read buffer for the raw `Ws` ends here: its default (128 KiB) is zeroed
/// before reads, so 10 000 connections would touch 1.25 GiB. portnet uses 4 KiB, with its
/// own read-ahead for large reads (`src/backend/native/read_ahead.rs`).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(16 * 1024)
}

fn spawn<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    std::thread::Builder::new().name(name.into()).spawn(f).unwrap()
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
fn write_frame(mut stream: &TcpStream, data: &[u8]) -> io::Result<()> {
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
fn read_frame(reader: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
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

/// One client connection (blocking).
pub enum Client {
    Tcp(TcpStream),
    /// The stream is written through `get_ref`: one descriptor per connection, not two
    /// (10 000 connections have to fit the open-file limit).
    Framed(BufReader<TcpStream>),
    Udp(UdpSocket),
    Ws(Box<WebSocket<TcpStream>>),
}

impl Client {
    pub fn connect(kind: Kind, addr: SocketAddr) -> Client {
        Client::try_connect(kind, addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_connect(kind: Kind, addr: SocketAddr) -> io::Result<Client> {
        if kind == Kind::Udp {
            let socket = UdpSocket::bind(LOCALHOST)?;
            socket.connect(addr)?;
            return Ok(Client::Udp(socket));
        }
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(match kind {
            Kind::Tcp => Client::Tcp(stream),
            Kind::FramedTcp => Client::Framed(BufReader::new(stream)),
            Kind::Ws => {
                // The path message-io's clients request (portnet's too).
                let url = format!("ws://{addr}/message-io-default");
                let (ws, _) =
                    tungstenite::client::client_with_config(url, stream, Some(ws_config()))
                        .map_err(|e| io::Error::other(format!("Ws handshake: {e}")))?;
                Client::Ws(Box::new(ws))
            }
            Kind::Udp => unreachable!(),
        })
    }

    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Client::Tcp(stream) => stream.write_all(data),
            Client::Framed(reader) => write_frame(reader.get_ref(), data),
            Client::Udp(socket) => socket.send(data).map(drop),
            Client::Ws(ws) => {
                ws.send(Message::Binary(Bytes::copy_from_slice(data))).map_err(io::Error::other)
            }
        }
    }

    /// Sends an owned payload (no copy for `Ws`).
    fn send_bytes(&mut self, data: &Bytes) -> io::Result<()> {
        match self {
            Client::Ws(ws) => ws.send(Message::Binary(data.clone())).map_err(io::Error::other),
            other => other.send(data),
        }
    }

    /// Receives `buf.len()` bytes: one message of that size (or, on `Tcp`, that many
    /// bytes).
    pub fn receive_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let n = match self {
            Client::Tcp(stream) => return stream.read_exact(buf),
            Client::Framed(reader) => {
                let mut frame = Vec::new();
                let n = read_frame(reader, &mut frame)?;
                let copied = n.min(buf.len());
                buf[..copied].copy_from_slice(&frame[..copied]);
                n
            }
            Client::Udp(socket) => socket.recv(buf)?,
            Client::Ws(ws) => loop {
                match ws.read().map_err(io::Error::other)? {
                    Message::Binary(data) => break data.len(),
                    _ => continue,
                }
            },
        };
        if n == buf.len() {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidData, format!("got {n} bytes")))
        }
    }

    pub fn close(&mut self) {
        match self {
            Client::Tcp(stream) => {
                let _ = stream.shutdown(Shutdown::Both);
            }
            Client::Framed(reader) => {
                let _ = reader.get_ref().shutdown(Shutdown::Both);
            }
            Client::Ws(ws) => {
                let _ = ws.get_ref().shutdown(Shutdown::Both);
            }
            // Wakes a raw `Udp` receiver to see its stop flag.
            Client::Udp(socket) => {
                let _ = socket.send(&[]);
            }
        }
    }
}

/// One connection's server side, on its own thread: counts or echoes until the peer
/// closes.
fn serve(kind: Kind, stream: TcpStream, handling: Handling) {
    let _ = stream.set_nodelay(true);
    let message = |data: &[u8], out: &mut dyn FnMut(&[u8]) -> io::Result<()>| match &handling {
        Handling::Count(counter) => {
            counter.add(data.len());
            Ok(())
        }
        Handling::Echo(_) => out(data),
    };
    match kind {
        Kind::Tcp => {
            // Read and write through `&TcpStream`: one descriptor per connection.
            let mut buf = vec![0; 16 * 1024];
            while let Ok(n @ 1..) = (&stream).read(&mut buf) {
                if message(&buf[..n], &mut |data| (&stream).write_all(data)).is_err() {
                    break;
                }
            }
        }
        Kind::FramedTcp => {
            let mut reader = BufReader::new(&stream);
            let mut buf = Vec::new();
            while let Ok(n) = read_frame(&mut reader, &mut buf) {
                if message(&buf[..n], &mut |data| write_frame(&stream, data)).is_err() {
                    break;
                }
            }
        }
        Kind::Ws => {
            let Ok(mut ws) = tungstenite::accept_with_config(stream, Some(ws_config())) else {
                return;
            };
            if let Handling::Echo(progress) = &handling {
                progress.accepted();
            }
            while let Ok(received) = ws.read() {
                let Message::Binary(data) = received else { continue };
                match &handling {
                    Handling::Count(counter) => counter.add(data.len()),
                    Handling::Echo(_) => {
                        if ws.send(Message::Binary(data)).is_err() {
                            break;
                        }
                    }
                }
            }
        }
        Kind::Udp => unreachable!(),
    }
}

/// std's `TcpListener::bind` listens with a backlog of 128: 10 000 connects then stall
/// for seconds on SYN retransmissions (70 s here). socket2 sets the backlog portnet uses.
fn listen_with_backlog() -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let addr: SocketAddr = LOCALHOST.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(portnet::adapters::tcp::LISTENER_BACKLOG).unwrap();
    socket.into()
}

/// A std-only server: an accept loop and a thread per connection.
pub struct ThreadPerConnection {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ThreadPerConnection {
    pub fn start(kind: Kind, handling: Handling) -> (ThreadPerConnection, SocketAddr) {
        let listener = listen_with_backlog();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let accept = spawn("raw-accept", move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let handling = handling.clone();
                if let (Kind::Tcp | Kind::FramedTcp, Handling::Echo(progress)) = (kind, &handling) {
                    progress.accepted();
                }
                std::thread::Builder::new()
                    .name("raw-connection".into())
                    .stack_size(CONNECTION_STACK)
                    .spawn(move || {
                        serve(kind, stream, handling.clone());
                        if let Handling::Echo(progress) = &handling {
                            progress.disconnected();
                        }
                    })
                    .expect("spawn a connection thread");
            }
        });
        (ThreadPerConnection { addr, stop, accept: Some(accept) }, addr)
    }
}

impl Drop for ThreadPerConnection {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop to see `stop`. The connection threads end as their
        // peers close.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// The fan-in clients.
pub struct Bursts {
    pub clients: Vec<Client>,
    pub message: Vec<u8>,
    pub burst: u64,
    pub flow: Flow,
    /// Dropped after the clients (fields drop in order), so the server sees them close.
    pub _server: Box<dyn Send>,
}

impl FanIn for Bursts {
    fn burst(&mut self) {
        for client in &mut self.clients {
            for _ in 0..self.burst {
                client.send(&self.message).expect("fan-in send");
            }
        }
        self.flow.sent(self.clients.len() as u64 * self.burst);
        self.flow.finish();
    }
}

impl Drop for Bursts {
    fn drop(&mut self) {
        for client in &mut self.clients {
            client.close();
        }
    }
}

/// One way, raw: a blocking sender on the caller's thread, a blocking receiver thread.
pub struct OneWaySink {
    client: Client,
    message: Bytes,
    flow: Flow,
    step: u64,
    stop: Arc<AtomicBool>,
    receiver: Option<JoinHandle<()>>,
}

impl OneWaySink {
    pub fn new(kind: Kind, size: usize) -> OneWaySink {
        let (window, step) = kind.flow();
        let (counter, acks) = Counter::new(size, step);
        let stop = Arc::new(AtomicBool::new(false));
        let (client, receiver) = match kind {
            Kind::Udp => {
                let server = UdpSocket::bind(LOCALHOST).unwrap();
                let client = Client::connect(kind, server.local_addr().unwrap());
                // Only a fallback to notice `stop`: `close` wakes it with an empty datagram.
                server.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                let stop = stop.clone();
                let thread = spawn("raw-receiver", move || {
                    let mut buf = vec![0; 64 * 1024];
                    while !stop.load(Ordering::Acquire) {
                        if let Ok(n @ 1..) = server.recv(&mut buf) {
                            counter.add(n);
                        }
                    }
                });
                (client, thread)
            }
            _ => {
                let listener = TcpListener::bind(LOCALHOST).unwrap();
                let addr = listener.local_addr().unwrap();
                let thread = spawn("raw-receiver", move || {
                    let (stream, _) = listener.accept().unwrap();
                    serve(kind, stream, Handling::Count(counter));
                });
                (Client::connect(kind, addr), thread)
            }
        };
        OneWaySink {
            client,
            message: Bytes::from(payload(size)),
            flow: Flow::new(window, acks),
            step,
            stop,
            receiver: Some(receiver),
        }
    }
}

impl OneWay for OneWaySink {
    fn run(&mut self, messages: u64) {
        for _ in 0..messages.div_ceil(self.step) * self.step {
            self.flow.one_more();
            self.client.send_bytes(&self.message).expect("send");
        }
        self.flow.finish();
    }
}

impl Drop for OneWaySink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.client.close();
        if let Some(receiver) = self.receiver.take() {
            let _ = receiver.join();
        }
    }
}
