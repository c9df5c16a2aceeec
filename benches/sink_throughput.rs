//! Rows/s of the full batch protocol against local PostgreSQL, next to the
//! raw limit of the bare set-based UPDATE measured in the same run.
//!
//! `cargo bench --bench sink_throughput` (env: BENCH_ROWS table size,
//! BENCH_BATCHES batches per case, BENCH_BATCH batch size).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use govsync::demo::generate;
use govsync::event::ConflictPolicy;
use govsync::event::{DataType, RuleSet};
use govsync::message::RawMessage;
use govsync::sink::protocol::{self, ApplyOptions};
use govsync::sink::{Database, PartitionKey, SinkBatch, SinkRecord};

struct Case {
    name: &'static str,
    connections: usize,
    rows: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// CPU per 1000 rows (PostgreSQL + this process).
    cpu: String,
}

impl Case {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

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

async fn run() {
    let table_rows = common::env_usize("BENCH_ROWS", 200_000);
    let batches = common::env_usize("BENCH_BATCHES", 40);
    let batch = common::env_usize("BENCH_BATCH", 1000);
    let (schema, pool) = common::fresh_schema("sink", 8).await;
    let mut raw = govsync::config::RawConfig::default();
    raw.database.url = common::pg_url();
    raw.database.schema = schema.clone();
    raw.database.pool_size = 8;
    let cfg = govsync::config::check(raw).unwrap();
    let db: Arc<dyn Database> = govsync::sink::connect(&cfg.database).await.unwrap();
    db.migrate(true).await.unwrap();

    println!("seeding {table_rows} customer rows ...");
    let customers = generate::customers(table_rows, 4, 1);
    generate::seed_postgres(&pool, &customers).await.unwrap();
    sqlx::query("ANALYZE customer_profile")
        .execute(&pool)
        .await
        .unwrap();

    let mut cases = Vec::new();
    let mut next_customer = 0usize;
    for connections in [1usize, 4] {
        // Raw limit: the bare set-based UPDATE of the same columns.
        let groups = split(&customers, &mut next_customer, batches * batch, connections);
        cases.push(bare_update(&pool, groups, batch, connections).await);
        // Full protocol.
        let groups = split(&customers, &mut next_customer, batches * batch, connections);
        cases.push(full_protocol(db.clone(), groups, batch, connections).await);
    }

    println!();
    println!("PostgreSQL, batches of {batch}, {table_rows}-row table, synchronous_commit on");
    println!(
        "{:<42} {:>5} {:>9} {:>11} {:>10} {:>10}  cpu",
        "case", "conns", "rows", "rows/s", "p50 batch", "p99 batch"
    );
    for c in &mut cases {
        c.latencies.sort();
        println!(
            "{:<42} {:>5} {:>9} {:>11.0} {:>10} {:>10}  {}",
            c.name,
            c.connections,
            c.rows,
            c.rate(),
            common::ms(common::percentile(&c.latencies, 50.0)),
            common::ms(common::percentile(&c.latencies, 99.0)),
            c.cpu
        );
    }
    println!(
        "(CPU counts every PostgreSQL process, so other work on the database in the \
         same seconds adds to it)"
    );
    for conns in [1, 4] {
        let bare = cases
            .iter()
            .find(|c| c.connections == conns && c.name.starts_with("bare"))
            .unwrap();
        let full = cases
            .iter()
            .find(|c| c.connections == conns && c.name.starts_with("full"))
            .unwrap();
        println!(
            "ratio full/bare with {conns} connection(s): {:.2} ({:.0} of {:.0} rows/s)",
            full.rate() / bare.rate(),
            full.rate(),
            bare.rate()
        );
    }
    println!(
        "peak RSS of the benchmark process: {:.0} MiB",
        common::peak_rss_mib()
    );
    db.close().await;
    pool.close().await;
    common::drop_schema(&schema).await;
}

/// The next `n` customers, split into `k` disjoint groups (one per worker).
fn split(
    customers: &[generate::Customer],
    next: &mut usize,
    n: usize,
    k: usize,
) -> Vec<Vec<generate::Customer>> {
    let take: Vec<generate::Customer> = customers
        .iter()
        .cycle()
        .skip(*next)
        .take(n)
        .cloned()
        .collect();
    *next += n;
    let per = n.div_ceil(k);
    take.chunks(per).map(|c| c.to_vec()).collect()
}

async fn bare_update(
    pool: &sqlx::PgPool,
    groups: Vec<Vec<generate::Customer>>,
    batch: usize,
    connections: usize,
) -> Case {
    let started = Instant::now();
    let cpu = common::Cpu::now();
    let mut tasks = Vec::new();
    for g in groups {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for chunk in g.chunks(batch) {
                let t = Instant::now();
                common::bare_update(&pool, chunk).await;
                lat.push(t.elapsed());
            }
            (g.len(), lat)
        }));
    }
    collect(
        "bare UPDATE … FROM UNNEST",
        connections,
        started,
        cpu,
        tasks,
    )
    .await
}

