//! Rows/s of the full batch protocol against local PostgreSQL, next to the
//! raw limit of the bare set-based UPDATE measured in the same run.
//!
//! `cargo bench --bench sink_throughput` (env: BENCH_ROWS table size,
//! BENCH_BATCHES batches per case, BENCH_BATCH batch size).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use govsync::demo::generate;
use govsync::sink::Database;

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
    common::main_with(run());
}

async fn run() {
    let table_rows = common::env_usize("BENCH_ROWS", 200_000);
    let batches = common::env_usize("BENCH_BATCHES", 40);
    let batch = common::env_usize("BENCH_BATCH", 1000);
    let (schema, pool, db) = fresh_sink("sink", 8).await;

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
        // Each case starts from vacuumed tables: the dead row versions the
        // cases before it left would otherwise be vacuumed during it, and
        // counted in its CPU.
        // Raw limit: the bare set-based UPDATE of the same columns.
        let groups = split(&customers, &mut next_customer, batches * batch, connections);
        settle(&pool).await;
        cases.push(bare_update(&pool, groups, batch, connections).await);
        // The writes every result needs, as bare statements.
        let groups = split(&customers, &mut next_customer, batches * batch, connections);
        settle(&pool).await;
        cases.push(floor_writes(&pool, groups, batch, connections).await);
        // Full protocol.
        let groups = split(&customers, &mut next_customer, batches * batch, connections);
        settle(&pool).await;
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
        let case = |prefix: &str| {
            cases
                .iter()
                .find(|c| c.connections == conns && c.name.starts_with(prefix))
                .unwrap()
        };
        let (bare, floor, full) = (case("bare"), case("floor"), case("full"));
        println!(
            "ratio full/bare with {conns} connection(s): {:.2} ({:.0} of {:.0} rows/s); \
             floor/bare {:.2}, full/floor {:.2}",
            full.rate() / bare.rate(),
            full.rate(),
            bare.rate(),
            floor.rate() / bare.rate(),
            full.rate() / floor.rate()
        );
    }
    println!(
        "(floor: the row update, the change-log insert with both images and the row-state \
         upsert of every result, one bare statement a batch: no lock, read, dedupe, plan, \
         verification, ledger or watermark)"
    );
    let history = common::env_usize("BENCH_HISTORY", 5_000_000);
    if history > 0 {
        history_cases(&customers, batches, batch, history).await;
    }
    println!(
        "peak RSS of the benchmark process: {:.0} MiB",
        common::peak_rss_mib()
    );
    db.close().await;
    pool.close().await;
    common::drop_schema(&schema).await;
}

/// A fresh schema with govsync's tables and `customer_profile`: a pool
/// for the benchmark's own statements and the sink on `connections`.
async fn fresh_sink(name: &str, connections: u32) -> (String, sqlx::PgPool, Arc<dyn Database>) {
    let (schema, pool) = common::fresh_schema(name, connections).await;
    let mut raw = govsync::config::RawConfig::default();
    raw.database.url = common::pg_url();
    raw.database.schema = schema.clone();
    raw.database.pool_size = connections;
    let cfg = govsync::config::check(raw).unwrap();
    let db: Arc<dyn Database> = govsync::sink::connect(&cfg.database).await.unwrap();
    db.migrate(true).await.unwrap();
    (schema, pool, db)
}

