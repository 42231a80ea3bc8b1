//! The headline scenario's processes from outside: the shipped server binary started and
//! stopped, and CPU time of each process (the server's by thread) from /proc.

#[allow(unused_imports)]
use super::*;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The `switchboard` binary: `BENCH_SERVER_BIN`, else the one cargo built for this bench
/// (`cargo bench` builds it with the release profile: target/release/switchboard), else
/// the one beside this executable's target directory.
pub(crate) fn server_binary() -> BenchResult<PathBuf> {
    if let Some(chosen) = std::env::var_os("BENCH_SERVER_BIN").map(PathBuf::from) {
        if !chosen.is_file() {
            return Err(format!("BENCH_SERVER_BIN={}: no such file", chosen.display()).into());
        }
        return Ok(chosen);
    }
    let candidates = [
        option_env!("CARGO_BIN_EXE_switchboard").map(PathBuf::from),
        std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("switchboard")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|path| path.is_file())
        .ok_or_else(|| {
            "no switchboard binary: run `cargo build --release` (or set BENCH_SERVER_BIN)".into()
        })
}

/// The command that runs `binary`: itself, or with `BENCH_CALLGRIND=DIR` under valgrind's
/// callgrind, which writes `DIR/callgrind.PID` (instructions by function, whatever else the
/// machine runs: see "What bounds it" in BENCHMARKS.md).
fn under_callgrind(binary: &Path) -> Command {
    match std::env::var_os("BENCH_CALLGRIND") {
        Some(dir) => {
            let mut command = Command::new("valgrind");
            let mut out = std::ffi::OsString::from("--callgrind-out-file=");
            out.push(Path::new(&dir).join("callgrind.%p"));
            command
                .args(["--tool=callgrind", "--dump-instr=no"])
                .arg(out)
                .arg(binary);
            command
        }
        None => Command::new(binary),
    }
}

/// `switchboard serve` with its defaults on a fresh SQLite file (or a PostgreSQL database
/// it is given); killed when dropped.
pub(crate) struct ServerProcess {
    pub(crate) pid: u32,
    pub(crate) base: String,
    /// The SQLite file; `None` on PostgreSQL.
    pub(crate) database: Option<PathBuf>,
    child: Child,
    data: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Starts the binary with only `--listen 127.0.0.1:0`, `--database`, `--admin-token`,
    /// `--dev` (loopback receiver) and, for Meta's endpoint, `--meta-app-secret`; no
    /// `SWITCHBOARD_*` variable or `RUST_LOG` of ours reaches it, and it runs in the empty
    /// data directory, so no configuration file is found either. `postgres` is the URL of
    /// an empty PostgreSQL database to run on instead of the SQLite file.
    pub(crate) fn start(
        binary: &Path,
        app_secret: Option<&str>,
        postgres: Option<&str>,
    ) -> BenchResult<Self> {
        let data = tempfile::tempdir()?;
        let file = data.path().join("switchboard.db");
        let url = match postgres {
            Some(url) => url.to_owned(),
            None => format!("sqlite://{}", file.display()),
        };
        let mut command = under_callgrind(binary);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--dev"])
            .arg("--database")
            .arg(url)
            .args(["--admin-token", ADMIN_TOKEN])
            .current_dir(data.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWITCHBOARD_") {
                command.env_remove(name);
            }
        }
        if let Some(secret) = app_secret {
            command.args(["--meta-app-secret", secret]);
        }
        let mut child = command.spawn()?;
        let base = match listening_address(&mut child) {
            Ok(address) => format!("http://{address}"),
            Err(log) => {
                let _ = child.kill();
                let _ = child.wait();
                let binary = binary.display();
                return Err(format!("{binary} did not report its address; its log:\n{log}").into());
            }
        };
        let pid = child.id();
        Ok(Self {
            pid,
            base,
            database: postgres.is_none().then_some(file),
            child,
            data: Some(data),
        })
    }

    /// Bytes of the SQLite file, its WAL and shared-memory index, now (`None` on
    /// PostgreSQL).
    pub(crate) fn disk(&self) -> Option<[u64; 3]> {
        let database = self.database.as_ref()?;
        let size = |suffix: &str| {
            let mut path = database.clone().into_os_string();
            path.push(suffix);
            std::fs::metadata(path).map_or(0, |m| m.len())
        };
        Some([size(""), size("-wal"), size("-shm")])
    }

    /// SIGTERM (the graceful stop), then SIGKILL if it is still running after 20 s. Returns
    /// its data directory, which holds the database until dropped.
    pub(crate) fn stop(mut self) -> BenchResult<tempfile::TempDir> {
        let pid = self.pid.to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return self.data.take().ok_or_else(|| "stopped twice".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("the server did not stop within 20 s of SIGTERM".into())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address a starting server logs (`switchboard listening address=…`), within 20 s;
/// else what it logged. Its stderr is drained for the rest of its life, so it never blocks
/// on a full pipe.
fn listening_address(child: &mut Child) -> Result<String, String> {
    let stderr = child.stderr.take().ok_or("the server has no stderr")?;
    let (lines, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut found = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !found {
                found = line.contains("address=");
                let _ = lines.send(line);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while let Ok(line) = log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let address = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("address="));
        if let Some(address) = address {
            return Ok(address.to_owned());
        }
        seen.push(line);
    }
    Err(seen.join("\n"))
}

/// CPU ticks (utime + stime) of a whole process, exited threads included.
pub(crate) fn process_ticks(pid: u32) -> u64 {
    cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// One thread of a process: its id, name and CPU ticks so far.
#[derive(Debug, Clone)]
pub(crate) struct ThreadTicks {
    pub(crate) tid: u32,
    pub(crate) name: String,
    pub(crate) ticks: u64,
}

/// Every live thread of `pid`.
pub(crate) fn thread_ticks(pid: u32) -> Vec<ThreadTicks> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_string_lossy().parse().ok()?;
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let name = stat.split_once('(')?.1.rsplit_once(')')?.0.to_owned();
            Some(ThreadTicks {
                tid,
                name,
                ticks: cpu_ticks(&stat),
            })
        })
        .collect()
}

