//! The bytes under a WebSocket: plain TCP, or TLS (rustls) over it.

use super::super::read_ahead::ReadAhead;
use mio::net::TcpStream;
use std::io::{self, Read, Write};

/// The bytes under a WebSocket: plain TCP, or TLS over it.
pub(crate) enum WsStream {
    /// With its read-ahead (`read_ahead`): tungstenite reads in small slices.
    Plain(TcpStream, ReadAhead),
    #[cfg(feature = "tls")]
    TlsClient(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    #[cfg(feature = "tls")]
    TlsServer(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl WsStream {
    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s, _) => s,
            #[cfg(feature = "tls")]
            Self::TlsClient(s) => s.get_ref(),
            #[cfg(feature = "tls")]
            Self::TlsServer(s) => s.get_ref(),
        }
    }

    /// Ends a TLS session with close_notify (best effort: the socket is closed next).
    pub(super) fn close_notify(&mut self) {
        match self {
            Self::Plain(..) => (),
            #[cfg(feature = "tls")]
            Self::TlsClient(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.write_tls(&mut s.sock);
            }
            #[cfg(feature = "tls")]
            Self::TlsServer(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.write_tls(&mut s.sock);
            }
        }
    }

    pub(super) fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Self::Plain(s, _) => s,
            #[cfg(feature = "tls")]
            Self::TlsClient(s) => s.get_mut(),
            #[cfg(feature = "tls")]
            Self::TlsServer(s) => s.get_mut(),
        }
    }
}

impl Read for WsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s, ahead) => ahead.read(s, buf),
            #[cfg(feature = "tls")]
            Self::TlsClient(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Self::TlsServer(s) => s.read(buf),
        }
    }
}

impl Write for WsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s, _) => s.write(buf),
            #[cfg(feature = "tls")]
            Self::TlsClient(s) => tls_write(s.write(buf), buf),
            #[cfg(feature = "tls")]
            Self::TlsServer(s) => tls_write(s.write(buf), buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s, _) => s.flush(),
            #[cfg(feature = "tls")]
            Self::TlsClient(s) => s.flush(),
            #[cfg(feature = "tls")]
            Self::TlsServer(s) => s.flush(),
        }
    }
}

/// rustls answers Ok(0) when its TLS buffer is full and the socket would block; tungstenite
/// takes Ok(0) for a reset connection.
#[cfg(feature = "tls")]
fn tls_write(result: io::Result<usize>, buf: &[u8]) -> io::Result<usize> {
    match result {
        Ok(0) if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
        other => other,
    }
}
