//! What the service asks of the store besides its data: readiness, the write path's
//! counters, and the listener that keeps cached configuration coherent.

use crate::support::*;

conformance!(ping_writes_through_the_write_path, |db: Db| async move {
    let store = &*db.store;
    store.ping().await.expect("a fresh database is ready");
    store.ping().await.expect("and stays ready");
});

conformance!(write_stats_count_commits_and_writes, |db: Db| async move {
    let store = &*db.store;
    let before = store.write_stats();
    let id = provisioned(store).await;
    for n in 0..5 {
        save(store, vec![whatsapp(&id, n, now())]).await;
    }
    let after = store.write_stats();
    assert!(after.commits > before.commits, "{before:?} -> {after:?}");
    assert!(
        after.writes >= before.writes + 8,
        "three provisioning writes and five saves: {after:?}"
    );
    assert!(
        after.writes >= after.commits,
        "a commit carries at least one write"
    );
    assert!(after.busy_seconds >= before.busy_seconds);
    let timed: u64 = after.commit_buckets.iter().sum();
    assert_eq!(
        timed, after.commits,
        "every commit has its duration counted"
    );
    assert!(after.commit_seconds > 0.0 && after.commit_seconds <= after.busy_seconds);
});

conformance!(
    the_config_listener_is_up_where_there_is_one,
    |db: Db| async move {
        let store = db.store.clone();
        match db.backend {
            Backend::Sqlite => assert_eq!(store.config_listener_up(), None, "no listener needed"),
            Backend::Postgres => {
                eventually("the listener is up", || {
                    let store = store.clone();
                    async move { store.config_listener_up() == Some(true) }
                })
                .await
            }
        }
    }
);
