//! Upgrading a database govsync version 1 wrote: migration 2 moves
//! staleness into govsync_row_state and reshapes the change log (PostgreSQL:
//! partitioned by day, the old table a partition of it). What version 1
//! logged must keep working: staleness, dedupe and rollback of an old batch.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use govsync::event::DataType;
use govsync::sink::Database;
use govsync::sink::migrate::{self, Embedded};

use crate::common::harness::Env;

/// A result version 1 applied: (event, customer, data type, governed at,
/// address before, address after).
const HISTORY: [(&str, &str, &str, &str, &str, &str); 4] = [
    ("v1-e1", "C1", "address", "2024-01-15T02:20:00Z", "a0", "a1"),
    ("v1-e2", "C1", "address", "2024-01-16T02:20:00Z", "a1", "a2"),
    ("v1-e3", "C1", "phone", "2024-01-14T02:20:00Z", "p0", "p1"),
    ("v1-e4", "C2", "address", "2024-01-15T02:20:00Z", "b0", "b1"),
];

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The image of the column a result of `data_type` wrote.
fn image(data_type: &str, v: &str) -> String {
    let column = if data_type == "phone" {
        "phone"
    } else {
        "address"
    };
    format!("{{\"{column}\":\"{v}\"}}")
}

/// What both databases must show after the upgrade.
async fn check_upgraded(db: &Arc<dyn Database>) {
    let mut tx = db.begin().await.unwrap();
    let states = tx.row_states(&["C1".into(), "C2".into()]).await.unwrap();
    let c1 = states.iter().find(|s| s.customer_id == "C1").unwrap();
    assert_eq!(
        c1.governed_at[DataType::Address.index()],
        Some(t("2024-01-16T02:20:00Z")),
        "the newest address result of version 1 is C1's staleness state"
    );
    assert_eq!(
        c1.governed_at[DataType::Phone.index()],
        Some(t("2024-01-14T02:20:00Z"))
    );
    assert_eq!(c1.governed_at[DataType::IdCard.index()], None);
    let seen = tx
        .seen_events(&[
            ("v1-e2".into(), t("2024-01-16T02:20:00Z")),
            ("v1-e4".into(), t("2024-01-15T02:20:00Z")),
            ("v1-e4".into(), t("2024-01-15T02:20:01Z")),
            ("new".into(), t("2024-01-15T02:20:00Z")),
        ])
        .await
        .unwrap();
    let mut seen: Vec<String> = seen.into_iter().collect();
    seen.sort();
    assert_eq!(
        seen,
        ["v1-e2", "v1-e4"],
        "results version 1 logged are duplicates (same event id and governed_at)"
    );
    let log = tx.read_batch_log("v1-batch").await.unwrap();
    assert_eq!(
        log.iter().map(|l| l.event_id.as_str()).collect::<Vec<_>>(),
        ["v1-e1", "v1-e2", "v1-e3", "v1-e4"],
        "a batch version 1 logged is still found, in order, for rollback"
    );
    drop(tx);
    let rb = govsync::sink::rollback::rollback(db.as_ref(), "v1-batch", true)
        .await
        .unwrap();
    assert_eq!(rb.restored, ["C1", "C2"], "{rb:?}");
    assert!(rb.changed_since.is_empty(), "{rb:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_version_1_history_survives_the_upgrade() {
    let env = Env::new("upgrade_pg", 1).await;
    run_only(&env.pg, &migrate::POSTGRES[..1], migrate::POSTGRES_DEV).await;
    let mut tx = env.pg.begin().await.unwrap();
    for (i, (e, c, dt, at, before, after)) in HISTORY.iter().enumerate() {
        sqlx::query(
            "INSERT INTO govsync_change_log (batch_id, event_id, customer_id, data_type, operation, outcome, \
             governed_at, before_image, after_image, source_partition, source_offset) \
             VALUES ('v1-batch', $1, $2, $3, 'update', 'applied', $4, $5, $6, 0, $7)",
        )
        .bind(e)
        .bind(c)
        .bind(dt)
        .bind(t(at))
        .bind(image(dt, before))
        .bind(image(dt, after))
        .bind(i as i64)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO govsync_batch (batch_id, kind, consumer_group, topic, partition_id, first_offset, \
         last_offset, records, counts, started_at, duration_ms, attempts, status) \
         VALUES ('v1-batch', 'apply', 'g', 't', 0, 0, 3, 4, '{}', now(), 1, 1, 'committed')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    for (c, a, p) in [("C1", "a2", "p1"), ("C2", "b1", "")] {
        sqlx::query(
            "INSERT INTO customer_profile (customer_id, address, phone, version) VALUES ($1, $2, $3, 2)",
        )
        .bind(c)
        .bind(a)
        .bind(p)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let db = env.db().await;
    db.migrate(true).await.unwrap();
    check_upgraded(&db).await;
    let parts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'govsync_change_log'::regclass",
    )
    .fetch_one(&env.pg)
    .await
    .unwrap();
    assert!(
        parts >= 9,
        "the version-1 table, the default and a week of daily partitions: {parts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_version_1_history_survives_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgrade.db");
    let url = format!("sqlite://{}", path.display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true),
        )
        .await
        .unwrap();
    run_only(&pool, &migrate::SQLITE[..1], migrate::SQLITE_DEV).await;
    let mut tx = pool.begin().await.unwrap();
    for (i, (e, c, dt, at, before, after)) in HISTORY.iter().enumerate() {
        sqlx::query(
            "INSERT INTO govsync_change_log (batch_id, event_id, customer_id, data_type, operation, outcome, \
             governed_at, before_image, after_image, source_partition, source_offset) \
             VALUES ('v1-batch', ?1, ?2, ?3, 'update', 'applied', ?4, ?5, ?6, 0, ?7)",
        )
        .bind(e)
        .bind(c)
        .bind(dt)
        .bind(govsync::sink::sqlite::time_text(t(at)))
        .bind(image(dt, before))
        .bind(image(dt, after))
        .bind(i as i64)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    for (c, a, p) in [("C1", "a2", "p1"), ("C2", "b1", "")] {
        sqlx::query(
            "INSERT INTO customer_profile (customer_id, address, phone, version) VALUES (?1, ?2, ?3, 2)",
        )
        .bind(c)
        .bind(a)
        .bind(p)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    pool.close().await;

    let mut raw = govsync::config::RawConfig::default();
    raw.database.url = url;
    let cfg = govsync::config::check(raw).unwrap();
    let db = govsync::sink::connect(&cfg.database).await.unwrap();
    db.migrate(true).await.unwrap();
    check_upgraded(&db).await;
    db.close().await;
}

/// Runs only the given migrations (those of an older govsync).
async fn run_only<DB>(pool: &sqlx::Pool<DB>, govsync: &'static [Embedded], dev: &'static [Embedded])
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
{
    for (set, table) in [(govsync, migrate::TABLE), (dev, migrate::DEV_TABLE)] {
        migrate::migrator(set, table)
            .await
            .unwrap()
            .run(pool)
            .await
            .unwrap();
    }
}
