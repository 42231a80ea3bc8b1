//! One typed, validated configuration, from defaults, a TOML file, `SWITCHBOARD_*`
//! environment variables and command-line flags (later sources win).
//!
//! Everything is checked here, once, so the rest of the service reads `Duration`s and parsed
//! URLs and never fails on a setting; a bad setting is a clear CLI error before anything runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::domain::{random_alphanumeric, AddressPolicy, UrlPolicy};

/// Command line of the `switchboard` binary.
#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Self-hosted WhatsApp Business webhook platform",
    after_help = crate::cli::EXIT_CODES_HELP
)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// What the binary does.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (configuration API, admin API and delivery).
    Serve(Box<ServeArgs>),
    /// Partners (client of a running server): create, list, show.
    Partners(crate::cli::args::PartnersArgs),
    /// WABAs (client of a running server): create, list, show.
    Wabas(crate::cli::args::WabasArgs),
    /// Channels, one per phone number (client of a running server): create, list, show.
    Channels(crate::cli::args::ChannelsArgs),
    /// Deliveries (client of a running server): list, retry.
    Deliveries(crate::cli::args::DeliveriesArgs),
    /// Re-queue the deliveries of the events of a time window (client of a running server).
    Recover(crate::cli::args::RecoverArgs),
    /// Receivers (client of a running server): list, show, pause, resume.
    Destinations(crate::cli::args::DestinationsArgs),
    /// Inject a realistic Meta message or status notification for a channel's number.
    SendTest(crate::cli::args::SendTestArgs),
    /// Follow the live stream of events, attempts and state changes, decoded.
    Tail(crate::cli::args::TailArgs),
    /// Copy a live SQLite database to a file, consistently, while the server runs.
    Backup(crate::cli::args::BackupArgs),
    /// Put a backup in place of a SQLite database no server is running on.
    Restore(crate::cli::args::RestoreArgs),
    /// Check that a server answers `/health` (or `/ready`) with 200: exit 0, else non-zero.
    Health(crate::cli::args::HealthArgs),
}

