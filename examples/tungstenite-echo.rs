//! A WebSocket echo server on plain tungstenite: the baseline that `tests/autobahn.sh` holds the
//! portnet server (`examples/ws-echo.rs`) to in the Autobahn cases.
//!
//! ```text
//! cargo run --example tungstenite-echo     # prints `listening on 127.0.0.1:PORT`, serves until killed
//! ```
//!
//! Text comes back as text, binary as binary; pings, closes and protocol errors are handled by
//! tungstenite itself (a protocol error ends the connection). One thread per connection.

#[cfg(not(all(target_family = "wasm", target_os = "unknown")))]
fn main() -> std::io::Result<()> {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use tungstenite::protocol::WebSocketConfig;
    use tungstenite::{Error, Message};

    fn serve(stream: TcpStream) -> tungstenite::Result<()> {
        // Large enough for every case of 1–7 (the largest message is 256 KiB in 7.1.6).
        let config = WebSocketConfig::default()
            .max_message_size(Some(32 << 20))
            .max_frame_size(Some(32 << 20));
        let mut ws =
            tungstenite::accept_with_config(stream, Some(config)).map_err(|e| match e {
                tungstenite::HandshakeError::Failure(e) => e,
                tungstenite::HandshakeError::Interrupted(_) => unreachable!("blocking socket"),
            })?;
        loop {
            match ws.read()? {
                message @ (Message::Text(_) | Message::Binary(_)) => ws.send(message)?,
                Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
            }
        }
    }

    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || match serve(stream) {
            Ok(()) | Err(Error::ConnectionClosed | Error::Protocol(_) | Error::Utf8(_)) => (),
            Err(e) => eprintln!("connection ended: {e}"),
        });
    }
    Ok(())
}

#[cfg(all(target_family = "wasm", target_os = "unknown"))]
fn main() {
    panic!("tungstenite-echo is a native program");
}