/// The full protocol on one connection against two fresh schemas of the
/// same seeded table, one whose change log holds `history` rows and one
/// whose change log starts empty, in alternating rounds, so that the
/// machine's changing speed (other work on the same two cores) falls on
/// both alike.
async fn history_cases(
    customers: &[generate::Customer],
    batches: usize,
    batch: usize,
    history: usize,
) {
    const ROUNDS: usize = 4;
    let mut sides = Vec::new();
    for name in ["sinkempty", "sinkhist"] {
        let (schema, pool, db) = fresh_sink(name, 2).await;
        generate::seed_postgres(&pool, customers).await.unwrap();
        if name == "sinkhist" {
            println!("filling a second schema's change log with {history} rows of history ...");
            fill_history(&pool, history).await;
        }
        // Vacuumed before measuring: otherwise the history side pays for
        // autovacuum's first pass over the freshly inserted rows, on the
        // same two cores, which a change log that grew over days has long
        // had.
        settle(&pool).await;
        sides.push((schema, pool, db));
    }
    // Rows applied and the time it took, per side.
    let mut totals = [(0usize, Duration::ZERO); 2];
    let per_round = (batches / ROUNDS).max(1) * batch;
    let mut next = 0usize;
    for round in 0..ROUNDS {
        let groups = split(customers, &mut next, per_round, 1);
        let prepared = common::prepare_batches(&groups, batch, 100 + round as i32);
        // The side that runs first alternates too.
        for k in 0..2 {
            let side = (round + k) % 2;
            let run = common::run_protocol(sides[side].2.clone(), prepared.clone()).await;
            totals[side].0 += run.rows;
            totals[side].1 += run.elapsed;
        }
    }
    let rate = |side: usize| totals[side].0 as f64 / totals[side].1.as_secs_f64();
    println!(
        "full protocol, 1 connection, {ROUNDS} alternating rounds of {per_round} rows: \
         empty change log {:.0} rows/s, change log holding {history} rows {:.0} rows/s",
        rate(0),
        rate(1)
    );
    println!(
        "with {history} rows of history the full protocol runs at {:.2} of its rate without",
        rate(1) / rate(0)
    );
    for (schema, pool, db) in sides {
        db.close().await;
        pool.close().await;
        common::drop_schema(&schema).await;
    }
}

/// Vacuums and analyzes the tables a batch touches.
async fn settle(pool: &sqlx::PgPool) {
    sqlx::query(
        "VACUUM (ANALYZE) customer_profile, govsync_row_state, govsync_change_log, govsync_batch, \
         govsync_watermark, govsync_outbox",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// `n` change-log rows as 20 days of running leave them: governed and
/// logged over the past 20 days, in the daily partitions those days had
/// (created here as the processor created them then), and a row state for
/// every customer they touched.
async fn fill_history(pool: &sqlx::PgPool, n: usize) {
    for day in 1..=20 {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DO $$ DECLARE d date := (now() AT TIME ZONE 'UTC')::date - {day}; BEGIN \
             EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF govsync_change_log \
             FOR VALUES FROM (%L) TO (%L)', 'govsync_change_log_' || to_char(d, 'YYYYMMDD'), \
             d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC'); END $$"
        )))
        .execute(pool)
        .await
        .unwrap();
    }
    for start in (0..n).step_by(500_000) {
        let end = (start + 500_000).min(n);
        sqlx::query(
            "INSERT INTO govsync_change_log (batch_id, event_id, customer_id, data_type, operation, outcome, \
             governed_at, before_image, after_image, source_partition, source_offset, logged_at) \
             SELECT 'history:' || (g / 1000), 'history-' || g, 'CUST_H' || (g % 200000), 'address', 'update', \
             'applied', t, '{\"address\":\"江苏省南京市玄武区中山路123\"}', \
             '{\"address\":\"江苏省南京市玄武区中山路123号\"}', 0, g, t \
             FROM generate_series($1::int8, $2::int8) AS g, \
             LATERAL (SELECT now() - interval '20 days' + (g::float8 / $3) * interval '20 days' AS t) AS x",
        )
        .bind(start as i64)
        .bind(end as i64 - 1)
        .bind(n as f64)
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO govsync_row_state (customer_id, address_governed_at) \
         SELECT 'CUST_H' || g, now() - interval '1 day' FROM generate_series(0, 199999) AS g \
         ON CONFLICT DO NOTHING",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE govsync_change_log")
        .execute(pool)
        .await
        .unwrap();
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

/// One batch of [`floor_writes`]: customers, event ids, images.
struct FloorBatch {
    customers: Vec<generate::Customer>,
    events: Vec<String>,
    before: Vec<String>,
    after: Vec<String>,
}

