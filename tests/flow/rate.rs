//! Rate limits hold: the applied rate per region (and overall) measured
//! from the batch ledger and from the change log's logged_at stays within
//! 10% of the configured records/s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::support::{self, Templates, publish_fast, serial};
use crate::common::harness::{Env, wait_until};

/// Per partition (one region each here): committed batches as (started_at,
/// records), in order.
async fn ledger(env: &Env) -> BTreeMap<i32, Vec<(DateTime<Utc>, i64)>> {
    let rows = sqlx::query(
        "SELECT partition_id, started_at, records FROM govsync_batch WHERE records > 0 ORDER BY started_at",
    )
    .fetch_all(&env.pg)
    .await
    .unwrap();
    let mut out: BTreeMap<i32, Vec<(DateTime<Utc>, i64)>> = BTreeMap::new();
    for r in rows {
        out.entry(r.get(0))
            .or_default()
            .push((r.get(1), r.get::<i32, _>(2) as i64));
    }
    out
}

/// Records/s of a partition's batches, skipping those that started in the
/// first `skip` after its first batch (the limiter's initial burst): the
/// records of the batches after the first counted one, over the time
/// between their starts (each batch takes its cells just before it
/// starts). Panics with fewer than ten batches to measure: call it only
/// where the rate is asserted.
fn ledger_rate(batches: &[(DateTime<Utc>, i64)], skip: Duration) -> (f64, f64) {
    let t0 = batches[0].0 + chrono::Duration::from_std(skip).unwrap();
    let kept: Vec<_> = batches.iter().filter(|(t, _)| *t >= t0).collect();
    assert!(
        kept.len() >= 10,
        "enough batches to measure: {}",
        kept.len()
    );
    let first = kept[0].0;
    let last = kept[kept.len() - 1].0;
    let records: i64 = kept[1..].iter().map(|(_, n)| n).sum();
    let secs = (last - first).num_microseconds().unwrap() as f64 / 1e6;
    (records as f64 / secs, secs)
}

/// Change-log rows per source partition whose logged_at (the batch
/// transaction's start) falls in `[from, to)`.
async fn logged(env: &Env, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeMap<i32, i64> {
    let rows = sqlx::query(
        "SELECT source_partition, count(*)::int8 FROM govsync_change_log \
         WHERE logged_at >= $1 AND logged_at < $2 GROUP BY source_partition",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&env.pg)
    .await
    .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// A partition's committed batches: (started_at, records), in order.
type Batches = Vec<(DateTime<Utc>, i64)>;

/// What one run measured.
struct Measured {
    /// Per partition: (partition, its batches, change-log rate). The
    /// ledger rate of one partition is computed only where it is asserted
    /// (under a global limit a partition's share is not fixed, and a
    /// partition may run too few batches to measure).
    partitions: Vec<(i32, Batches, f64)>,
    /// Over all partitions: the ledger rate of all batches in start order,
    /// and the change-log rate.
    overall: (f64, f64),
}

/// Runs the processor for `run` over a backlog that outlasts it.
async fn measure(env: &Env, raw: govsync::config::RawConfig, run: Duration) -> Measured {
    let cfg = govsync::config::check(raw).unwrap();
    let running = env.start_with(cfg);
    wait_until(
        Duration::from_secs(60),
        "the first batch commits",
        || async { support::applied_upto(env).await > 0 },
    )
    .await;
    tokio::time::sleep(run).await;
    running.stop().await;
    let ledger = ledger(env).await;
    let start = ledger.values().map(|b| b[0].0).min().unwrap();
    let from = start + chrono::Duration::seconds(3);
    let to = start + chrono::Duration::from_std(run).unwrap() - chrono::Duration::seconds(1);
    let window = (to - from).num_milliseconds() as f64 / 1000.0;
    let counts = logged(env, from, to).await;
    let partitions = ledger
        .iter()
        .map(|(p, b)| {
            let log_rate = counts.get(p).copied().unwrap_or(0) as f64 / window;
            (*p, b.clone(), log_rate)
        })
        .collect();
    let mut all: Vec<(DateTime<Utc>, i64)> = ledger.values().flatten().copied().collect();
    all.sort();
    let overall = (
        ledger_rate(&all, Duration::from_secs(2)).0,
        counts.values().sum::<i64>() as f64 / window,
    );
    Measured {
        partitions,
        overall,
    }
}

fn config(env: &Env) -> govsync::config::RawConfig {
    let mut raw = env.raw.clone();
    // Batches of at most 100 records: a third of a second of the limit,
    // so the limiter, not the batch size, sets the pace.
    raw.batch.min_size = 20;
    raw.batch.max_size = 100;
    raw.batch.address = [20, 100];
    raw.batch.id_card = [20, 100];
    raw.batch.phone = [20, 100];
    raw.flow.max_buffered_per_partition = 1000;
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_region_and_global_rate_limits_hold_within_ten_percent() {
    let _serial = serial().await;
    let started = Instant::now();
    let regions = 3usize;
    let env = Env::new("rate", regions as i32).await;
    env.migrate().await;
    let customers = support::seed(&env, 600, regions, 71).await;
    let t = Templates::new(&customers, "rate", false);
    // Customer i is in region i % 3: one region per partition.
    let partition_of = |i: usize| Some((i % customers.len() % regions) as i32);
    publish_fast(&env, &t, 0..24_000, partition_of);

    // Per region: N records/s each.
    const N: u32 = 300;
    let mut raw = config(&env);
    raw.flow.rate_per_region = N;
    let run = Duration::from_secs(15);
    let per_region = measure(&env, raw, run).await.partitions;
    eprintln!("rate_per_region = {N} records/s, {} regions:", regions);
    let per_region: Vec<_> = per_region
        .iter()
        .map(|(p, batches, log_rate)| {
            let (rate, secs) = ledger_rate(batches, Duration::from_secs(2));
            (*p, rate, secs, *log_rate)
        })
        .collect();
    for (p, rate, secs, log_rate) in &per_region {
        eprintln!(
            "  region of partition {p}: {rate:.1} records/s by the ledger over {secs:.1} s, \
             {log_rate:.1} records/s by the change log's logged_at"
        );
    }
    assert_eq!(per_region.len(), regions, "every region ran");
    for (p, rate, _, log_rate) in &per_region {
        for r in [rate, log_rate] {
            assert!(
                (r - N as f64).abs() <= 0.1 * N as f64,
                "partition {p}: {r:.1} records/s is not within 10% of {N}"
            );
        }
    }

    // Overall: G records/s shared by the regions.
    const G: u32 = 450;
    sqlx::query("DELETE FROM govsync_batch")
        .execute(&env.pg)
        .await
        .unwrap();
    sqlx::query("DELETE FROM govsync_change_log")
        .execute(&env.pg)
        .await
        .unwrap();
    let mut raw = config(&env);
    raw.flow.rate_global = G;
    let global = measure(&env, raw, run).await;
    let (total, log_total) = global.overall;
    eprintln!(
        "rate_global = {G} records/s: {total:.1} records/s by the ledger, {log_total:.1} by the \
         change log (per region by the change log: {:?})",
        global
            .partitions
            .iter()
            .map(|(_, _, l)| format!("{l:.0}"))
            .collect::<Vec<_>>()
    );
    for r in [total, log_total] {
        assert!(
            (r - G as f64).abs() <= 0.1 * G as f64,
            "{r:.1} records/s overall is not within 10% of {G}"
        );
    }
    support::delete_topics(&env).await;
    support::drop_schema(&env).await;
    eprintln!("test took {:?}", started.elapsed());
}
