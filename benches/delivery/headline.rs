//! The headline scenario: Switchboard as a user measures it (issue #14).
//!
//! Why: the in-process scenarios share one process between the server, the load and the
//! receiver, post a 200-byte body and tune the server's threads; a user runs the shipped
//! binary with its defaults, an external load generator and receiver, and real payloads.
//! This does that: `target/release/switchboard serve` with its defaults on a fresh SQLite
//! file, the generator and the receiver as processes of their own (`roles.rs`), realistic
//! bodies (`payloads.rs`), and, in the same run, the same generator posting straight to the
//! same receiver (the raw loopback rate). Then an open-loop curve of latency against offered
//! rate until the server no longer keeps up.

#[allow(unused_imports)]
use super::*;

use std::path::{Path, PathBuf};

use procs::*;
use roles::*;

/// Where the headline's load goes in the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ingest {
    /// `POST /admin/channels/{id}/events` with the admin token (the sandbox ingest the
    /// issue's measurement used).
    Admin,
    /// `POST /webhooks/whatsapp` signed with `X-Hub-Signature-256` (what production gets;
    /// the server then also gets `--meta-app-secret`).
    Meta,
}

impl std::str::FromStr for Ingest {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "admin" => Ok(Self::Admin),
            "meta" => Ok(Self::Meta),
            other => Err(format!("BENCH_INGEST={other:?}: admin or meta")),
        }
    }
}

/// The app secret the bench signs Meta's notifications with.
const APP_SECRET: &str = "bench-meta-app-secret";

/// A point of the curve is past the knee when its ingest p99 is above this.
const EXPLODED_US: u64 = 1_000_000;

/// The figures of the headline scenario.
pub(crate) struct Headline {
    pub(crate) binary: PathBuf,
    pub(crate) ingest: Ingest,
    /// Smallest, mean and largest body of the mix, bytes.
    pub(crate) bodies: (usize, usize, usize),
    /// Generator → receiver directly, each repeat, ascending by rate.
    pub(crate) raw: Vec<RawRun>,
    /// Closed loop through the server, each repeat, ascending by end-to-end rate.
    pub(crate) sustained: Vec<EndToEnd>,
    pub(crate) curve: Vec<CurvePoint>,
    /// The same repeats with the server on PostgreSQL ([`run_postgres`]), or why not.
    pub(crate) postgres: Result<Repeats, &'static str>,
}

/// Repeats of the closed loop with their raw loopback runs, each ascending by rate.
pub(crate) struct Repeats {
    pub(crate) raw: Vec<RawRun>,
    pub(crate) sustained: Vec<EndToEnd>,
}

/// One raw loopback run.
pub(crate) struct RawRun {
    pub(crate) load: LoadReport,
    pub(crate) received: Received,
    pub(crate) cpu: ProcCpu,
}

/// One closed-loop run through the server.
pub(crate) struct EndToEnd {
    pub(crate) load: LoadReport,
    pub(crate) received: Received,
    /// Distinct deliveries over first send → last delivery.
    pub(crate) rate: f64,
    /// Send → receiver.
    pub(crate) e2e: Percentiles,
    pub(crate) cpu: ProcCpu,
    /// The server's commits during the run, by duration (`None` from a build without the
    /// histogram).
    pub(crate) commits: Option<CommitTail>,
    /// Events in the database after the run (warm-up included).
    pub(crate) stored: usize,
    /// What the SQLite file held and what its purge cost (`None` on PostgreSQL).
    pub(crate) storage: Option<Storage>,
}

/// A SQLite run's bytes on disk and payload purge.
pub(crate) struct Storage {
    /// Database, WAL and shared-memory bytes after the deliveries, server still running.
    pub(crate) disk: [u64; 3],
    /// Every payload of the run then purged, the server stopped.
    pub(crate) purge: purge::PurgeCost,
}

/// One open-loop run of the curve.
pub(crate) struct CurvePoint {
    pub(crate) offered: u64,
    pub(crate) load: LoadReport,
    pub(crate) received: Received,
    /// Distinct deliveries over first scheduled send → last delivery.
    pub(crate) achieved: f64,
    /// Scheduled → receiver.
    pub(crate) e2e: Percentiles,
    pub(crate) cpu: ProcCpu,
    /// The server's commits during the run, by duration (`None` from a build without the
    /// histogram).
    pub(crate) commits: Option<CommitTail>,
    /// Why this rate is past what the server keeps up with; `None` while it keeps up.
    pub(crate) saturated: Option<String>,
}

/// How many of a run's commits (each one the wait of every ingest it carried) took longer
/// than [`SLOW_COMMIT_S`], and the bucket of the slowest: the disk's flush latency, which
/// sets the ingest's tail.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CommitTail {
    pub(crate) commits: u64,
    pub(crate) slow: u64,
    /// Upper bound of the slowest commit's bucket, in seconds (infinite: above the last).
    pub(crate) slowest_within: f64,
}

