//! `/metrics` as a scraper sees it: a well-formed exposition in the format it asked for
//! (every sample in a family with HELP and TYPE, counters ending in `_total`, OpenMetrics
//! ending in `# EOF`), and the Grafana dashboard in `deploy/` asking only for series a
//! server that has delivered something serves.

use std::collections::{BTreeSet, HashMap, HashSet};

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{json, Value};

use crate::helpers::{fast_delivery, is_in_state, metric_sum, spawn_app_with, TestApp};
use crate::receiver::{Behavior, TestReceiver};

/// The `Accept` header Prometheus sends by default.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A server that has retried and delivered one event (so the histogram, the attempt
/// outcomes and the per-destination series all have samples), and its receiver.
async fn delivered_app() -> (TestApp, TestReceiver) {
    let app = spawn_app_with(fast_delivery).await;
    let number = app.provision().await;
    let receiver = TestReceiver::start().await;
    receiver.script([Behavior::Status(500)]);
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let message = json!({"messages": [{"from": "4917600000000", "id": "wamid.m1", "type": "text", "text": {"body": "hi"}}]});
    let event_id = app.post_event(&number.channel_id, message).await;
    app.wait_for_event(event_id, |e| is_in_state(e, "primary", "delivered"))
        .await;
    let delivered = [("state", "delivered")];
    app.wait_for_metrics(|text| {
        metric_sum(text, "switchboard_deliveries_total", &delivered) >= 1
            && text.contains("switchboard_destination_grade{")
    })
    .await;
    (app, receiver)
}

/// Scrapes with `accept` and returns the `Content-Type` and the body.
async fn scrape(app: &TestApp, accept: &str) -> (String, String) {
    let response = app
        .client
        .get(app.url("/metrics"))
        .header(ACCEPT, accept)
        .send()
        .await
        .expect("scrape");
    assert!(response.status().is_success(), "{}", response.status());
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .expect("ASCII content type")
        .to_owned();
    (content_type, response.text().await.expect("body"))
}

/// A family's metadata as the exposition declared it.
#[derive(Default)]
struct Family {
    kind: Option<String>,
    help: bool,
}

/// Checks the exposition's form and returns every sample name in it.
fn sample_names(text: &str, open_metrics: bool) -> BTreeSet<String> {
    let body = if open_metrics {
        assert!(text.ends_with("\n# EOF\n"), "no # EOF at the end:\n{text}");
        &text[..text.len() - "# EOF\n".len()]
    } else {
        assert!(!text.contains("# EOF"), "{text}");
        text
    };
    let families = metadata(body);
    let mut names = BTreeSet::new();
    let (mut current, mut finished) = (None::<String>, HashSet::new());
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).expect("a sample line");
        let name = &line[..name_end];
        let value = line.rsplit(' ').next().expect("a value");
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        let (family, kind) = family_of(name, &families)
            .unwrap_or_else(|| panic!("{name} has no family with HELP and TYPE:\n{text}"));
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter sample {name}");
        } else {
            assert!(!name.ends_with("_total"), "{kind} sample {name}");
        }
        if current.as_deref() != Some(family) {
            assert!(finished.insert(family.to_owned()), "{family} is split");
            current = Some(family.to_owned());
        }
        names.insert(name.to_owned());
    }
    names
}

/// The HELP, TYPE and UNIT lines: each family declared once, with a help text, and a unit
/// that its name ends with.
fn metadata(body: &str) -> HashMap<String, Family> {
    let mut families: HashMap<String, Family> = HashMap::new();
    for line in body.lines().filter(|l| l.starts_with('#')) {
        let mut words = line.splitn(4, ' ');
        let (hash, keyword) = (words.next(), words.next());
        let (name, rest) = (words.next().expect("a name"), words.next().unwrap_or(""));
        assert_eq!(hash, Some("#"), "{line}");
        assert!(name.starts_with("switchboard_"), "{line}");
        let family = families.entry(name.to_owned()).or_default();
        match keyword {
            Some("HELP") => {
                assert!(!rest.trim().is_empty() && !family.help, "{line}");
                family.help = true;
            }
            Some("TYPE") => {
                assert!(family.kind.replace(rest.to_owned()).is_none(), "{line}");
            }
            Some("UNIT") => assert!(name.ends_with(&format!("_{rest}")), "{line}"),
            _ => panic!("unexpected comment {line:?}"),
        }
    }
    families
}

