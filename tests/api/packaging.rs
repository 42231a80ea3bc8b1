//! The deployment files' contract, checked without a container engine (none runs where the
//! suite runs): the Dockerfile (non-root user, entrypoint, port, healthcheck, stop signal,
//! locked build), compose.yaml's two profiles, and the systemd unit's hardening. The
//! HEALTHCHECK's own command runs against a real server; `systemd-analyze verify` checks
//! the unit where it is installed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use switchboard::config::{Config, DatabaseUrl, HttpLimits};

use crate::cli::{start_binary, switchboard};

/// A file of the repository.
fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The port the binary listens on by default (the real default, not a copy of it).
fn default_port() -> u16 {
    let listen = Config::new(DatabaseUrl::Sqlite("x.db".into()), "").listen;
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

/// The graceful stop's default grace: a stop timeout must be longer.
fn default_grace() -> Duration {
    HttpLimits::default().shutdown_grace
}

/// `30s`, `1m30s`, `90` (seconds) as a duration.
fn parse_duration(text: &str) -> Duration {
    let text = text.trim().trim_matches('"');
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'm' | 's' | 'h' => {
                let unit = match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                total += number.parse::<u64>().unwrap() * unit;
                number.clear();
            }
            other => panic!("unexpected {other:?} in duration {text:?}"),
        }
    }
    if !number.is_empty() {
        total += number.parse::<u64>().unwrap();
    }
    Duration::from_secs(total)
}

// --- Dockerfile ---

/// The Dockerfile's instructions, continuation lines joined, comments dropped:
/// (`INSTRUCTION`, arguments), grouped by stage (each starts with its FROM).
fn dockerfile_stages() -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    let mut pending = String::new();
    for line in repo_file("Dockerfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(start) = trimmed.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let whole = std::mem::take(&mut pending);
        let (instruction, arguments) = whole.split_once(char::is_whitespace).unwrap();
        let instruction = instruction.to_ascii_uppercase();
        if instruction == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push((instruction, arguments.trim().to_owned()));
        }
    }
    stages
}

/// The last value of `instruction` in `stage`, if any.
fn last<'a>(stage: &'a [(String, String)], instruction: &str) -> Option<&'a str> {
    stage
        .iter()
        .rev()
        .find(|(name, _)| name == instruction)
        .map(|(_, arguments)| arguments.as_str())
}

/// A JSON-array (exec form) argument list.
fn exec_form(arguments: &str) -> Vec<String> {
    serde_json::from_str(arguments).unwrap_or_else(|e| panic!("{arguments}: not exec form: {e}"))
}

/// The HEALTHCHECK's command: what follows its options' `CMD`.
fn healthcheck_command(run: &[(String, String)]) -> Vec<String> {
    let healthcheck = last(run, "HEALTHCHECK").expect("a HEALTHCHECK in the run stage");
    let (_options, command) = healthcheck.split_once("CMD").expect("HEALTHCHECK … CMD");
    exec_form(command.trim())
}

#[test]
fn the_dockerfile_builds_locked_and_runs_non_root_on_the_default_port_with_a_healthcheck() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "a multi-stage build");
    let (build, run) = (&stages[0], stages.last().unwrap());

    let builder = last(build, "FROM").unwrap();
    assert!(builder.starts_with("rust:"), "{builder}");
    assert!(builder.contains("bookworm"), "{builder}");
    let builds = build
        .iter()
        .filter(|(name, args)| name == "RUN" && args.contains("cargo build"))
        .map(|(_, args)| args.as_str())
        .collect::<Vec<_>>();
    assert!(!builds.is_empty(), "a cargo build");
    for command in &builds {
        assert!(
            command.contains("--release") && command.contains("--locked"),
            "{command}"
        );
        assert!(command.contains("vendor/"), "the vendored build: {command}");
        assert!(command.contains("type=cache"), "BuildKit caches: {command}");
    }

    let user = last(run, "USER").expect("a USER in the last stage");
    let user = user.split(':').next().unwrap();
    assert!(!matches!(user, "root" | "0" | ""), "non-root, got {user:?}");
    assert!(
        user.parse::<u32>().is_ok(),
        "a fixed numeric uid, got {user:?}"
    );

    let entrypoint = exec_form(last(run, "ENTRYPOINT").expect("an ENTRYPOINT"));
    assert_eq!(entrypoint, ["/usr/local/bin/switchboard"]);
    assert_eq!(exec_form(last(run, "CMD").unwrap()), ["serve"]);

    let port = default_port();
    assert_eq!(last(run, "EXPOSE"), Some(port.to_string().as_str()));
    let env = last(run, "ENV").expect("ENV of the run stage");
    assert!(
        env.contains(&format!("SWITCHBOARD_LISTEN=0.0.0.0:{port}")),
        "listens on every interface on the exposed port: {env}"
    );
    let volume = exec_form(last(run, "VOLUME").expect("a VOLUME"));
    assert_eq!(volume, ["/var/lib/switchboard"]);
    assert!(
        env.contains("SWITCHBOARD_DATABASE_URL=sqlite:///var/lib/switchboard/"),
        "the database in the volume: {env}"
    );

    let health = healthcheck_command(run);
    assert_eq!(health[..2], [entrypoint[0].clone(), "health".into()]);
    assert_eq!(last(run, "STOPSIGNAL"), Some("SIGTERM"));
}