/// What counts as a slow commit: half the ingest p99 target.
pub(crate) const SLOW_COMMIT_S: f64 = 0.005;

impl CommitTail {
    /// The commits between two scrapes of the histogram (cumulative buckets, `+Inf` last);
    /// `None` without one.
    fn between(before: &[(f64, u64)], after: &[(f64, u64)]) -> Option<Self> {
        if after.is_empty() || after.len() != before.len() {
            return None;
        }
        let delta: Vec<(f64, u64)> = after
            .iter()
            .zip(before)
            .map(|(&(bound, a), &(_, b))| (bound, a.saturating_sub(b)))
            .collect();
        let commits = delta.last().map_or(0, |&(_, n)| n);
        let within = |limit: f64| {
            delta
                .iter()
                .rfind(|&&(bound, _)| bound <= limit)
                .map_or(0, |&(_, n)| n)
        };
        let slowest_within = delta
            .iter()
            .find(|&&(_, n)| n == commits)
            .map_or(f64::INFINITY, |&(bound, _)| bound);
        Some(Self {
            commits,
            slow: commits - within(SLOW_COMMIT_S),
            slowest_within,
        })
    }
}

/// The median of runs sorted ascending.
pub(crate) fn median<T>(runs: &[T]) -> Option<&T> {
    runs.get(runs.len() / 2)
}

/// Runs the whole headline scenario.
pub(crate) fn run(settings: &Settings, runtime: &Handle) -> BenchResult<Headline> {
    let binary = server_binary()?;
    println!(
        "headline: {} serve (defaults), {:?} ingest",
        binary.display(),
        settings.ingest
    );
    let mut rig = Rig::start(settings, runtime, binary)?;
    let (Repeats { raw, sustained }, bodies) = rig.repeats(Db::Sqlite)?;
    let mut curve = Vec::new();
    for &rate in &settings.curve_rates {
        println!(
            "headline curve: {rate}/s offered for {} s",
            settings.curve_seconds
        );
        let point = rig.curve_point(rate)?;
        let done = point.saturated.is_some();
        curve.push(point);
        if done {
            break;
        }
    }
    Ok(Headline {
        binary: rig.binary.clone(),
        ingest: settings.ingest,
        bodies,
        raw,
        sustained,
        curve,
        postgres: Err("not run yet"),
    })
}

/// The headline's repeats again with the server on a fresh database of a throwaway
/// PostgreSQL cluster (default settings, on this machine: its processes count as *other
/// processes*). Run after everything on SQLite, whose fsyncs PostgreSQL's writes would
/// stall; `Err` says why it was skipped.
pub(crate) fn run_postgres(
    settings: &Settings,
    runtime: &Handle,
) -> BenchResult<Result<Repeats, &'static str>> {
    if !settings.postgres {
        return Ok(Err("skipped (BENCH_POSTGRES=0)"));
    }
    if !postgres::postgres_installed() {
        return Ok(Err(
            "skipped: PostgreSQL is not installed (initdb not found)",
        ));
    }
    let mut rig = Rig::start(settings, runtime, server_binary()?)?;
    Ok(Ok(rig.repeats(Db::Postgres)?.0))
}
/// The generator and receiver processes, and what the runs share.
struct Rig<'a> {
    settings: &'a Settings,
    runtime: &'a Handle,
    client: reqwest::Client,
    binary: PathBuf,
    load: RoleProcess,
    receiver: RoleProcess,
    hook: String,
    next_id: u64,
    times: tempfile::TempDir,
}

impl<'a> Rig<'a> {
    fn start(settings: &'a Settings, runtime: &'a Handle, binary: PathBuf) -> BenchResult<Self> {
        let (receiver, hook) = RoleProcess::start("receiver", settings.load_threads)?;
        let (load, _) = RoleProcess::start("loadgen", settings.load_threads)?;
        Ok(Self {
            settings,
            runtime,
            client: reqwest::Client::new(),
            binary,
            load,
            receiver,
            hook,
            next_id: 0,
            times: tempfile::tempdir()?,
        })
    }

    fn ids(&mut self, n: usize) -> u64 {
        let base = self.next_id;
        self.next_id += n as u64;
        base
    }

    fn path(&self, name: &str) -> PathBuf {
        self.times.path().join(name)
    }

