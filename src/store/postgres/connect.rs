//! Connections to PostgreSQL: the settings every connection gets, and the pool.
//!
//! Waits on the database are bounded: a TCP connect gives up after `connect_timeout`, and a
//! new pooled connection (connect and startup) after [`CONNECT_TIMEOUT`] and a second; TCP
//! keepalives find a peer that vanished without closing (a dead host, a cut network); the
//! server ends every ordinary statement after `statement_timeout`; a caller waits for a
//! pooled connection at most [`POOL_WAIT`]. Each default applies unless the URL sets its
//! own (`connect_timeout=`, `keepalives_idle=`, `options=-c statement_timeout=…`,
//! `application_name=`), so an operator can tune them without a new flag. (A statement
//! already sent to a server that stalls, alive but answering nothing, waits for it: the
//! server enforces `statement_timeout`, and its kernel answers the keepalives.)
//!
//! TLS follows the URL's `sslmode` and `sslrootcert` (`tls.rs`); the pool and the listener
//! connect with the same [`Target`]. The pool's first connection is made at start, so that
//! a database that cannot be reached says why (a TLS handshake, pg_hba.conf, a refused
//! connection) instead of failing later as a generic database error.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};

use super::tls::{self, HandshakeError, MakeRustls, SslMode};
use crate::store::StoreError;

/// Connections per node: enough for the engine's concurrent settles and the API.
const POOL_SIZE: usize = 32;

/// Longest wait for a pooled connection when all are busy; beyond it the call fails (and
/// is retried by its caller: a delivery comes due again, an API call answers 503/500).
pub const POOL_WAIT: Duration = Duration::from_secs(10);

/// Default limit of one connection attempt (TCP and startup).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default limit of one statement on the server (`statement_timeout`); migrations lift it.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default idle time before TCP keepalive probes start, then their interval and count:
/// a silent peer is found dead within about 10 + 3 × 2 = 16 s.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_RETRIES: u32 = 3;

/// tokio-postgres's own default keepalive idle time (2 h), i.e. the URL did not set one.
const DRIVER_KEEPALIVE_IDLE: Duration = Duration::from_secs(7_200);

/// What every connection to the database is made from.
#[derive(Clone)]
pub struct Target {
    /// tokio-postgres's settings: the URL without its TLS parameters, plus our defaults.
    pub config: tokio_postgres::Config,
    /// The TLS connector the URL's `sslmode` and `sslrootcert` ask for.
    pub tls: MakeRustls,
    /// The `sslmode` in force, for messages.
    pub mode: SslMode,
}

/// Parses `url` (its TLS parameters, then the rest), loads the root certificates it names,
/// and fills in the defaults above where the URL sets nothing; `node` names the
/// connections in `pg_stat_activity` (`application_name`).
pub fn config(url: &str, node: &str) -> Result<Target, StoreError> {
    let (url, params) = tls::split_url(url).map_err(StoreError::Open)?;
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Open(format!("invalid PostgreSQL URL: {e}")))?;
    config.ssl_mode(params.mode.driver_mode());
    with_defaults(&mut config, node);
    let tls = params.connector(&config).map_err(StoreError::Open)?;
    Ok(Target {
        config,
        tls,
        mode: params.mode,
    })
}

/// Fills in the defaults above where the URL sets nothing.
fn with_defaults(config: &mut tokio_postgres::Config, node: &str) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_keepalives() && config.get_keepalives_idle() == DRIVER_KEEPALIVE_IDLE {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVE_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVE_RETRIES);
    }
    let options = config.get_options().unwrap_or_default().to_owned();
    if !options.contains("statement_timeout") {
        let limit = STATEMENT_TIMEOUT.as_millis();
        config.options(format!("{options} -c statement_timeout={limit}").trim_start());
    }
    if config.get_application_name().is_none() {
        config.application_name(format!("switchboard {node}"));
    }
}

/// The connection pool to `target`, once its first connection is made: a failure says
/// which server and why, e.g. "TLS handshake with 127.0.0.1:5432 failed: invalid peer
/// certificate: UnknownIssuer".
pub async fn pool(target: &Target) -> Result<Pool, StoreError> {
    let pool = build_pool(target)?;
    match pool.get().await {
        Ok(_first) => Ok(pool),
        Err(error) => Err(StoreError::Open(connect_error(target, &error))),
    }
}

/// Why the first connection failed: the handshake's own error when TLS failed, else the
/// driver's error chain, with the servers and the `sslmode`.
fn connect_error(target: &Target, error: &PoolError) -> String {
    let error: &(dyn std::error::Error + 'static) = match error {
        PoolError::Backend(error) => error,
        other => other,
    };
    let mut source = Some(error);
    while let Some(cause) = source {
        if let Some(handshake) = cause.downcast_ref::<HandshakeError>() {
            return crate::error_chain(handshake);
        }
        source = cause.source();
    }
    let servers: Vec<String> = tls::host_ports(&target.config)
        .into_iter()
        .map(|(host, port)| format!("{host}:{port}"))
        .collect();
    let servers = match servers.is_empty() {
        true => "the server".to_owned(),
        false => servers.join(", "),
    };
    let mode = target.mode.name();
    format!(
        "cannot connect to {servers} (sslmode={mode}): {}",
        crate::error_chain(error)
    )
}

/// The connection pool to `target`, with bounded waits for a connection, its creation and
/// its recycling.
fn build_pool(target: &Target) -> Result<Pool, StoreError> {
    let create = *target
        .config
        .get_connect_timeout()
        .unwrap_or(&CONNECT_TIMEOUT);
    let manager = Manager::from_config(
        target.config.clone(),
        target.tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(create + Duration::from_secs(1)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::Open(format!("cannot build the connection pool: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_the_url_leaves_unset() {
        let config = config("postgres://u@127.0.0.1/db", "node-a")
            .unwrap()
            .config;
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(config.get_options(), Some("-c statement_timeout=30000"));
        assert_eq!(config.get_application_name(), Some("switchboard node-a"));
    }

    #[test]
    fn the_url_wins_over_the_defaults() {
        let url = "postgres://u@127.0.0.1/db?connect_timeout=2&keepalives_idle=60\
                   &options=-c%20statement_timeout%3D5000&application_name=mine";
        let config = config(url, "node-a").unwrap().config;
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(config.get_options(), Some("-c statement_timeout=5000"));
        assert_eq!(config.get_application_name(), Some("mine"));
    }

    #[test]
    fn the_tls_parameters_reach_the_connector_not_the_driver() {
        let url = "postgres://u@127.0.0.1/db?sslmode=verify-ca&sslrootcert=%2Fno%2Fsuch.pem";
        let Err(StoreError::Open(message)) = config(url, "n") else {
            panic!("a missing sslrootcert must fail");
        };
        assert!(message.starts_with("cannot read sslrootcert \"/no/such.pem\""));
        let target = config("postgres://u@127.0.0.1/db?sslmode=require", "n").unwrap();
        let require = tokio_postgres::config::SslMode::Require;
        assert_eq!(target.config.get_ssl_mode(), require);
        assert_eq!(target.mode, SslMode::Require);
    }

    #[test]
    fn other_options_are_kept() {
        let url = "postgres://u@127.0.0.1/db?options=-c%20search_path%3Dsb";
        let config = config(url, "n").unwrap().config;
        assert_eq!(
            config.get_options(),
            Some("-c search_path=sb -c statement_timeout=30000")
        );
    }
}
