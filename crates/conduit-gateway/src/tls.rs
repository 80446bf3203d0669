//! TLS for the HTTP/WebSocket listener: rustls with the *ring* provider.
//!
//! [`GatewayConfig::tls`](crate::GatewayConfig::tls) names a PEM certificate chain and a PEM
//! private key (PKCS#8, PKCS#1 or SEC1); [`Gateway::bind`](crate::Gateway::bind) loads them
//! ([`server_config`]) and serves HTTPS / `wss://` on the listen address. Handshakes run in their
//! own tasks (at most [`MAX_PENDING_HANDSHAKES`] at once, each within [`HANDSHAKE_TIMEOUT`]), so
//! a slow or silent client never holds up the others. A client that speaks plain HTTP to the TLS
//! port fails its handshake and is disconnected.
//!
//! ALPN offers `http/1.1` only (WebSocket upgrades are HTTP/1.1).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

use crate::GatewayError;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; beyond it new connections wait in the kernel's backlog.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// The rustls server config for the PEM certificate chain `cert` and private key `key`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, GatewayError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            GatewayError::Tls(format!(
                "cannot read certificates from {}: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(GatewayError::Tls(format!(
            "no CERTIFICATE in {}",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        GatewayError::Tls(format!(
            "cannot read a private key from {}: {e}",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| GatewayError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            GatewayError::Tls(format!(
                "certificate {} and its key do not work together: {e}",
                cert.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS acceptor for `cert` and `key` (see [`server_config`]).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, GatewayError> {
    server_config(cert, key).map(TlsAcceptor::from)
}

/// What a [`GatewayListener`] hands axum: a plain or a TLS connection.
pub type GatewayIo = Either<TcpStream, TlsStream<TcpStream>>;

type Handshake = Option<(TlsStream<TcpStream>, SocketAddr)>;

/// The gateway's listener for `axum::serve`: plain TCP, or TCP with TLS handshakes done in
/// background tasks.
pub struct GatewayListener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    handshakes: JoinSet<Handshake>,
}

impl std::fmt::Debug for GatewayListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayListener")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .field("handshakes", &self.handshakes.len())
            .finish()
    }
}

impl GatewayListener {
    /// Serve `tcp`, over TLS when `tls` is given.
    pub fn new(tcp: TcpListener, tls: Option<TlsAcceptor>) -> Self {
        Self {
            tcp,
            tls,
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, acceptor: TlsAcceptor, tcp: TcpStream, addr: SocketAddr) {
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Some((stream, addr)),
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

/// Frames are small and latency-bound (a permission answer, a user turn): never let Nagle's
/// algorithm hold one back waiting for a delayed ACK.
fn nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

/// As axum does for its own listeners: per-connection errors are skipped, others (too many open
/// files, …) are logged and waited out.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl axum::serve::Listener for GatewayListener {
    type Io = GatewayIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(acceptor) = self.tls.clone() else {
                match self.tcp.accept().await {
                    Ok((tcp, addr)) => {
                        nodelay(&tcp);
                        return (Either::Left(tcp), addr);
                    }
                    Err(e) => accept_error(e).await,
                }
                continue;
            };
            let room = self.handshakes.len() < MAX_PENDING_HANDSHAKES;
            tokio::select! {
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some((stream, addr))) = done {
                        return (Either::Right(stream), addr);
                    }
                }
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((tcp, addr)) => {
                        nodelay(&tcp);
                        self.start_handshake(acceptor, tcp, addr);
                    }
                    Err(e) => accept_error(e).await,
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
