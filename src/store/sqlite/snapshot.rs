//! Copies of a SQLite database for `switchboard backup` and `restore`: an online copy of a
//! live file, the checks a copy must pass before it is trusted, and whether a server still
//! has a file open.
//!
//! The copy holds one read transaction on the source across all its steps. Without it,
//! SQLite restarts a stepped backup whenever another connection commits: a 16 MB file under
//! 500 commits/s took 488 steps of 256 pages that way, and 16 with the snapshot held (a
//! larger file under more commits may never finish).
//!
//! The file handling around these (a temporary name beside the target, the rename, the
//! `-wal` and `-shm` beside it) is the CLI's (`cli/backup.rs`); the SQL is here, as all SQL
//! is in `store`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// Pages copied per step of the online backup: 256 pages (1 MiB at the default 4 KiB) keep
/// each step short, so the copy's reads never hold the disk for long.
const PAGES_PER_STEP: i32 = 256;

/// The pause between two steps, which leaves the disk to the server's writer; with 1 MiB a
/// step it adds about 5 s per GiB copied.
const PAUSE_BETWEEN_STEPS: Duration = Duration::from_millis(5);

/// How long steps may keep answering busy before the copy gives up.
const BUSY_LIMIT: Duration = Duration::from_secs(30);

/// How long the in-use check waits for the lock: a running server holds its lock for as
/// long as it runs, so waiting longer only delays the answer.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Why a copy could not be made or trusted; each says which file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file is not a SQLite database at all.
    #[error("{} is not a SQLite database", path.display())]
    NotSqlite {
        /// The file.
        path: PathBuf,
    },
    /// A SQLite database, but not one Switchboard wrote.
    #[error("{} is not a Switchboard database: {reason}", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// `PRAGMA integrity_check` found damage (or reading hit it).
    #[error("{} is corrupt: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// SQLite's first findings.
        detail: String,
    },
    /// Written by a newer release: this binary cannot know what its migrations mean.
    #[error(
        "{} has schema version {found}, newer than this binary knows ({known}): use the \
         release that wrote it, or a newer one",
        path.display()
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The highest migration applied to it.
        found: i64,
        /// The highest migration this binary has.
        known: i64,
    },
    /// Another process (a running server, a backup) has the database open.
    #[error(
        "{} is in use by another process (a running server holds a lock on it): stop \
         that server first",
        path.display()
    )]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// SQLite failed at `action` (e.g. "cannot read").
    #[error("{action} {}", path.display())]
    Sqlite {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
}

/// What a checked copy holds, for the one-line summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyFacts {
    /// The highest migration applied to it.
    pub schema_version: i64,
    /// Rows of `events`.
    pub events: i64,
    /// Rows of `deliveries`.
    pub deliveries: i64,
}

/// Copies the database at `source` (live or not) to a new file `copy` with SQLite's online
/// backup API, step by step; the copy is the database as of the start (one read
/// transaction spans every step, so the server's commits meanwhile neither restart the copy
/// nor enter it), and a single file (rollback journal mode, no `-wal` beside it).
pub fn copy_live(source: &Path, copy: &Path) -> Result<(), SnapshotError> {
    let from = open_read_only(source)?;
    // In WAL mode a reader never blocks the writer: the server keeps committing while the
    // snapshot is held (its WAL grows meanwhile, as checkpoints cannot pass the snapshot).
    from.execute_batch("BEGIN")
        .map_err(|e| failure("cannot read", source, e))?;
    from.query_row("SELECT count(*) FROM sqlite_master", [], |row| {
        row.get::<_, i64>(0)
    })
    .map_err(|e| failure("cannot read", source, e))?;
    let mut to = Connection::open(copy).map_err(|e| failure("cannot create", copy, e))?;
    step_until_done(&from, &mut to, copy)?;
    from.execute_batch("COMMIT")
        .map_err(|e| failure("cannot read", source, e))?;
    // The pages came with the source's header, WAL mode included: a backup is one file.
    to.query_row("PRAGMA journal_mode = DELETE", [], |row| {
        row.get::<_, String>(0)
    })
    .map_err(|e| failure("cannot write", copy, e))?;
    Ok(())
}

