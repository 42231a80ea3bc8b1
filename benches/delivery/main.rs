//! End-to-end delivery benchmark: how many events per second Switchboard takes in and
//! delivers, and how long an ingest waits for its durable acknowledgement.
//!
//! Why it exists: the product brief promises ≥ 20,000 events/s end to end on embedded SQLite
//! and an ingest p99 under 10 ms at 3,300 events/s. This bench measures both on the machine it
//! runs on, next to that machine's raw loopback HTTP rate (the ceiling), and rewrites
//! `docs/BENCHMARKS.md` (and the latency curve `docs/benchmarks-latency.svg`) with the figures
//! and the command that reproduces them.
//!
//! First the headline scenario (`headline.rs`), as a user measures it: the shipped binary
//! with its defaults, the load generator and the receiver in processes of their own (this
//! executable re-run with `BENCH_ROLE`, `roles.rs`), realistic WhatsApp bodies. Then the
//! in-process (tuned) scenarios, where three roles share the process: the server
//! (`switchboard::run`) on its own multi-thread
//! runtime, so its scheduling is not mixed with the load; the load generator and the
//! receiver (minimal keep-alive HTTP/1.1 in `wire.rs`, like `wrk`, so they take as little of
//! the shared cores as possible; the receiver answers 200 and counts distinct `wamid` ids)
//! on the bench runtime. Each scenario gets a fresh server and database, warmed up first.
//!
//! `cargo bench --bench delivery` runs it (settings from `BENCH_*` variables, see
//! [`Settings::from_env`]). Under `cargo test --benches` (no `--bench` flag) it runs a small
//! smoke pass and writes nothing.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{json, Value};
use switchboard::config::{Config, DatabaseUrl};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod cpu;
mod harness;
mod headline;
mod headline_report;
mod load;
mod payloads;
/// The throwaway PostgreSQL cluster of the integration tests, for scenario 4.
#[path = "../../tests/api/postgres.rs"]
mod postgres;
mod procs;
mod purge;
mod report;
mod roles;
mod svg;
mod wire;

use cpu::*;
use harness::*;
use headline::Headline;
use headline_report::*;
use load::*;
use report::*;
use wire::*;

/// The allocator of the `switchboard` binary, so the server is measured as it ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub(crate) type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

pub(crate) const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
pub(crate) const COMMAND: &str = "cargo bench --bench delivery";

/// What one run does; every bound comes from here so the whole bench stays short.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `BENCH_EVENTS`: events of the sustained scenario (and of the loopback ceiling).
    pub(crate) events: usize,
    /// `BENCH_CONCURRENCY`: keep-alive connections of the sustained scenario.
    pub(crate) concurrency: usize,
    /// `BENCH_RATE`: events/s of the paced scenario.
    pub(crate) rate: u64,
    /// `BENCH_SECONDS`: length of the paced scenario.
    pub(crate) paced_seconds: u64,
    /// `BENCH_PACED_CONCURRENCY`: requests in flight at most while pacing.
    pub(crate) paced_concurrency: usize,
    /// `BENCH_MAX_SEND_SECONDS`: the sustained senders stop after this long, done or not.
    pub(crate) max_send: Duration,
    /// `BENCH_DRAIN_SECONDS`: how long to wait for deliveries after the last send.
    pub(crate) drain: Duration,
    /// `BENCH_REPEATS`: runs of the sustained scenario; the median one is reported, since
    /// a small shared machine varies by 20 % from run to run.
    pub(crate) repeats: usize,
    /// `BENCH_SERVER_THREADS`: worker threads of the server's runtime (1: the load
    /// generator and the receiver need the rest of 2 cores; see `compare_threads`).
    pub(crate) server_threads: usize,
    /// `BENCH_LOAD_THREADS`: worker threads of the load generator and receiver.
    pub(crate) load_threads: usize,
    /// `BENCH_COMPARE_THREADS`: the sustained scenario is also run with the server on this
    /// many worker threads (default: one per core, the binary's default), so the report
    /// shows what the thread setting is worth; 0 skips it.
    pub(crate) compare_threads: usize,
    /// `BENCH_POSTGRES=0` skips what runs on PostgreSQL (the headline's repeats on it and
    /// scenario 4); they are also skipped, and the report says so, when PostgreSQL is not
    /// installed.
    pub(crate) postgres: bool,
    /// `BENCH_WRITE=0` leaves docs/BENCHMARKS.md alone.
    pub(crate) write_doc: bool,
    /// `BENCH_WARM_UP`: events through each fresh server before anything is measured
    /// (fills connection pools and caches).
    pub(crate) warm_up: usize,
    /// `BENCH_HEADLINE=0` skips the headline scenario (the shipped binary, processes apart).
    pub(crate) headline: bool,
    /// `BENCH_INPROCESS=0` skips the in-process (tuned) scenarios.
    pub(crate) in_process: bool,
    /// `BENCH_INGEST`: `admin` (`POST /admin/channels/{id}/events`) or `meta` (the signed
    /// `POST /webhooks/whatsapp`) for the headline's load.
    pub(crate) ingest: headline::Ingest,
    /// `BENCH_CURVE_RATES`: offered rates of the headline's open-loop curve, in order; the
    /// curve stops after the first rate the server does not keep up with.
    pub(crate) curve_rates: Vec<u64>,
    /// `BENCH_CURVE_SECONDS`: length of each curve run.
    pub(crate) curve_seconds: u64,
}

