//! The headline scenario's load generator and receiver, each in a process of its own.
//!
//! Why: a user measures Switchboard with a load generator and a receiver that are not inside
//! the server's process (issue #14). The bench executable re-executes itself with
//! `BENCH_ROLE=loadgen` or `BENCH_ROLE=receiver`; each role reuses `wire.rs`'s lean
//! keep-alive HTTP/1.1 (client and receiver) and `load.rs`'s closed and open loops, and
//! talks to the parent in JSON lines: one command on stdin, one answer on stdout. Per-event
//! times (sent or scheduled, received) go through files, as nanoseconds since the Unix epoch
//! (a monotonic clock anchored once per process), so the parent can pair them by id.

#[allow(unused_imports)]
use super::*;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The variable that makes the bench executable a role instead of the bench.
pub(crate) const ROLE: &str = "BENCH_ROLE";

/// Where a load generator posts, and what.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) authorization: Option<String>,
    /// The status that counts as accepted (202 admin ingest, 200 Meta's endpoint and the
    /// receiver).
    pub(crate) accepted: u16,
    pub(crate) channel: payloads::Channel,
    /// Signs each body with `X-Hub-Signature-256` under this app secret (Meta's endpoint).
    pub(crate) app_secret: Option<String>,
}

/// The load generator's commands.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LoadCommand {
    /// `concurrency` senders, each posting its next event when the last was answered.
    Closed {
        target: Target,
        base: u64,
        events: usize,
        concurrency: usize,
        max_send_ms: u64,
        times: PathBuf,
    },
    /// `rate` events/s for `seconds`, each timed from its scheduled instant.
    Open {
        target: Target,
        base: u64,
        rate: u64,
        seconds: u64,
        in_flight: usize,
        times: PathBuf,
    },
}

/// What a load run did; instants in ns since the Unix epoch, latencies in µs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LoadReport {
    pub(crate) sent: usize,
    pub(crate) acked: usize,
    pub(crate) errors: usize,
    pub(crate) start_ns: u64,
    pub(crate) last_ack_ns: u64,
    /// Open loop: the last scheduled send; closed loop: the last answer.
    pub(crate) last_send_ns: u64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
    /// Open loop: how late the generator fired a send, at worst.
    pub(crate) worst_fire_lag_us: u64,
}

impl LoadReport {
    /// Ingest (send → answer) latency percentiles.
    pub(crate) fn latency(&self) -> Percentiles {
        Percentiles {
            p50: self.p50_us,
            p99: self.p99_us,
            max: self.max_us,
        }
    }

    /// Answers accepted per second, first send to last answer.
    pub(crate) fn rate(&self) -> f64 {
        let seconds = self.last_ack_ns.saturating_sub(self.start_ns) as f64 / 1e9;
        self.acked as f64 / seconds.max(1e-9)
    }
}

/// The receiver's commands.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ReceiveCommand {
    /// Count ids `base..base + events` from now on.
    Begin { base: u64, events: usize },
    /// Wait until `expected` distinct ids arrived or `drain_ms` passed; write when each
    /// arrived to `times`.
    Wait {
        expected: usize,
        drain_ms: u64,
        times: PathBuf,
    },
}

/// What the receiver saw of a batch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Received {
    pub(crate) distinct: usize,
    pub(crate) duplicates: usize,
}

/// One answer line: the result or what went wrong.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer<T> {
    Ok(T),
    Error(String),
}

/// Runs the role `BENCH_ROLE` names, if it names one.
pub(crate) fn run_if_asked(load_threads: usize) -> Option<BenchResult<()>> {
    let role = std::env::var(ROLE).ok()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(load_threads.max(1))
        .thread_name(role.clone())
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => return Some(Err(e.into())),
    };
    Some(match role.as_str() {
        "loadgen" => runtime.block_on(loadgen()),
        "receiver" => runtime.block_on(receiver()),
        other => Err(format!("unknown {ROLE}={other}").into()),
    })
}

/// A monotonic clock read as ns since the Unix epoch, anchored once per process.
#[derive(Clone, Copy)]
pub(crate) struct UnixClock {
    instant: Instant,
    unix_ns: u64,
}