/// Flags of `switchboard serve`; each has an environment variable and a config-file key.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// HTTP listen address; `:PORT` listens on every interface, port 0 picks a free port.
    #[arg(long, env = "SWITCHBOARD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// `sqlite://PATH` (default `sqlite://switchboard.db`) or `postgres://…`; TLS as in
    /// libpq: `?sslmode=disable|prefer|require|verify-ca|verify-full` (default prefer) and
    /// `sslrootcert=PEM-FILE|system` (verify-ca/verify-full need it, else
    /// ~/.postgresql/root.crt).
    #[arg(long, env = "SWITCHBOARD_DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,
    /// Bearer token for `/admin`; generated and printed once when not given.
    #[arg(
        long,
        env = "SWITCHBOARD_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Development mode: accept `http://` and ports for loopback receivers, and deliver to
    /// loopback addresses; every other internal address stays refused.
    #[arg(long, env = "SWITCHBOARD_DEV")]
    pub dev: bool,
    /// App secret that signs Meta's webhooks (`X-Hub-Signature-256`).
    #[arg(
        long,
        env = "SWITCHBOARD_META_APP_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub meta_app_secret: Option<String>,
    /// Token that answers Meta's `hub.challenge` handshake.
    #[arg(
        long,
        env = "SWITCHBOARD_META_VERIFY_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub meta_verify_token: Option<String>,
    /// Hard limit for one delivery attempt, in milliseconds [default: 5000].
    #[arg(long, env = "SWITCHBOARD_DELIVERY_TIMEOUT_MS", value_name = "MS")]
    pub delivery_timeout_ms: Option<u64>,
    /// First retry delay, in milliseconds; doubles per attempt [default: 1000].
    #[arg(long, env = "SWITCHBOARD_RETRY_BASE_MS", value_name = "MS")]
    pub retry_base_ms: Option<u64>,
    /// Longest delay between two attempts, in milliseconds [default: 3600000].
    #[arg(long, env = "SWITCHBOARD_RETRY_MAX_DELAY_MS", value_name = "MS")]
    pub retry_max_delay_ms: Option<u64>,
    /// Give up on a delivery this many seconds after its event arrived [default: 604800].
    #[arg(long, env = "SWITCHBOARD_RETRY_MAX_AGE_S", value_name = "SECONDS")]
    pub retry_max_age_s: Option<u64>,
    /// Most extra destinations per number (multi webhook) [default: 3].
    #[arg(long, env = "SWITCHBOARD_MAX_EXTRA_DESTINATIONS", value_name = "N")]
    pub max_extra_destinations: Option<usize>,
    /// Concurrent delivery attempts per destination (scheme, host, port) [default: 512].
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_IN_FLIGHT_PER_DESTINATION",
        value_name = "N"
    )]
    pub max_in_flight_per_destination: Option<usize>,
    /// Deliveries waiting in memory per destination; beyond, they wait in the store [default: 2000].
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_WAITING_PER_DESTINATION",
        value_name = "N"
    )]
    pub max_waiting_per_destination: Option<usize>,
    /// Memory for deliveries waiting or in flight in the engine, in MiB (payload bytes plus a
    /// small fixed share each); the rest of the queue waits in the store [default: 64].
    #[arg(long, env = "SWITCHBOARD_MAX_QUEUE_MEMORY_MIB", value_name = "MIB")]
    pub max_queue_memory_mib: Option<usize>,
    /// Delete events (with their deliveries and attempts) this many days after they arrived,
    /// once none of their deliveries is pending; 0 keeps everything [default: 30].
    #[arg(long, env = "SWITCHBOARD_RETENTION_DAYS", value_name = "DAYS")]
    pub retention_days: Option<u64>,
    /// Empty the payloads of events this many hours after they arrived, once none of their
    /// deliveries is pending; their metadata and attempts stay for --retention-days. A
    /// purged event cannot be sent again. 0 keeps payloads as long as events [default: 72].
    #[arg(
        long,
        env = "SWITCHBOARD_PAYLOAD_RETENTION_HOURS",
        value_name = "HOURS"
    )]
    pub payload_retention_hours: Option<u64>,
    /// Async worker threads (HTTP in and out); 0 means one per core. The SQLite writer has
    /// its own thread besides. Fewer than cores suits a host shared with other busy
    /// processes [default: 0].
    #[arg(long, env = "SWITCHBOARD_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,
    /// This node's name in a PostgreSQL cluster: its leases carry it, and at start a node
    /// takes back only the leases of its own previous run. Unique per running node; keep it
    /// stable across restarts (under a new name, what the old one held waits one lease)
    /// [default: the host name].
    #[arg(long, env = "SWITCHBOARD_NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,
    /// How long a delivery claimed by a node stays its own without renewal, in seconds;
    /// renewed every third of it while held. A node that dies leaves its deliveries to
    /// the others after at most this long; at least 3 × the delivery timeout [default: 30].
    #[arg(long, env = "SWITCHBOARD_DELIVERY_LEASE_S", value_name = "SECONDS")]
    pub delivery_lease_s: Option<u64>,
    /// Time a client has to send a request's head (line and headers), from its first byte,
    /// in milliseconds [default: 5000].
    #[arg(long, env = "SWITCHBOARD_HEADER_TIMEOUT_MS", value_name = "MS")]
    pub header_timeout_ms: Option<u64>,
    /// Time a client has to send a request's whole body, once its head is read, in
    /// milliseconds [default: 10000].
    #[arg(long, env = "SWITCHBOARD_BODY_TIMEOUT_MS", value_name = "MS")]
    pub body_timeout_ms: Option<u64>,
    /// A keep-alive connection with no request, or a client that reads no answer, for this
    /// long is closed, in milliseconds [default: 60000].
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT_MS", value_name = "MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Open HTTP connections at most; beyond, new connections wait in the listen backlog
    /// while the open ones keep working [default: 1024].
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Live streams (`GET /admin/stream`) open at once at most; beyond, 503 [default: 64].
    #[arg(long, env = "SWITCHBOARD_MAX_STREAMS", value_name = "N")]
    pub max_streams: Option<usize>,
    /// Memory for request bodies being read at once, across all connections, in MiB; a
    /// body that does not fit is answered 503 (Meta retries) [default: 16].
    #[arg(long, env = "SWITCHBOARD_MAX_BODY_BUFFER_MIB", value_name = "MIB")]
    pub max_body_buffer_mib: Option<usize>,
    /// On SIGTERM, how long open requests and delivery attempts may take to finish before
    /// the service stops anyway, in milliseconds; an unfinished attempt is attempted again
    /// after the restart [default: 10000].
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE_MS", value_name = "MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Pause a destination that has answered nothing but failures for this long, in
    /// seconds; 0 never pauses [default: 432000, 5 days].
    #[arg(long, env = "SWITCHBOARD_PAUSE_AFTER_S", value_name = "SECONDS")]
    pub pause_after_s: Option<u64>,
    /// How often a paused destination gets one probe attempt, in seconds [default: 300].
    #[arg(long, env = "SWITCHBOARD_PROBE_INTERVAL_S", value_name = "SECONDS")]
    pub probe_interval_s: Option<u64>,
    /// Log lines as `text` (for people) or `json` (one object per line, for log shippers)
    /// [default: text].
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Export the request and delivery-attempt spans over OTLP/HTTP (protobuf) to this
    /// collector, e.g. `http://localhost:4318` (`/v1/traces` is added unless the path
    /// already ends with it) [default: off].
    #[arg(long, env = "SWITCHBOARD_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// TOML file with the same settings (keys are the flag names with `_`).
    #[arg(long, env = "SWITCHBOARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, fields with the message, target, spans),
    /// for log shippers.
    Json,
}