/// The writes the guarantees need for every result, and nothing else: the
/// row update (the protocol's columns), the change-log entry with before
/// and after images as the protocol writes them, the row-state upsert; one
/// statement a batch, in its own transaction.
async fn floor_writes(
    pool: &sqlx::PgPool,
    groups: Vec<Vec<generate::Customer>>,
    batch: usize,
    connections: usize,
) -> Case {
    // The images and event ids, built before the clock starts.
    let prepared: Vec<Vec<FloorBatch>> =
        groups
            .iter()
            .enumerate()
            .map(|(w, g)| {
                g.chunks(batch)
                    .enumerate()
                    .map(|(b, chunk)| {
                        let image = |c: &generate::Customer, addr: &str| {
                            serde_json::json!({
                                "address": addr, "geo_lat": c.lat, "geo_lon": c.lon,
                                "geo_accuracy": "rooftop", "quality_score": 0.9, "validation_status": "valid",
                                "last_governance_time": "2026-12-02T10:00:00.000000Z",
                            })
                            .to_string()
                        };
                        FloorBatch {
                            customers: chunk.to_vec(),
                            events: chunk
                                .iter()
                                .enumerate()
                                .map(|(i, _)| format!("floor-{connections}-{w}-{b}-{i}"))
                                .collect(),
                            before: chunk.iter().map(|c| image(c, &c.raw_address)).collect(),
                            after: chunk.iter().map(|c| image(c, &c.std_address)).collect(),
                        }
                    })
                    .collect()
            })
            .collect();
    let started = Instant::now();
    let cpu = common::Cpu::now();
    let mut tasks = Vec::new();
    for batches in prepared {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut rows = 0;
            for FloorBatch {
                customers: chunk,
                events,
                before,
                after,
            } in &batches
            {
                let t = Instant::now();
                sqlx::query(
                    "WITH u AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::float8[], $4::float8[], \
                     $5::text[], $6::text[], $7::text[]) AS u(id, address, lat, lon, ev, before, after)), \
                     upd AS (UPDATE customer_profile AS c SET address = u.address, geo_lat = u.lat, \
                     geo_lon = u.lon, geo_accuracy = 'rooftop', quality_score = 0.9, \
                     validation_status = 'valid', last_governance_time = now(), version = c.version + 1 \
                     FROM u WHERE c.customer_id = u.id), \
                     log AS (INSERT INTO govsync_change_log (batch_id, event_id, customer_id, data_type, \
                     operation, outcome, governed_at, before_image, after_image, source_partition, \
                     source_offset) SELECT 'floor', u.ev, u.id, 'address', 'update', 'applied', now(), \
                     u.before, u.after, 0, 0 FROM u), \
                     st AS (INSERT INTO govsync_row_state (customer_id, address_governed_at) \
                     SELECT u.id, now() FROM u ON CONFLICT (customer_id) DO UPDATE \
                     SET address_governed_at = EXCLUDED.address_governed_at) \
                     SELECT 1",
                )
                .bind(chunk.iter().map(|c| c.id.as_str()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|c| c.std_address.as_str()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|c| c.lat).collect::<Vec<_>>())
                .bind(chunk.iter().map(|c| c.lon).collect::<Vec<_>>())
                .bind(events)
                .bind(before)
                .bind(after)
                .execute(&pool)
                .await
                .unwrap();
                lat.push(t.elapsed());
                rows += chunk.len();
            }
            (rows, lat)
        }));
    }
    collect(
        "floor: update + change log + row state",
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
    let prepared = common::prepare_batches(&groups, batch, (connections * 10) as i32);
    let run = common::run_protocol(db, prepared).await;
    let n = run.batches.max(1) as u32;
    let in_steps: Duration = run.steps.iter().map(|(_, d)| *d).sum();
    let mut line: Vec<String> = run
        .steps
        .iter()
        .map(|(name, d)| format!("{name} {}", common::ms(*d / n)))
        .collect();
    line.push(format!(
        "planning and the rest {}",
        common::ms(run.total.saturating_sub(in_steps) / n)
    ));
    println!(
        "  per batch ({}): {}",
        common::ms(run.total / n),
        line.join(", ")
    );
    let case = Case {
        name: "full protocol (lock, log, write, verify)",
        connections,
        rows: run.rows,
        elapsed: run.elapsed,
        latencies: run.latencies,
        cpu: run.cpu,
    };
    println!(
        "{} with {connections} connection(s): {:.0} rows/s",
        case.name,
        case.rate()
    );
    case
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