impl Settings {
    /// Defaults sized for a ~3-minute run, overridable so the lead can scale it.
    pub(crate) fn from_env(smoke: bool) -> BenchResult<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (events, concurrency, rate, seconds) = if smoke {
            (300, 8, 300, 1)
        } else {
            (50_000, 64, 3_300, 10)
        };
        Ok(Self {
            events: env_or("BENCH_EVENTS", events)?,
            concurrency: env_or("BENCH_CONCURRENCY", concurrency)?.max(1),
            rate: env_or("BENCH_RATE", rate)?.max(1),
            paced_seconds: env_or("BENCH_SECONDS", seconds)?.max(1),
            paced_concurrency: env_or("BENCH_PACED_CONCURRENCY", 512)?.max(1),
            max_send: Duration::from_secs(env_or("BENCH_MAX_SEND_SECONDS", 60)?),
            drain: Duration::from_secs(env_or("BENCH_DRAIN_SECONDS", 30)?),
            server_threads: env_or("BENCH_SERVER_THREADS", 1)?.max(1),
            load_threads: env_or("BENCH_LOAD_THREADS", 1)?.max(1),
            compare_threads: env_or("BENCH_COMPARE_THREADS", if smoke { 0 } else { cores })?,
            repeats: env_or("BENCH_REPEATS", if smoke { 1 } else { 3 })?.max(1),
            write_doc: !smoke && env_or("BENCH_WRITE", 1u8)? != 0,
            warm_up: env_or("BENCH_WARM_UP", if smoke { 100 } else { 1_000 })?.max(1),
            postgres: !smoke && env_or("BENCH_POSTGRES", 1u8)? != 0,
            headline: env_or("BENCH_HEADLINE", 1u8)? != 0,
            in_process: env_or("BENCH_INPROCESS", 1u8)? != 0,
            ingest: env_or("BENCH_INGEST", headline::Ingest::Admin)?,
            curve_rates: rates(if smoke {
                "200,500"
            } else {
                "1000,3300,10000,20000,30000,40000,60000"
            })?,
            curve_seconds: env_or("BENCH_CURVE_SECONDS", if smoke { 1 } else { 5 })?.max(1),
        })
    }
}

/// `BENCH_CURVE_RATES` (comma-separated events/s), else `default`.
fn rates(default: &str) -> BenchResult<Vec<u64>> {
    let raw = std::env::var("BENCH_CURVE_RATES").unwrap_or_else(|_| default.to_owned());
    raw.split(',')
        .map(|r| match r.trim().parse::<u64>() {
            Ok(rate) if rate > 0 => Ok(rate),
            _ => Err(format!("BENCH_CURVE_RATES={raw:?}: comma-separated rates above 0").into()),
        })
        .collect()
}

pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> BenchResult<T> {
    match std::env::var(name) {
        Ok(raw) => raw
            .trim()
            .parse()
            .map_err(|_| format!("{name}={raw:?} is not a valid value").into()),
        Err(_) => Ok(default),
    }
}