impl UnixClock {
    pub(crate) fn at(epoch: Instant) -> Self {
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let unix_ns = since.as_nanos() as u64 - epoch.elapsed().as_nanos() as u64;
        Self {
            instant: epoch,
            unix_ns,
        }
    }

    pub(crate) fn ns(&self, at: Instant) -> u64 {
        self.unix_ns + at.saturating_duration_since(self.instant).as_nanos() as u64
    }

    /// A [`Tracker::stamp`] (ns since the epoch plus one; 0 = none) as Unix ns, 0 kept.
    pub(crate) fn of_stamp(&self, stamp: u64) -> u64 {
        if stamp == 0 {
            0
        } else {
            self.unix_ns + stamp - 1
        }
    }
}

/// Reads commands from stdin until it closes, answering each on stdout.
async fn serve_commands<C, T, F>(mut handle: impl FnMut(C) -> F) -> BenchResult<()>
where
    C: DeserializeOwned,
    T: Serialize,
    F: std::future::Future<Output = BenchResult<T>>,
{
    let mut lines = std::io::stdin().lock().lines();
    while let Some(line) = lines.next().transpose()? {
        let answer = match serde_json::from_str::<C>(&line) {
            Ok(command) => match handle(command).await {
                Ok(done) => Answer::Ok(done),
                Err(e) => Answer::Error(e.to_string()),
            },
            Err(e) => Answer::Error(format!("bad command {line:?}: {e}")),
        };
        say(&answer)?;
    }
    Ok(())
}

fn say(line: &impl Serialize) -> BenchResult<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, line)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

