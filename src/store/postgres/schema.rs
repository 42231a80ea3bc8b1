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
    tx.commit().await.map_err(|e| open(&e))
}
