use super::*;
use crate::store::WriteStats;

fn counted() -> Metrics {
    let metrics = Metrics::default();
    for _ in 0..3 {
        metrics.event_stored(Source::Admin, EventKind::Whatsapp);
    }
    metrics.event_stored(Source::Meta, EventKind::Unroutable);
    metrics.attempt(
        &Target::Primary,
        AttemptOutcome::Delivered,
        Duration::from_millis(2),
    );
    metrics.attempt(
        &Target::Partner,
        AttemptOutcome::Error(AttemptErrorKind::Timeout),
        Duration::from_secs(5),
    );
    metrics.delivery_finished(&Target::Partner, FinalState::Dropped);
    metrics.leases_lost(2);
    metrics.store_up(false);
    metrics.store_up(false);
    metrics
}

fn scrape() -> Scrape {
    Scrape {
        queue_depth: Some(7),
        writes: WriteStats {
            commits: 4,
            writes: 10,
            busy_seconds: 0.5,
            // One commit of 0.4 ms, two of 3 ms, one over a second.
            commit_buckets: [0, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1],
            commit_seconds: 1.5064,
        },
        listener_up: Some(false),
        destinations: vec![DestinationRow {
            id: "https://receiver.example/hook".into(),
            backlog: 3,
            paused: true,
            oldest_waiting_seconds: 12,
        }],
        health: vec![HealthRow {
            id: "https://receiver.example/hook".into(),
            windows: [WindowRow {
                attempts: 5,
                success_ratio: 0.8,
                over_1s_ratio: 0.0,
                latency_seconds: [0.05, 0.1, 0.25],
            }; 2],
            grades: vec![("ok", false), ("degraded", true), ("failing", false)],
        }],
    }
}

#[test]
fn encodes_labelled_counters_scrape_figures_and_a_cumulative_histogram() {
    let text = counted()
        .encode(Format::OpenMetrics, scrape())
        .expect("encodes");
    let dest = "destination=\"https://receiver.example/hook\"";
    for line in [
        "switchboard_events_ingested_total{source=\"admin\",kind=\"whatsapp\"} 3",
        "switchboard_events_ingested_total{source=\"meta\",kind=\"unroutable\"} 1",
        "switchboard_events_ingested_total{source=\"platform\",kind=\"partner\"} 0",
        "switchboard_attempts_total{target=\"primary\",outcome=\"delivered\"} 1",
        "switchboard_attempts_total{target=\"partner\",outcome=\"timeout\"} 1",
        "switchboard_deliveries_total{target=\"partner\",state=\"dropped\"} 1",
        "switchboard_queue_depth 7",
        "switchboard_leases_lost_total 2",
        "switchboard_store_up 0",
        "switchboard_store_outages_total 1",
        "switchboard_config_listener_up 0",
        "switchboard_store_commits_total 4",
        "switchboard_store_writes_total 10",
        "switchboard_store_writer_busy_seconds_total 0.5",
        "switchboard_store_commit_duration_seconds_bucket{le=\"0.00025\"} 0",
        "switchboard_store_commit_duration_seconds_bucket{le=\"0.0005\"} 1",
        "switchboard_store_commit_duration_seconds_bucket{le=\"0.005\"} 3",
        "switchboard_store_commit_duration_seconds_bucket{le=\"1.0\"} 3",
        "switchboard_store_commit_duration_seconds_bucket{le=\"+Inf\"} 4",
        "switchboard_store_commit_duration_seconds_count 4",
        "switchboard_store_commit_duration_seconds_sum 1.5064",
        "switchboard_attempt_duration_seconds_bucket{le=\"0.001\"} 0",
        "switchboard_attempt_duration_seconds_bucket{le=\"0.0025\"} 1",
        "switchboard_attempt_duration_seconds_bucket{le=\"5.0\"} 2",
        "switchboard_attempt_duration_seconds_bucket{le=\"+Inf\"} 2",
        "switchboard_attempt_duration_seconds_count 2",
        "# TYPE switchboard_events_ingested counter",
        "# UNIT switchboard_engine_memory_bytes bytes",
        &format!("switchboard_destination_backlog{{{dest}}} 3"),
        &format!("switchboard_destination_paused{{{dest}}} 1"),
        &format!("switchboard_destination_oldest_waiting_seconds{{{dest}}} 12"),
        &format!("switchboard_destination_attempts{{{dest},window=\"5m\"}} 5"),
        &format!(
            "switchboard_destination_latency_seconds{{{dest},window=\"1h\",quantile=\"0.99\"}} 0.25"
        ),
        &format!("switchboard_destination_grade{{{dest},grade=\"degraded\"}} 1"),
        "# EOF",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn the_text_format_names_counters_in_full_and_has_no_eof() {
    let metrics = counted();
    metrics.store_up(true);
    let text = metrics
        .encode(Format::Text, Scrape::default())
        .expect("encodes");
    for line in [
        "# TYPE switchboard_events_ingested_total counter",
        "switchboard_store_up 1",
        "switchboard_store_outages_total 1",
        "switchboard_attempt_duration_seconds_count 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("# EOF"), "{text}");
    assert!(!text.contains("switchboard_queue_depth"), "{text}");
    assert!(!text.contains("switchboard_destination_backlog"), "{text}");
}

#[test]
fn totals_sum_every_label() {
    let totals = counted().totals();
    assert_eq!(totals.events_ingested, 4);
    assert_eq!(totals.attempts, 2);
    assert_eq!((totals.delivered, totals.dropped), (0, 1));
}

#[test]
fn the_format_follows_accept() {
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(Format::negotiate(None), Format::OpenMetrics);
    assert_eq!(Format::negotiate(Some("*/*")), Format::OpenMetrics);
    let text_only = "text/plain;version=0.0.4;q=1,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(text_only)), Format::Text);
    assert!(Format::OpenMetrics
        .content_type()
        .starts_with("application/openmetrics-text; version=1.0.0"));
}
