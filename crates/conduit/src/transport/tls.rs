//! TLS for the network transports (cargo feature `tls`): `wss://`, `https://` and `grpcs://`
//! gateways.
//!
//! rustls with the *ring* provider (no C build beyond ring's own). Servers are trusted when their
//! certificate chains to one of
//!
//! * the Mozilla root program (the `webpki-roots` bundle compiled in), or
//! * an extra CA certificate from a PEM file: [`CA_ENV`] (`CONDUIT_TLS_CA=/path/ca.pem`), or an
//!   explicit path given to [`client_config`]. This is how a client trusts a gateway with a
//!   self-signed certificate: point it at that certificate.
//!
//! The transports use [`default_client_config`]: the config set with
//! [`set_default_client_config`] if any, else one built from the roots above.
//!
//! ```no_run
//! # fn demo() -> claude_conduit::Result<()> {
//! use claude_conduit::transport::tls;
//! // Trust a self-signed gateway for every wss:// / https:// connection of this process.
//! tls::set_default_client_config(tls::client_config(Some("gateway-cert.pem".as_ref()))?);
//! # Ok(()) }
//! ```

use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{Error, Result};

/// Environment variable naming a PEM file of extra CA certificates to trust.
pub const CA_ENV: &str = "CONDUIT_TLS_CA";

/// The process-wide override ([`set_default_client_config`]).
static OVERRIDE: Mutex<Option<Arc<ClientConfig>>> = Mutex::new(None);
/// The config built from the environment, with the `CONDUIT_TLS_CA` value it was built for.
static FROM_ENV: Mutex<Option<(Option<OsString>, Arc<ClientConfig>)>> = Mutex::new(None);

/// Read every certificate in the PEM file at `path` (at least one).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::InvalidOptions(format!(
            "cannot read CA certificates from {}: {e}",
            path.display()
        ))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no CERTIFICATE section in the file"));
    }
    Ok(certs)
}

/// A client config trusting the webpki roots plus the CA certificates in the PEM file `extra_ca`
/// (if given). TLS 1.2 and 1.3, ring provider, no client certificate.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        for cert in load_certificates(path)? {
            roots.add(cert).map_err(|e| {
                Error::InvalidOptions(format!("bad CA certificate in {}: {e}", path.display()))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidOptions(format!("TLS client setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Use `config` for every TLS connection the transports open from now on (in this process).
pub fn set_default_client_config(config: Arc<ClientConfig>) {
    *OVERRIDE.lock().unwrap_or_else(PoisonError::into_inner) = Some(config);
}

/// Forget the override: go back to the webpki roots plus [`CA_ENV`].
pub fn clear_default_client_config() {
    *OVERRIDE.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// The config the transports use: the [`set_default_client_config`] override, else the webpki
/// roots plus the CA file named by [`CA_ENV`] (re-read when the variable changes).
pub fn default_client_config() -> Result<Arc<ClientConfig>> {
    if let Some(c) = OVERRIDE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        return Ok(c.clone());
    }
    let ca = std::env::var_os(CA_ENV).filter(|v| !v.is_empty());
    let mut cached = FROM_ENV.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((for_ca, c)) = cached.as_ref()
        && *for_ca == ca
    {
        return Ok(c.clone());
    }
    let config = client_config(ca.as_deref().map(Path::new))?;
    *cached = Some((ca, config.clone()));
    Ok(config)
}

/// The server name to verify for `authority` (`host`, `host:port`, `[v6]:port`).
pub fn server_name(authority: &str) -> Result<ServerName<'static>> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        authority
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(authority, |(h, _)| h)
    };
    ServerName::try_from(host.to_owned())
        .map_err(|e| Error::InvalidOptions(format!("`{host}` is not a valid TLS server name: {e}")))
}

/// TLS over `tcp` to `authority` with [`default_client_config`].
pub async fn connect(authority: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>> {
    let name = server_name(authority)?;
    TlsConnector::from(default_client_config()?)
        .connect(name, tcp)
        .await
        .map_err(|e| Error::transport("TLS handshake with the gateway", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_drop_the_port() {
        assert_eq!(
            server_name("example.com:443").ok(),
            Some(ServerName::try_from("example.com").unwrap())
        );
        assert!(matches!(
            server_name("127.0.0.1:8992"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]:1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(server_name("bad host:1").is_err());
    }

    #[test]
    fn default_config_builds_and_bad_ca_files_are_errors() {
        assert!(client_config(None).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here").unwrap();
        let e = client_config(Some(&empty)).unwrap_err().to_string();
        assert!(e.contains("empty.pem"), "{e}");
        assert!(client_config(Some(&dir.path().join("missing.pem"))).is_err());
    }
}
