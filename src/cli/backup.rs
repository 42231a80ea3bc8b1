//! `switchboard backup` and `switchboard restore`: the SQLite database file copied out of a
//! running server, and a copy put back in place of a stopped one.
//!
//! Both write under a temporary name beside the target and rename it into place only once
//! the copy is complete and checked, so a failure (or a kill) never leaves a half file
//! under the target's name. The SQLite side (the online copy, the checks, the in-use lock)
//! is `store::snapshot`.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::args::{BackupArgs, RestoreArgs};
use super::CliError;
use crate::config::DatabaseUrl;
use crate::store::snapshot::{self, CopyFacts, SnapshotError};

/// What to use instead of `switchboard backup` on PostgreSQL.
const POSTGRES_BACKUP: &str = "switchboard backup copies SQLite databases; for PostgreSQL use \
     pg_dump -Fc (see docs/OPERATIONS.md, \"Backups\")";

/// What to use instead of `switchboard restore` on PostgreSQL.
const POSTGRES_RESTORE: &str = "switchboard restore replaces SQLite databases; for PostgreSQL \
     use pg_restore on a dump from pg_dump -Fc (see docs/OPERATIONS.md, \"Restore\")";

/// The files SQLite keeps beside a database: a stale one beside a restored file would be
/// read as part of it.
const SIDECARS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Copies the live database to `--to`, checks the copy and prints a one-line summary.
pub fn backup(args: &BackupArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let source = sqlite_path(&args.database.database, POSTGRES_BACKUP)?;
    require_file(&source, "SQLite database")?;
    refuse_existing(&args.to, args.force)?;
    refuse_same_file(&source, &args.to)?;
    let partial = Partial::beside(&args.to, "backup")?;
    snapshot::copy_live(&source, partial.path())?;
    let facts = snapshot::inspect(partial.path())?;
    refuse_existing(&args.to, args.force)?;
    partial.put_in_place(&args.to)?;
    println!(
        "backup {}: {} (from {})",
        args.to.display(),
        summary(&args.to, facts, started)?,
        source.display()
    );
    Ok(())
}

/// Checks `--from`, then puts a copy of it in place of `--database`, which no server may
/// have open; prints a one-line summary.
pub fn restore(args: &RestoreArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let target = sqlite_path(&args.database.database, POSTGRES_RESTORE)?;
    require_file(&args.from, "backup")?;
    let facts = snapshot::inspect(&args.from)?;
    refuse_existing(&target, args.force)?;
    ensure_unused(&target)?;
    let partial = Partial::beside(&target, "restore")?;
    snapshot::copy_live(&args.from, partial.path())?;
    // Again, just before the swap: the copy took a while.
    ensure_unused(&target)?;
    remove_sidecars(&target)?;
    partial.put_in_place(&target)?;
    println!(
        "restored {}: {} (from {})",
        target.display(),
        summary(&target, facts, started)?,
        args.from.display()
    );
    Ok(())
}

/// The SQLite file of `raw` (parsed as `serve` parses `--database`); PostgreSQL is told
/// `postgres` (what to use there instead).
fn sqlite_path(raw: &str, postgres: &str) -> Result<PathBuf, CliError> {
    match DatabaseUrl::parse(raw) {
        Ok(DatabaseUrl::Sqlite(path)) => Ok(path),
        Ok(DatabaseUrl::Postgres(_)) => Err(CliError::Usage(postgres.into())),
        Err(error) => Err(CliError::Usage(error.to_string())),
    }
}

/// Fails unless `path` is an existing file (`what` names it in the message).
fn require_file(path: &Path, what: &str) -> Result<(), CliError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(CliError::Failed(format!(
            "{} is not a file",
            path.display()
        ))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(CliError::NotFound(
            format!("no {what} at {}", path.display()),
        )),
        Err(error) => Err(io_failure("cannot read", path, &error)),
    }
}

/// Refuses to replace an existing `target` without `--force`.
fn refuse_existing(target: &Path, force: bool) -> Result<(), CliError> {
    match target.exists() && !force {
        true => Err(CliError::Usage(format!(
            "{} exists: pass --force to replace it",
            target.display()
        ))),
        false => Ok(()),
    }
}

