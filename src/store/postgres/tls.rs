//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert` URL parameters, over the
//! rustls that reqwest already brings (and its crypto provider, ring).
//!
//! tokio-postgres's own URL parser knows `sslmode=disable|prefer|require` only, and has no
//! certificate checks of its own (the connector does them), so [`split_url`] takes the TLS
//! parameters out of the URL, and [`TlsParams::connector`] builds the connector they ask for:
//!
//! | `sslmode`      | TLS                            | certificate check             |
//! | -------------- | ------------------------------ | ----------------------------- |
//! | `disable`      | never                          | —                             |
//! | `prefer` (default) | if the server offers it    | none                          |
//! | `require`      | always                         | none (as `verify-ca` when `sslrootcert` is set) |
//! | `verify-ca`    | always                         | chain to the root, any name   |
//! | `verify-full`  | always                         | chain to the root, host name  |
//!
//! "No check" still verifies the handshake's signatures (the peer holds the key of the
//! certificate it shows); it does not say whose certificate that is. The root is
//! `sslrootcert=<PEM file>`, `sslrootcert=system` (the platform's store, else the bundled
//! Mozilla roots; only with `verify-full`, as in libpq: any publicly trusted certificate
//! would pass a weaker check), or else `~/.postgresql/root.crt` as in libpq.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls::{Error as RustlsError, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode`, less `allow` (tokio-postgres cannot try plain first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain connections only.
    Disable,
    /// TLS if the server offers it, else plain; no certificate check.
    Prefer,
    /// TLS; no certificate check.
    Require,
    /// TLS; the chain must lead to the root certificate; any host name.
    VerifyCa,
    /// TLS; the chain must lead to the root certificate, for the host name connected to.
    VerifyFull,
}

impl SslMode {
    /// Parses an `sslmode` value, with libpq's names.
    fn parse(value: &str) -> Result<Self, String> {
        match value {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(format!(
                "invalid sslmode {other:?}: expected disable, prefer, require, verify-ca or \
                 verify-full"
            )),
        }
    }

    /// Its name in a URL.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// tokio-postgres's mode: whether to ask for TLS and whether plain is acceptable (the
    /// certificate checks are the connector's).
    pub fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            Self::Disable => Driver::Disable,
            Self::Prefer => Driver::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => Driver::Require,
        }
    }
}

/// Where the root certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more certificates.
    File(PathBuf),
    /// The platform's trusted roots (`sslrootcert=system`).
    System,
}

/// The TLS parameters of a database URL, parsed but not yet loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    /// `sslmode`; [`SslMode::Prefer`] when the URL sets none (`verify-full` with
    /// `sslrootcert=system`).
    pub mode: SslMode,
    /// `sslrootcert`, if set.
    pub root: Option<RootCert>,
}

/// TLS parameters other than these are libpq's client certificates, CRLs and the like,
/// which Switchboard does not take; `sslnegotiation` is tokio-postgres's own.
const OWN_PARAMETERS: [&str; 2] = ["sslmode", "sslrootcert"];

/// Splits `url` into the URL for tokio-postgres (without `sslmode` and `sslrootcert`, every
/// other parameter as it was) and the TLS parameters.
pub fn split_url(url: &str) -> Result<(String, TlsParams), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), TlsParams::resolve(None, None)?));
    };
    let (mut mode, mut root, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match decode(key)?.as_str() {
            "sslmode" => mode = Some(SslMode::parse(&decode(value)?)?),
            "sslrootcert" => root = Some(root_cert(&decode(value)?)?),
            "sslnegotiation" => kept.push(pair),
            other if other.starts_with("ssl") && !OWN_PARAMETERS.contains(&other) => {
                return Err(format!(
                    "unsupported TLS parameter {other:?}: Switchboard takes sslmode and \
                     sslrootcert (client certificates are not supported)"
                ))
            }
            _ => kept.push(pair),
        }
    }
    let rest = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Ok((rest, TlsParams::resolve(mode, root)?))
}

/// An `sslrootcert` value: `system` or a path.
fn root_cert(value: &str) -> Result<RootCert, String> {
    match value {
        "" => Err("sslrootcert is empty: give the path of a PEM file, or system".into()),
        "system" => Ok(RootCert::System),
        path => Ok(RootCert::File(PathBuf::from(path))),
    }
}

