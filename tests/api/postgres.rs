//! `postgres_database()`: a fresh database in a throwaway PostgreSQL cluster that this test
//! process starts itself with the installed `initdb`/`pg_ctl` (no docker, no mocks).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The cluster's superuser; trust authentication, so URLs need no password.
const SUPERUSER: &str = "switchboard";
/// Who runs the server when the tests run as root (initdb and postgres refuse root).
const SERVER_USER: &str = "postgres";

/// A throwaway cluster: its server binaries, port and directory (`data/` inside). The
/// shared one ([`postgres_database`]) serves every test of the process; a test that stops
/// or freezes its server starts one of its own ([`Cluster::start`]).
pub struct Cluster {
    bin: PathBuf,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    /// Whether we run as root (the server then runs as [`SERVER_USER`]).
    root: bool,
    /// Whether it takes TLS connections only.
    tls: bool,
    /// What `createdb` connects with (TLS for the TLS-only cluster).
    client_env: Vec<(&'static str, String)>,
}

/// A cluster's TLS: its certificate and key (PEM files), and the root that signed the
/// certificate (for its own clients).
pub struct ServerTls<'a> {
    /// The server's certificate chain.
    pub cert: &'a Path,
    /// Its private key.
    pub key: &'a Path,
    /// The root certificate that signed it.
    pub root: &'a Path,
}

/// Returns the URL of a new, empty database, so that tests can run against a real
/// PostgreSQL server without sharing state. All databases live in one cluster per test
/// process, which a watchdog stops and deletes once the process has ended.
pub fn postgres_database() -> String {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start(None)).database()
}