/// The settings of a `--config` file; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database: Option<String>,
    admin_token: Option<String>,
    dev: Option<bool>,
    meta_app_secret: Option<String>,
    meta_verify_token: Option<String>,
    delivery_timeout_ms: Option<u64>,
    retry_base_ms: Option<u64>,
    retry_max_delay_ms: Option<u64>,
    retry_max_age_s: Option<u64>,
    max_extra_destinations: Option<usize>,
    max_in_flight_per_destination: Option<usize>,
    max_waiting_per_destination: Option<usize>,
    max_queue_memory_mib: Option<usize>,
    retention_days: Option<u64>,
    payload_retention_hours: Option<u64>,
    worker_threads: Option<usize>,
    node_id: Option<String>,
    delivery_lease_s: Option<u64>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_streams: Option<usize>,
    max_body_buffer_mib: Option<usize>,
    shutdown_grace_ms: Option<u64>,
    pause_after_s: Option<u64>,
    probe_interval_s: Option<u64>,
    log_format: Option<LogFormat>,
    otlp_endpoint: Option<String>,
}

/// A setting that cannot be used; the text tells the operator what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// A secret setting, kept out of logs and `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret, for the one place that compares or uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// Embedded SQLite file (created on first start).
    Sqlite(PathBuf),
    /// A PostgreSQL server, for several nodes.
    Postgres(Secret),
}

impl DatabaseUrl {
    /// Parses `sqlite://PATH` or `postgres://…`/`postgresql://…`.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        if let Some(path) = raw.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(ConfigError(format!(
                    "invalid database URL {raw:?}: sqlite:// needs a file path, e.g. sqlite://switchboard.db"
                )));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(Self::Postgres(Secret::new(raw)));
        }
        Err(ConfigError(format!(
            "invalid database URL {:?}: expected sqlite://PATH or postgres://USER@HOST/DB",
            raw.split('@').next_back().unwrap_or_default()
        )))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => {
                // Credentials sit before the `@` or in the query (`?password=…`): neither is
                // shown, and every query value is masked.
                let raw = url.expose();
                let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
                let host = after_scheme.rsplit('@').next().unwrap_or_default();
                write!(f, "postgres://…@{}", crate::domain::redact_query(host))
            }
        }
    }
}