    /// The closed loop `repeats` times, each on a fresh server on `db` after its raw
    /// loopback run; and the bodies' sizes.
    fn repeats(&mut self, db: Db) -> BenchResult<(Repeats, (usize, usize, usize))> {
        let (mut raw, mut sustained, mut bodies) = (Vec::new(), Vec::new(), (0, 0, 0));
        let on = match db {
            Db::Sqlite => "SQLite",
            Db::Postgres => "PostgreSQL",
        };
        for repeat in 1..=self.settings.repeats {
            println!(
                "headline sustained on {on} ({repeat}/{}): {} events, {} connections, raw loopback first",
                self.settings.repeats, self.settings.events, self.settings.concurrency
            );
            let (run, raw_run, sizes) = self.end_to_end(db)?;
            bodies = sizes;
            raw.push(raw_run);
            sustained.push(run);
        }
        raw.sort_by(|a, b| a.load.rate().total_cmp(&b.load.rate()));
        sustained.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        Ok((Repeats { raw, sustained }, bodies))
    }

    /// A fresh server on `db` (a SQLite file, or a fresh PostgreSQL database) with a
    /// channel whose webhook is the receiver; its target.
    fn server(&mut self, db: Db) -> BenchResult<(ServerProcess, Target)> {
        let secret = (self.settings.ingest == Ingest::Meta).then_some(APP_SECRET);
        let postgres = match db {
            Db::Sqlite => None,
            Db::Postgres => Some(postgres::postgres_database()),
        };
        let server = ServerProcess::start(&self.binary, secret, postgres.as_deref())?;
        let channel = self.runtime.block_on(async {
            wait_healthy(&self.client, &server.base).await?;
            provision(&self.client, &server.base, &self.hook).await
        })?;
        let number = field(&channel, "phone_number")?;
        let waba = channel["waba_id"].as_i64().ok_or("no waba_id")?;
        let bodies = payloads::Channel {
            phone_number_id: field(&channel, "phone_number_id")?,
            display_phone_number: number.trim_start_matches('+').to_owned(),
            waba_id: waba.to_string(),
        };
        let target = match self.settings.ingest {
            Ingest::Admin => Target {
                url: format!(
                    "{}/admin/channels/{}/events",
                    server.base,
                    field(&channel, "id")?
                ),
                authorization: Some(format!("Bearer {ADMIN_TOKEN}")),
                accepted: 202,
                channel: bodies,
                app_secret: None,
            },
            Ingest::Meta => Target {
                url: format!("{}/webhooks/whatsapp", server.base),
                authorization: None,
                accepted: 200,
                channel: bodies,
                app_secret: secret.map(str::to_owned),
            },
        };
        Ok((server, target))
    }

    /// The same bodies straight to the receiver.
    fn direct(&self, target: &Target) -> Target {
        Target {
            url: self.hook.clone(),
            authorization: None,
            accepted: 200,
            app_secret: None,
            ..target.clone()
        }
    }

    /// Closed loop of `events` to `target`; what was sent and what arrived, with the
    /// per-id send and arrival times.
    fn closed(&mut self, target: &Target, events: usize) -> BenchResult<Batch> {
        let base = self.ids(events);
        let command = LoadCommand::Closed {
            target: target.clone(),
            base,
            events,
            concurrency: self.settings.concurrency,
            max_send_ms: self.settings.max_send.as_millis() as u64,
            times: self.path("sent"),
        };
        self.batch(base, events, &command)
    }

    fn batch(&mut self, base: u64, events: usize, command: &LoadCommand) -> BenchResult<Batch> {
        let _: Received = self
            .receiver
            .call(&ReceiveCommand::Begin { base, events })?;
        let load: LoadReport = self.load.call(command)?;
        let received: Received = self.receiver.call(&ReceiveCommand::Wait {
            expected: load.acked,
            drain_ms: self.settings.drain.as_millis() as u64,
            times: self.path("received"),
        })?;
        Ok(Batch {
            load,
            received,
            sent: read_times(&self.path("sent"))?,
            arrived: read_times(&self.path("received"))?,
        })
    }

    fn warm_up(&mut self, target: &Target) -> BenchResult<()> {
        let events = self.settings.warm_up;
        let batch = self.closed(target, events)?;
        if batch.load.errors > 0 || batch.received.distinct < events {
            return Err(format!(
                "headline warm-up failed: {} ingest errors, {} of {events} delivered",
                batch.load.errors, batch.received.distinct
            )
            .into());
        }
        Ok(())
    }

    /// The server's commit-duration histogram now.
    fn commit_durations(&self, server: &ServerProcess) -> BenchResult<Vec<(f64, u64)>> {
        (self.runtime).block_on(commit_durations(&self.client, &server.base))
    }

    fn sample(&self, server: Option<&ServerProcess>) -> ProcSample {
        ProcSample::take(server.map(|s| s.pid), self.load.pid, self.receiver.pid)
    }