/// Runs the backup from `from` into `to` in steps of [`PAGES_PER_STEP`] with a pause between.
fn step_until_done(
    from: &Connection,
    to: &mut Connection,
    copy: &Path,
) -> Result<(), SnapshotError> {
    let backup = Backup::new(from, to).map_err(|e| failure("cannot write", copy, e))?;
    let mut busy_since: Option<Instant> = None;
    loop {
        let step = backup
            .step(PAGES_PER_STEP)
            .map_err(|e| failure("cannot copy into", copy, e))?;
        match step {
            StepResult::Done => return Ok(()),
            StepResult::More => busy_since = None,
            _ => {
                let since = *busy_since.get_or_insert_with(Instant::now);
                if since.elapsed() > BUSY_LIMIT {
                    let busy = rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some(format!("busy for {} s", BUSY_LIMIT.as_secs())),
                    );
                    return Err(failure("cannot copy into", copy, busy));
                }
            }
        }
        std::thread::sleep(PAUSE_BETWEEN_STEPS);
    }
}

/// Checks the copy at `path` before it is trusted: `PRAGMA integrity_check` passes, it is a
/// Switchboard database, and its schema is not newer than this binary's; returns its counts.
pub fn inspect(path: &Path) -> Result<CopyFacts, SnapshotError> {
    let conn = open_read_only(path)?;
    check_integrity(&conn, path)?;
    let schema_version = schema_version(&conn, path)?;
    Ok(CopyFacts {
        schema_version,
        events: count_rows(&conn, path, "events")?,
        deliveries: count_rows(&conn, path, "deliveries")?,
    })
}

/// Fails with [`SnapshotError::InUse`] while any other process has the database at `path`
/// open. Every connection to a WAL database holds a shared lock on the file for as long as
/// it is open, idle or not, so an exclusive lock (`locking_mode = EXCLUSIVE`, then `BEGIN
/// EXCLUSIVE`) is refused while a server runs on it, however quiet. A plain `BEGIN
/// EXCLUSIVE` would not do: in WAL mode it only excludes writers, and only while they write.
/// The lock is released on return; this is a check, not a lease (POSIX locks: local file
/// systems only).
pub fn ensure_unused(path: &Path) -> Result<(), SnapshotError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| failure("cannot open", path, e))?;
    conn.busy_timeout(LOCK_WAIT)
        .map_err(|e| failure("cannot open", path, e))?;
    let locked = conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;");
    match locked {
        Ok(()) => Ok(()),
        Err(error) => match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                Err(SnapshotError::InUse { path: path.into() })
            }
            // No server can be running on a file that is not a database.
            Some(ErrorCode::NotADatabase) => Ok(()),
            _ => Err(failure("cannot lock", path, error)),
        },
    }
}

/// The highest migration version this binary applies.
pub fn known_schema_version() -> i64 {
    super::connection::latest_version()
}

/// Opens `path` for reading only (never creating it).
fn open_read_only(path: &Path) -> Result<Connection, SnapshotError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| failure("cannot open", path, e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| failure("cannot open", path, e))?;
    Ok(conn)
}

/// Runs `PRAGMA integrity_check`; anything but a single `ok` is [`SnapshotError::Corrupt`].
fn check_integrity(conn: &Connection, path: &Path) -> Result<(), SnapshotError> {
    let findings = conn
        .prepare("PRAGMA integrity_check(5)")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| failure("cannot check", path, e))?;
    match findings.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(SnapshotError::Corrupt {
            path: path.into(),
            detail: findings.join("; "),
        }),
    }
}