/// A URL component with its `%XX` escapes decoded (a `+` stays a `+`, as in libpq).
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None if bytes[i] == b'%' => return Err(format!("invalid %-escape in {text:?}")),
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

impl TlsParams {
    /// The mode in force: the default, and libpq's rules for `sslrootcert=system`.
    fn resolve(mode: Option<SslMode>, root: Option<RootCert>) -> Result<Self, String> {
        let system = root == Some(RootCert::System);
        let mode = match (mode, system) {
            (None, true) => SslMode::VerifyFull,
            (None, false) => SslMode::Prefer,
            (Some(mode), false) => mode,
            (Some(SslMode::VerifyFull), true) => SslMode::VerifyFull,
            (Some(weak), true) => {
                return Err(format!(
                    "sslmode={} may not be used with sslrootcert=system (use verify-full): any \
                     publicly trusted certificate would pass it",
                    weak.name()
                ))
            }
        };
        Ok(Self { mode, root })
    }

    /// Whether the certificate is checked, and how: `require` with a root is `verify-ca`.
    fn check(&self) -> Check {
        match (self.mode, &self.root) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => Check::None,
            (SslMode::Require | SslMode::VerifyCa, _) => Check::Chain,
            (SslMode::VerifyFull, _) => Check::ChainAndName,
        }
    }

    /// The root certificate's source when a check needs one: `sslrootcert`, else
    /// `root.crt` in `home`'s `.postgresql`, else an error saying to set `sslrootcert`.
    fn root_source(&self, home: Option<&Path>) -> Result<RootCert, String> {
        if let Some(root) = &self.root {
            return Ok(root.clone());
        }
        let default = home.map(|home| home.join(".postgresql/root.crt"));
        match default {
            Some(path) if path.is_file() => Ok(RootCert::File(path)),
            _ => Err(format!(
                "sslmode={} needs the server's root certificate: set sslrootcert=<path to PEM> \
                 (or sslrootcert=system); there is no ~/.postgresql/root.crt",
                self.mode.name()
            )),
        }
    }

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

/// What a connection checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing but the handshake's signatures.
    None,
    /// The chain to the root; not the host name.
    Chain,
    /// The chain to the root and the host name.
    ChainAndName,
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