/// The admin token and whether Switchboard made it up (then it is printed once at start).
#[derive(Debug, Clone)]
pub struct AdminToken {
    /// The token.
    pub secret: Secret,
    /// True when no token was configured and this one was generated.
    pub generated: bool,
}

/// The validated settings of a running service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`host:port`).
    pub listen: String,
    /// Where the data lives.
    pub database: DatabaseUrl,
    /// Bearer token for `/admin`.
    pub admin_token: AdminToken,
    /// Development mode: loopback receivers (over `http://` too); other internal addresses
    /// stay refused.
    pub dev: bool,
    /// Verifies Meta's webhook signatures.
    pub meta_app_secret: Option<Secret>,
    /// Answers Meta's verification handshake.
    pub meta_verify_token: Option<Secret>,
    /// Hard limit of one delivery attempt.
    pub delivery_timeout: Duration,
    /// First retry delay.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max_delay: Duration,
    /// Age after which a delivery is given up.
    pub retry_max_age: Duration,
    /// Most extra destinations per number.
    pub max_extra_destinations: usize,
    /// Concurrent attempts per destination: a receiver answering in 250 ms (the provider's
    /// median bound) needs about 825 to take 3,300 events/s.
    pub max_in_flight_per_destination: usize,
    /// Deliveries queued in memory per destination; the rest of a slow destination's backlog
    /// waits in the store, so it cannot fill the memory that healthy destinations need.
    pub max_waiting_per_destination: usize,
    /// Bytes the engine's in-memory queue may take (deliveries waiting or in flight); the
    /// rest wait in the store.
    pub max_queue_memory: usize,
    /// How long finished events are kept; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// How long the payloads of finished events are kept (a shorter retention, as payloads
    /// are most of the bytes); `None` keeps them as long as the events.
    pub payload_retention: Option<Duration>,
    /// Async worker threads of the binary's runtime; `None` is one per core. (Only the
    /// binary reads it: `run` uses whatever runtime it is called on.)
    pub worker_threads: Option<usize>,
    /// This node's name on a shared database (leases are owned per node).
    pub node_id: String,
    /// How long a delivery claimed by this node stays its own without renewal (renewed every
    /// third of it while held): the longest a dead node's deliveries wait for another node.
    /// Validated from the flag; tests set shorter ones directly.
    pub delivery_lease: Duration,
    /// Limits of the HTTP server that keep one client from exhausting it.
    pub http: HttpLimits,
    /// A destination that answered nothing but failures this long is paused; `None` never.
    pub pause_after: Option<Duration>,
    /// One probe attempt per paused destination this often.
    pub probe_interval: Duration,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Where the spans are exported (the collector's `/v1/traces`); `None`: not exported.
    pub otlp_endpoint: Option<url::Url>,
}

/// What one client may hold of the HTTP server: without these, half-sent requests and
/// unfinished bodies hold connections and memory for as long as the client likes.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A request's head must arrive within this of its first byte.
    pub header_timeout: Duration,
    /// A request's body must arrive within this of its head.
    pub body_timeout: Duration,
    /// An idle keep-alive connection (or one whose client reads no answer) is closed after
    /// this.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Live streams open at once at most: each holds a connection and a reader of the feed
    /// for as long as its client likes.
    pub max_streams: usize,
    /// Bytes of request bodies being read at once, across all connections.
    pub max_body_buffer: usize,
    /// How long a graceful stop waits for requests and attempts in flight.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_millis(5_000),
            body_timeout: Duration::from_millis(10_000),
            idle_timeout: Duration::from_millis(60_000),
            max_connections: 1024,
            max_streams: 64,
            max_body_buffer: 16 * MIB,
            shutdown_grace: Duration::from_millis(10_000),
        }
    }
}

