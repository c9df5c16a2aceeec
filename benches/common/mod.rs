//! Shared by the benchmark programs: database setup, percentiles, RSS, CPU,
//! the batch protocol driven directly, and publishing (`publish`).

#![allow(dead_code)]

pub mod publish;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;

pub fn pg_url() -> String {
    std::env::var("GOVSYNC_BENCH_PG_URL")
        .or_else(|_| std::env::var("GOVSYNC_TEST_PG_URL"))
        .unwrap_or_else(|_| "postgres://govsync:govsync@127.0.0.1:5432/govsync".into())
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `cargo test --all-targets` runs bench programs too; only `cargo bench`
/// passes `--bench`. Returns false (and says so) when not benchmarking.
pub fn benchmarking() -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return true;
    }
    println!(
        "benchmark program: run it with `cargo bench --bench {}`",
        env!("CARGO_CRATE_NAME")
    );
    false
}

/// The body of a bench program's `main`: runs `run` on a multi-threaded
/// runtime, on this thread (so child processes started by it have this
/// thread as their parent), when `cargo bench` runs the program.
pub fn main_with<F: std::future::Future>(run: F) {
    if !benchmarking() {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run);
}

/// A fresh schema; returns a pool whose search_path is it.
pub async fn fresh_schema(name: &str, max_connections: u32) -> (String, PgPool) {
    let schema = format!("bench_{name}_{}", std::process::id());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg_url())
        .await
        .expect("PostgreSQL reachable (scripts/services up)");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let opts = PgConnectOptions::from_str(&pg_url())
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let port = opts.get_port();
    // The raw limit is measured on connections set up like govsync's
    // (TCP_NODELAY, see govsync::sink::nodelay).
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .after_connect(move |_, _| {
            Box::pin(async move {
                govsync::sink::nodelay::set_on_sockets_to_port(port).map_err(sqlx::Error::Io)?;
                Ok(())
            })
        })
        .connect_with(opts)
        .await
        .unwrap();
    (schema, pool)
}

pub async fn drop_schema(schema: &str) {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&admin)
    .await
    .unwrap();
}

/// p-th percentile (0–100) of durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Peak resident set size of this process, in MiB.
pub fn peak_rss_mib() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
    }
    usage.ru_maxrss as f64 / 1024.0
}

/// CPU time used so far (user + system) by PostgreSQL's processes and by
/// this one. Unlike wall time it is hardly moved by other work on the
/// machine, so the CPU each row costs compares well across runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub postgres: Duration,
    pub this: Duration,
}