/// Runs the HEALTHCHECK's exact command, with the built binary in place of the image's
/// path, against `server`.
fn run_healthcheck(server: &str) -> Output {
    let stages = dockerfile_stages();
    let command = healthcheck_command(stages.last().unwrap());
    switchboard()
        .args(&command[1..])
        .env("SWITCHBOARD_URL", server)
        .output()
        .unwrap()
}

/// A server that answers every request with 503 (a Switchboard that is not well).
fn unhealthy_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut head = [0; 4096];
            let _ = stream.read(&mut head);
            let body = r#"{"error":"Database unavailable"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{address}")
}

#[test]
fn the_healthcheck_command_exits_0_on_200_and_non_zero_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("sb.db").display());
    let (mut child, base) = start_binary(&database, &[], |_| {});

    let healthy = run_healthcheck(&base);
    assert_eq!(healthy.status.code(), Some(0), "{healthy:?}");
    assert!(String::from_utf8_lossy(&healthy.stdout).contains("200"));
    let ready = switchboard()
        .args(["health", "--ready", "--server", &base])
        .output()
        .unwrap();
    assert_eq!(ready.status.code(), Some(0), "{ready:?}");

    let sick = run_healthcheck(&unhealthy_server());
    assert_eq!(sick.status.code(), Some(1), "{sick:?}");
    let message = String::from_utf8_lossy(&sick.stderr);
    assert!(
        message.contains("unhealthy") && message.contains("503"),
        "{message}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    let down = run_healthcheck(&base);
    assert_eq!(down.status.code(), Some(3), "{down:?}");
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach"));
}

// --- compose.yaml ---

/// compose.yaml's top-level blocks and services, with `<<: *anchor` merges expanded, as
/// trimmed lines (enough for its contract; no YAML crate).
struct Compose {
    services: HashMap<String, Vec<String>>,
}

impl Compose {
    fn read() -> Self {
        let text = repo_file("compose.yaml");
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
            .collect();
        let mut anchors = HashMap::new();
        let mut services = HashMap::new();
        let mut section = "";
        let mut current: Option<(String, Vec<String>)> = None;
        let mut finish = |current: &mut Option<(String, Vec<String>)>, section: &str| {
            if let Some((name, body)) = current.take() {
                match section {
                    "services" => services.insert(name, body),
                    _ => anchors.insert(name, body),
                };
            }
        };
        for line in lines {
            let indent = line.len() - line.trim_start().len();
            let trimmed = line.trim().to_owned();
            if indent == 0 {
                finish(&mut current, section);
                section = if trimmed == "services:" {
                    "services"
                } else {
                    ""
                };
                if let Some((_, anchor)) = trimmed.split_once(": &") {
                    current = Some((anchor.to_owned(), Vec::new()));
                }
            } else if indent == 2 && section == "services" {
                finish(&mut current, section);
                current = Some((trimmed.trim_end_matches(':').to_owned(), Vec::new()));
            } else if let Some((_, body)) = current.as_mut() {
                body.push(trimmed);
            }
        }
        finish(&mut current, section);
        let services = services
            .into_iter()
            .map(|(name, body)| (name, expand(&body, &anchors)))
            .collect();
        Self { services }
    }

    /// The Switchboard services (built from this repository) of `profile`.
    fn switchboards(&self, profile: &str) -> Vec<(&String, &Vec<String>)> {
        let mut found: Vec<_> = self
            .services
            .iter()
            .filter(|(_, body)| value(body, "build") == Some("."))
            .filter(|(_, body)| value(body, "profiles") == Some(&format!("[{profile}]")))
            .collect();
        found.sort();
        found
    }
}

/// `body` with each `<<: *name` replaced by that anchor's lines, recursively.
fn expand(body: &[String], anchors: &HashMap<String, Vec<String>>) -> Vec<String> {
    body.iter()
        .flat_map(|line| match line.strip_prefix("<<: *") {
            Some(name) => expand(&anchors[name], anchors),
            None => vec![line.clone()],
        })
        .collect()
}

