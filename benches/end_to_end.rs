//! End-to-end throughput and latency: events from the real Kafka broker
//! until they are committed in PostgreSQL by the pipeline (running in this
//! process, as `govsync run` runs it), for 1, 4 and 16 partitions, next to
//! two references measured in the same run on a table of the same size:
//! the raw database limit (the bare set-based UPDATE) and the full batch
//! protocol without Kafka (4 connections).
//!
//! Per partition count, on a fresh schema and topic:
//! - throughput: a backlog of BENCH_EVENTS events is published first, then
//!   the pipeline starts; steady events/s = events / (last commit − first
//!   commit), wall = pipeline start → last commit;
//! - starvation: per partition, the longest wait between one batch's commit
//!   and the start of its next (from the ledger), against the batch's own
//!   transaction time, and the machine's busy share while the backlog ran
//!   (/proc/stat);
//! - latency: events published at half the steady rate for
//!   BENCH_LATENCY_SECS; per event, commit time (its batch's start +
//!   duration in the ledger) minus publish time; p50 and p99;
//! - the batch sizes the pipeline chose (ledger), in both phases.
//!
//! Configuration: the defaults, except `flow.max_in_flight_per_region = 8`
//! (the generator knows four regions; events are spread over the partitions
//! by customer, so sixteen partitions would otherwise share four regions'
//! caps) and a 100 ms `batch.max_wait` as in the tests.
//!
//! `cargo bench --bench end_to_end` (env: BENCH_EVENTS, BENCH_ROWS table
//! size, BENCH_LATENCY_SECS, BENCH_PARTITIONS e.g. "1,4,16").

mod common;

use common::publish::{Deliveries, Templates, kafka, producer, send};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use govsync::demo::generate::{self, Customer};
use govsync::sink::Database;
use rdkafka::producer::{BaseProducer, Producer};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

fn main() {
    common::main_with(run());
}

