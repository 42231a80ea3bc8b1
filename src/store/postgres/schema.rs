//! The schema's migrations, applied at start under an advisory lock, so nodes that start
//! together migrate once.

use deadpool_postgres::Pool;

use crate::store::StoreError;

/// The migrations, in order; each runs once (those pending, together in one transaction).
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("0001_init.sql")),
    (2, include_str!("0002_lease_owner.sql")),
    (3, include_str!("0003_lease_token.sql")),
    (4, include_str!("0004_attempt_urls.sql")),
    (5, include_str!("0005_retry_after.sql")),
    (6, include_str!("0006_attempt_url_destination.sql")),
    (7, include_str!("0007_destination_pauses.sql")),
    (8, include_str!("0008_ordered.sql")),
    (9, include_str!("0009_waba_signing_secret.sql")),
    (10, include_str!("0010_payload_size.sql")),
    (11, include_str!("0011_payload_retention.sql")),
    (12, include_str!("0012_trace_context.sql")),
    (13, include_str!("0013_hot_foreign_keys.sql")),
];

/// Applies the migrations this database has not seen, one node at a time (advisory lock).
pub async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let open = |e: &dyn std::fmt::Display| StoreError::Open(format!("cannot migrate: {e}"));
    let mut client = pool.get().await.map_err(|e| open(&e))?;
    let tx = client.transaction().await.map_err(|e| open(&e))?;
    // Migrations may build indexes on large tables: no per-statement limit here.
    tx.batch_execute(
        "SET LOCAL statement_timeout = 0;
         SELECT pg_advisory_xact_lock(7301);
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(|e| open(&e))?;
    for (version, sql) in MIGRATIONS {
        let applied = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await
            .map_err(|e| open(&e))?
            .is_some();
        if applied {
            continue;
        }
        tx.batch_execute(sql).await.map_err(|e| open(&e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &crate::clock::now_ms()],
        )
        .await
        .map_err(|e| open(&e))?;
        tracing::info!(version, "applied postgres migration");
    }
    let newest: Option<i64> = tx
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| open(&e))?;
    warn_if_newer(newest);
    tx.commit().await.map_err(|e| open(&e))
}

/// Says so when the database has migrations this binary does not know: a newer version
/// migrated it (a rolling upgrade in progress). This node runs beside it (migrations are
/// additive: docs/OPERATIONS.md), but should be upgraded too.
fn warn_if_newer(newest: Option<i64>) {
    let known = MIGRATIONS.last().map_or(0, |(version, _)| *version);
    if let Some(newest) = newest.filter(|&newest| newest > known) {
        tracing::warn!(
            database = newest,
            binary = known,
            "the database's schema is newer than this binary's: a newer version migrated it; \
             this node keeps running beside it, upgrade it too"
        );
    }
}
