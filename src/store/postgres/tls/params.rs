//! The TLS parameters of a database URL (`sslmode`, `sslrootcert`), parsed with libpq's
//! meaning and taken out of the URL before tokio-postgres, whose parser knows neither
//! `verify-ca` nor `verify-full` nor `sslrootcert`, reads the rest.

use std::path::{Path, PathBuf};

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
    pub(super) fn check(&self) -> Check {
        match (self.mode, &self.root) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => Check::None,
            (SslMode::Require | SslMode::VerifyCa, _) => Check::Chain,
            (SslMode::VerifyFull, _) => Check::ChainAndName,
        }
    }

    /// The root certificate's source when a check needs one: `sslrootcert`, else
    /// `root.crt` in `home`'s `.postgresql`, else an error saying to set `sslrootcert`.
    pub(super) fn root_source(&self, home: Option<&Path>) -> Result<RootCert, String> {
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
}

/// What a connection checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Nothing but the handshake's signatures.
    None,
    /// The chain to the root; not the host name.
    Chain,
    /// The chain to the root and the host name.
    ChainAndName,
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
}