    /// One repeat: the raw loopback run, then the closed loop through a fresh server.
    fn end_to_end(&mut self, db: Db) -> BenchResult<(EndToEnd, RawRun, (usize, usize, usize))> {
        let (server, target) = self.server(db)?;
        let sizes = payloads::check_sizes(&target.channel)?;
        let direct = self.direct(&target);
        let before = self.sample(None);
        let raw = self.closed(&direct, self.settings.events)?;
        let raw = RawRun {
            cpu: before.until(&self.sample(None)),
            load: raw.load,
            received: raw.received,
        };
        self.warm_up(&target)?;
        let commits_before = self.commit_durations(&server)?;
        let before = self.sample(Some(&server));
        let batch = self.closed(&target, self.settings.events)?;
        let cpu = before.until(&self.sample(Some(&server)));
        let commits = CommitTail::between(&commits_before, &self.commit_durations(&server)?);
        let disk = server.disk();
        let database = server.database.clone();
        let data = server.stop()?;
        let storage = match (disk, database) {
            (Some(disk), Some(file)) => Some(Storage {
                disk,
                purge: purge::measure(self.runtime, &file)?,
            }),
            _ => None,
        };
        drop(data);
        let (e2e, last) = batch.pair();
        let seconds = last.saturating_sub(batch.load.start_ns) as f64 / 1e9;
        let run = EndToEnd {
            rate: batch.received.distinct as f64 / seconds.max(1e-9),
            e2e,
            cpu,
            commits,
            storage,
            stored: self.settings.warm_up + batch.load.acked,
            load: batch.load,
            received: batch.received,
        };
        Ok((run, raw, sizes))
    }

    /// One open-loop run at `rate` on a fresh server.
    fn curve_point(&mut self, rate: u64) -> BenchResult<CurvePoint> {
        let (server, target) = self.server(Db::Sqlite)?;
        self.warm_up(&target)?;
        let events = (rate * self.settings.curve_seconds) as usize;
        let base = self.ids(events);
        let command = LoadCommand::Open {
            target,
            base,
            rate,
            seconds: self.settings.curve_seconds,
            in_flight: self.settings.paced_concurrency,
            times: self.path("sent"),
        };
        let commits_before = self.commit_durations(&server)?;
        let before = self.sample(Some(&server));
        let batch = self.batch(base, events, &command)?;
        let cpu = before.until(&self.sample(Some(&server)));
        let commits = CommitTail::between(&commits_before, &self.commit_durations(&server)?);
        server.stop()?;
        let (e2e, last) = batch.pair();
        let seconds = last.saturating_sub(batch.load.start_ns) as f64 / 1e9;
        let achieved = batch.received.distinct as f64 / seconds.max(1e-9);
        Ok(CurvePoint {
            offered: rate,
            saturated: saturation(rate, achieved, &batch),
            achieved,
            e2e,
            cpu,
            commits,
            load: batch.load,
            received: batch.received,
        })
    }
}

/// Why a curve point is past what the server keeps up with, if it is.
fn saturation(rate: u64, achieved: f64, batch: &Batch) -> Option<String> {
    let (load, received) = (&batch.load, &batch.received);
    if load.errors > 0 {
        return Some(format!("{} ingest errors", load.errors));
    }
    if received.distinct < load.acked {
        return Some(format!(
            "{} of {} acknowledged delivered within the drain",
            received.distinct, load.acked
        ));
    }
    if achieved < 0.9 * rate as f64 {
        return Some(format!(
            "achieved {achieved:.0}/s, under 90 % of the offered rate"
        ));
    }
    if load.p99_us > EXPLODED_US {
        return Some(format!("ingest p99 {} above 1 s", ms(load.p99_us)));
    }
    None
}

/// One load run's report and the per-id times of both sides.
struct Batch {
    load: LoadReport,
    received: Received,
    sent: Vec<u64>,
    arrived: Vec<u64>,
}

impl Batch {
    /// Sent (or scheduled) → arrival percentiles over the ids both sides saw, and the last
    /// arrival (Unix ns).
    fn pair(&self) -> (Percentiles, u64) {
        let mut latencies = Vec::with_capacity(self.arrived.len());
        let mut last = 0;
        for (&sent, &arrived) in self.sent.iter().zip(&self.arrived) {
            if sent > 0 && arrived > 0 {
                latencies.push(arrived.saturating_sub(sent) / 1_000);
                last = last.max(arrived);
            }
        }
        (Percentiles::of(&mut latencies), last)
    }
}

/// The disk figure of a SQLite run: bytes per stored event.
pub(crate) fn bytes_per_event(run: &EndToEnd, storage: &Storage) -> f64 {
    storage.disk.iter().sum::<u64>() as f64 / run.stored.max(1) as f64
}

/// Where the curve's SVG goes.
pub(crate) fn svg_path() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/benchmarks-latency.svg"
    ))
}