impl Cluster {
    /// Initialises and starts a new cluster on a free port in a directory of its own; a
    /// watchdog stops and deletes it once this process has ended. With `tls`, one that
    /// takes TLS connections only (`hostssl`; a plain TCP connection is rejected by
    /// `hostnossl … reject`).
    pub fn start(tls: Option<ServerTls>) -> Cluster {
        let bin = postgres_bin_dir();
        let root = run(Command::new("id").arg("-u")).trim() == "0";
        let dir = tempfile::Builder::new()
            .prefix("switchboard-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        if root {
            run(Command::new("chown").arg(SERVER_USER).arg(&dir));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let client_env = match &tls {
            Some(tls) => vec![
                ("PGSSLMODE", "verify-ca".to_owned()),
                ("PGSSLROOTCERT", tls.root.display().to_string()),
            ],
            None => Vec::new(),
        };
        let cluster = Cluster {
            bin,
            port,
            dir,
            root,
            tls: tls.is_some(),
            client_env,
        };
        spawn_watchdog(&cluster.dir, &cluster.as_server("pg_ctl"));
        run(cluster
            .as_server("initdb")
            .args(["-A", "trust", "-E", "UTF8", "--locale=C", "-U", SUPERUSER])
            .arg("-D")
            .arg(cluster.data()));
        if let Some(tls) = &tls {
            tls_only(&cluster.data(), tls, root.then_some(SERVER_USER));
        }
        cluster.start_server();
        cluster
    }

    /// A new, empty database in this cluster; returns its name.
    pub fn create_database(&self) -> String {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let id = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("t_{id}_{}", std::process::id());
        let port = self.port.to_string();
        let args = ["-h", "127.0.0.1", "-p", &port, "-U", SUPERUSER, &name];
        let mut createdb = Command::new(self.bin.join("createdb"));
        createdb.envs(self.client_env.iter().map(|(k, v)| (k, v)));
        run(createdb.args(args));
        name
    }

    /// A new, empty database of this (plain) cluster; its URL.
    pub fn database(&self) -> String {
        let name = self.create_database();
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are ended, connections refused
    /// until [`Cluster::restart`]).
    #[allow(dead_code)] // used by tests/postgres/outage.rs only
    pub fn stop(&self) {
        let mut stop = self.as_server("pg_ctl");
        run(stop
            .args(["stop", "-W", "-m", "fast", "-D"])
            .arg(self.data()));
    }

    /// Starts the stopped server again on the same port and data.
    #[allow(dead_code)] // used by tests/postgres/outage.rs only
    pub fn restart(&self) {
        self.start_server();
    }

    /// Freezes the server (`SIGSTOP` to the postmaster and its children): the kernel still
    /// accepts connections and keeps sessions open, but nothing answers, not even startup.
    #[allow(dead_code)] // used by tests/postgres/outage.rs only
    pub fn freeze(&self) {
        let postmaster = self.postmaster();
        signal("-STOP", &[postmaster]);
        signal("-STOP", &children_of(postmaster));
    }

    /// Lets the frozen server run again (`SIGCONT`).
    #[allow(dead_code)] // used by tests/postgres/outage.rs only
    pub fn thaw(&self) {
        let postmaster = self.postmaster();
        signal("-CONT", &children_of(postmaster));
        signal("-CONT", &[postmaster]);
    }

    /// The answer of `sql` on the database at `url` (`psql -tA`), trimmed.
    #[allow(dead_code)] // used by tests/postgres/outage.rs only
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let psql = self.bin.join("psql");
        run(Command::new(psql).args([url, "-tAc", sql]))
            .trim()
            .to_owned()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The postmaster's pid, from `postmaster.pid`'s first line.
    fn postmaster(&self) -> u32 {
        let file = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .expect("postmaster.pid: the server is not running");
        file.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .expect("a pid on postmaster.pid's first line")
    }

    /// `program` of the server's binaries, run as the server's user: directly, or through
    /// runuser when we are root (initdb and postgres refuse root).
    fn as_server(&self, program: &str) -> Command {
        let mut command = if self.root {
            let mut command = Command::new("runuser");
            command
                .args(["-u", SERVER_USER, "--"])
                .arg(self.bin.join(program));
            command
        } else {
            Command::new(self.bin.join(program))
        };
        command.current_dir(&self.dir);
        command
    }

    /// `pg_ctl start`, then waits until the server accepts connections.
    fn start_server(&self) {
        let (data, port) = (self.data(), self.port);
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} \
             -c max_connections=200 -c shared_buffers=32MB",
            data.display()
        );
        if self.tls {
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let log = self.dir.join("server.log");
        let mut start = self.as_server("pg_ctl");
        start.args(["start", "-W", "-o", &options, "-l"]).arg(&log);
        run(start.arg("-D").arg(&data).stdin(Stdio::null()));

        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = || {
            Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|status| status.success())
        };
        while !ready() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                panic!("PostgreSQL did not start within 30 s; end of its log:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The processes whose parent is `parent` (from `/proc`).
#[allow(dead_code)] // used by Cluster::freeze only
fn children_of(parent: u32) -> Vec<u32> {
    let entries = std::fs::read_dir("/proc").expect("/proc");
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid …`: the comm may hold spaces, so read after its `)`.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            after.split_whitespace().nth(1) == Some(&parent.to_string())
        })
        .collect()
}

/// `kill <signal> <pids>`.
#[allow(dead_code)] // used by Cluster::freeze only
fn signal(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    run(Command::new("kill").arg(signal).args(&pids));
}

/// Gives the cluster in `data` its certificate and key (readable by `owner` only, as the
/// server demands) and a pg_hba.conf that takes TLS connections only.
fn tls_only(data: &Path, tls: &ServerTls, owner: Option<&str>) {
    let (cert, key) = (data.join("server.crt"), data.join("server.key"));
    std::fs::copy(tls.cert, &cert).expect("copy the server certificate");
    std::fs::copy(tls.key, &key).expect("copy the server key");
    let hba = "local all all trust\n\
               hostssl all all 127.0.0.1/32 trust\n\
               hostnossl all all 127.0.0.1/32 reject\n";
    std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    if let Some(owner) = owner {
        run(Command::new("chown").arg(owner).arg(&cert).arg(&key));
    }
    run(Command::new("chmod").arg("600").arg(&key));
}

/// Whether PostgreSQL's server binaries are on this machine (the bench skips its
/// PostgreSQL scenario without them).
#[allow(dead_code)] // used by benches/delivery, which includes this file
pub fn postgres_installed() -> bool {
    find_bin_dir().is_some()
}

/// The directory of `initdb`, `pg_ctl` and `postgres`, or a panic saying to install them.
fn postgres_bin_dir() -> PathBuf {
    find_bin_dir().expect(
        "PostgreSQL not found (no initdb on PATH or in /usr/lib/postgresql/*/bin); \
         install it, e.g. `apt-get install -y postgresql`",
    )
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: from PATH, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian installs them there, off PATH).
fn find_bin_dir() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .and_then(|dir| dir.join("initdb").canonicalize().ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf));
    let newest_installed = || {
        std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().join("bin/initdb").is_file())
            .max_by_key(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.split('.')
                    .map_while(|n| n.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .map(|entry| entry.path().join("bin"))
    };
    on_path.or_else(newest_installed)
}

/// Stops the cluster (`pg_ctl stop -m immediate`) and deletes `dir` once this process has
/// ended: statics never drop. Detached from our stdio and process group, so that neither
/// `cargo test` nor a Ctrl-C waits for or kills it.
fn spawn_watchdog(dir: &Path, pg_ctl: &Command) {
    let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
dir=$2; shift 2
for attempt in 1 2 3; do  # again if killed amid initdb, which may still be writing
    "$@" stop -D "$dir/data" -m immediate; rm -rf "$dir" && break; sleep 1
done"#;
    let pg_ctl = std::iter::once(pg_ctl.get_program()).chain(pg_ctl.get_args());
    // Never waited for on purpose: it outlives this process.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .args(["-c", script, "watchdog", &std::process::id().to_string()])
        .arg(dir)
        .args(pg_ctl)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn cluster watchdog");
}

/// Runs `command` to completion and returns its stdout; panics with its stderr on failure.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_throwaway_cluster_serves_fresh_databases() {
    let psql = |url: &str, sql: &str| {
        let bin = postgres_bin_dir().join("psql");
        run(Command::new(bin).args([url, "-tAc", sql]))
            .trim()
            .to_owned()
    };
    let (first, second) = (postgres_database(), postgres_database());
    assert_ne!(first, second);
    for url in [&first, &second] {
        assert_eq!(psql(url, "select 1"), "1");
        let name = url.rsplit('/').next().unwrap();
        assert_eq!(psql(url, "select current_database()"), name);
    }
    psql(&first, "create table marker (id int)");
    assert_eq!(psql(&first, "select to_regclass('marker') is null"), "f");
    assert_eq!(psql(&second, "select to_regclass('marker') is null"), "t");
}