fn main() -> BenchResult<()> {
    if let Some(role) = roles::run_if_asked(env_or("BENCH_LOAD_THREADS", 1)?) {
        return role;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let settings = Settings::from_env(smoke)?;
    let bench_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench")
        .worker_threads(settings.load_threads)
        .enable_all()
        .build()?;
    let machine = Machine::probe();
    let mut headline = match settings.headline {
        true => Some(headline::run(&settings, bench_runtime.handle())?),
        false => None,
    };
    let report = match settings.in_process {
        true => Some(in_process(&settings, &bench_runtime)?),
        false => None,
    };
    // After everything on SQLite: PostgreSQL's writes would stall a SQLite run's fsyncs.
    if let Some(headline) = &mut headline {
        headline.postgres = headline::run_postgres(&settings, bench_runtime.handle())?;
    }
    let (headline, report) = (headline.as_ref(), report.as_ref());
    println!("{}", summary(&settings, headline, report));
    if settings.write_doc {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/BENCHMARKS.md");
        std::fs::write(path, render(&settings, &machine, headline, report))?;
        println!("wrote {path}");
        if let Some(headline) = headline {
            std::fs::write(headline::svg_path(), svg::curve(&headline.curve))?;
            println!("wrote {}", headline::svg_path().display());
        }
    }
    Ok(())
}

/// The in-process (tuned) scenarios: the server embedded on runtimes of its own.
fn in_process(settings: &Settings, bench_runtime: &tokio::runtime::Runtime) -> BenchResult<Report> {
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.server_threads)
        .thread_name("server")
        .enable_all()
        .build()?;
    let compare_runtime = match settings.compare_threads {
        0 => None,
        threads => Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("server")
                .enable_all()
                .build()?,
        ),
    };
    // The ceiling is the machine's, so its client and receiver get a thread per core.
    let ceiling = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench")
        .enable_all()
        .build()?
        .block_on(loopback_ceiling(settings))?;
    let compare = compare_runtime.as_ref().map(|r| r.handle());
    let report =
        bench_runtime.block_on(run_all(settings, ceiling, server_runtime.handle(), compare))?;
    server_runtime.shutdown_timeout(Duration::from_secs(5));
    if let Some(runtime) = compare_runtime {
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
    Ok(report)
}

/// The figures of one run.
pub(crate) struct Report {
    pub(crate) ceiling: ClosedLoop,
    pub(crate) ceiling_cpu: CpuUse,
    pub(crate) sustained: ClosedLoop,
    pub(crate) sustained_delivery: Delivered,
    pub(crate) sustained_cpu: CpuUse,
    /// End-to-end rate of every sustained run, ascending (the median one is reported).
    pub(crate) sustained_rates: Vec<f64>,
    /// End-to-end rate of every sustained run with the server on `compare_threads` worker
    /// threads, ascending; empty when skipped.
    pub(crate) compare_rates: Vec<f64>,
    pub(crate) compare_threads: usize,
    /// Scenario 4: every run on PostgreSQL (ascending) and the median one's CPU use; `None`
    /// when skipped, with the reason.
    pub(crate) postgres: Result<(Vec<SustainedRun>, usize), &'static str>,
    pub(crate) paced: OpenLoop,
    pub(crate) paced_delivery: Delivered,
    pub(crate) paced_cpu: CpuUse,
}

/// Scenario 1: the load generator posting straight to the receiver, no server between.
pub(crate) async fn loopback_ceiling(settings: &Settings) -> BenchResult<(ClosedLoop, CpuUse)> {
    println!(
        "1/3 loopback ceiling: {} posts to the receiver",
        settings.events
    );
    let tracker = Arc::new(Tracker::new());
    let receiver = Receiver::start(Arc::clone(&tracker)).await?;
    let direct = Endpoint::new(&receiver.url, None, StatusCode::OK)?;
    let cpu = CpuSample::take();
    let ceiling = closed_loop(&direct, &tracker, 0, settings).await;
    let used = cpu.until(&CpuSample::take());
    receiver.stop();
    Ok((ceiling, used))
}

