//! The target table of a run and how its changes are timed: the same N
//! customer rows seeded for both systems, a `peer_changed_at` column that a
//! row trigger stamps with `clock_timestamp()` on every UPDATE, and the
//! check that every row holds its new values at the end.
//!
//! Why a row trigger rather than a statement-level one with a transition
//! table: Debezium's default writer sends one upsert statement per record
//! (JDBC batching), govsync one UPDATE per batch, so a statement-level
//! trigger that logs a row per statement would cost Debezium one extra
//! insert per record and govsync one per batch. A BEFORE UPDATE row
//! trigger that only sets a column of the row being written costs both
//! the same per row and writes nothing extra (the column has no index, so
//! updates stay HOT-eligible as before).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use govsync::demo::generate::{self, Customer};
use sqlx::PgPool;

use crate::child::Child;

/// The dev table exactly as `govsync migrate --with-target-table` creates it.
const TARGET_TABLE: &str = include_str!("../../migrations/postgres/dev_0001_customer_profile.sql");

const STAMP: &str = "\
    ALTER TABLE customer_profile ADD COLUMN peer_changed_at TIMESTAMPTZ;
    CREATE FUNCTION peer_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN NEW.peer_changed_at := clock_timestamp(); RETURN NEW; END $$;
    CREATE TRIGGER peer_stamp BEFORE UPDATE ON customer_profile
        FOR EACH ROW EXECUTE FUNCTION peer_stamp();";

/// Creates `customer_profile` in the pool's schema (for Debezium; govsync's
/// `migrate` creates its own).
pub async fn create(pool: &PgPool) {
    sqlx::raw_sql(TARGET_TABLE).execute(pool).await.unwrap();
}

/// Adds the change stamp and seeds the customers as the business side holds
/// them before governance.
pub async fn stamp_and_seed(pool: &PgPool, customers: &[Customer]) {
    sqlx::raw_sql(STAMP).execute(pool).await.unwrap();
    generate::seed_postgres(pool, customers).await.unwrap();
    sqlx::query("ANALYZE customer_profile")
        .execute(pool)
        .await
        .unwrap();
}

/// Rows changed so far, and the first and last change.
#[derive(Debug, Clone, Copy)]
pub struct Changes {
    pub rows: i64,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
}

pub async fn changes(pool: &PgPool) -> Result<Changes, sqlx::Error> {
    let (rows, first, last) = sqlx::query_as(
        "SELECT count(peer_changed_at), min(peer_changed_at), max(peer_changed_at) FROM customer_profile",
    )
    .fetch_one(pool)
    .await?;
    Ok(Changes { rows, first, last })
}

/// Polls once a second (a scan of the table: the same cost on both sides)
/// until `n` rows have changed. Gives up, with the log's tail, if `child`
/// exits, no row changes for `stall` (a Debezium task that lost its
/// database stops for good while the worker lives on), or `timeout` passes.
pub async fn wait_changed(
    pool: &PgPool,
    n: usize,
    child: &mut Child,
    stall: Duration,
    timeout: Duration,
) -> Result<Changes, String> {
    let started = Instant::now();
    let (mut seen, mut progressed) = (-1, started);
    loop {
        // A failed poll (the database restarting) counts as no progress.
        match changes(pool).await {
            Ok(c) if c.rows >= n as i64 => return Ok(c),
            Ok(c) if c.rows > seen => (seen, progressed) = (c.rows, Instant::now()),
            _ => {}
        }
        let why = if let Some(status) = child.exited() {
            format!("exited ({status})")
        } else if progressed.elapsed() > stall {
            format!("changed no row for {stall:?}")
        } else if started.elapsed() > timeout {
            format!("did not finish within {timeout:?}")
        } else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        return Err(format!(
            "{why} after changing {seen} of {n} rows; last lines of its log:\n{}",
            child.log_tail(40)
        ));
    }
}

/// Rows that hold the address update's new values: standardised address,
/// coordinates, quality score 0.9 and the governance time of the event.
pub async fn verified(pool: &PgPool, customers: &[Customer]) -> i64 {
    let times: Vec<DateTime<Utc>> = (0..customers.len())
        .map(|i| generate::governed_at(i).with_timezone(&Utc))
        .collect();
    sqlx::query_scalar(
        "SELECT count(*) FROM customer_profile c \
         JOIN UNNEST($1::text[], $2::text[], $3::float8[], $4::float8[], $5::timestamptz[]) \
           AS u(id, address, lat, lon, governed) ON c.customer_id = u.id \
         WHERE c.address = u.address AND abs(c.geo_lat - u.lat) < 1e-9 \
           AND abs(c.geo_lon - u.lon) < 1e-9 AND c.quality_score = 0.9 \
           AND c.last_governance_time = u.governed",
    )
    .bind(customers.iter().map(|c| c.id.as_str()).collect::<Vec<_>>())
    .bind(
        customers
            .iter()
            .map(|c| c.std_address.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(customers.iter().map(|c| c.lat).collect::<Vec<_>>())
    .bind(customers.iter().map(|c| c.lon).collect::<Vec<_>>())
    .bind(times)
    .fetch_one(pool)
    .await
    .unwrap()
}
