//! The command line against a running server: every client subcommand is a few calls to the
//! admin API, so the CLI, the console and scripts are three faces of one surface.
//!
//! This module holds what they share: the HTTP client (server URL and admin token), the
//! errors and the exit codes they mean, and the output (aligned tables, or the server's
//! JSON with `--json`). One file per subcommand group runs the calls. `backup` and
//! `restore` are the exception: they work on a SQLite file, not through a server.

pub mod args;
mod backup;
mod deliveries;
mod destinations;
mod health;
mod output;
mod provisioning;
mod send_test;
mod sse;
mod tail;

use std::process::ExitCode;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use self::args::Connection;
use crate::config::Command;

/// The exit codes, as `--help` tells them (scripts branch on them).
pub const EXIT_CODES_HELP: &str = "Exit codes of the client subcommands:
  0  done
  1  the server answered with an error (its message is printed)
  2  usage error (unknown subcommand, missing or bad flag)
  3  the server cannot be reached (connection refused, timeout, not Switchboard)
  4  not found (the server answered 404)
backup and restore work on the database file itself: 1 the copy failed or was refused (in
use, corrupt, not Switchboard's, a newer schema), 2 usage (also: the target exists and no
--force, or a postgres:// URL), 4 the database or backup file does not exist.

Client subcommands talk to --server (SWITCHBOARD_URL, default http://127.0.0.1:8080) with
--token (SWITCHBOARD_ADMIN_TOKEN); --json prints the server's JSON instead of a table.";

/// Why a client subcommand failed; each maps to one exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered an error status; `message` is its `error`.
    #[error("{message} ({status})")]
    Server {
        /// The HTTP status.
        status: StatusCode,
        /// The server's message.
        message: String,
    },
    /// The server answered 404.
    #[error("{0}")]
    NotFound(String),
    /// No answer: refused, timed out, or not an HTTP/JSON answer.
    #[error("cannot reach {server}: {reason}")]
    Unreachable {
        /// The base URL tried.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// A flag's value is unusable (found after parsing, e.g. a bad URL).
    #[error("{0}")]
    Usage(String),
    /// Some of several calls failed (each was reported already).
    #[error("{0}")]
    Partial(String),
    /// A local operation (backup, restore) failed or was refused; the text says why.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The exit code that tells a script what happened.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Server { .. } | Self::Partial(_) | Self::Failed(_) => 1,
            Self::Usage(_) => 2,
            Self::Unreachable { .. } => 3,
            Self::NotFound(_) => 4,
        }
    }
}

/// Runs a client subcommand on a current-thread runtime (one request at a time needs no
/// more) and turns its outcome into the exit code.
pub fn run(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Runs the subcommand's group.
async fn dispatch(command: Command) -> Result<(), CliError> {
    match command {
        Command::Serve(_) => Err(CliError::Usage("serve is not a client subcommand".into())),
        Command::Partners(args) => provisioning::partners(args).await,
        Command::Wabas(args) => provisioning::wabas(args).await,
        Command::Channels(args) => provisioning::channels(args).await,
        Command::Deliveries(args) => deliveries::deliveries(args).await,
        Command::Recover(args) => deliveries::recover(args).await,
        Command::Destinations(args) => destinations::destinations(args).await,
        Command::SendTest(args) => send_test::send_test(args).await,
        Command::Tail(args) => tail::tail(args).await,
        // On the database file, synchronously: nothing else runs on this runtime.
        Command::Backup(args) => backup::backup(&args),
        Command::Restore(args) => backup::restore(&args),
        Command::Health(args) => health::health(args).await,
    }
}

/// The admin API of one server, with the token and the output mode chosen on the command line.
pub struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
    /// `--json`: print the server's JSON rather than a table.
    pub json: bool,
}

impl Client {
    /// A client for `connection`; the URL is checked here so a typo is a usage error.
    pub fn new(connection: &Connection) -> Result<Self, CliError> {
        let server = connection.server.trim_end_matches('/').to_owned();
        if reqwest::Url::parse(&server).is_err() {
            return Err(CliError::Usage(format!(
                "invalid --server {server:?}: expected a URL like http://127.0.0.1:8080"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            server,
            token: connection.token.clone(),
            json: connection.json,
        })
    }

    /// A request to `path` (e.g. `/admin/partners`) with the admin token; no time limit
    /// (a stream has none; [`Client::send`] sets one).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.server));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// GET `path` with `query` (absent values left out).
    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, Option<String>)],
    ) -> Result<Value, CliError> {
        let present: Vec<(&str, &String)> = query
            .iter()
            .filter_map(|(name, value)| value.as_ref().map(|v| (*name, v)))
            .collect();
        self.send(self.request(Method::GET, path).query(&present))
            .await
    }

    /// POST `body` (or nothing) to `path`.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let request = self.request(Method::POST, path);
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        self.send(request).await
    }

    /// Sends `request` and reads the JSON answer, mapping failures to [`CliError`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Value, CliError> {
        let request = request.timeout(std::time::Duration::from_secs(30));
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(&e))?;
        let body: Value = serde_json::from_str(&text).map_err(|_| self.not_json(status))?;
        if status.is_success() {
            return Ok(body);
        }
        Err(Self::failure(status, &body))
    }

    /// The error an answer with a failure `status` and JSON `body` means.
    pub fn failure(status: StatusCode, body: &Value) -> CliError {
        let message = error_message(body).unwrap_or_else(|| status.to_string());
        if status == StatusCode::NOT_FOUND {
            return CliError::NotFound(message);
        }
        CliError::Server { status, message }
    }

    /// The error of an answer that is not Switchboard's JSON.
    pub fn not_json(&self, status: StatusCode) -> CliError {
        CliError::Unreachable {
            server: self.server.clone(),
            reason: format!("answered {status} without JSON: is it Switchboard?"),
        }
    }

    /// The error of a request that got no answer.
    pub fn unreachable(&self, error: &reqwest::Error) -> CliError {
        CliError::Unreachable {
            server: self.server.clone(),
            reason: crate::error_chain(error),
        }
    }
}

/// The server's message in an error body: `{"error"}` (admin and Messaging API) or the
/// Partner API's `{"meta": {"developer_message"}}`.
fn error_message(body: &Value) -> Option<String> {
    body["error"]
        .as_str()
        .or_else(|| body["meta"]["developer_message"].as_str())
        .map(str::to_owned)
}