pub(crate) async fn run_all(
    settings: &Settings,
    (ceiling, ceiling_cpu): (ClosedLoop, CpuUse),
    server_runtime: &Handle,
    compare_runtime: Option<&Handle>,
) -> BenchResult<Report> {
    let tracker = Arc::new(Tracker::new());
    let receiver = Receiver::start(Arc::clone(&tracker)).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .build()?;
    let mut ids = 0u64;
    let mut next_ids = |n: usize| {
        let base = ids;
        ids += n as u64;
        base
    };

    let mut runs = sustained_runs(
        settings,
        server_runtime,
        &client,
        &receiver,
        &tracker,
        &mut next_ids,
        Db::Sqlite,
    )
    .await?;
    let sustained_rates: Vec<f64> = runs.iter().map(|r| r.0).collect();
    let (_, sustained, sustained_delivery, sustained_cpu) = runs.swap_remove(runs.len() / 2);
    let compare_rates = match compare_runtime {
        Some(runtime) => sustained_runs(
            settings,
            runtime,
            &client,
            &receiver,
            &tracker,
            &mut next_ids,
            Db::Sqlite,
        )
        .await?
        .iter()
        .map(|r| r.0)
        .collect(),
        None => Vec::new(),
    };

    let paced_events = (settings.rate * settings.paced_seconds) as usize;
    println!(
        "3/3 paced: {} events/s for {} s",
        settings.rate, settings.paced_seconds
    );
    let server = Server::start(server_runtime, &client, &receiver.url, Db::Sqlite).await?;
    let ingest = server.ingest_endpoint()?;
    warm_up(&ingest, &tracker, next_ids(settings.warm_up), settings).await?;
    let cpu = CpuSample::take();
    let paced = open_loop(&ingest, &tracker, next_ids(paced_events), settings).await;
    let paced_delivery = tracker
        .wait(paced.acked, paced.last_scheduled, settings.drain)
        .await;
    let paced_cpu = cpu.until(&CpuSample::take());
    server.stop().await?;
    // Last: PostgreSQL's writes keep the disk busy after its runs, which would stall the
    // fsyncs of a SQLite scenario that followed.
    let postgres = match (settings.postgres, postgres::postgres_installed()) {
        (false, _) => Err("skipped (BENCH_POSTGRES=0)"),
        (true, false) => Err("skipped: PostgreSQL is not installed (initdb not found)"),
        (true, true) => {
            let runs = sustained_runs(
                settings,
                server_runtime,
                &client,
                &receiver,
                &tracker,
                &mut next_ids,
                Db::Postgres,
            )
            .await?;
            let median = runs.len() / 2;
            Ok((runs, median))
        }
    };

    receiver.stop();
    Ok(Report {
        ceiling,
        ceiling_cpu,
        sustained,
        sustained_delivery,
        sustained_cpu,
        sustained_rates,
        compare_rates,
        compare_threads: settings.compare_threads,
        postgres,
        paced,
        paced_delivery,
        paced_cpu,
    })
}

/// The database a scenario's server runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Db {
    /// A SQLite file in a temporary directory (the default).
    Sqlite,
    /// A fresh database in a throwaway PostgreSQL cluster on this machine.
    Postgres,
}

/// One sustained run's end-to-end rate, ingest figures, deliveries and CPU use.
pub(crate) type SustainedRun = (f64, ClosedLoop, Delivered, CpuUse);

/// The sustained scenario `repeats` times on `runtime`, each on a fresh server; ascending
/// by end-to-end rate.
pub(crate) async fn sustained_runs(
    settings: &Settings,
    runtime: &Handle,
    client: &reqwest::Client,
    receiver: &Receiver,
    tracker: &Tracker,
    next_ids: &mut impl FnMut(usize) -> u64,
    db: Db,
) -> BenchResult<Vec<SustainedRun>> {
    let threads = runtime.metrics().num_workers();
    let mut runs = Vec::with_capacity(settings.repeats);
    for repeat in 1..=settings.repeats {
        println!(
            "sustained on {db:?} ({repeat}/{}): {} events, {} connections, {threads} server threads",
            settings.repeats, settings.events, settings.concurrency
        );
        let server = Server::start(runtime, client, &receiver.url, db).await?;
        let ingest = server.ingest_endpoint()?;
        warm_up(&ingest, tracker, next_ids(settings.warm_up), settings).await?;
        let cpu = CpuSample::take();
        let run = closed_loop(&ingest, tracker, next_ids(settings.events), settings).await;
        let delivery = tracker.wait(run.acked, run.last_ack, settings.drain).await;
        let used = cpu.until(&CpuSample::take());
        server.stop().await?;
        runs.push((delivered_rate(&run, &delivery), run, delivery, used));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(runs)
}

/// Fills connection pools, caches and the engine's client before anything is measured.
pub(crate) async fn warm_up(
    ingest: &Endpoint,
    tracker: &Tracker,
    base: u64,
    settings: &Settings,
) -> BenchResult<()> {
    let run = closed_loop(
        ingest,
        tracker,
        base,
        &Settings {
            events: settings.warm_up,
            ..settings.clone()
        },
    )
    .await;
    let delivered = tracker.wait(run.acked, run.last_ack, settings.drain).await;
    if run.errors > 0 || delivered.distinct < settings.warm_up {
        return Err(format!(
            "warm-up failed: {} ingest errors, {} of {} delivered",
            run.errors, delivered.distinct, settings.warm_up
        )
        .into());
    }
    Ok(())
}
