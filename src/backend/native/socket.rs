//! Building configured sockets with socket2; the only place socket options are set.

use crate::adapters::StreamOptions;
use crate::adapters::tcp::{LISTENER_BACKLOG, TcpKeepalive};
use crate::adapters::udp::{UdpConnectConfig, UdpListenConfig};
use mio::net::{TcpListener, TcpStream, UdpSocket};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Adds what was being done to an error, keeping its kind.
pub(crate) fn context(error: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {error}"))
}

fn keepalive(socket: &SockRef<'_>, keepalive: &TcpKeepalive) -> io::Result<()> {
    let mut params = socket2::TcpKeepalive::new();
    if let Some(time) = keepalive.time {
        params = params.with_time(time);
    }
    #[cfg(not(any(target_os = "openbsd", target_os = "redox", target_os = "solaris")))]
    if let Some(interval) = keepalive.interval {
        params = params.with_interval(interval);
    }
    #[cfg(not(any(
        target_os = "openbsd",
        target_os = "redox",
        target_os = "solaris",
        target_os = "windows"
    )))]
    if let Some(retries) = keepalive.retries {
        params = params.with_retries(retries);
    }
    socket.set_tcp_keepalive(&params)
}

fn apply_common(socket: &Socket, options: &StreamOptions) -> io::Result<()> {
    if options.reuse_address {
        socket.set_reuse_address(true)?;
    }
    #[cfg(unix)]
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    if let Some(device) = &options.bind_device {
        socket.bind_device(Some(device.as_bytes()))?;
    }
    Ok(())
}

/// Options every connected stream gets, accepted or connected.
pub(crate) fn configure_stream(stream: &TcpStream, options: &StreamOptions) -> io::Result<()> {
    // Messages are sent whole (header and payload in one write), so Nagle only adds latency.
    stream.set_nodelay(true)?;
    if let Some(params) = &options.keepalive {
        keepalive(&SockRef::from(stream), params)?;
    }
    Ok(())
}

fn stream_socket(addr: SocketAddr, options: &StreamOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    apply_common(&socket, options)?;
    if let Some(source) = options.source_address {
        socket.bind(&source.into())?;
    }
    Ok(socket)
}

/// Starts a non-blocking connect; completion is reported by the poll as writability.
pub(crate) fn tcp_connect(addr: SocketAddr, options: &StreamOptions) -> io::Result<TcpStream> {
    let socket = stream_socket(addr, options)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => (),
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc_einprogress()) => (),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => (),
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(socket.into());
    configure_stream(&stream, options)?;
    Ok(stream)
}

#[cfg(unix)]
fn libc_einprogress() -> i32 {
    // EINPROGRESS: 115 on Linux, 36 on the BSDs and macOS.
    if cfg!(any(target_os = "linux", target_os = "android")) { 115 } else { 36 }
}

/// Connects, blocking the caller for at most `timeout`; returns a non-blocking stream.
pub(crate) fn tcp_connect_blocking(
    addr: SocketAddr,
    options: &StreamOptions,
    timeout: Duration,
) -> io::Result<std::net::TcpStream> {
    let socket = stream_socket(addr, options)?;
    socket.connect_timeout(&addr.into(), timeout)?;
    let stream: std::net::TcpStream = socket.into();
    Ok(stream)
}

/// Binds and listens.
pub(crate) fn tcp_listen(addr: SocketAddr, options: &StreamOptions) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std does: rebinding a port in TIME_WAIT is what servers expect on restart.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    apply_common(&socket, options)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTENER_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn unspecified_like(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    }
}

/// A UDP socket bound locally and connected to `addr`.
pub(crate) fn udp_connect(addr: SocketAddr, config: &UdpConnectConfig) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    socket.set_reuse_address(config.reuse_address)?;
    #[cfg(unix)]
    socket.set_reuse_port(config.reuse_port)?;
    socket.set_broadcast(config.broadcast)?;
    // Bind to the peer's family by default: message-io bound to 0.0.0.0 and failed on IPv6.
    let source = config.source_address.unwrap_or_else(|| unspecified_like(addr));
    socket.bind(&source.into())?;
    socket.connect(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into()))
}

/// A UDP socket bound to `addr`; a multicast `addr` joins that group on a socket bound to the
/// group's port. Returns the group joined, if any.
pub(crate) fn udp_listen(
    addr: SocketAddr,
    config: &UdpListenConfig,
) -> io::Result<(UdpSocket, Option<IpAddr>)> {
    let multicast = addr.ip().is_multicast().then_some(addr.ip());
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    let shared = multicast.is_some() || config.receive_broadcasts;
    if config.reuse_address || shared {
        socket.set_reuse_address(true)?;
    }
    #[cfg(unix)]
    if config.reuse_port || shared {
        socket.set_reuse_port(true)?;
    }
    socket.set_broadcast(config.send_broadcasts || config.receive_broadcasts)?;
    match multicast {
        Some(IpAddr::V4(group)) => {
            socket.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED)?;
            socket.set_multicast_loop_v4(true)?;
            socket.bind(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port()).into())?;
        }
        Some(IpAddr::V6(group)) => {
            // The address's scope id names the interface (0: the system's choice).
            let interface = match addr {
                SocketAddr::V6(v6) => v6.scope_id(),
                SocketAddr::V4(_) => 0,
            };
            socket.set_only_v6(true)?;
            socket.join_multicast_v6(&group, interface)?;
            socket.set_multicast_loop_v6(true)?;
            socket.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), addr.port()).into())?;
        }
        None => socket.bind(&addr.into())?,
    }
    Ok((UdpSocket::from_std(socket.into()), multicast))
}
