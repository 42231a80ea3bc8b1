//! The client subcommands' flags (clap), kept beside the code that runs them so `config.rs`
//! only names them in `Command`.

use clap::{Args, Subcommand, ValueEnum};

/// Where the server is and how to talk to it: shared by every client subcommand, accepted
/// before or after the action (`switchboard channels list --json`).
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Base URL of a running Switchboard.
    #[arg(
        long,
        env = "SWITCHBOARD_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// The admin token (`switchboard serve --admin-token`).
    #[arg(
        long,
        env = "SWITCHBOARD_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print the server's JSON (pretty) instead of a table, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A page of a list: the cursor and the size.
#[derive(Debug, Clone, Args)]
pub struct Page {
    /// Only items after this cursor (the `next_after` of the previous page).
    #[arg(long)]
    pub after: Option<String>,
    /// Page size, 1 to 1000.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// `switchboard partners …`.
#[derive(Debug, Args)]
pub struct PartnersArgs {
    /// The server and the output.
    #[command(flatten)]
    pub connection: Connection,
    /// What to do.
    #[command(subcommand)]
    pub action: PartnersAction,
}

/// The partner actions.
#[derive(Debug, Subcommand)]
pub enum PartnersAction {
    /// Create a partner; its Partner API key is shown once.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// List partners.
    List {
        /// Which page.
        #[command(flatten)]
        page: Page,
    },
    /// Show one partner.
    Show {
        /// The partner's id.
        id: String,
    },
}

/// `switchboard wabas …`.
#[derive(Debug, Args)]
pub struct WabasArgs {
    /// The server and the output.
    #[command(flatten)]
    pub connection: Connection,
    /// What to do.
    #[command(subcommand)]
    pub action: WabasAction,
}

/// The WABA actions.
#[derive(Debug, Subcommand)]
pub enum WabasAction {
    /// Add a WABA to a partner.
    Create {
        /// The owning partner's id.
        #[arg(long)]
        partner: String,
        /// Meta's WABA id; generated when absent.
        #[arg(long)]
        waba_id: Option<i64>,
    },
    /// List WABAs.
    List {
        /// Only this partner's.
        #[arg(long)]
        partner: Option<String>,
        /// Which page.
        #[command(flatten)]
        page: Page,
    },
    /// Show one WABA.
    Show {
        /// The WABA's id.
        waba_id: String,
    },
}

/// `switchboard channels …`.
#[derive(Debug, Args)]
pub struct ChannelsArgs {
    /// The server and the output.
    #[command(flatten)]
    pub connection: Connection,
    /// What to do.
    #[command(subcommand)]
    pub action: ChannelsAction,
}

/// The channel actions.
#[derive(Debug, Subcommand)]
pub enum ChannelsAction {
    /// Add a phone number to a WABA; its D360-API-KEY is shown once.
    Create {
        /// The WABA's id.
        #[arg(long)]
        waba: String,
        /// The number: an optional + and 6 to 15 digits.
        #[arg(long)]
        phone: String,
        /// Meta's id for the number; generated when absent.
        #[arg(long)]
        phone_number_id: Option<String>,
    },
    /// List channels.
    List {
        /// Only those of this partner's WABAs.
        #[arg(long)]
        partner: Option<String>,
        /// Only those of this WABA.
        #[arg(long)]
        waba: Option<String>,
        /// Numbers starting with these digits (+ optional).
        #[arg(long)]
        phone: Option<String>,
        /// Which page.
        #[command(flatten)]
        page: Page,
    },
    /// Show one channel and where its notifications go now.
    Show {
        /// The channel's id.
        id: String,
    },
}

/// `switchboard deliveries …`.
#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// The server and the output.
    #[command(flatten)]
    pub connection: Connection,
    /// What to do.
    #[command(subcommand)]
    pub action: DeliveriesAction,
}