/// Refuses `--to` naming the database itself (with `--force`, the rename would replace the
/// file under the running server).
fn refuse_same_file(source: &Path, target: &Path) -> Result<(), CliError> {
    let same = match (std::fs::canonicalize(source), std::fs::canonicalize(target)) {
        (Ok(source), Ok(target)) => source == target,
        _ => false,
    };
    match same {
        true => Err(CliError::Usage(format!(
            "--to {} is the database itself: write the copy elsewhere",
            target.display()
        ))),
        false => Ok(()),
    }
}

/// Refuses a `target` that a server (or any process) has open; nothing there is fine.
fn ensure_unused(target: &Path) -> Result<(), CliError> {
    match target.exists() {
        true => Ok(snapshot::ensure_unused(target)?),
        false => Ok(()),
    }
}

/// Removes the `-wal`, `-shm` and `-journal` of the old `target`: they belong to the file
/// being replaced, and SQLite would apply a stale WAL to the new one.
fn remove_sidecars(target: &Path) -> Result<(), CliError> {
    for suffix in SIDECARS {
        let path = sidecar(target, suffix);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_failure("cannot remove", &path, &error)),
        }
    }
    Ok(())
}

/// The summary's figures: size on disk, counts, schema version, time taken.
fn summary(path: &Path, facts: CopyFacts, started: Instant) -> Result<String, CliError> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| io_failure("cannot read", path, &e))?
        .len();
    Ok(format!(
        "{bytes} bytes, {} events, {} deliveries, schema version {}, {:.2} s",
        facts.events,
        facts.deliveries,
        facts.schema_version,
        started.elapsed().as_secs_f64()
    ))
}

/// A file being written under a temporary name beside its target: removed (with its
/// sidecars) when dropped, unless it was put in place.
struct Partial {
    path: PathBuf,
    placed: bool,
}

impl Partial {
    /// A temporary name beside `target` (hidden, with `purpose` and this process's id), in
    /// its directory, which must exist: the rename that ends the copy stays on one file
    /// system and is atomic.
    fn beside(target: &Path, purpose: &str) -> Result<Self, CliError> {
        let Some(name) = target.file_name() else {
            return Err(CliError::Usage(format!(
                "{} is not a file name",
                target.display()
            )));
        };
        let dir = directory_of(target);
        if !dir.is_dir() {
            return Err(CliError::Failed(format!(
                "cannot write {}: the directory {} does not exist",
                target.display(),
                dir.display()
            )));
        }
        let mut temporary = OsString::from(".");
        temporary.push(name);
        temporary.push(format!(".{purpose}-{}", std::process::id()));
        let partial = Self {
            path: dir.join(temporary),
            placed: false,
        };
        partial.remove();
        Ok(partial)
    }

    /// Where the copy is written.
    fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs the copy, renames it to `target` and syncs the directory, so the new name
    /// survives a power loss.
    fn put_in_place(mut self, target: &Path) -> Result<(), CliError> {
        File::open(&self.path)
            .and_then(|file| file.sync_all())
            .map_err(|e| io_failure("cannot sync", &self.path, &e))?;
        std::fs::rename(&self.path, target)
            .map_err(|e| io_failure("cannot rename the copy to", target, &e))?;
        self.placed = true;
        let dir = directory_of(target);
        File::open(&dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io_failure("cannot sync", &dir, &e))
    }

    /// Removes the temporary file and its sidecars, whatever of them exists.
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
        for suffix in SIDECARS {
            let _ = std::fs::remove_file(sidecar(&self.path, suffix));
        }
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.placed {
            self.remove();
        }
    }
}

/// The directory `path` is in (`.` for a bare file name).
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// `path` with `suffix` appended to its name (`live.db` → `live.db-wal`).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A file operation's failure, naming the file.
fn io_failure(action: &str, path: &Path, error: &std::io::Error) -> CliError {
    CliError::Failed(format!("{action} {}: {error}", path.display()))
}

impl From<SnapshotError> for CliError {
    fn from(error: SnapshotError) -> Self {
        CliError::Failed(crate::error_chain(&error))
    }
}