const MIB: usize = 1024 * 1024;

/// The default node id: the host name (as the kernel reports it), else `switchboard`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "switchboard".into())
}

/// Shortest admin token accepted: shorter ones are guessable.
const MIN_ADMIN_TOKEN_LEN: usize = 16;

impl Config {
    /// Defaults for everything but the database and the admin token.
    pub fn new(database: DatabaseUrl, admin_token: impl Into<String>) -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database,
            admin_token: AdminToken {
                secret: Secret::new(admin_token),
                generated: false,
            },
            dev: false,
            meta_app_secret: None,
            meta_verify_token: None,
            delivery_timeout: Duration::from_millis(5000),
            retry_base: Duration::from_millis(1000),
            retry_max_delay: Duration::from_millis(3_600_000),
            retry_max_age: Duration::from_secs(604_800),
            max_extra_destinations: 3,
            max_in_flight_per_destination: 512,
            max_waiting_per_destination: 2000,
            max_queue_memory: 64 * MIB,
            retention: Some(Duration::from_secs(30 * 86_400)),
            payload_retention: Some(Duration::from_secs(72 * 3_600)),
            worker_threads: None,
            node_id: host_name(),
            delivery_lease: crate::delivery::DEFAULT_LEASE,
            http: HttpLimits::default(),
            pause_after: Some(Duration::from_secs(432_000)),
            probe_interval: Duration::from_secs(300),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
        }
    }

    /// Merges defaults, the config file, the environment and the flags, then validates.
    pub fn load(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let database = args
            .database
            .or(file.database)
            .unwrap_or_else(|| "sqlite://switchboard.db".into());
        let admin_token = match args.admin_token.or(file.admin_token) {
            Some(token) if token.len() < MIN_ADMIN_TOKEN_LEN => {
                return Err(ConfigError(format!(
                    "--admin-token must be at least {MIN_ADMIN_TOKEN_LEN} characters"
                )))
            }
            Some(token) => AdminToken {
                secret: Secret::new(token),
                generated: false,
            },
            None => AdminToken {
                secret: Secret::new(random_alphanumeric(32)),
                generated: true,
            },
        };
        let defaults = Self::new(DatabaseUrl::parse(&database)?, "");
        let config = Self {
            listen: normalize_listen(args.listen.or(file.listen).unwrap_or(defaults.listen)),
            admin_token,
            dev: args.dev || file.dev.unwrap_or(false),
            meta_app_secret: args
                .meta_app_secret
                .or(file.meta_app_secret)
                .map(Secret::new),
            meta_verify_token: args
                .meta_verify_token
                .or(file.meta_verify_token)
                .map(Secret::new),
            delivery_timeout: millis(
                args.delivery_timeout_ms.or(file.delivery_timeout_ms),
                defaults.delivery_timeout,
            ),
            retry_base: millis(
                args.retry_base_ms.or(file.retry_base_ms),
                defaults.retry_base,
            ),
            retry_max_delay: millis(
                args.retry_max_delay_ms.or(file.retry_max_delay_ms),
                defaults.retry_max_delay,
            ),
            retry_max_age: args
                .retry_max_age_s
                .or(file.retry_max_age_s)
                .map_or(defaults.retry_max_age, Duration::from_secs),
            max_extra_destinations: args
                .max_extra_destinations
                .or(file.max_extra_destinations)
                .unwrap_or(defaults.max_extra_destinations),
            max_in_flight_per_destination: args
                .max_in_flight_per_destination
                .or(file.max_in_flight_per_destination)
                .unwrap_or(defaults.max_in_flight_per_destination),
            max_waiting_per_destination: args
                .max_waiting_per_destination
                .or(file.max_waiting_per_destination)
                .unwrap_or(defaults.max_waiting_per_destination),
            max_queue_memory: args
                .max_queue_memory_mib
                .or(file.max_queue_memory_mib)
                .map_or(defaults.max_queue_memory, |mib| mib.saturating_mul(MIB)),
            retention: match args.retention_days.or(file.retention_days) {
                None => defaults.retention,
                Some(0) => None,
                Some(days) => Some(Duration::from_secs(days.saturating_mul(86_400))),
            },
            payload_retention: match args
                .payload_retention_hours
                .or(file.payload_retention_hours)
            {
                None => defaults.payload_retention,
                Some(0) => None,
                Some(hours) => Some(Duration::from_secs(hours.saturating_mul(3_600))),
            },
            worker_threads: args
                .worker_threads
                .or(file.worker_threads)
                .filter(|&n| n > 0),
            node_id: args.node_id.or(file.node_id).unwrap_or(defaults.node_id),
            delivery_lease: args
                .delivery_lease_s
                .or(file.delivery_lease_s)
                .map_or(defaults.delivery_lease, Duration::from_secs),
            http: HttpLimits {
                header_timeout: millis(
                    args.header_timeout_ms.or(file.header_timeout_ms),
                    defaults.http.header_timeout,
                ),
                body_timeout: millis(
                    args.body_timeout_ms.or(file.body_timeout_ms),
                    defaults.http.body_timeout,
                ),
                idle_timeout: millis(
                    args.idle_timeout_ms.or(file.idle_timeout_ms),
                    defaults.http.idle_timeout,
                ),
                max_connections: args
                    .max_connections
                    .or(file.max_connections)
                    .unwrap_or(defaults.http.max_connections),
                max_streams: args
                    .max_streams
                    .or(file.max_streams)
                    .unwrap_or(defaults.http.max_streams),
                max_body_buffer: args
                    .max_body_buffer_mib
                    .or(file.max_body_buffer_mib)
                    .map_or(defaults.http.max_body_buffer, |mib| mib.saturating_mul(MIB)),
                shutdown_grace: millis(
                    args.shutdown_grace_ms.or(file.shutdown_grace_ms),
                    defaults.http.shutdown_grace,
                ),
            },
            pause_after: match args.pause_after_s.or(file.pause_after_s) {
                None => defaults.pause_after,
                Some(0) => None,
                Some(seconds) => Some(Duration::from_secs(seconds)),
            },
            probe_interval: args
                .probe_interval_s
                .or(file.probe_interval_s)
                .map_or(defaults.probe_interval, Duration::from_secs),
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            otlp_endpoint: args
                .otlp_endpoint
                .or(file.otlp_endpoint)
                .map(|raw| otlp_traces_url(&raw))
                .transpose()?,
            ..defaults
        };
        config.validate()?;
        Ok(config)
    }

    /// The URL rules that follow from `--dev`.
    pub fn url_policy(&self) -> UrlPolicy {
        UrlPolicy {
            allow_loopback_http: self.dev,
        }
    }

    /// The addresses deliveries may reach: with `--dev`, loopback too (and nothing else).
    pub fn address_policy(&self) -> AddressPolicy {
        AddressPolicy {
            allow_loopback: self.dev,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.delivery_timeout.is_zero() {
            return Err(ConfigError(
                "--delivery-timeout-ms must be greater than 0".into(),
            ));
        }
        if self.retry_base.is_zero() || self.retry_base > self.retry_max_delay {
            return Err(ConfigError(
                "--retry-base-ms must be greater than 0 and at most --retry-max-delay-ms".into(),
            ));
        }
        if !(1..=10_000).contains(&self.max_in_flight_per_destination) {
            return Err(ConfigError(
                "--max-in-flight-per-destination must be between 1 and 10000".into(),
            ));
        }
        self.validate_lease()?;
        let node_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if self.node_id.is_empty()
            || self.node_id.len() > 64
            || !self.node_id.chars().all(node_chars)
        {
            return Err(ConfigError(
                "--node-id must be 1 to 64 letters, digits, '.', '-' or '_'".into(),
            ));
        }
        if self.worker_threads.is_some_and(|n| n > 1024) {
            return Err(ConfigError(
                "--worker-threads must be between 0 (one per core) and 1024".into(),
            ));
        }
        self.http.validate()?;
        if self.probe_interval.is_zero() {
            return Err(ConfigError(
                "--probe-interval-s must be greater than 0".into(),
            ));
        }
        if !(2 * MIB..=4095 * MIB).contains(&self.max_queue_memory) {
            return Err(ConfigError(
                "--max-queue-memory-mib must be between 2 and 4095".into(),
            ));
        }
        if !(1..=100).contains(&self.max_extra_destinations) {
            return Err(ConfigError(
                "--max-extra-destinations must be between 1 and 100".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The lease bounds how long a dead node's deliveries wait (at most an hour), must
    /// outlast a few missed renewals' worth of database hiccups (at least 5 s), and must
    /// hold one whole attempt with room for a missed renewal: one attempt spans at most a
    /// third of the lease, the renewal interval.
    fn validate_lease(&self) -> Result<(), ConfigError> {
        let seconds = self.delivery_lease.as_secs();
        if !(MIN_LEASE_S..=MAX_LEASE_S).contains(&seconds) {
            return Err(ConfigError(format!(
                "--delivery-lease-s must be between {MIN_LEASE_S} and {MAX_LEASE_S}"
            )));
        }
        if self.delivery_lease < self.delivery_timeout.saturating_mul(3) {
            return Err(ConfigError(format!(
                "--delivery-lease-s ({seconds}) must be at least 3 times --delivery-timeout-ms \
                 ({} ms): a delivery attempt must fit in one renewal interval, a third of the lease",
                self.delivery_timeout.as_millis()
            )));
        }
        Ok(())
    }
}

/// Shortest `--delivery-lease-s` accepted.
const MIN_LEASE_S: u64 = 5;
/// Longest `--delivery-lease-s` accepted: a dead node's deliveries wait this long at most.
const MAX_LEASE_S: u64 = 3600;

impl HttpLimits {
    fn validate(&self) -> Result<(), ConfigError> {
        for (flag, value) in [
            ("--header-timeout-ms", self.header_timeout),
            ("--body-timeout-ms", self.body_timeout),
            ("--idle-timeout-ms", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError(format!("{flag} must be greater than 0")));
            }
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(ConfigError(
                "--max-connections must be between 1 and 1000000".into(),
            ));
        }
        if !(1..=10_000).contains(&self.max_streams) {
            return Err(ConfigError(
                "--max-streams must be between 1 and 10000".into(),
            ));
        }
        if self.max_body_buffer < MIB {
            return Err(ConfigError(
                "--max-body-buffer-mib must be at least 1 (one request body of the largest size)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The collector's traces URL from `--otlp-endpoint`: an absolute `http(s)://` URL, with
/// `/v1/traces` added unless its path already ends with it (as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is read by the OpenTelemetry SDKs).
fn otlp_traces_url(raw: &str) -> Result<url::Url, ConfigError> {
    let invalid = |why: &str| {
        ConfigError(format!(
            "invalid --otlp-endpoint {raw:?}: {why} (e.g. http://localhost:4318)"
        ))
    };
    let mut url = url::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("expected an http:// or https:// URL with a host"));
    }
    if !url.path().ends_with("/v1/traces") {
        let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url)
}

fn millis(value: Option<u64>, default: Duration) -> Duration {
    value.map_or(default, Duration::from_millis)
}

/// `:8080` means every interface, as in most servers' configuration.
fn normalize_listen(listen: String) -> String {
    match listen.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => listen,
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| ConfigError(format!("invalid config file {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_without_flags() {
        let config = Config::load(ServeArgs::default()).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(
            config.database,
            DatabaseUrl::Sqlite("switchboard.db".into())
        );
        assert!(config.admin_token.generated);
        assert_eq!(config.admin_token.secret.expose().len(), 32);
        assert_eq!(config.delivery_timeout, Duration::from_secs(5));
        assert_eq!(config.max_extra_destinations, 3);
        assert_eq!(config.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(
            config.payload_retention,
            Some(Duration::from_secs(72 * 3_600))
        );
        assert_eq!(config.delivery_lease, Duration::from_secs(30));
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        std::fs::write(
            &path,
            "listen = \":9000\"\ndev = true\nretry_base_ms = 10\nmax_extra_destinations = 5\nretention_days = 0\npayload_retention_hours = 0\nworker_threads = 1\nnode_id = \"node-a\"\ndelivery_lease_s = 60\n",
        )
        .unwrap();
        let config = Config::load(ServeArgs {
            config: Some(path),
            retry_base_ms: Some(20),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:9000");
        assert!(config.dev);
        assert_eq!(config.retry_base, Duration::from_millis(20));
        assert_eq!(config.max_extra_destinations, 5);
        assert_eq!(config.retention, None, "0 keeps everything");
        assert_eq!(config.payload_retention, None, "0 keeps payloads");
        assert_eq!(config.worker_threads, Some(1));
        assert_eq!(config.node_id, "node-a");
        assert_eq!(config.delivery_lease, Duration::from_secs(60));
        let per_core = Config::load(ServeArgs {
            worker_threads: Some(0),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(per_core.worker_threads, None, "0 means one per core");
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        let error = |args: ServeArgs| Config::load(args).unwrap_err().to_string();
        assert!(error(ServeArgs {
            database: Some("mysql://x".into()),
            ..ServeArgs::default()
        })
        .contains("expected sqlite://PATH"));
        assert!(error(ServeArgs {
            admin_token: Some("short".into()),
            ..ServeArgs::default()
        })
        .contains("at least 16"));
        assert!(error(ServeArgs {
            retry_base_ms: Some(10_000_000),
            ..ServeArgs::default()
        })
        .contains("--retry-base-ms"));
        assert!(error(ServeArgs {
            config: Some("/nonexistent/switchboard.toml".into()),
            ..ServeArgs::default()
        })
        .contains("cannot read config file"));
    }

    #[test]
    fn log_format_and_otlp_endpoint_come_from_flags_or_the_file() {
        let defaults = Config::load(ServeArgs::default()).unwrap();
        assert_eq!(defaults.log_format, LogFormat::Text);
        assert_eq!(defaults.otlp_endpoint, None, "export is off by default");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        let file = "log_format = \"json\"\notlp_endpoint = \"http://collector:4318\"\n";
        std::fs::write(&path, file).unwrap();
        let config = Config::load(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(config.log_format, LogFormat::Json);
        let url = config.otlp_endpoint.unwrap();
        assert_eq!(url.as_str(), "http://collector:4318/v1/traces");
        for (raw, expected) in [
            (
                "https://otel.example.com/",
                "https://otel.example.com/v1/traces",
            ),
            (
                "http://127.0.0.1:4318/v1/traces",
                "http://127.0.0.1:4318/v1/traces",
            ),
            ("http://gw/otlp", "http://gw/otlp/v1/traces"),
        ] {
            assert_eq!(otlp_traces_url(raw).unwrap().as_str(), expected, "{raw}");
        }
        for bad in ["collector:4318", "ftp://collector", "not a url"] {
            let error = otlp_traces_url(bad).unwrap_err().to_string();
            assert!(error.contains("--otlp-endpoint"), "{error}");
        }
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let message = Config::load(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(message.contains("lisen"), "{message}");
    }

    #[test]
    fn postgres_urls_never_print_their_password() {
        for raw in [
            "postgres://user:hunter2@db.example.com/switchboard",
            "postgres://db.example.com/switchboard?user=u&password=hunter2",
            "postgresql://u@db/sb?sslmode=require&password=hunter2",
        ] {
            let url = DatabaseUrl::parse(raw).unwrap();
            assert!(!url.to_string().contains("hunter2"), "{url}");
            assert!(!format!("{url:?}").contains("hunter2"));
            assert!(url.to_string().contains("db"), "{url}");
        }
    }
}
