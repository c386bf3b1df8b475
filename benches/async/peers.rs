//! The tokio peers: a tokio echo server on its own thread, a client on a current-thread
//! runtime on the bench thread.

use super::*;
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

pub enum Conn {
    Framed(Framed<TcpStream, LengthDelimitedCodec>),
    Ws(Box<WebSocketStream<TcpStream>>),
    Udp(UdpSocket),
}

/// A connected pair of std sockets (client, server); `Udp`'s client is connected.
enum StdConn {
    Tcp(std::net::TcpStream),
    Udp(std::net::UdpSocket),
}

fn std_pair(kind: Kind) -> (StdConn, StdConn) {
    if kind == Kind::Udp {
        let server = std::net::UdpSocket::bind(LOCALHOST).unwrap();
        let client = std::net::UdpSocket::bind(LOCALHOST).unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        return (StdConn::Udp(client), StdConn::Udp(server));
    }
    let listener = std::net::TcpListener::bind(LOCALHOST).unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (StdConn::Tcp(client), StdConn::Tcp(server))
}

/// Takes a std socket into the current runtime (each end on the runtime of the thread that
/// drives it), with the WebSocket handshake for `Ws`.
async fn into_tokio(conn: StdConn, kind: Kind, client: bool) -> Conn {
    match conn {
        StdConn::Udp(socket) => {
            socket.set_nonblocking(true).unwrap();
            Conn::Udp(UdpSocket::from_std(socket).unwrap())
        }
        StdConn::Tcp(stream) => {
            stream.set_nonblocking(true).unwrap();
            let stream = TcpStream::from_std(stream).unwrap();
            stream.set_nodelay(true).unwrap();
            match (kind, client) {
                (Kind::FramedTcp, _) => {
                    Conn::Framed(Framed::new(stream, LengthDelimitedCodec::new()))
                }
                (_, true) => {
                    let url = format!("ws://{}/bench", stream.peer_addr().unwrap());
                    let (ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
                    Conn::Ws(Box::new(ws))
                }
                (_, false) => {
                    Conn::Ws(Box::new(tokio_tungstenite::accept_async(stream).await.unwrap()))
                }
            }
        }
    }
}

/// Runs `serve` on the server's end on a thread of its own, with its own current-thread
/// runtime, and takes the client's end on a runtime for the bench thread; the server ends
/// when the client's end closes (`Udp`: on an empty datagram).
fn start<F>(kind: Kind, serve: impl FnOnce(Conn) -> F + Send + 'static) -> Peer
where
    F: Future<Output = ()>,
{
    let (client, server) = std_pair(kind);
    let thread = spawn("tokio-server", move || {
        current_thread()
            .block_on(async move { serve(into_tokio(server, kind, false).await).await });
    });
    let runtime = current_thread();
    let client = runtime.block_on(into_tokio(client, kind, true));
    Peer { runtime, client: Some(client), thread: Some(thread) }
}

pub struct Peer {
    runtime: tokio::runtime::Runtime,
    client: Option<Conn>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.runtime.block_on(async move {
                match client {
                    Conn::Udp(socket) => {
                        let _ = socket.send(&[]).await;
                    }
                    Conn::Ws(mut ws) => {
                        let _ = SinkExt::close(&mut ws).await;
                    }
                    Conn::Framed(framed) => drop(framed),
                }
            });
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

pub struct Echo {
    peer: Peer,
    buf: Vec<u8>,
}

impl Echo {
    pub fn new(kind: Kind) -> Self {
        let peer = start(kind, |server| async move {
            match server {
                Conn::Framed(mut framed) => {
                    while let Some(Ok(frame)) = framed.next().await {
                        if framed.send(frame.freeze()).await.is_err() {
                            break;
                        }
                    }
                }
                Conn::Ws(mut ws) => {
                    while let Some(Ok(message)) = ws.next().await {
                        if message.is_binary() && ws.send(message).await.is_err() {
                            break;
                        }
                    }
                }
                Conn::Udp(socket) => {
                    let mut buf = [0; 64];
                    while let Ok((n @ 1.., from)) = socket.recv_from(&mut buf).await {
                        let _ = socket.send_to(&buf[..n], from).await;
                    }
                }
            }
        });
        Echo { peer, buf: vec![0; 64] }
    }
}

impl Pinger for Echo {
    fn round_trip(&mut self) {
        let Peer { runtime, client, .. } = &mut self.peer;
        let buf = &mut self.buf;
        runtime.block_on(async {
            match client.as_mut().unwrap() {
                Conn::Framed(framed) => {
                    framed.send(Bytes::from_static(&[0xFF])).await.unwrap();
                    assert_eq!(framed.next().await.unwrap().unwrap().len(), 1);
                }
                Conn::Ws(ws) => {
                    ws.send(Message::Binary(Bytes::from_static(&[0xFF]))).await.unwrap();
                    while !ws.next().await.unwrap().unwrap().is_binary() {}
                }
                Conn::Udp(socket) => {
                    socket.send(&[0xFF]).await.unwrap();
                    socket.recv(buf).await.unwrap();
                }
            }
        });
    }
}

/// One way: the client sends rounds, the server counts.
pub struct Sink {
    peer: Peer,
    message: Vec<u8>,
    bytes: Bytes,
    messages: usize,
    rounds: mpsc::Receiver<()>,
    /// Rounds the `Udp` receiver completed.
    done: Arc<AtomicU64>,
}

impl Sink {
    pub fn new(kind: Kind, plan: Plan) -> Self {
        let round_bytes = round_bytes(plan, kind);
        let (rounds_tx, rounds) = mpsc::channel();
        let done = Arc::new(AtomicU64::new(0));
        let counted = done.clone();
        let peer = start(kind, move |server| async move {
            let mut count = 0;
            let mut add = |n: usize| {
                count += n as u64;
                if count >= round_bytes {
                    count -= round_bytes;
                    let _ = rounds_tx.send(());
                }
            };
            match server {
                Conn::Framed(mut framed) => {
                    while let Some(Ok(frame)) = framed.next().await {
                        add(frame.len());
                    }
                }
                Conn::Ws(mut ws) => {
                    while let Some(Ok(message)) = ws.next().await {
                        add(message.len());
                    }
                }
                Conn::Udp(socket) => {
                    let mut buf = vec![0; 64 * 1024];
                    let (mut round, mut count) = (0u64, 0u64);
                    while let Ok(n @ 1..) = socket.recv(&mut buf).await {
                        if buf[0] == round as u8 {
                            count += n as u64;
                            if count >= round_bytes {
                                (round, count) = (round + 1, 0);
                                counted.store(round, Ordering::Release);
                            }
                        }
                    }
                }
            }
        });
        let message = payload(kind.message_size());
        Sink {
            peer,
            bytes: Bytes::from(message.clone()),
            message,
            messages: plan.round_messages,
            rounds,
            done,
        }
    }
}

impl Blaster for Sink {
    fn round(&mut self, round: u64) {
        let Peer { runtime, client, .. } = &mut self.peer;
        let (message, bytes, messages, done) =
            (&mut self.message, &self.bytes, self.messages, &self.done);
        runtime.block_on(async {
            match client.as_mut().unwrap() {
                Conn::Framed(framed) => {
                    for _ in 0..messages {
                        framed.send(bytes.clone()).await.unwrap();
                    }
                }
                Conn::Ws(ws) => {
                    for _ in 0..messages {
                        ws.send(Message::Binary(bytes.clone())).await.unwrap();
                    }
                }
                Conn::Udp(socket) => {
                    message[0] = round as u8;
                    let deadline = Instant::now() + STALL;
                    while done.load(Ordering::Acquire) <= round {
                        // Refusals (ICMP from an earlier datagram) do not matter here.
                        let _ = socket.send(message).await;
                        assert!(Instant::now() < deadline, "the receiver stopped counting");
                    }
                }
            }
        });
        if !matches!(client, Some(Conn::Udp(_))) {
            self.rounds.recv_timeout(STALL).expect("the receiver stopped counting");
        }
    }
}