/// Accepts any certificate, and still verifies the handshake's signatures with it (the
/// "no check" modes).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, RustlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: webpki's checks, except that a certificate for another name passes (webpki
/// checks the name last, after the chain, its validity and usage).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, RustlsError> {
        let verified =
            self.0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match verified {
            Err(RustlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
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

    fn error(url: &str) -> String {
        split_url(url).unwrap_err()
    }

    #[test]
    fn every_mode_parses_and_prefer_is_the_default() {
        use tokio_postgres::config::SslMode as Driver;
        let cases = [
            ("disable", SslMode::Disable, Driver::Disable),
            ("prefer", SslMode::Prefer, Driver::Prefer),
            ("require", SslMode::Require, Driver::Require),
            ("verify-ca", SslMode::VerifyCa, Driver::Require),
            ("verify-full", SslMode::VerifyFull, Driver::Require),
        ];
        for (name, mode, driver) in cases {
            let parsed = params(&format!("postgres://u@h/db?sslmode={name}"));
            assert_eq!(parsed, TlsParams { mode, root: None });
            assert_eq!(mode.name(), name);
            assert_eq!(mode.driver_mode(), driver);
        }
        assert_eq!(params("postgres://u@h/db").mode, SslMode::Prefer);
        assert_eq!(params("postgres://u@h/db?user=x").mode, SslMode::Prefer);
    }

    #[test]
    fn a_bad_mode_says_which_are_valid() {
        assert_eq!(
            error("postgres://u@h/db?sslmode=verify_full"),
            "invalid sslmode \"verify_full\": expected disable, prefer, require, verify-ca or \
             verify-full"
        );
        assert!(error("postgres://u@h/db?sslmode=allow").contains("invalid sslmode \"allow\""));
        assert!(error("postgres://u@h/db?sslmode=").contains("invalid sslmode \"\""));
    }

    #[test]
    fn the_tls_parameters_are_taken_out_and_the_rest_kept_as_it_was() {
        let url = "postgres://u:p%40ss@h:5433/db?application_name=a%20b&sslmode=require\
                   &sslrootcert=%2Fetc%2Fca+1.pem&connect_timeout=3&sslnegotiation=postgres";
        let (rest, parsed) = split_url(url).unwrap();
        assert_eq!(
            rest,
            "postgres://u:p%40ss@h:5433/db?application_name=a%20b&connect_timeout=3\
             &sslnegotiation=postgres"
        );
        let root = Some(RootCert::File("/etc/ca+1.pem".into()));
        let expected = TlsParams {
            mode: SslMode::Require,
            root,
        };
        assert_eq!(parsed, expected);
        let (rest, _) = split_url("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(rest, "postgres://u@h/db");
        assert!(rest.parse::<tokio_postgres::Config>().is_ok());
    }

    #[test]
    fn bad_root_values_and_unsupported_parameters_are_refused() {
        assert!(error("postgres://u@h/db?sslrootcert=").contains("sslrootcert is empty"));
        assert!(error("postgres://u@h/db?sslrootcert=%zz").contains("invalid %-escape"));
        let unsupported = error("postgres://u@h/db?sslmode=require&sslcert=client.pem");
        assert!(
            unsupported.starts_with("unsupported TLS parameter \"sslcert\""),
            "{unsupported}"
        );
    }

    #[test]
    fn sslrootcert_system_means_verify_full_and_refuses_weaker_modes() {
        let system = params("postgres://u@h/db?sslrootcert=system");
        assert_eq!(system.mode, SslMode::VerifyFull);
        assert_eq!(system.root, Some(RootCert::System));
        let full = params("postgres://u@h/db?sslrootcert=system&sslmode=verify-full");
        assert_eq!(full.mode, SslMode::VerifyFull);
        for weak in ["disable", "prefer", "require", "verify-ca"] {
            let message = error(&format!(
                "postgres://u@h/db?sslmode={weak}&sslrootcert=system"
            ));
            assert!(
                message.starts_with(&format!(
                    "sslmode={weak} may not be used with sslrootcert=system (use verify-full)"
                )),
                "{message}"
            );
        }
    }

    #[test]
    fn require_with_a_root_checks_the_chain_as_verify_ca_does() {
        let check = |url: &str| params(url).check();
        assert_eq!(check("postgres://h/db?sslmode=disable"), Check::None);
        assert_eq!(check("postgres://h/db?sslmode=prefer"), Check::None);
        assert_eq!(check("postgres://h/db?sslmode=require"), Check::None);
        let require_with_root = "postgres://h/db?sslmode=require&sslrootcert=ca.pem";
        assert_eq!(check(require_with_root), Check::Chain);
        assert_eq!(check("postgres://h/db?sslmode=verify-ca"), Check::Chain);
        let full = "postgres://h/db?sslmode=verify-full";
        assert_eq!(check(full), Check::ChainAndName);
    }

    #[test]
    fn without_sslrootcert_the_root_is_home_root_crt_or_a_clear_error() {
        let home = tempfile::tempdir().unwrap();
        let verify = params("postgres://h/db?sslmode=verify-ca");
        let missing = verify.root_source(Some(home.path())).unwrap_err();
        assert!(
            missing.starts_with(
                "sslmode=verify-ca needs the server's root certificate: set \
                 sslrootcert=<path to PEM>"
            ),
            "{missing}"
        );
        assert_eq!(verify.root_source(None).unwrap_err(), missing);
        let default = home.path().join(".postgresql/root.crt");
        std::fs::create_dir_all(default.parent().unwrap()).unwrap();
        std::fs::write(&default, "").unwrap();
        let found = verify.root_source(Some(home.path())).unwrap();
        assert_eq!(found, RootCert::File(default));
        let given = params("postgres://h/db?sslmode=verify-full&sslrootcert=ca.pem");
        let source = given.root_source(Some(home.path())).unwrap();
        assert_eq!(source, RootCert::File("ca.pem".into()));
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