/// CPU of the headline's three processes at one instant.
pub(crate) struct ProcSample {
    at: Instant,
    system: u64,
    server: u64,
    threads: Vec<ThreadTicks>,
    load: u64,
    receiver: u64,
}

/// CPU used between two samples, in ticks (1/100 s), the server's by thread group.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcCpu {
    pub(crate) wall: f64,
    pub(crate) server: u64,
    /// (group, ticks) in a fixed order; threads that exited meanwhile are the remainder.
    pub(crate) server_groups: Vec<(String, u64)>,
    pub(crate) load: u64,
    pub(crate) receiver: u64,
    /// Cores used by everything else on the machine (the bench's parent included).
    pub(crate) others: f64,
}

impl ProcSample {
    pub(crate) fn take(server: Option<u32>, load: u32, receiver: u32) -> Self {
        Self {
            at: Instant::now(),
            system: system_busy_ticks(),
            server: server.map_or(0, process_ticks),
            threads: server.map_or_else(Vec::new, thread_ticks),
            load: process_ticks(load),
            receiver: process_ticks(receiver),
        }
    }

    pub(crate) fn until(&self, later: &ProcSample) -> ProcCpu {
        let wall = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let server = later.server.saturating_sub(self.server);
        let (load, receiver) = (
            later.load.saturating_sub(self.load),
            later.receiver.saturating_sub(self.receiver),
        );
        let mine = server + load + receiver;
        let system = later.system.saturating_sub(self.system);
        ProcCpu {
            wall,
            server,
            server_groups: server_groups(&self.threads, &later.threads, server),
            load,
            receiver,
            others: (system.saturating_sub(mine) as f64 / TICKS_PER_SECOND / wall).max(0.0),
        }
    }
}

impl ProcCpu {
    /// µs of CPU per unit of work for `ticks`.
    pub(crate) fn per(ticks: u64, units: usize) -> f64 {
        ticks as f64 / TICKS_PER_SECOND * 1e6 / units.max(1) as f64
    }

    /// Cores busy on average for `ticks`.
    pub(crate) fn cores(&self, ticks: u64) -> f64 {
        ticks as f64 / TICKS_PER_SECOND / self.wall
    }
}

/// The server's threads by role, by the names the binary gives them (src/main.rs): its
/// async workers (`sb-worker`), tokio's blocking pool (`sb-blocking`: the SQLite reads),
/// the SQLite writer, the DNS resolvers, the main thread, anything else by name, and the
/// threads that exited between the samples.
fn server_groups(before: &[ThreadTicks], after: &[ThreadTicks], total: u64) -> Vec<(String, u64)> {
    let mut groups: Vec<(String, u64)> = Vec::new();
    for thread in after {
        let earlier = before.iter().find(|b| b.tid == thread.tid);
        let used = thread.ticks.saturating_sub(earlier.map_or(0, |b| b.ticks));
        let group = match thread.name.as_str() {
            "sb-worker" => "async workers",
            "sb-blocking" => "blocking pool (SQLite reads)",
            "sqlite-writer" => "SQLite writer",
            "switchboard" => "main thread",
            name if name.starts_with("switchboard-dns") => "DNS resolvers",
            name => name,
        };
        match groups.iter_mut().find(|(g, _)| g == group) {
            Some((_, ticks)) => *ticks += used,
            None => groups.push((group.to_owned(), used)),
        }
    }
    let live: u64 = groups.iter().map(|(_, t)| t).sum();
    groups.push(("threads that exited".into(), total.saturating_sub(live)));
    groups.sort_by_key(|(_, ticks)| std::cmp::Reverse(*ticks));
    groups
}