async fn full_protocol(
    db: Arc<dyn Database>,
    groups: Vec<Vec<generate::Customer>>,
    batch: usize,
    connections: usize,
) -> Case {
    let rules = RuleSet::default();
    let opts = ApplyOptions {
        review_topic: "bench.review".into(),
        dlq_topic: "bench.dlq".into(),
        policies: DataType::ALL
            .into_iter()
            .map(|d| (d, ConflictPolicy::Review))
            .collect(),
        max_poison_fraction: 0.1,
    };
    // Build every batch before the clock starts: decoding is not the database.
    let mut prepared = Vec::new();
    for (w, g) in groups.iter().enumerate() {
        let partition = (connections * 10 + w) as i32;
        let mut batches = Vec::new();
        let mut offset = 0i64;
        for chunk in g.chunks(batch) {
            let records: Vec<SinkRecord> = chunk
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let e = generate::event(
                        c,
                        DataType::Address,
                        &format!("b{partition}-{offset}-{i}"),
                        generate::governed_at(i),
                        false,
                    );
                    let value = serde_json::to_vec(&e).unwrap();
                    let checked =
                        govsync::event::decode_and_check(&value, 1 << 20, &rules).unwrap();
                    SinkRecord {
                        raw: Arc::new(RawMessage {
                            topic: "bench".into(),
                            partition,
                            offset: offset + i as i64,
                            key: None,
                            value: Some(value),
                            headers: vec![],
                            timestamp_ms: None,
                        }),
                        checked,
                    }
                })
                .collect();
            let n = records.len() as i64;
            batches.push(SinkBatch {
                batch_id: format!("bench:{partition}:{offset}"),
                key: PartitionKey {
                    group: "bench".into(),
                    topic: "bench".into(),
                    partition,
                },
                expected_watermark: offset,
                first_offset: offset,
                last_offset: offset + n - 1,
                records,
                rejected: vec![],
                prune_outbox_upto: None,
                attempt: 1,
            });
            offset += n;
        }
        prepared.push(batches);
    }
    let started = Instant::now();
    let cpu = common::Cpu::now();
    let mut tasks = Vec::new();
    for batches in prepared {
        let db = db.clone();
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut rows = 0;
            let mut steps: Vec<(&'static str, Duration)> = Vec::new();
            let mut total = Duration::ZERO;
            for b in batches {
                let t = Instant::now();
                let r = protocol::apply(db.as_ref(), &b, &opts).await.unwrap();
                assert_eq!(
                    r.counts.get(&govsync::sink::Outcome::Applied),
                    Some(&b.records.len()),
                    "every record applied"
                );
                lat.push(t.elapsed());
                rows += b.records.len();
                total += r.timings.total;
                for (name, d) in &r.timings.steps {
                    match steps.iter_mut().find(|(n, _)| n == name) {
                        Some((_, acc)) => *acc += *d,
                        None => steps.push((name, *d)),
                    }
                }
            }
            let n = lat.len().max(1) as u32;
            let in_steps: Duration = steps.iter().map(|(_, d)| *d).sum();
            let mut line: Vec<String> = steps
                .iter()
                .map(|(name, d)| format!("{name} {}", common::ms(*d / n)))
                .collect();
            line.push(format!(
                "planning and the rest {}",
                common::ms(total.saturating_sub(in_steps) / n)
            ));
            println!(
                "  per batch ({}): {}",
                common::ms(total / n),
                line.join(", ")
            );
            (rows, lat)
        }));
    }
    collect(
        "full protocol (lock, log, write, verify)",
        connections,
        started,
        cpu,
        tasks,
    )
    .await
}

async fn collect(
    name: &'static str,
    connections: usize,
    started: Instant,
    cpu: common::Cpu,
    tasks: Vec<tokio::task::JoinHandle<(usize, Vec<Duration>)>>,
) -> Case {
    let mut rows = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (n, l) = t.await.unwrap();
        rows += n;
        latencies.extend(l);
    }
    let case = Case {
        name,
        connections,
        rows,
        elapsed: started.elapsed(),
        latencies,
        cpu: common::Cpu::now().per_thousand(cpu, rows),
    };
    println!(
        "{name} with {connections} connection(s): {:.0} rows/s",
        case.rate()
    );
    case
}
