//! `switchboard health [--server URL] [--ready]`: one GET of `/health` (or `/ready`), exit
//! 0 on 200. It is the image's HEALTHCHECK (the run image has no curl) and a probe for
//! scripts; the exit codes are the other client subcommands': 1 the server answered
//! something else, 3 no answer, 4 no such path (not Switchboard).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::args::HealthArgs;
use super::{CliError, Client};

/// Runs `switchboard health`.
pub async fn health(args: HealthArgs) -> Result<(), CliError> {
    let path = if args.ready { "/ready" } else { "/health" };
    let url = probe_url(&args.server, path)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_s.max(1)))
        .build()
        .map_err(|e| CliError::Usage(format!("cannot build the HTTP client: {e}")))?;
    let unreachable = |error: reqwest::Error| CliError::Unreachable {
        server: url.clone(),
        reason: crate::error_chain(&error),
    };
    let response = http.get(&url).send().await.map_err(unreachable)?;
    let status = response.status();
    let text = response.text().await.map_err(unreachable)?;
    if status == StatusCode::OK {
        println!("ok: {url} answered {status}");
        return Ok(());
    }
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    Err(match Client::failure(status, &body) {
        CliError::Server { status, message } => CliError::Server {
            status,
            message: format!("unhealthy: {url}: {message}"),
        },
        CliError::NotFound(message) => {
            CliError::NotFound(format!("{url}: {message}: is it Switchboard?"))
        }
        other => other,
    })
}

/// `server` + `path`, checked here so a typo is a usage error (exit 2), not "unreachable".
fn probe_url(server: &str, path: &str) -> Result<String, CliError> {
    let server = server.trim_end_matches('/');
    match reqwest::Url::parse(server) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(format!("{server}{path}")),
        _ => Err(CliError::Usage(format!(
            "invalid --server {server:?}: expected a URL like http://127.0.0.1:8080"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_url_is_the_server_and_the_path() {
        assert_eq!(
            probe_url("http://127.0.0.1:8080/", "/health").unwrap(),
            "http://127.0.0.1:8080/health"
        );
        assert!(matches!(
            probe_url("127.0.0.1:8080", "/health"),
            Err(CliError::Usage(_))
        ));
    }
}