impl Cpu {
    pub fn now() -> Cpu {
        let tick = Duration::from_secs(1) / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u32);
        let of = |stat: &str| -> Option<Duration> {
            // Fields after the command (which may hold spaces) in parentheses.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            let ticks: u32 = f.get(11)?.parse::<u32>().ok()? + f.get(12)?.parse::<u32>().ok()?;
            Some(tick * ticks)
        };
        let mut cpu = Cpu::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            cpu.this = of(&stat).unwrap_or_default();
        }
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let path = entry.path();
            let is_pg = std::fs::read_to_string(path.join("comm"))
                .map(|c| c.trim() == "postgres")
                .unwrap_or(false);
            if is_pg && let Ok(stat) = std::fs::read_to_string(path.join("stat")) {
                cpu.postgres += of(&stat).unwrap_or_default();
            }
        }
        cpu
    }

    /// CPU since `earlier`, per 1000 rows: "PostgreSQL x ms + this y ms".
    pub fn per_thousand(self, earlier: Cpu, rows: usize) -> String {
        let k = (rows as f64 / 1000.0).max(1e-9);
        let pg = self.postgres.saturating_sub(earlier.postgres).as_secs_f64() * 1000.0 / k;
        let me = self.this.saturating_sub(earlier.this).as_secs_f64() * 1000.0 / k;
        format!(
            "{:.1} ms CPU per 1000 rows (PostgreSQL {pg:.1} + client {me:.1})",
            pg + me
        )
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The raw limit's statement: one set-based UPDATE of a chunk of rows (the
/// standardised address, coordinates and a score), nothing else.
pub async fn bare_update(pool: &PgPool, chunk: &[govsync::demo::generate::Customer]) {
    sqlx::query(
        "UPDATE customer_profile AS c SET address = u.address, geo_lat = u.lat, geo_lon = u.lon, \
         quality_score = u.score, last_governance_time = now(), version = c.version + 1 \
         FROM UNNEST($1::text[], $2::text[], $3::float8[], $4::float8[], $5::float8[]) AS u(id, address, lat, lon, score) \
         WHERE c.customer_id = u.id",
    )
    .bind(chunk.iter().map(|c| c.id.as_str()).collect::<Vec<_>>())
    .bind(chunk.iter().map(|c| c.std_address.as_str()).collect::<Vec<_>>())
    .bind(chunk.iter().map(|c| c.lat).collect::<Vec<_>>())
    .bind(chunk.iter().map(|c| c.lon).collect::<Vec<_>>())
    .bind(chunk.iter().map(|_| 0.9).collect::<Vec<f64>>())
    .execute(pool)
    .await
    .unwrap();
}

/// Batches of address updates for the full protocol, one list per worker
/// (partition `base + worker`), built before any clock starts: decoding is
/// not the database. Governed now, as production results are.
pub fn prepare_batches(
    groups: &[Vec<govsync::demo::generate::Customer>],
    batch: usize,
    base: i32,
) -> Vec<Vec<govsync::sink::SinkBatch>> {
    use govsync::demo::generate;
    use govsync::event::DataType;
    use govsync::sink::{PartitionKey, SinkBatch, SinkRecord};
    let rules = govsync::event::RuleSet::default();
    let now = chrono::Utc::now().with_timezone(&generate::local());
    let mut prepared = Vec::new();
    for (w, g) in groups.iter().enumerate() {
        let partition = base + w as i32;
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
                        now + chrono::Duration::microseconds(i as i64),
                        false,
                    );
                    let value = serde_json::to_vec(&e).unwrap();
                    let checked =
                        govsync::event::decode_and_check(&value, 1 << 20, &rules).unwrap();
                    SinkRecord {
                        raw: std::sync::Arc::new(govsync::message::RawMessage {
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
    prepared
}

/// What [`run_protocol`] measured.
#[derive(Default)]
pub struct ProtocolRun {
    pub rows: usize,
    pub batches: usize,
    pub elapsed: Duration,
    /// Per batch, as the caller saw it.
    pub latencies: Vec<Duration>,
    /// The transaction's round trips, summed over all batches.
    pub steps: Vec<(&'static str, Duration)>,
    /// The transactions' own total, summed.
    pub total: Duration,
    /// CPU per 1000 rows, PostgreSQL and this process.
    pub cpu: String,
}

impl ProtocolRun {
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// Applies the prepared batches, one worker (connection) per list, and
/// measures it. Every record must be applied.
pub async fn run_protocol(
    db: std::sync::Arc<dyn govsync::sink::Database>,
    prepared: Vec<Vec<govsync::sink::SinkBatch>>,
) -> ProtocolRun {
    use govsync::event::{ConflictPolicy, DataType};
    use govsync::sink::protocol::{self, ApplyOptions};
    let opts = ApplyOptions {
        review_topic: "bench.review".into(),
        dlq_topic: "bench.dlq".into(),
        policies: DataType::ALL
            .into_iter()
            .map(|d| (d, ConflictPolicy::Review))
            .collect(),
        max_poison_fraction: 0.1,
        duplicates_met: Default::default(),
    };
    let started = std::time::Instant::now();
    let cpu = Cpu::now();
    let mut tasks = Vec::new();
    for batches in prepared {
        let db = db.clone();
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let mut run = ProtocolRun::default();
            for b in batches {
                let t = std::time::Instant::now();
                let r = protocol::apply(db.as_ref(), &b, &opts).await.unwrap();
                assert_eq!(
                    r.counts.get(&govsync::sink::Outcome::Applied),
                    Some(&b.records.len()),
                    "every record applied"
                );
                run.latencies.push(t.elapsed());
                run.rows += b.records.len();
                run.batches += 1;
                run.total += r.timings.total;
                for (name, d) in &r.timings.steps {
                    match run.steps.iter_mut().find(|(n, _)| n == name) {
                        Some((_, acc)) => *acc += *d,
                        None => run.steps.push((name, *d)),
                    }
                }
            }
            run
        }));
    }
    let mut all = ProtocolRun::default();
    for t in tasks {
        let r = t.await.unwrap();
        all.rows += r.rows;
        all.batches += r.batches;
        all.latencies.extend(r.latencies);
        all.total += r.total;
        for (name, d) in r.steps {
            match all.steps.iter_mut().find(|(n, _)| *n == name) {
                Some((_, acc)) => *acc += d,
                None => all.steps.push((name, d)),
            }
        }
    }
    all.elapsed = started.elapsed();
    all.cpu = Cpu::now().per_thousand(cpu, all.rows);
    all
}
