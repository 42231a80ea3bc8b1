//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert` URL parameters, over the
//! rustls that reqwest already brings (and its crypto provider, ring).
//!
//! tokio-postgres's own URL parser knows `sslmode=disable|prefer|require` only, and has no
//! certificate checks of its own (the connector does them), so [`split_url`] takes the TLS
//! parameters out of the URL, and [`TlsParams::connector`] builds the connector they ask for:
//!
//! | `sslmode`          | TLS                      | certificate check                     |
//! | ------------------ | ------------------------ | ------------------------------------- |
//! | `disable`          | never                    | —                                     |
//! | `prefer` (default) | if the server offers it  | none                                  |
//! | `require`          | always                   | none; as `verify-ca` with sslrootcert |
//! | `verify-ca`        | always                   | chain to the root, any host name      |
//! | `verify-full`      | always                   | chain to the root and the host name   |
//!
//! "No check" still verifies the handshake's signatures (the peer holds the key of the
//! certificate it shows); it does not say whose certificate that is. The root is
//! `sslrootcert=<PEM file>`, `sslrootcert=system` (the platform's store, else the bundled
//! Mozilla roots; only with `verify-full`, as in libpq: any publicly trusted certificate
//! would pass a weaker check), or else `~/.postgresql/root.crt` as in libpq.
//!
//! `params.rs` parses the URL; `verify.rs` holds the two checks webpki does not offer (none,
//! and the chain without the name); this file builds the connector and does the handshake.

mod params;
mod verify;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use self::params::Check;
pub use self::params::{split_url, RootCert, SslMode, TlsParams};
use self::verify::{AnyCertificate, ChainOnly};

impl TlsParams {
    /// The connector for these parameters and the servers of `servers`, with the roots
    /// loaded (files read now, so that a missing one fails the start).
    pub fn connector(&self, servers: &tokio_postgres::Config) -> Result<MakeRustls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let check = self.check();
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            Check::None => Arc::new(AnyCertificate(provider.signature_verification_algorithms)),
            Check::Chain | Check::ChainAndName => {
                let home = std::env::var_os("HOME").map(PathBuf::from);
                let roots = load_roots(&self.root_source(home.as_deref())?)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| format!("TLS setup: {e}"))?;
                match check {
                    Check::Chain => Arc::new(ChainOnly(webpki)),
                    _ => webpki,
                }
            }
        };
        let mut config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // PostgreSQL 17 asks for it with sslnegotiation=direct; older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustls {
            config: Arc::new(config),
            ports: host_ports(servers).into(),
        })
    }
}

/// The trusted roots from `source`.
fn load_roots(source: &RootCert) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match source {
        RootCert::System => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
        }
        RootCert::File(path) => {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read sslrootcert {shown:?}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("sslrootcert {shown:?} holds no PEM certificate"));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {shown:?}: {e}"))?;
            }
        }
    }
    Ok(roots)
}

/// Each TCP host of `config` with its port (tokio-postgres's rule: the port at the same
/// index, else the only one, else 5432), so that a failed handshake names both.
pub fn host_ports(config: &tokio_postgres::Config) -> Vec<(String, u16)> {
    let ports = config.get_ports();
    let tcp = config
        .get_hosts()
        .iter()
        .enumerate()
        .filter_map(|(i, host)| match host {
            tokio_postgres::config::Host::Tcp(host) => Some((i, host)),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => None,
        });
    tcp.map(|(i, host)| {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        (host.clone(), port)
    })
    .collect()
}

/// Makes a [`RustlsConnect`] per connection, for tokio-postgres and the pool.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
    /// The servers' hosts and ports, to name the server in a failed handshake.
    ports: Arc<[(String, u16)]>,
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    /// Never fails: tokio-postgres calls it for Unix sockets too (with no host name), and
    /// only handshakes over TCP; a host name rustls cannot take fails the handshake.
    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        let port = self.ports.iter().find(|(host, _)| host == domain);
        Ok(RustlsConnect {
            config: Arc::clone(&self.config),
            host: domain.to_owned(),
            server: match port {
                Some((_, port)) => format!("{domain}:{port}"),
                None => domain.to_owned(),
            },
        })
    }
}

/// One connection's handshake, with the host name it checks the certificate against.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    host: String,
    /// `host:port`, for messages.
    server: String,
}

/// A failed handshake: with whom, and why (rustls's error, e.g. "invalid peer
/// certificate: UnknownIssuer").
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {server} failed")]
pub struct HandshakeError {
    /// The server connected to, `host:port` (the host is the name the certificate is
    /// checked against).
    pub server: String,
    /// rustls's or the socket's error.
    #[source]
    pub cause: io::Error,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, HandshakeError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let server = self.server;
            let name = match ServerName::try_from(self.host) {
                Ok(name) => name,
                Err(e) => {
                    let cause = io::Error::new(io::ErrorKind::InvalidInput, e);
                    return Err(HandshakeError { server, cause });
                }
            };
            tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await
                .map(RustlsStream)
                .map_err(|cause| HandshakeError { server, cause })
        })
    }
}

/// A TLS session to the server (no channel binding data: SCRAM runs without `-PLUS`).
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(url: &str) -> TlsParams {
        split_url(url).unwrap().1
    }

    #[test]
    fn a_root_file_that_cannot_be_read_or_holds_nothing_fails_the_connector() {
        let servers: tokio_postgres::Config = "postgres://h/db".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent.pem");
        let url = format!(
            "postgres://h/db?sslmode=verify-full&sslrootcert={}",
            absent.display()
        );
        let message = params(&url).connector(&servers).err().unwrap();
        assert!(message.starts_with("cannot read sslrootcert"), "{message}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let url = format!(
            "postgres://h/db?sslmode=verify-ca&sslrootcert={}",
            empty.display()
        );
        let message = params(&url).connector(&servers).err().unwrap();
        assert!(message.contains("holds no PEM certificate"), "{message}");
        assert!(params("postgres://h/db").connector(&servers).is_ok());
    }

    #[test]
    fn each_host_is_named_with_its_port() {
        let config: tokio_postgres::Config = "postgres://a:5433,b:5434/db".parse().unwrap();
        let expected = vec![("a".to_owned(), 5433), ("b".to_owned(), 5434)];
        assert_eq!(host_ports(&config), expected);
        let config: tokio_postgres::Config = "postgres://a,b/db".parse().unwrap();
        assert_eq!(host_ports(&config)[1], ("b".to_owned(), 5432));
    }
}
