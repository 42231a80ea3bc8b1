//! Opening SQLite connections: pragmas, migrations, and the pool of reading connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::store::{StoreError, Violation, ViolationKind};

/// The migrations, in order; each runs once, in its own transaction.
const MIGRATIONS: [(i64, &str); 14] = [
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_delivery.sql")),
    (3, include_str!("migrations/0003_partner_webhook.sql")),
    (4, include_str!("migrations/0004_drop_unused_index.sql")),
    (5, include_str!("migrations/0005_unroutable_index.sql")),
    (6, include_str!("migrations/0006_lease_token.sql")),
    (7, include_str!("migrations/0007_attempt_urls.sql")),
    (8, include_str!("migrations/0008_retry_after.sql")),
    (
        9,
        include_str!("migrations/0009_attempt_url_destination.sql"),
    ),
    (10, include_str!("migrations/0010_destination_pauses.sql")),
    (11, include_str!("migrations/0011_ordered.sql")),
    (12, include_str!("migrations/0012_waba_signing_secret.sql")),
    (13, include_str!("migrations/0013_payload_retention.sql")),
    (14, include_str!("migrations/0014_trace_context.sql")),
];

/// The highest migration version this binary knows (a backup with a higher one was written
/// by a newer release, and restoring it is refused).
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}

/// Opens the writing connection, creating the file and bringing its schema up to date.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Open(format!("cannot create directory {}: {e}", parent.display()))
        })?;
    }
    let conn = Connection::open(path)
        .map_err(|e| StoreError::Open(format!("cannot open {}: {e}", path.display())))?;
    // WAL lets readers run beside the writer; FULL makes every commit survive power loss.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;",
    )
    .map_err(|e| StoreError::Open(format!("cannot configure {}: {e}", path.display())))?;
    migrate(&conn)
        .map_err(|e| StoreError::Open(format!("cannot migrate {}: {e}", path.display())))?;
    Ok(conn)
}

/// Applies the migrations the database has not seen yet.
fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )?;
    for (version, sql) in MIGRATIONS {
        let applied: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |row| row.get(0),
        )?;
        if applied {
            continue;
        }
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            (version, super::now_ms()),
        )?;
        tx.commit()?;
        tracing::info!(version, "applied sqlite migration");
    }
    Ok(())
}

/// Reading connections, opened on demand and reused; WAL gives each a consistent snapshot.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// A pool for the database at `path` (already created by [`open_writer`]).
    pub fn new(path: &Path) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `work` on a reading connection, off the async runtime.
    pub async fn read<T, F>(self: &Arc<Self>, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = work(&conn);
            readers.give_back(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Database(e.into()))?
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => {
                let conn = Connection::open(&self.path)?;
                conn.execute_batch("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;")?;
                Ok(conn)
            }
        }
    }

    fn give_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        if let Some(violation) = violation(&error) {
            return StoreError::Constraint(violation);
        }
        match unavailable(&error) {
            true => StoreError::Unavailable(Box::new(error)),
            false => StoreError::Database(Box::new(error)),
        }
    }
}

/// The broken constraint SQLite reports, if the error is one: "UNIQUE constraint failed:
/// channels.phone_number" names table and column; "FOREIGN KEY constraint failed" neither.
fn violation(error: &rusqlite::Error) -> Option<Violation> {
    let rusqlite::Error::SqliteFailure(failure, message) = error else {
        return None;
    };
    let kind = match failure.extended_code {
        rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
            ViolationKind::Unique
        }
        rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ViolationKind::ForeignKey,
        _ => return None,
    };
    let named = message
        .as_deref()
        .and_then(|text| text.split_once(": "))
        .and_then(|(_, columns)| columns.split(", ").next())
        .and_then(|column| column.split_once('.'));
    Some(Violation {
        kind,
        table: named.map(|(table, _)| table.to_owned()),
        column: named.map(|(_, column)| column.to_owned()),
    })
}

/// Whether `error` says the database file cannot be written or opened now (full disk,
/// read-only file or file system, an I/O error, the file cannot be opened, busy beyond the
/// busy timeout) rather than that the statement was wrong.
pub fn unavailable(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
        )
    )
}
