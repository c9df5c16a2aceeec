//! End-to-end throughput and latency: events published to the real Kafka
//! broker until they are committed in PostgreSQL by the pipeline (running
//! in this process, as `govsync run` runs it), for 1, 4 and 16 partitions,
//! next to the raw database limit (the bare set-based UPDATE) measured in
//! the same run.
//!
//! Per partition count, on a fresh schema and topic:
//! - throughput: a backlog of BENCH_EVENTS events published as fast as the
//!   broker takes them; events/s = events / (last commit − first publish);
//! - latency: events published at half that rate for BENCH_LATENCY_SECS;
//!   per event, commit time (its batch's start + duration in the ledger)
//!   minus publish time; p50 and p99;
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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use govsync::demo::generate::{self, Customer};
use govsync::event::DataType;
use govsync::sink::Database;
use rdkafka::ClientConfig;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

fn main() {
    if !common::benchmarking() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn kafka() -> String {
    std::env::var("GOVSYNC_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Measured {
    partitions: usize,
    events: usize,
    rate: f64,
    bulk_sizes: Sizes,
    paced_rate: f64,
    paced_sizes: Sizes,
    p50: Duration,
    p99: Duration,
    max: Duration,
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

    // The raw limit, on a table of the same size.
    let (schema, pool) = common::fresh_schema("e2e_raw", 4).await;
    let db = database(&schema).await;
    db.migrate(true).await.unwrap();
    seed(&pool, &customers).await;
    let raw1 = bare_update(&pool, &customers, 1).await;
    let raw4 = bare_update(&pool, &customers, 4).await;
    db.close().await;
    pool.close().await;
    common::drop_schema(&schema).await;
    println!(
        "raw database limit (bare UPDATE … FROM UNNEST, batches of 1000, {rows}-row table): \
         {raw1:.0} rows/s on 1 connection, {raw4:.0} rows/s on 4"
    );

    let mut results = Vec::new();
    for p in partition_counts {
        println!("{p} partition(s): {events} events ...");
        results.push(case(p, events, latency_secs, &customers, &templates).await);
    }

    println!();
    println!(
        "end to end (publish → committed in PostgreSQL), pipeline defaults, {events}-event backlog, \
         then {latency_secs} s at half that rate for latency"
    );
    println!(
        "{:>10} {:>10} {:>9} {:>22} {:>9} {:>12} {:>22} {:>9} {:>9} {:>9}",
        "partitions",
        "events/s",
        "of raw4",
        "batch p50/mean/max",
        "tx ms",
        "paced ev/s",
        "paced batch p50/mean/max",
        "p50",
        "p99",
        "max"
    );
    for r in &results {
        println!(
            "{:>10} {:>10.0} {:>8.0}% {:>22} {:>9.0} {:>12.0} {:>22} {:>9} {:>9} {:>9}",
            r.partitions,
            r.rate,
            100.0 * r.rate / raw4,
            r.bulk_sizes.to_string(),
            r.bulk_sizes.tx_ms,
            r.paced_rate,
            r.paced_sizes.to_string(),
            common::ms(r.p50),
            common::ms(r.p99),
            common::ms(r.max)
        );
    }
    println!(
        "raw limit: {raw1:.0} rows/s (1 connection), {raw4:.0} rows/s (4 connections); \
         events per case: {}",
        results.first().map_or(0, |r| r.events)
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

/// Pre-serialised events, one per customer (data types in turn), with a
/// fixed-width slot for the event id.
struct Templates {
    items: Vec<(Vec<u8>, Vec<u8>, usize)>,
}

const SLOT: &str = "##########";

impl Templates {
    fn new(customers: &[Customer]) -> Templates {
        let items = customers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let e = generate::event(
                    c,
                    DataType::ALL[i % 3],
                    &format!("e2e-{SLOT}"),
                    generate::governed_at(10_000),
                    false,
                );
                let bytes = serde_json::to_vec(&e).unwrap();
                let at = bytes
                    .windows(SLOT.len())
                    .position(|w| w == SLOT.as_bytes())
                    .unwrap();
                (c.region.as_bytes().to_vec(), bytes, at)
            })
            .collect();
        Templates { items }
    }

    /// Message `n`: customer `n % customers`, event id `e2e-<n>`.
    fn message(&self, n: usize) -> (&[u8], Vec<u8>) {
        let (key, bytes, at) = &self.items[n % self.items.len()];
        let mut v = bytes.clone();
        v[*at..*at + SLOT.len()].copy_from_slice(format!("{n:010}").as_bytes());
        (key, v)
    }
}

#[derive(Clone)]
struct Deliveries(Arc<AtomicU64>);

impl rdkafka::ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            eprintln!("delivery failed: {e}");
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn producer(linger_ms: u32) -> (BaseProducer<Deliveries>, Arc<AtomicU64>) {
    let failed = Arc::new(AtomicU64::new(0));
    let p = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "900000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "524288")
        .create_with_context(Deliveries(failed.clone()))
        .unwrap();
    (p, failed)
}

/// Sends message `n` to partition `n % partitions` (customer `n` always
/// lands on the same partition, so its events stay in order); returns the
/// send time.
fn send(
    p: &BaseProducer<Deliveries>,
    topic: &str,
    t: &Templates,
    n: usize,
    partitions: usize,
) -> i64 {
    let (key, value) = t.message(n);
    let customer = n % t.items.len();
    let at = now_ms();
    let mut rec = BaseRecord::to(topic)
        .key(key)
        .payload(&value)
        .partition((customer % partitions) as i32)
        .timestamp(at);
    loop {
        match p.send(rec) {
            Ok(()) => return at,
            Err((_, back)) => {
                rec = back;
                p.poll(Duration::from_millis(5));
            }
        }
    }
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
    committed: DateTime<Utc>,
}

/// Batches committed since `after`, in start order.
async fn batches(pool: &sqlx::PgPool, after: DateTime<Utc>) -> Vec<Batch> {
    sqlx::query(
        "SELECT records, duration_ms, started_at + duration_ms * interval '1 millisecond' \
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
        committed: r.get(2),
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

async fn case(
    partitions: usize,
    events: usize,
    latency_secs: usize,
    customers: &[Customer],
    t: &Templates,
) -> Measured {
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
    let topic = cfg.kafka.source_topic.clone();
    govsync::kafka::ensure_topics(
        &govsync::kafka::tool_config(&cfg.kafka),
        &[
            (topic.as_str(), partitions as i32),
            (cfg.kafka.review_topic.as_str(), 1),
            (cfg.kafka.dlq_topic.as_str(), 1),
        ],
        1,
    )
    .await
    .expect("Kafka reachable (scripts/services up)");

    let shutdown = CancellationToken::new();
    let progress = Arc::new(govsync::pipeline::Progress::default());
    let pipeline = tokio::spawn(govsync::pipeline::run(
        cfg.clone(),
        db.clone(),
        shutdown.clone(),
        progress.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.assigned.load(Ordering::Relaxed) < partitions {
        assert!(Instant::now() < deadline, "partitions not assigned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Throughput: a backlog published as fast as the broker takes it.
    let started_at = Utc::now();
    let started = Instant::now();
    let (p, failed) = producer(20);
    let topic2 = topic.clone();
    let p = tokio::task::block_in_place(|| {
        for n in 0..events {
            send(&p, &topic2, t, n, partitions);
            if n % 5000 == 0 {
                p.poll(Duration::ZERO);
            }
        }
        p.flush(Duration::from_secs(60)).unwrap();
        p
    });
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    wait_applied(&pool, events as i64, Duration::from_secs(600)).await;
    let bulk = batches(&pool, started_at).await;
    let last_commit = bulk.iter().map(|b| b.committed).max().unwrap();
    let secs = ((last_commit - started_at).num_microseconds().unwrap() as f64 / 1e6)
        .max(started.elapsed().as_secs_f64() - 0.05);
    let rate = events as f64 / secs;
    let bulk_sizes = sizes(&bulk);

    // Latency: half that rate, paced every 10 ms.
    let target = (rate / 2.0).max(100.0);
    let paced_from = Utc::now();
    let total = (target * latency_secs as f64) as usize;
    let mut sent_at: HashMap<usize, i64> = HashMap::with_capacity(total);
    let begin = Instant::now();
    let mut next = events;
    let end = events + total;
    while next < end {
        let due = events + (begin.elapsed().as_secs_f64() * target) as usize;
        while next < due.min(end) {
            sent_at.insert(next, send(&p, &topic, t, next, partitions));
            next += 1;
        }
        p.poll(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::block_in_place(|| p.flush(Duration::from_secs(60)).unwrap());
    let paced_secs = begin.elapsed().as_secs_f64();
    wait_applied(&pool, end as i64, Duration::from_secs(600)).await;
    let paced = batches(&pool, paced_from).await;
    let paced_sizes = sizes(&paced);
    let rows = sqlx::query(
        "SELECT c.event_id, b.started_at + b.duration_ms * interval '1 millisecond' \
         FROM govsync_change_log c JOIN govsync_batch b ON b.batch_id = c.batch_id \
         WHERE b.started_at >= $1",
    )
    .bind(paced_from)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut lat: Vec<Duration> = rows
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
    lat.sort();
    assert!(
        lat.len() >= total * 9 / 10,
        "latencies for most paced events: {} of {total}",
        lat.len()
    );

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), pipeline).await;
    db.close().await;
    pool.close().await;
    delete_topics(&cfg.kafka).await;
    common::drop_schema(&schema).await;
    Measured {
        partitions,
        events,
        rate,
        bulk_sizes,
        paced_rate: total as f64 / paced_secs,
        paced_sizes,
        p50: common::percentile(&lat, 50.0),
        p99: common::percentile(&lat, 99.0),
        max: lat.last().copied().unwrap_or_default(),
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
