//! A WebSocket echo server on portnet: the server that `tests/autobahn.sh` runs the Autobahn
//! cases 1–7 against (beside `examples/tungstenite-echo.rs`, the baseline).
//!
//! ```text
//! cargo run --example ws-echo                  # prints `listening on 127.0.0.1:PORT`, serves until killed
//! RUST_LOG=debug cargo run --example ws-echo   # also logs why each connection ended
//! ```
//!
//! Text messages come back as text, binary as binary; pings, closes and protocol errors are
//! handled by portnet.

use portnet::network::{MessageKind, NetEvent, Transport};
use portnet::node;
use std::io::Write;

fn main() -> std::io::Result<()> {
    env_logger::init();
    let (handler, listener) = node::split::<()>();
    let (_, addr) = handler.network().listen(Transport::Ws, "127.0.0.1:0")?;
    println!("listening on {addr}");
    std::io::stdout().flush()?;
    listener.for_each(move |event| {
        if let NetEvent::Message(endpoint, data) = event.network() {
            let network = handler.network();
            // A status other than `Sent` means the connection is going away: nothing to do.
            let _status = match network.message_kind(endpoint) {
                MessageKind::Text => match std::str::from_utf8(data) {
                    Ok(text) => network.send_text(endpoint, text),
                    Err(e) => panic!("portnet delivered a text message that is not UTF-8: {e}"),
                },
                MessageKind::Binary => network.send(endpoint, data),
            };
        }
    });
    Ok(())
}