fn write_times(path: &std::path::Path, times: impl Iterator<Item = u64>) -> BenchResult<()> {
    let bytes: Vec<u8> = times.flat_map(u64::to_le_bytes).collect();
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Reads a file of [`write_times`]: one u64 per id.
pub(crate) fn read_times(path: &std::path::Path) -> BenchResult<Vec<u64>> {
    let bytes = std::fs::read(path)?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

async fn receiver() -> BenchResult<()> {
    let tracker = Arc::new(Tracker::new());
    let clock = UnixClock::at(tracker.epoch);
    let receiver = Receiver::start(Arc::clone(&tracker)).await?;
    say(&Answer::Ok(&receiver.url))?;
    let result = serve_commands(|command: ReceiveCommand| {
        let tracker = Arc::clone(&tracker);
        async move {
            match command {
                ReceiveCommand::Begin { base, events } => {
                    tracker.begin(base, events);
                    Ok(Received::default())
                }
                ReceiveCommand::Wait {
                    expected,
                    drain_ms,
                    times,
                } => {
                    let drain = Duration::from_millis(drain_ms);
                    let seen = tracker.wait(expected, Instant::now(), drain).await;
                    let stamps = tracker.received();
                    write_times(&times, stamps.into_iter().map(|s| clock.of_stamp(s)))?;
                    Ok(Received {
                        distinct: seen.distinct,
                        duplicates: seen.duplicates,
                    })
                }
            }
        }
    })
    .await;
    receiver.stop();
    result
}

async fn loadgen() -> BenchResult<()> {
    say(&Answer::Ok("ready"))?;
    serve_commands(|command: LoadCommand| async move {
        match command {
            LoadCommand::Closed {
                target,
                base,
                events,
                concurrency,
                max_send_ms,
                times,
            } => {
                let settings = Settings {
                    events,
                    concurrency,
                    max_send: Duration::from_millis(max_send_ms),
                    ..Settings::from_env(true)?
                };
                let (endpoint, tracker) = (endpoint(&target)?, Tracker::new());
                let clock = UnixClock::at(tracker.epoch);
                let run = closed_loop(&endpoint, &tracker, base, &settings).await;
                write_sent(&tracker, &clock, events, &times)?;
                Ok(LoadReport {
                    sent: run.sent,
                    acked: run.acked,
                    errors: run.errors,
                    start_ns: clock.ns(run.start),
                    last_ack_ns: clock.ns(run.last_ack),
                    last_send_ns: clock.ns(run.last_ack),
                    p50_us: run.latency.p50,
                    p99_us: run.latency.p99,
                    max_us: run.latency.max,
                    worst_fire_lag_us: 0,
                })
            }
            LoadCommand::Open {
                target,
                base,
                rate,
                seconds,
                in_flight,
                times,
            } => {
                let settings = Settings {
                    rate,
                    paced_seconds: seconds,
                    paced_concurrency: in_flight,
                    ..Settings::from_env(true)?
                };
                let (endpoint, tracker) = (endpoint(&target)?, Tracker::new());
                let clock = UnixClock::at(tracker.epoch);
                let run = open_loop(&endpoint, &tracker, base, &settings).await;
                write_sent(&tracker, &clock, (rate * seconds) as usize, &times)?;
                Ok(LoadReport {
                    sent: run.sent,
                    acked: run.acked,
                    errors: run.errors,
                    start_ns: clock.ns(run.start),
                    last_ack_ns: clock.ns(run.last_ack),
                    last_send_ns: clock.ns(run.last_scheduled),
                    p50_us: run.latency.p50,
                    p99_us: run.latency.p99,
                    max_us: run.latency.max,
                    worst_fire_lag_us: run.worst_fire_lag.as_micros() as u64,
                })
            }
        }
    })
    .await
}

/// The send (or scheduled) time of every id of the tracker's batch, as Unix ns.
fn write_sent(
    tracker: &Tracker,
    clock: &UnixClock,
    events: usize,
    path: &std::path::Path,
) -> BenchResult<()> {
    let batch = tracker.batch.lock().expect("tracker lock");
    let sent = (0..events).map(|i| {
        let stamp = batch
            .sent_at
            .get(i)
            .map_or(0, |s| s.load(Ordering::Acquire));
        clock.of_stamp(stamp)
    });
    write_times(path, sent)
}

/// The endpoint of `target`, posting the realistic bodies (signed when it has a secret).
fn endpoint(target: &Target) -> BenchResult<Endpoint> {
    let accepted = StatusCode::from_u16(target.accepted)?;
    let endpoint = Endpoint::new(&target.url, target.authorization.as_deref(), accepted)?;
    let (channel, secret) = (target.channel.clone(), target.app_secret.clone());
    Ok(endpoint.with_bodies(Arc::new(move |id| {
        let body = Bytes::from(payloads::body(&channel, id));
        let headers = match &secret {
            Some(secret) => format!(
                "x-hub-signature-256: {}\r\n",
                switchboard::delivery::signature(secret, &body)
            ),
            None => String::new(),
        };
        (body, headers)
    })))
}

// ---------------------------------------------------------------- the parent's side

/// A role process and its command pipes; killed when dropped.
pub(crate) struct RoleProcess {
    pub(crate) pid: u32,
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl RoleProcess {
    /// Starts this executable as `role`; returns it with its first answer (the receiver's
    /// URL, the generator's "ready").
    pub(crate) fn start(role: &str, load_threads: usize) -> BenchResult<(Self, String)> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(ROLE, role)
            .env("BENCH_LOAD_THREADS", load_threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (input, output) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, BufReader::new(o)),
            _ => return Err("the role process has no pipes".into()),
        };
        let mut process = Self {
            pid: child.id(),
            child,
            input,
            output,
        };
        let hello: String = process.answer()?;
        Ok((process, hello))
    }

    /// Sends one command and waits for its answer.
    pub(crate) fn call<T: DeserializeOwned>(&mut self, command: &impl Serialize) -> BenchResult<T> {
        serde_json::to_writer(&mut self.input, command)?;
        self.input.write_all(b"\n")?;
        self.input.flush()?;
        self.answer()
    }

    fn answer<T: DeserializeOwned>(&mut self) -> BenchResult<T> {
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            return Err("a role process exited (see its stderr above)".into());
        }
        match serde_json::from_str::<Answer<T>>(&line)? {
            Answer::Ok(done) => Ok(done),
            Answer::Error(e) => Err(format!("role process: {e}").into()),
        }
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