struct Measured {
    partitions: usize,
    /// Steady events/s: first commit → last commit.
    rate: f64,
    /// Pipeline start → last commit.
    wall: Duration,
    bulk_sizes: Sizes,
    /// The longest wait between a partition's transactions, and the
    /// largest such wait over the partition's mean transaction time.
    longest_gap: Duration,
    worst_gap_ratio: f64,
    busy: f64,
    paced_rate: f64,
    paced_sizes: Sizes,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// The references of the run: what the database does without Kafka.
struct Reference {
    raw1: f64,
    raw4: f64,
    protocol4: f64,
    protocol_cpu: String,
}

async fn run() {
    let events = common::env_usize("BENCH_EVENTS", 100_000);
    let rows = common::env_usize("BENCH_ROWS", 50_000);
    let latency_secs = common::env_usize("BENCH_LATENCY_SECS", 10);
    let partition_counts: Vec<usize> = std::env::var("BENCH_PARTITIONS")
        .unwrap_or_else(|_| "1,4,16".into())
        .split(',')
        .map(|p| p.trim().parse().expect("BENCH_PARTITIONS: numbers"))
        .collect();
    let customers = generate::customers(rows, 4, 5);
    let templates = Templates::new(&customers);
    let reference = reference(&customers, rows).await;

    let mut results = Vec::new();
    for p in partition_counts {
        println!("{p} partition(s): {events} events ...");
        results.push(case(p, events, latency_secs, &customers, &templates).await);
    }
    print_results(&results, &reference, events, latency_secs);
}

/// The raw limit (bare UPDATE, 1 and 4 connections) and the full protocol
/// on 4 connections, on a table of the same size.
async fn reference(customers: &[Customer], rows: usize) -> Reference {
    let (schema, pool) = common::fresh_schema("e2e_raw", 4).await;
    let db = database(&schema).await;
    db.migrate(true).await.unwrap();
    seed(&pool, customers).await;
    let raw1 = bare_update(&pool, customers, 1).await;
    let raw4 = bare_update(&pool, customers, 4).await;
    let per = customers.len().min(40_000) / 4;
    let groups: Vec<Vec<Customer>> = (0..4)
        .map(|w| customers[w * per..(w + 1) * per].to_vec())
        .collect();
    let protocol =
        common::run_protocol(db.clone(), common::prepare_batches(&groups, 1000, 0)).await;
    db.close().await;
    pool.close().await;
    common::drop_schema(&schema).await;
    println!(
        "references ({rows}-row table, batches of 1000): bare UPDATE … FROM UNNEST {raw1:.0} rows/s on 1 \
         connection, {raw4:.0} on 4; full protocol {:.0} rows/s on 4 ({})",
        protocol.rate(),
        protocol.cpu
    );
    Reference {
        raw1,
        raw4,
        protocol4: protocol.rate(),
        protocol_cpu: protocol.cpu,
    }
}

fn print_results(results: &[Measured], r: &Reference, events: usize, latency_secs: usize) {
    println!();
    println!(
        "end to end (publish → committed in PostgreSQL), pipeline defaults, a backlog of {events} events, \
         then {latency_secs} s at half the steady rate for latency"
    );
    println!(
        "{:>10} {:>9} {:>9} {:>7} {:>18} {:>7} {:>10} {:>8} {:>6} {:>10} {:>18} {:>9} {:>9} {:>9}",
        "partitions",
        "events/s",
        "of proto4",
        "wall",
        "batch p50/mean/max",
        "tx ms",
        "max gap",
        "gap/tx",
        "busy",
        "paced ev/s",
        "paced p50/mean/max",
        "p50",
        "p99",
        "max"
    );
    for m in results {
        println!(
            "{:>10} {:>9.0} {:>8.0}% {:>6.1}s {:>18} {:>7.0} {:>10} {:>8.1} {:>5.0}% {:>10.0} {:>18} {:>9} {:>9} {:>9}",
            m.partitions,
            m.rate,
            100.0 * m.rate / r.protocol4,
            m.wall.as_secs_f64(),
            m.bulk_sizes.to_string(),
            m.bulk_sizes.tx_ms,
            common::ms(m.longest_gap),
            m.worst_gap_ratio,
            100.0 * m.busy,
            m.paced_rate,
            m.paced_sizes.to_string(),
            common::ms(m.p50),
            common::ms(m.p99),
            common::ms(m.max)
        );
    }
    println!(
        "references: full protocol {:.0} rows/s on 4 connections ({}); bare UPDATE {:.0} rows/s on 1 \
         connection, {:.0} on 4",
        r.protocol4, r.protocol_cpu, r.raw1, r.raw4
    );
    if let (Some(four), Some(sixteen)) = (
        results.iter().find(|m| m.partitions == 4),
        results.iter().find(|m| m.partitions == 16),
    ) {
        println!(
            "4 partitions at {:.2} of the full protocol on 4 connections; 16 partitions at {:.2} of 4",
            four.rate / r.protocol4,
            sixteen.rate / four.rate
        );
    }
    println!(
        "max gap: the longest a partition with a backlog waited between one transaction's commit and its \
         next transaction's start, as the pipeline timed them; gap/tx: the largest such wait over that \
         partition's mean transaction time"
    );
    println!(
        "peak RSS of the benchmark process (pipeline + producer): {:.0} MiB",
        common::peak_rss_mib()
    );
}

async fn database(schema: &str) -> Arc<dyn Database> {
    let mut raw = govsync::config::RawConfig::default();
    raw.database.url = common::pg_url();
    raw.database.schema = schema.to_string();
    let cfg = govsync::config::check(raw).unwrap();
    govsync::sink::connect(&cfg.database).await.unwrap()
}

/// Inserts the customers as the business side holds them (last_update as
/// the governance engine saw it, so no event is a conflict).
async fn seed(pool: &sqlx::PgPool, customers: &[Customer]) {
    generate::seed_postgres(pool, customers).await.unwrap();
    sqlx::query("ANALYZE customer_profile")
        .execute(pool)
        .await
        .unwrap();
}

/// Rows/s of the bare set-based UPDATE of the address columns, batches of
/// 1000, `connections` workers over disjoint customers.
async fn bare_update(pool: &sqlx::PgPool, customers: &[Customer], connections: usize) -> f64 {
    let per = customers.len().min(40_000) / connections;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..connections {
        let pool = pool.clone();
        let group: Vec<Customer> = customers[w * per..(w + 1) * per].to_vec();
        tasks.push(tokio::spawn(async move {
            for chunk in group.chunks(1000) {
                common::bare_update(&pool, chunk).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (per * connections) as f64 / started.elapsed().as_secs_f64()
}

#[derive(Debug, Default, Clone, Copy)]
struct Sizes {
    p50: i64,
    mean: f64,
    max: i64,
    /// Mean database transaction of these batches.
    tx_ms: f64,
}

impl std::fmt::Display for Sizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{:.0}/{}", self.p50, self.mean, self.max)
    }
}

/// A committed batch from the ledger.
struct Batch {
    records: i64,
    /// Its database transaction, in milliseconds.
    tx_ms: i64,
    started: DateTime<Utc>,
    committed: DateTime<Utc>,
}

/// Batches committed since `after`, in start order.
async fn batches(pool: &sqlx::PgPool, after: DateTime<Utc>) -> Vec<Batch> {
    sqlx::query(
        "SELECT records, duration_ms, started_at, started_at + duration_ms * interval '1 millisecond' \
         FROM govsync_batch WHERE records > 0 AND started_at >= $1 ORDER BY started_at",
    )
    .bind(after)
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| Batch {
        records: r.get::<i32, _>(0) as i64,
        tx_ms: r.get(1),
        started: r.get(2),
        committed: r.get(3),
    })
    .collect()
}

fn sizes(b: &[Batch]) -> Sizes {
    let mut s: Vec<i64> = b.iter().map(|x| x.records).collect();
    s.sort_unstable();
    if s.is_empty() {
        return Sizes::default();
    }
    Sizes {
        p50: s[s.len() / 2],
        mean: s.iter().sum::<i64>() as f64 / s.len() as f64,
        max: s[s.len() - 1],
        tx_ms: b.iter().map(|x| x.tx_ms).sum::<i64>() as f64 / b.len() as f64,
    }
}

/// Per partition, the wait between a transaction's commit and the start
/// of the partition's next transaction (as the pipeline timed them): the
/// longest, and the largest over the partition's own batch time (the mean
/// of its transactions).
fn gaps(log: &[govsync::pipeline::BatchTiming]) -> (Duration, f64) {
    let mut by_partition: HashMap<i32, Vec<&govsync::pipeline::BatchTiming>> = HashMap::new();
    for b in log {
        by_partition.entry(b.partition).or_default().push(b);
    }
    let mut longest = Duration::ZERO;
    let mut worst = 0.0f64;
    for list in by_partition.values_mut() {
        list.sort_by_key(|b| b.began);
        let own = list.iter().map(|b| b.latency().as_secs_f64()).sum::<f64>() / list.len() as f64;
        for pair in list.windows(2) {
            let gap = pair[1].began.saturating_duration_since(pair[0].committed);
            longest = longest.max(gap);
            worst = worst.max(gap.as_secs_f64() / own.max(1e-3));
        }
    }
    (longest, worst)
}

/// The machine's CPU counters from /proc/stat: (busy, total) jiffies.
fn cpu_counters() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait are the fourth and fifth.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

async fn applied(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(SUM(next_offset), 0)::int8 FROM govsync_watermark")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_applied(pool: &sqlx::PgPool, n: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while applied(pool).await < n {
        assert!(
            Instant::now() < deadline,
            "the pipeline did not apply {n} events within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One partition count's schema, topics and configuration.
struct Setup {
    schema: String,
    pool: sqlx::PgPool,
    cfg: Arc<govsync::config::Config>,
    db: Arc<dyn Database>,
}

async fn setup(partitions: usize, customers: &[Customer]) -> Setup {
    let name = format!("e2e_p{partitions}");
    let (schema, pool) = common::fresh_schema(&name, 4).await;
    let tag = format!("bench_{name}_{}", std::process::id());
    let mut raw = govsync::config::RawConfig::default();
    raw.database.url = common::pg_url();
    raw.database.schema = schema.clone();
    raw.kafka.bootstrap_servers = kafka();
    raw.kafka.group_id = format!("g_{tag}");
    raw.kafka.instance_id = format!("i_{tag}");
    raw.kafka.source_topic = format!("{tag}.results");
    raw.kafka.review_topic = format!("{tag}.review");
    raw.kafka.dlq_topic = format!("{tag}.dlq");
    raw.kafka.session_timeout = "6s".into();
    raw.batch.max_wait = "100ms".into();
    raw.flow.max_in_flight_per_region = 8;
    raw.metrics.listen = String::new();
    let cfg = Arc::new(govsync::config::check(raw).unwrap());
    let db = govsync::sink::connect(&cfg.database).await.unwrap();
    db.migrate(true).await.unwrap();
    seed(&pool, customers).await;
    govsync::kafka::ensure_topics(
        &govsync::kafka::tool_config(&cfg.kafka),
        &[
            (cfg.kafka.source_topic.as_str(), partitions as i32),
            (cfg.kafka.review_topic.as_str(), 1),
            (cfg.kafka.dlq_topic.as_str(), 1),
        ],
        1,
    )
    .await
    .expect("Kafka reachable (scripts/services up)");
    Setup {
        schema,
        pool,
        cfg,
        db,
    }
}

async fn case(
    partitions: usize,
    events: usize,
    latency_secs: usize,
    customers: &[Customer],
    t: &Templates,
) -> Measured {
    let s = setup(partitions, customers).await;
    let topic = s.cfg.kafka.source_topic.clone();

    // The backlog, published before the pipeline starts.
    let (p, failed) = producer(20);
    let p = tokio::task::block_in_place(|| {
        for n in 0..events {
            send(&p, &topic, t, n, partitions);
            if n % 5000 == 0 {
                p.poll(Duration::ZERO);
            }
        }
        p.flush(Duration::from_secs(60)).unwrap();
        p
    });
    assert_eq!(failed.load(Ordering::Relaxed), 0);

    let started_at = Utc::now();
    let started = Instant::now();
    let cpu_before = cpu_counters();
    let shutdown = CancellationToken::new();
    let progress = Arc::new(govsync::pipeline::Progress::default());
    let pipeline = tokio::spawn(govsync::pipeline::run(
        s.cfg.clone(),
        s.db.clone(),
        shutdown.clone(),
        progress.clone(),
    ));
    wait_applied(&s.pool, events as i64, Duration::from_secs(600)).await;
    let cpu_after = cpu_counters();
    let bulk = batches(&s.pool, started_at).await;
    let first = bulk.iter().map(|b| b.started).min().unwrap();
    let last = bulk.iter().map(|b| b.committed).max().unwrap();
    let steady = (last - first).num_microseconds().unwrap() as f64 / 1e6;
    let wall = (last - started_at).to_std().unwrap_or(started.elapsed());
    let (longest_gap, worst_gap_ratio) = {
        let log = progress.batch_log.lock().unwrap();
        gaps(&log)
    };
    let busy = (cpu_after.0 - cpu_before.0) as f64 / (cpu_after.1 - cpu_before.1).max(1) as f64;

    let rate = events as f64 / steady.max(1e-3);
    let paced = paced(&s, &p, t, partitions, events, rate / 2.0, latency_secs).await;

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), pipeline).await;
    s.db.close().await;
    s.pool.close().await;
    delete_topics(&s.cfg.kafka).await;
    common::drop_schema(&s.schema).await;
    Measured {
        partitions,
        rate,
        wall,
        bulk_sizes: sizes(&bulk),
        longest_gap,
        worst_gap_ratio,
        busy,
        paced_rate: paced.rate,
        paced_sizes: paced.sizes,
        p50: common::percentile(&paced.latencies, 50.0),
        p99: common::percentile(&paced.latencies, 99.0),
        max: paced.latencies.last().copied().unwrap_or_default(),
    }
}

/// What the paced phase measured.
struct Paced {
    rate: f64,
    sizes: Sizes,
    /// Publish → commit per event, sorted.
    latencies: Vec<Duration>,
}

/// Events at `target` per second for `secs`, paced every 10 ms, after the
/// `events` of the backlog; each one's publish → commit time.
async fn paced(
    s: &Setup,
    p: &BaseProducer<Deliveries>,
    t: &Templates,
    partitions: usize,
    events: usize,
    target: f64,
    secs: usize,
) -> Paced {
    let topic = &s.cfg.kafka.source_topic;
    let target = target.max(100.0);
    let paced_from = Utc::now();
    let total = (target * secs as f64) as usize;
    let mut sent_at: HashMap<usize, i64> = HashMap::with_capacity(total);
    let begin = Instant::now();
    let mut next = events;
    let end = events + total;
    while next < end {
        let due = events + (begin.elapsed().as_secs_f64() * target) as usize;
        while next < due.min(end) {
            sent_at.insert(next, send(p, topic, t, next, partitions));
            next += 1;
        }
        p.poll(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::block_in_place(|| p.flush(Duration::from_secs(60)).unwrap());
    let paced_secs = begin.elapsed().as_secs_f64();
    wait_applied(&s.pool, end as i64, Duration::from_secs(600)).await;
    let batches = batches(&s.pool, paced_from).await;
    let rows = sqlx::query(
        "SELECT c.event_id, b.started_at + b.duration_ms * interval '1 millisecond' \
         FROM govsync_change_log c JOIN govsync_batch b ON b.batch_id = c.batch_id \
         WHERE b.started_at >= $1",
    )
    .bind(paced_from)
    .fetch_all(&s.pool)
    .await
    .unwrap();
    let mut latencies: Vec<Duration> = rows
        .iter()
        .filter_map(|r| {
            let id: String = r.get(0);
            let n: usize = id.strip_prefix("e2e-")?.parse().ok()?;
            let committed: DateTime<Utc> = r.get(1);
            let sent = *sent_at.get(&n)?;
            Some(Duration::from_millis(
                (committed.timestamp_millis() - sent).max(0) as u64,
            ))
        })
        .collect();
    latencies.sort();
    assert!(
        latencies.len() >= total * 9 / 10,
        "latencies for most paced events: {} of {total}",
        latencies.len()
    );
    Paced {
        rate: total as f64 / paced_secs,
        sizes: sizes(&batches),
        latencies,
    }
}

async fn delete_topics(k: &govsync::config::KafkaConfig) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = govsync::kafka::tool_config(k).create().unwrap();
    let _ = admin
        .delete_topics(
            &[
                k.source_topic.as_str(),
                k.review_topic.as_str(),
                k.dlq_topic.as_str(),
            ],
            &AdminOptions::new(),
        )
        .await;
}