/// The family a sample belongs to (its name, or its name less the suffix its type allows)
/// and the family's type, if it has both HELP and TYPE.
fn family_of<'a>(name: &str, families: &'a HashMap<String, Family>) -> Option<(&'a str, &'a str)> {
    let suffixes: &[(&str, &[&str])] = &[
        ("", &["gauge", "counter"]),
        ("_total", &["counter"]),
        ("_bucket", &["histogram"]),
        ("_sum", &["histogram"]),
        ("_count", &["histogram"]),
    ];
    suffixes.iter().find_map(|(suffix, kinds)| {
        let base = name.strip_suffix(suffix)?;
        let (family, meta) = families.get_key_value(base)?;
        let kind = meta.kind.as_deref().filter(|k| kinds.contains(k))?;
        meta.help.then_some((family.as_str(), kind))
    })
}

#[tokio::test]
async fn the_scrape_is_openmetrics_for_prometheus_and_text_for_text_only_scrapers() {
    let (app, _receiver) = delivered_app().await;
    let (content_type, text) = scrape(&app, PROMETHEUS_ACCEPT).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let names = sample_names(&text, true);
    for expected in [
        "switchboard_events_ingested_total",
        "switchboard_attempts_total",
        "switchboard_attempt_duration_seconds_bucket",
        "switchboard_engine_memory_bytes",
        "switchboard_destination_latency_seconds",
    ] {
        assert!(names.contains(expected), "no {expected} in\n{text}");
    }
    assert!(
        text.contains("# TYPE switchboard_attempts counter\n"),
        "{text}"
    );
    let (content_type, text) = scrape(&app, "text/plain;version=0.0.4").await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(sample_names(&text, false), names);
    assert!(
        text.contains("# TYPE switchboard_attempts_total counter\n"),
        "{text}"
    );
}

/// Every `switchboard_…` name in a PromQL expression.
fn metric_names(expr: &str) -> impl Iterator<Item = &str> {
    expr.match_indices("switchboard_").map(move |(at, _)| {
        let rest = &expr[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        &rest[..end]
    })
}

/// Every string under a key named `key`, at any depth.
fn strings_under<'a>(value: &'a Value, key: &str, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if k == key => found.push(s),
                    _ => strings_under(v, key, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_grafana_dashboard_asks_only_for_series_a_delivering_server_serves() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/switchboard.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    assert_eq!(
        variable("DS_PROMETHEUS").map(|v| &v["type"]),
        Some(&json!("datasource"))
    );
    assert!(variable("instance").is_some(), "a node selector");
    let mut exprs = Vec::new();
    strings_under(&dashboard["panels"], "expr", &mut exprs);
    strings_under(&dashboard["templating"], "definition", &mut exprs);
    assert!(exprs.len() >= 20, "{} expressions", exprs.len());
    let mut uids = Vec::new();
    strings_under(&dashboard["panels"], "uid", &mut uids);
    assert!(
        uids.iter().all(|uid| *uid == "${DS_PROMETHEUS}"),
        "{uids:?}"
    );

    let (app, _receiver) = delivered_app().await;
    let (_, text) = scrape(&app, PROMETHEUS_ACCEPT).await;
    let served = sample_names(&text, true);
    let asked: BTreeSet<&str> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(asked.len() >= 15, "{asked:?}");
    let missing: Vec<_> = asked.iter().filter(|n| !served.contains(**n)).collect();
    assert!(missing.is_empty(), "not served: {missing:?}\n{text}");
}