/// The delivery actions.
#[derive(Debug, Subcommand)]
pub enum DeliveriesAction {
    /// List deliveries, oldest first.
    List {
        /// pending, delivered, failed or dropped.
        #[arg(long)]
        state: Option<String>,
        /// Only this channel's.
        #[arg(long)]
        channel: Option<String>,
        /// Which page.
        #[command(flatten)]
        page: Page,
    },
    /// Re-queue failed or dropped deliveries, each by id.
    Retry {
        /// Delivery ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `switchboard recover …`: re-queue what a time window's events missed.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The server and the output.
    #[command(flatten)]
    pub connection: Connection,
    /// Start of the window (RFC 3339, e.g. 2026-12-01T09:00:00Z), included.
    #[arg(long)]
    pub since: String,
    /// End of the window (RFC 3339), excluded; default now.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this channel's deliveries.
    #[arg(long)]
    pub channel: Option<String>,
    /// Only deliveries with an attempt to this destination (16 hex digits).
    #[arg(long)]
    pub destination: Option<String>,
    /// Which states (failed, dropped, delivered); default failed and dropped.
    #[arg(long)]
    pub state: Vec<String>,
    /// Only count what would be re-queued.
    #[arg(long)]
    pub dry_run: bool,
}

/// `switchboard destinations …`.
#[derive(Debug, Args)]
pub struct DestinationsArgs {
    /// The server and the output.
    #[command(flatten)]
    pub connection: Connection,
    /// What to do.
    #[command(subcommand)]
    pub action: DestinationsAction,
}

/// The destination actions.
#[derive(Debug, Subcommand)]
pub enum DestinationsAction {
    /// List destinations with their health and backlog.
    List {
        /// Which page.
        #[command(flatten)]
        page: Page,
    },
    /// Show one destination.
    Show {
        /// The destination id (16 hex digits).
        id: String,
    },
    /// Pause a destination: its deliveries wait in the store.
    Pause {
        /// The destination id.
        id: String,
    },
    /// Resume a paused destination: what waited is delivered.
    Resume {
        /// The destination id.
        id: String,
    },
}

/// The status a `send-test` status notification reports.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TestStatus {
    /// Meta accepted the message.
    Sent,
    /// The phone received it.
    Delivered,
    /// The user read it.
    Read,
    /// It could not be delivered.
    Failed,
}

/// `switchboard send-test …`: inject a realistic Meta notification for a number.
#[derive(Debug, Args)]
pub struct SendTestArgs {
    /// The server and the output.
    #[command(flatten)]
    pub connection: Connection,
    /// The channel (Switchboard's id) the notification is for.
    #[arg(long)]
    pub channel: String,
    /// Send an incoming text message with this body.
    #[arg(long, conflicts_with = "status", required_unless_present = "status")]
    pub text: Option<String>,
    /// Send a status notification instead.
    #[arg(long, value_enum, requires = "wamid")]
    pub status: Option<TestStatus>,
    /// The message the status is about.
    #[arg(long, requires = "status")]
    pub wamid: Option<String>,
    /// The customer's number (digits): the sender of a message, the recipient of a status.
    #[arg(long, default_value = "4915550001234")]
    pub contact: String,
    /// The customer's profile name.
    #[arg(long, default_value = "Test Customer")]
    pub name: String,
}

/// `switchboard tail …`: the live stream, decoded.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The server and the output.
    #[command(flatten)]
    pub connection: Connection,
    /// Only this channel's messages.
    #[arg(long)]
    pub channel: Option<String>,
    /// Only attempts, deliveries and changes of this destination (16 hex digits).
    #[arg(long)]
    pub destination: Option<String>,
    /// Only these kinds (comma list of event, attempt, delivery, destination).
    #[arg(long)]
    pub kind: Option<String>,
}

/// The database as `serve` takes it: the same flag, variable and default.
#[derive(Debug, Clone, Args)]
pub struct Database {
    /// `sqlite://PATH`, as `serve --database` takes it; PostgreSQL has its own tools
    /// (pg_dump, pg_restore: docs/OPERATIONS.md).
    #[arg(
        long,
        env = "SWITCHBOARD_DATABASE_URL",
        value_name = "URL",
        default_value = "sqlite://switchboard.db",
        hide_env_values = true
    )]
    pub database: String,
}

/// `switchboard backup`: a consistent copy of a live SQLite database.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The database to copy (may be serving meanwhile).
    #[command(flatten)]
    pub database: Database,
    /// The file to write; written under a temporary name beside it, renamed when checked.
    #[arg(long, value_name = "FILE")]
    pub to: std::path::PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `switchboard restore`: a backup put in place of a stopped server's database.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup to restore (from `switchboard backup`).
    #[arg(long, value_name = "FILE")]
    pub from: std::path::PathBuf,
    /// The database to replace; no server may be running on it.
    #[command(flatten)]
    pub database: Database,
    /// Replace the database if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `switchboard health`: the container's HEALTHCHECK and a probe for scripts; the run image
/// has no curl, so the binary asks itself.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Base URL of the Switchboard to check (in the image, the server it runs beside).
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Check `/ready` (the database accepts writes) instead of `/health` (the server serves).
    #[arg(long)]
    pub ready: bool,
    /// Give up after this many seconds without an answer.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub timeout_s: u64,
}
