//! `change_log.retention`: rows are kept for the retention after govsync
//! logged them, whatever their governed_at; PostgreSQL drops a whole day
//! of governed_at once all its rows are that old. Closed review items and
//! recorded decisions follow the same retention; open items stay.

use std::time::Duration;

use crate::common::harness::Env;

const THIRTY_DAYS: Duration = Duration::from_secs(30 * 86_400);

/// Inserts change-log rows: (event id, governed_at, logged this many days
/// ago).
async fn log_rows(pg: &sqlx::PgPool, rows: &[(&str, &str, i32)]) {
    for (e, governed, days_ago) in rows {
        sqlx::query(
            "INSERT INTO govsync_change_log (batch_id, event_id, customer_id, data_type, operation, outcome, \
             governed_at, source_partition, source_offset, logged_at) \
             VALUES ('b', $1, 'C', 'address', 'update', 'applied', $2::timestamptz, 0, 0, \
             now() - make_interval(days => $3))",
        )
        .bind(e)
        .bind(governed)
        .bind(days_ago)
        .execute(pg)
        .await
        .unwrap();
    }
}

async fn events(pg: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id FROM govsync_change_log ORDER BY event_id")
        .fetch_all(pg)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_what_was_logged_within_the_retention() {
    let env = Env::new("retention_pg", 1).await;
    env.migrate().await;
    // Two old days with partitions of their own (as a long-running
    // installation has): one whose rows are all old, one with a late row.
    for day in ["20240101", "20240102"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE govsync_change_log_{day} PARTITION OF govsync_change_log \
             FOR VALUES FROM ('{day} 00:00+00') TO ('{day} 00:00+00'::timestamptz + interval '1 day')"
        )))
        .execute(&env.pg)
        .await
        .unwrap();
    }
    log_rows(
        &env.pg,
        &[
            ("old-day-old", "2024-01-01T10:00:00Z", 40),
            ("late-day-old", "2024-01-02T10:00:00Z", 40),
            ("late-day-new", "2024-01-02T11:00:00Z", 1),
            ("default-old", "2023-06-01T10:00:00Z", 40),
            ("default-new", "2023-06-01T11:00:00Z", 1),
            ("today", "now", 0),
        ],
    )
    .await;
    let db = env.db().await;
    let done = db.maintain(THIRTY_DAYS).await.unwrap();
    assert!(done.contains("1 dropped"), "{done}");
    assert_eq!(
        events(&env.pg).await,
        ["default-new", "late-day-new", "late-day-old", "today"],
        "what was logged in the last 30 days stays; a day with a recent row stays whole"
    );
    let exists: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('govsync_change_log_20240101')::text")
            .fetch_one(&env.pg)
            .await
            .unwrap();
    assert_eq!(exists, None, "the day whose rows are all old is dropped");
    let ahead: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'govsync_change_log'::regclass AND c.relname ~ '^govsync_change_log_[0-9]{8}$' \
         AND c.relname >= 'govsync_change_log_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')",
    )
    .fetch_one(&env.pg)
    .await
    .unwrap();
    assert_eq!(ahead, 8, "today and the seven days ahead have partitions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_what_was_logged_within_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = govsync::config::RawConfig::default();
    raw.database.url = format!("sqlite://{}", dir.path().join("r.db").display());
    let cfg = govsync::config::check(raw).unwrap();
    let db = govsync::sink::connect(&cfg.database).await.unwrap();
    db.migrate(true).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&cfg.database.url).await.unwrap();
    for (e, days_ago) in [("old", 40), ("new", 1)] {
        sqlx::query(
            "INSERT INTO govsync_change_log (batch_id, event_id, customer_id, data_type, operation, outcome, \
             governed_at, source_partition, source_offset, logged_at) \
             VALUES ('b', ?1, 'C', 'address', 'update', 'applied', '2023-06-01T10:00:00.000000Z', 0, 0, \
             strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2))",
        )
        .bind(e)
        .bind(format!("-{days_ago} days"))
        .execute(&pool)
        .await
        .unwrap();
    }
    // Review items: an open one raised long ago stays (nobody decided it
    // yet); a closed one decided long ago goes, a recently closed one
    // stays; decisions recorded long ago go.
    for (e, status, raised_days_ago, decided_days_ago) in [
        ("open-old", "open", 40, None),
        ("approved-old", "approved", 45, Some(40)),
        ("superseded-old", "superseded", 40, None),
        ("rejected-new", "rejected", 45, Some(1)),
    ] {
        sqlx::query(
            "INSERT INTO govsync_review_item (event_id, batch_id, customer_id, data_type, region_code, \
             reason, priority, details, proposed, governed_at, created_at, status, decided_at) \
             VALUES (?1, 'b', 'C', 'address', '3201', 'conflict', 'high', '[]', '{}', \
             '2023-06-01T10:00:00.000000Z', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2), ?3, \
             CASE WHEN ?4 IS NULL THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?4) END)",
        )
        .bind(e)
        .bind(format!("-{raised_days_ago} days"))
        .bind(status)
        .bind(decided_days_ago.map(|d: i32| format!("-{d} days")))
        .execute(&pool)
        .await
        .unwrap();
    }
    for (d, days_ago) in [("d-old", 40), ("d-new", 1)] {
        sqlx::query(
            "INSERT INTO govsync_review_decision (decision_id, event_id, reviewer, decision, outcome, \
             batch_id, source_partition, source_offset, applied_at) \
             VALUES (?1, 'e', 'r', 'approve', 'applied', 'b', 0, 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2))",
        )
        .bind(d)
        .bind(format!("-{days_ago} days"))
        .execute(&pool)
        .await
        .unwrap();
    }
    let done = db.maintain(THIRTY_DAYS).await.unwrap();
    assert_eq!(
        done,
        "1 change-log rows deleted; 2 closed review items and 1 decisions deleted"
    );
    let left: Vec<String> = sqlx::query_scalar("SELECT event_id FROM govsync_change_log")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, ["new"]);
    let items: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM govsync_review_item ORDER BY event_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(items, ["open-old", "rejected-new"]);
    let decisions: Vec<String> =
        sqlx::query_scalar("SELECT decision_id FROM govsync_review_decision")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(decisions, ["d-new"]);
    db.close().await;
}