/// The value of the first `key: value` line of `body`.
fn value<'a>(body: &'a [String], key: &str) -> Option<&'a str> {
    body.iter()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .map(str::trim)
}

#[test]
fn compose_has_an_embedded_node_and_a_three_node_postgres_cluster() {
    let compose = Compose::read();
    let embedded = compose.switchboards("embedded");
    assert_eq!(embedded.len(), 1, "one embedded node");
    let (_, node) = embedded[0];
    assert!(value(node, "SWITCHBOARD_DATABASE_URL")
        .unwrap()
        .starts_with("sqlite:///var/lib/switchboard/"));
    assert!(node
        .iter()
        .any(|line| line.ends_with(":/var/lib/switchboard")
            && !line.trim_start_matches("- ").starts_with('/')));

    let postgres = &compose.services["postgres"];
    assert_eq!(value(postgres, "profiles"), Some("[cluster]"));
    assert!(value(postgres, "image").unwrap().starts_with("postgres:"));
    assert!(value(postgres, "test").unwrap().contains("pg_isready"));

    let cluster = compose.switchboards("cluster");
    assert_eq!(cluster.len(), 3, "three nodes");
    let ids = cluster
        .iter()
        .map(|(_, body)| value(body, "SWITCHBOARD_NODE_ID").unwrap())
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(ids.len(), 3, "distinct node ids: {ids:?}");
    let ports = cluster
        .iter()
        .map(|(_, body)| body.iter().find(|line| line.starts_with("- \"127.0.0.1:")))
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(ports.len(), 3, "distinct ports: {ports:?}");
    for (name, body) in &cluster {
        let url = value(body, "SWITCHBOARD_DATABASE_URL").unwrap();
        assert!(
            url.starts_with("postgres://") && url.contains("@postgres:"),
            "{name}: {url}"
        );
        assert_eq!(value(body, "condition"), Some("service_healthy"), "{name}");
    }

    for (name, body) in embedded.iter().chain(&cluster) {
        let grace = parse_duration(value(body, "stop_grace_period").expect("stop_grace_period"));
        assert!(grace > default_grace(), "{name}: {grace:?}");
        let token = value(body, "SWITCHBOARD_ADMIN_TOKEN").unwrap();
        assert!(
            token.starts_with("${SWITCHBOARD_ADMIN_TOKEN"),
            "{name}: from the environment"
        );
    }
}

// --- the systemd unit ---

/// The `[Service]` section's settings (a key may repeat).
fn unit_service_settings() -> Vec<(String, String)> {
    let text = repo_file("deploy/switchboard.service");
    let mut section = "";
    let mut settings = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = if line == "[Service]" { "service" } else { "" };
        } else if section == "service" && !line.starts_with('#') {
            if let Some((key, value)) = line.split_once('=') {
                settings.push((key.to_owned(), value.to_owned()));
            }
        }
    }
    settings
}

#[test]
fn the_systemd_unit_is_hardened_notifies_readiness_and_outlasts_the_grace() {
    let settings = unit_service_settings();
    let get = |key: &str| {
        settings
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    };
    for (key, expected) in [
        ("Type", "notify"),
        ("ProtectSystem", "strict"),
        ("StateDirectory", "switchboard"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(get(key), Some(expected), "{key}");
    }
    assert!(get("DynamicUser") == Some("yes") || get("User").is_some());
    assert!(get("EnvironmentFile").is_some(), "secrets from a file");
    assert_eq!(get("ExecStart"), Some("/usr/local/bin/switchboard serve"));
    assert!(settings.iter().any(|(key, value)| key == "Environment"
        && value.starts_with("SWITCHBOARD_DATABASE_URL=sqlite:///var/lib/switchboard/")));
    let stop = parse_duration(get("TimeoutStopSec").expect("TimeoutStopSec"));
    assert!(stop > default_grace(), "TimeoutStopSec {stop:?}");
}

#[test]
fn systemd_analyze_verifies_the_unit_where_it_is_installed() {
    let Ok(probe) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        return;
    };
    if !probe.status.success() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("switchboard.service");
    let text = repo_file("deploy/switchboard.service").replace(
        "/usr/local/bin/switchboard",
        env!("CARGO_BIN_EXE_switchboard"),
    );
    std::fs::write(&unit, text).unwrap();
    let verified = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "{complaints}");
    assert!(
        !complaints.contains("switchboard.service"),
        "warnings about the unit: {complaints}"
    );
}
