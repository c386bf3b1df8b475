//! TLS for `Ws` (`wss://`) on rustls with the ring provider: the client and server configs,
//! built from the plain-data options in `adapters::ws`.

use crate::adapters::ws::{TlsConnectOptions, TlsIdentity};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use std::io;
use std::sync::{Arc, OnceLock};

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates from PEM (every CERTIFICATE block) or, failing that, one DER certificate.
fn certificates(bytes: &[u8], what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let certs = CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("{what}: bad PEM: {e}")))?;
        if certs.is_empty() {
            return Err(invalid(format!("{what}: no CERTIFICATE in the PEM data")));
        }
        Ok(certs)
    } else if bytes.is_empty() {
        Err(invalid(format!("{what}: empty")))
    } else {
        Ok(vec![CertificateDer::from(bytes.to_vec())])
    }
}

/// A private key from PEM (PKCS#8, PKCS#1 or SEC1) or DER (tried in that order).
fn private_key(bytes: &[u8]) -> io::Result<PrivateKeyDer<'static>> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        return PrivateKeyDer::from_pem_slice(bytes)
            .map_err(|e| invalid(format!("TLS private key: bad PEM: {e}")));
    }
    PrivateKeyDer::try_from(bytes.to_vec())
        .map_err(|e| invalid(format!("TLS private key: not a DER key: {e}")))
}

/// The client config: webpki roots plus any roots the application added.
pub(crate) fn client_config(options: &TlsConnectOptions) -> io::Result<Arc<ClientConfig>> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let build = |roots: RootCertStore| -> io::Result<Arc<ClientConfig>> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    };
    let webpki = || RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if options.roots.is_empty() {
        if let Some(config) = DEFAULT.get() {
            return Ok(config.clone());
        }
        let config = build(webpki())?;
        return Ok(DEFAULT.get_or_init(|| config).clone());
    }
    let mut roots = webpki();
    for bytes in &options.roots {
        for cert in certificates(bytes, "TLS root certificate")? {
            roots.add(cert).map_err(|e| invalid(format!("TLS root certificate: {e}")))?;
        }
    }
    build(roots)
}

/// A client connection verifying the server against `name` (or `options.server_name`).
pub(crate) fn client(options: &TlsConnectOptions, host: &str) -> io::Result<ClientConnection> {
    let config = client_config(options)?;
    let name = options.server_name.as_deref().unwrap_or(host);
    let name = ServerName::try_from(name.to_owned())
        .map_err(|e| invalid(format!("TLS server name {name:?}: {e}")))?;
    ClientConnection::new(config, name).map_err(invalid)
}

/// The server config of a TLS listener.
pub(crate) fn server_config(identity: &TlsIdentity) -> io::Result<Arc<ServerConfig>> {
    let chain = certificates(&identity.chain, "TLS certificate chain")?;
    let key = private_key(&identity.key)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(invalid)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid(format!("TLS certificate and key: {e}")))?;
    Ok(Arc::new(config))
}

/// A server connection for one accepted socket.
pub(crate) fn server(config: &Arc<ServerConfig>) -> io::Result<ServerConnection> {
    ServerConnection::new(config.clone()).map_err(invalid)
}