/// The highest migration applied to the database, checked against this binary's.
fn schema_version(conn: &Connection, path: &Path) -> Result<i64, SnapshotError> {
    let foreign = |reason: &str| SnapshotError::Foreign {
        path: path.into(),
        reason: reason.into(),
    };
    let has_table: bool = conn
        .query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master
                           WHERE type = 'table' AND name = 'schema_migrations')",
            [],
            |row| row.get(0),
        )
        .map_err(|e| failure("cannot read", path, e))?;
    if !has_table {
        return Err(foreign("it has no schema_migrations table"));
    }
    let found: Option<i64> = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |row| {
            row.get(0)
        })
        .map_err(|e| failure("cannot read", path, e))?;
    let Some(found) = found else {
        return Err(foreign("no migration was ever applied to it"));
    };
    let known = known_schema_version();
    match found > known {
        true => Err(SnapshotError::NewerSchema {
            path: path.into(),
            found,
            known,
        }),
        false => Ok(found),
    }
}

/// Rows of `table` (one of Switchboard's); a missing table means a foreign file.
fn count_rows(conn: &Connection, path: &Path, table: &'static str) -> Result<i64, SnapshotError> {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .map_err(|error| match error.to_string().contains("no such table") {
        true => SnapshotError::Foreign {
            path: path.into(),
            reason: format!("it has no {table} table"),
        },
        false => failure("cannot read", path, error),
    })
}

/// The error of `action` on `path`, telling apart a file that is no database or a damaged
/// one from other failures.
fn failure(action: &'static str, path: &Path, source: rusqlite::Error) -> SnapshotError {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => SnapshotError::NotSqlite { path: path.into() },
        Some(ErrorCode::DatabaseCorrupt) => SnapshotError::Corrupt {
            path: path.into(),
            detail: source.to_string(),
        },
        _ => SnapshotError::Sqlite {
            action,
            path: path.into(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated Switchboard database at `dir/name` with one event and one delivery.
    fn switchboard_db(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        let conn = super::super::connection::open_writer(&path).unwrap();
        conn.execute_batch(
            "INSERT INTO events (id, kind, payload, received_at) VALUES (1, 'whatsapp', x'00', 0);
             INSERT INTO deliveries (event_id, target, state, next_attempt_at, window_start,
                                     updated_at)
             VALUES (1, 'primary', 'pending', 0, 0, 0);",
        )
        .unwrap();
        path
    }

    #[test]
    fn a_copy_is_one_checked_file_with_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let live = switchboard_db(dir.path(), "live.db");
        let _server = Connection::open(&live).unwrap();
        let copy = dir.path().join("copy.db");
        copy_live(&live, &copy).unwrap();
        let facts = inspect(&copy).unwrap();
        assert_eq!(facts.events, 1);
        assert_eq!(facts.deliveries, 1);
        assert_eq!(facts.schema_version, known_schema_version());
        let mode: String = Connection::open(&copy)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
    }

    #[test]
    fn foreign_garbage_and_newer_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a database at all, just some text ".repeat(200)).unwrap();
        assert!(matches!(
            inspect(&text),
            Err(SnapshotError::NotSqlite { .. })
        ));

        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(matches!(
            inspect(&other),
            Err(SnapshotError::Foreign { .. })
        ));

        let newer = switchboard_db(dir.path(), "newer.db");
        Connection::open(&newer)
            .unwrap()
            .execute(
                "INSERT INTO schema_migrations VALUES (?1, 0)",
                [known_schema_version() + 1],
            )
            .unwrap();
        let refused = inspect(&newer).unwrap_err();
        assert!(
            matches!(refused, SnapshotError::NewerSchema { .. }),
            "{refused}"
        );
    }

    #[test]
    fn an_open_database_is_in_use_and_a_closed_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = switchboard_db(dir.path(), "live.db");
        let server = Connection::open(&path).unwrap();
        server
            .query_row("SELECT count(*) FROM events", [], |row| {
                row.get::<_, i64>(0)
            })
            .unwrap();
        assert!(matches!(
            ensure_unused(&path),
            Err(SnapshotError::InUse { .. })
        ));
        drop(server);
        ensure_unused(&path).unwrap();
    }
}
