//! `govsync demo`: the whole job on embedded defaults.
//!
//! An in-process Kafka broker (librdkafka's mock cluster, speaking the real
//! protocol on a loopback port) and a SQLite file stand in for the real
//! places; everything else is the real code: the same pipeline as `govsync
//! run`, the same batch protocol, the same review and dead-letter routing.
//!
//! The mock broker keeps only about 5 MiB per partition and silently drops
//! older messages, and does not implement transactional offset commits
//! faithfully (NOTES.md), so the demo publishes at the pace the processor
//! consumes, uses `idempotent` delivery (the SQLite watermark keeps the data
//! exactly once), and checks that no message was dropped before it reports.

pub mod generate;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;

use self::generate::Customer;
use crate::config::{self, Config, RawConfig};
use crate::event::DataType;
use crate::pipeline::{self, Progress};
use crate::sink::Outcome;
use crate::telemetry::{self, mask};

/// What the demo is asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub events: usize,
    pub db: PathBuf,
    pub seed: u64,
    pub metrics: Option<std::net::SocketAddr>,
    /// Draw a progress bar (a terminal) or print plain lines.
    pub progress_bar: bool,
}

/// What the demo did, for tests and the summary.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    pub published: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub review_messages: u64,
    pub dlq_messages: u64,
    pub elapsed: Duration,
}

const SOURCE: &str = "governance.results";
const REVIEW: &str = "governance.review";
const DLQ: &str = "governance.results.dlq";
const PARTITIONS: i32 = 4;
/// Messages published but not yet consumed. The mock broker keeps only the
/// newest ~5 MiB of each partition: at ~800 bytes a message this keeps the
/// unread part of a partition under 2.5 MiB even if every unread message
/// sits in one partition.
const MAX_AHEAD: u64 = 3_000;

/// Kinds of generated messages, and their share per thousand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Update,
    Insert,
    BadCheckDigit,
    Contradiction,
    Malformed,
    RuleViolation,
    Duplicate,
    Stale,
    Conflict,
}

const MIX: [(Kind, u32); 9] = [
    (Kind::Update, 820),
    (Kind::Insert, 30),
    (Kind::BadCheckDigit, 30),
    (Kind::Contradiction, 20),
    (Kind::Malformed, 20),
    (Kind::RuleViolation, 20),
    (Kind::Duplicate, 30),
    (Kind::Stale, 15),
    (Kind::Conflict, 15),
];

pub async fn run(opts: DemoOptions, out: &mut impl Write) -> anyhow::Result<DemoSummary> {
    let started = Instant::now();
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", opts.db.display()));
        if p.exists() {
            std::fs::remove_file(&p)
                .with_context(|| format!("removing the previous demo database {}", p.display()))?;
        }
    }
    // The embedded broker. Not Send: it stays on this task until the end.
    let mock = MockCluster::new(1).context("starting the embedded Kafka broker")?;
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic(SOURCE, PARTITIONS, 1)?;
    mock.create_topic(REVIEW, 1, 1)?;
    mock.create_topic(DLQ, 1, 1)?;

    let cfg_path = opts.db.with_extension("toml");
    let cfg = demo_config(&bootstrap, &opts, &cfg_path)?;
    writeln!(
        out,
        "govsync demo: embedded Kafka broker on {bootstrap}, SQLite database {}",
        opts.db.display()
    )?;

    let db = crate::sink::connect(&cfg.database)
        .await
        .context("opening the demo database")?;
    db.migrate(true).await?;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", opts.db.display())).await?;
    let customers = generate::customers((opts.events / 5).clamp(1_000, 50_000), 4, opts.seed);
    let conflicted: usize = customers.len() / 50;
    seed_rows(&pool, &customers, conflicted).await?;
    writeln!(
        out,
        "seeded {} customer rows (the seed document's 6 plus generated ones)",
        customers.len() + 6
    )?;

    let shutdown = CancellationToken::new();
    let progress = Arc::new(Progress::default());
    if let Some(addr) = cfg.metrics_listen {
        let handle = telemetry::metrics::install();
        let health = Arc::new(telemetry::http::Health {
            progress: progress.clone(),
            db: db.clone(),
        });
        match telemetry::http::serve(addr, handle, health, shutdown.clone()).await {
            Ok(bound) => writeln!(out, "metrics while it runs: http://{bound}/metrics")?,
            Err(e) => writeln!(
                out,
                "metrics: not served ({e}); use --metrics to pick another address"
            )?,
        }
    }
    let cfg = Arc::new(cfg);
    let processor = tokio::spawn(pipeline::run(
        cfg.clone(),
        db.clone(),
        shutdown.clone(),
        progress.clone(),
    ));

    // Publish at the pace the processor consumes.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()?;
    let total = (6 + opts.events) as u64;
    let bar = Bar::new(total, opts.progress_bar);
    let mut mixer = Mixer::new(&customers, conflicted, opts.seed);
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut published_per_partition: BTreeMap<i32, i64> = BTreeMap::new();
    let seed_events: Vec<Vec<u8>> = include_str!("../../schemas/examples/seed-events.jsonl")
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect();
    for (published, i) in (0..total as usize).enumerate() {
        let published = published as u64;
        let (key, value) = if i < seed_events.len() {
            (b"3201".to_vec(), seed_events[i].clone())
        } else {
            mixer.next(i)
        };
        while published.saturating_sub(progress.consumed.load(Ordering::Relaxed)) > MAX_AHEAD {
            bar.update(&progress);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let producer = producer.clone();
        pending.push(async move {
            producer
                .send(
                    FutureRecord::to(SOURCE).key(&key).payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
        });
        while pending.len() > 2_000 {
            use futures::StreamExt;
            if let Some(r) = pending.next().await {
                let d = r.context("publishing to the embedded broker")?;
                *published_per_partition.entry(d.partition).or_default() += 1;
            }
        }
        if i % 1000 == 0 {
            bar.update(&progress);
        }
    }
    {
        use futures::StreamExt;
        while let Some(r) = pending.next().await {
            let d = r.context("publishing to the embedded broker")?;
            *published_per_partition.entry(d.partition).or_default() += 1;
        }
    }
    // Wait for every record's outcome. No progress for a long while means the
    // embedded broker dropped messages the processor had not read yet.
    let mut last = (progress.done(), Instant::now());
    while progress.done() < total {
        if processor.is_finished() {
            break;
        }
        let done = progress.done();
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            bail!(
                "no progress for 60 s at {done} of {total} records ({} consumed): the embedded broker \
                 probably dropped unread messages; counts would be wrong",
                progress.consumed.load(Ordering::Relaxed)
            );
        }
        bar.update(&progress);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish(&progress);
    let elapsed = started.elapsed();

    // Every published message was read: the broker dropped nothing unread
    // (it may have dropped read ones: its log keeps ~5 MiB per partition).
    let base = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .clone();
    let checker: BaseConsumer = base.create()?;
    let consumed = progress.consumed.load(Ordering::Relaxed);
    let mut ends = 0;
    for p in 0..PARTITIONS {
        let (_, high) = checker.fetch_watermarks(SOURCE, p, Duration::from_secs(10))?;
        ends += high;
        let sent = published_per_partition.get(&p).copied().unwrap_or(0);
        if high != sent {
            bail!("partition {p} holds offsets up to {high} but {sent} were published");
        }
    }
    if consumed < total || ends as u64 != total {
        bail!(
            "the processor read {consumed} of {total} published messages; the embedded broker dropped some, counts would be wrong"
        );
    }
    let review = read_values(&base, REVIEW)?;
    let review_messages = review.len() as u64;
    let dlq_messages = read_values(&base, DLQ)?.len() as u64;
    // The seed records' review reasons, for the summary.
    let seed_reviews: BTreeMap<String, String> = review
        .iter()
        .filter_map(|v| serde_json::from_slice::<Value>(v).ok())
        .filter(|d| {
            d["customer_id"]
                .as_str()
                .is_some_and(|c| c.starts_with("CUST_320102_00"))
        })
        .map(|d| {
            let details: Vec<String> = d["details"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(mask::digits_in))
                .collect();
            (
                d["customer_id"].as_str().unwrap_or_default().to_string(),
                format!(
                    "{}: {}",
                    d["reason"].as_str().unwrap_or_default(),
                    details.join("; ")
                ),
            )
        })
        .collect();
    drop(checker);
    drop(producer);

    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(60), processor).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e.context("the processor failed")),
        Ok(Err(e)) => bail!("the processor panicked: {e}"),
        Err(_) => bail!("the processor did not stop within 60 s"),
    }
    drop(mock);

    let mut summary = DemoSummary {
        published: total,
        review_messages,
        dlq_messages,
        elapsed,
        ..Default::default()
    };
    for o in Outcome::ALL {
        summary
            .outcomes
            .insert(o.as_str().to_string(), progress.count(o));
    }
    print_summary(
        out,
        &summary,
        &progress,
        &pool,
        &opts,
        &cfg_path,
        &seed_reviews,
    )
    .await?;
    pool.close().await;
    db.close().await;
    Ok(summary)
}

fn demo_config(bootstrap: &str, opts: &DemoOptions, cfg_path: &Path) -> anyhow::Result<Config> {
    let mut raw = RawConfig::default();
    raw.kafka.bootstrap_servers = bootstrap.to_string();
    raw.kafka.group_id = "govsync-demo".into();
    raw.kafka.instance_id = "demo".into();
    raw.kafka.delivery = "idempotent".into();
    raw.kafka.session_timeout = "6s".into();
    raw.database.url = format!("sqlite://{}", opts.db.display());
    raw.database.pool_size = 2;
    raw.batch.max_wait = "200ms".into();
    raw.metrics.listen = opts.metrics.map(|a| a.to_string()).unwrap_or_default();
    raw.log.format = "text".into();
    raw.log.level = "warn".into();
    // A config file for the follow-up commands (batches, rollback).
    let mut file = raw.clone();
    file.kafka.bootstrap_servers = "127.0.0.1:9092".into();
    let text = format!(
        "# Written by `govsync demo` for follow-up commands, e.g.\n#   govsync batches --config {}\n\
         [kafka]\ngroup_id = \"govsync-demo\"\n\n[database]\nurl = \"{}\"\n",
        cfg_path.display(),
        file.database.url
    );
    std::fs::write(cfg_path, text).with_context(|| format!("writing {}", cfg_path.display()))?;
    Ok(config::check(raw)?)
}

/// The seed document's customers, then the generated ones. The first
/// `conflicted` generated customers were changed by customer service after
/// the engine read them (their events become conflicts).
async fn seed_rows(
    pool: &sqlx::SqlitePool,
    customers: &[Customer],
    conflicted: usize,
) -> anyhow::Result<()> {
    use crate::sink::sqlite::time_text;
    let local = generate::local();
    let t = |s: &str| crate::event::rules::parse_loose_time(s, local).map(time_text);
    let mut rows: Vec<Value> = vec![
        json!([
            "CUST_320102_001",
            "王一",
            "江苏南京玄武区中山路123",
            null,
            null,
            0.65,
            t("2024-01-10 14:30:00")
        ]),
        json!([
            "CUST_320102_002",
            "王二",
            "南京市建邺区江东中路",
            null,
            null,
            0.45,
            t("2024-01-08 09:15:00")
        ]),
        json!([
            "CUST_320102_003",
            "张三",
            "江苏省南京市玄武区北京东路1号",
            "32010219900101123X",
            null,
            0.70,
            t("2024-01-05 16:20:00")
        ]),
        json!([
            "CUST_320102_004",
            "李四",
            "江苏省南京市玄武区北京东路2号",
            "320102199001011234",
            null,
            0.30,
            t("2024-01-03 11:45:00")
        ]),
        json!([
            "CUST_320102_005",
            "王五",
            "江苏省南京市玄武区北京东路3号",
            null,
            "13812345678",
            0.80,
            t("2024-01-12 10:30:00")
        ]),
        json!([
            "CUST_320102_006",
            "赵六",
            "江苏省南京市玄武区中山路123号A座",
            null,
            null,
            0.65,
            t("2024-01-15 10:25:00")
        ]),
    ];
    let seen = t(generate::seen_last_update());
    let later = t("2024-01-15 10:25:00");
    for (i, c) in customers.iter().enumerate() {
        let (address, last_update) = if i < conflicted {
            (format!("{}A座", c.std_address), later.clone())
        } else {
            (c.raw_address.clone(), seen.clone())
        };
        rows.push(json!([
            c.id,
            c.name,
            address,
            c.id_card,
            c.phone,
            c.quality_score,
            last_update
        ]));
    }
    for chunk in rows.chunks(5_000) {
        sqlx::query(
            "INSERT INTO customer_profile (customer_id, name, address, id_card, phone, quality_score, last_update, version) \
             SELECT j.value->>0, j.value->>1, j.value->>2, j.value->>3, j.value->>4, j.value->>5, j.value->>6, 0 \
             FROM json_each(?1) AS j",
        )
        .bind(Value::Array(chunk.to_vec()).to_string())
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Generates the demo's message mix.
struct Mixer<'a> {
    customers: &'a [Customer],
    conflicted: usize,
    rng: rand::rngs::StdRng,
    /// Earlier update events: (bytes, customer index, data type, governed index).
    history: Vec<(Vec<u8>, usize, DataType, usize)>,
    inserted: usize,
}

impl<'a> Mixer<'a> {
    fn new(customers: &'a [Customer], conflicted: usize, seed: u64) -> Self {
        Mixer {
            customers,
            conflicted,
            rng: generate::rng(seed ^ 0x5eed),
            history: Vec::new(),
            inserted: 0,
        }
    }

    fn kind(&mut self) -> Kind {
        let mut roll = self.rng.random_range(0..1000u32);
        for (k, share) in MIX {
            if roll < share {
                return k;
            }
            roll -= share;
        }
        Kind::Update
    }

    /// The `i`-th message: (key, value).
    fn next(&mut self, i: usize) -> (Vec<u8>, Vec<u8>) {
        let n = self.customers.len();
        let pick = |rng: &mut rand::rngs::StdRng, lo: usize| lo + rng.random_range(0..n - lo);
        let id = format!("demo-{i:08}");
        let governed = 1_000_000 + i;
        match self.kind() {
            Kind::Update => {
                let ci = pick(&mut self.rng, self.conflicted);
                let c = &self.customers[ci];
                let dt = DataType::ALL[self.rng.random_range(0..3)];
                let e = generate::event(
                    c,
                    dt,
                    &id,
                    generate::governed_at(governed),
                    self.rng.random_bool(0.1),
                );
                let bytes = serde_json::to_vec(&e).unwrap_or_default();
                self.history.push((bytes.clone(), ci, dt, governed));
                (c.region.as_bytes().to_vec(), bytes)
            }
            Kind::Insert => {
                self.inserted += 1;
                let mut c = self.customers[self.rng.random_range(0..n)].clone();
                c.id = format!("NEW_{}_{:07}", c.county, self.inserted);
                let mut e = generate::event(
                    &c,
                    DataType::Address,
                    &id,
                    generate::governed_at(governed),
                    false,
                );
                e["sync_operation"]["operation_type"] = json!("insert");
                if let Some(o) = e["original_data"].as_object_mut() {
                    o.remove("last_update");
                }
                (
                    c.region.as_bytes().to_vec(),
                    serde_json::to_vec(&e).unwrap_or_default(),
                )
            }
            Kind::BadCheckDigit => {
                let c = &self.customers[pick(&mut self.rng, self.conflicted)];
                let e = generate::bad_check_digit_event(c, &id, generate::governed_at(governed));
                (
                    c.region.as_bytes().to_vec(),
                    serde_json::to_vec(&e).unwrap_or_default(),
                )
            }
            Kind::Contradiction => {
                let c = &self.customers[pick(&mut self.rng, self.conflicted)];
                let mut e =
                    generate::bad_check_digit_event(c, &id, generate::governed_at(governed));
                e["governance_result"] = json!({"validation_status": "valid", "format_check": "passed", "checksum_validation": "passed", "quality_score": 0.95});
                e["sync_operation"] = json!({"operation_type": "update", "target_fields": ["quality_score", "validation_status"]});
                (
                    c.region.as_bytes().to_vec(),
                    serde_json::to_vec(&e).unwrap_or_default(),
                )
            }
            Kind::Malformed => {
                let c = &self.customers[self.rng.random_range(0..n)];
                (
                    c.region.as_bytes().to_vec(),
                    format!("{{\"customer_id\": \"{}\", \"data_type\": ", c.id).into_bytes(),
                )
            }
            Kind::RuleViolation => {
                let c = &self.customers[pick(&mut self.rng, self.conflicted)];
                let mut e = generate::event(
                    c,
                    DataType::Phone,
                    &id,
                    generate::governed_at(governed),
                    false,
                );
                e["sync_operation"]["target_fields"] = json!(["phone", "address"]);
                (
                    c.region.as_bytes().to_vec(),
                    serde_json::to_vec(&e).unwrap_or_default(),
                )
            }
            Kind::Duplicate if !self.history.is_empty() => {
                let (bytes, ci, _, _) =
                    self.history[self.rng.random_range(0..self.history.len())].clone();
                (self.customers[ci].region.as_bytes().to_vec(), bytes)
            }
            Kind::Stale if !self.history.is_empty() => {
                let (_, ci, dt, g) =
                    self.history[self.rng.random_range(0..self.history.len())].clone();
                let c = &self.customers[ci];
                let e = generate::event(c, dt, &id, generate::governed_at(g - 500_000), false);
                (
                    c.region.as_bytes().to_vec(),
                    serde_json::to_vec(&e).unwrap_or_default(),
                )
            }
            Kind::Conflict if self.conflicted > 0 => {
                let c = &self.customers[self.rng.random_range(0..self.conflicted)];
                let e = generate::event(
                    c,
                    DataType::Address,
                    &id,
                    generate::governed_at(governed),
                    false,
                );
                (
                    c.region.as_bytes().to_vec(),
                    serde_json::to_vec(&e).unwrap_or_default(),
                )
            }
            _ => {
                let c = &self.customers[pick(&mut self.rng, self.conflicted)];
                let e = generate::event(
                    c,
                    DataType::Phone,
                    &id,
                    generate::governed_at(governed),
                    false,
                );
                (
                    c.region.as_bytes().to_vec(),
                    serde_json::to_vec(&e).unwrap_or_default(),
                )
            }
        }
    }
}

/// Every message value of a one-partition topic, read to its end.
fn read_values(base: &rdkafka::ClientConfig, topic: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let c: BaseConsumer = base
        .clone()
        .set("group.id", "govsync-demo-count")
        .set("enable.auto.commit", "false")
        .create()?;
    let (low, high) = c.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    if high == low {
        return Ok(vec![]);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                use rdkafka::Message;
                out.push(m.payload().unwrap_or_default().to_vec());
                if m.offset() + 1 >= high {
                    break;
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(out)
}

/// A progress bar on a terminal, plain lines otherwise.
struct Bar {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    last_line: std::cell::Cell<Instant>,
    started: Instant,
}

impl Bar {
    fn new(total: u64, fancy: bool) -> Self {
        let bar = fancy.then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} records  {per_sec}  ETA {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Bar {
            bar,
            total,
            last_line: std::cell::Cell::new(Instant::now()),
            started: Instant::now(),
        }
    }

    fn update(&self, p: &Progress) {
        let done = p.done();
        match &self.bar {
            Some(b) => b.set_position(done),
            None if self.last_line.get().elapsed() >= Duration::from_secs(2) => {
                self.last_line.set(Instant::now());
                let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
                println!(
                    "progress: {done}/{} records, {rate:.0} records/s",
                    self.total
                );
            }
            None => {}
        }
    }

    fn finish(&self, p: &Progress) {
        if let Some(b) = &self.bar {
            b.set_position(p.done());
            b.finish();
        }
    }
}

async fn print_summary(
    out: &mut impl Write,
    s: &DemoSummary,
    progress: &Progress,
    pool: &sqlx::SqlitePool,
    opts: &DemoOptions,
    cfg_path: &Path,
    seed_reviews: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let secs = s.elapsed.as_secs_f64();
    writeln!(out)?;
    writeln!(
        out,
        "== {} events in {:.1} s: {:.0} events/s end to end (publish → SQLite commit)",
        s.published,
        secs,
        s.published as f64 / secs
    )?;
    writeln!(out)?;
    // Outcomes by data type: the change log has the data type of every
    // decided record; duplicates and dead letters are counted by the processor.
    let rows =
        sqlx::query("SELECT data_type, outcome, count(*) FROM govsync_change_log GROUP BY 1, 2")
            .fetch_all(pool)
            .await?;
    let mut by: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in rows {
        by.insert(
            (r.try_get::<String, _>(1)?, r.try_get::<String, _>(0)?),
            r.try_get(2)?,
        );
    }
    writeln!(
        out,
        "{:<10} {:>9} {:>9} {:>9} {:>9}   what",
        "outcome", "total", "address", "id_card", "phone"
    )?;
    let what = |o: &str| match o {
        "applied" => "written to customer_profile",
        "flagged" => "review flag written, sent to the review topic",
        "review" => "not applied: govsync's check contradicts the engine; review topic",
        "conflict" => "not applied: the row changed after governance read it; review topic",
        "stale" => "not applied: a newer result was already applied",
        "duplicate" => "skipped: event_id already applied",
        "invalid" => "dead-lettered (malformed, schema or rule)",
        "poison" => "dead-lettered: the database rejected the record",
        _ => "",
    };
    for o in Outcome::ALL {
        let name = o.as_str();
        let total = s.outcomes.get(name).copied().unwrap_or(0);
        if o == Outcome::Skipped && total == 0 {
            continue;
        }
        let cell = |dt: &str| {
            by.get(&(name.to_string(), dt.to_string()))
                .map_or("-".to_string(), |n| n.to_string())
        };
        writeln!(
            out,
            "{:<10} {:>9} {:>9} {:>9} {:>9}   {}",
            name,
            total,
            cell("address"),
            cell("id_card"),
            cell("phone"),
            what(name)
        )?;
    }
    let sum: u64 = s.outcomes.values().sum();
    writeln!(
        out,
        "{:<10} {:>9}   = published {}",
        "sum", sum, s.published
    )?;
    writeln!(
        out,
        "topics: {} review messages, {} dead-letter messages",
        s.review_messages, s.dlq_messages
    )?;

    let mut log = progress
        .batch_log
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    if !log.is_empty() {
        let mut sizes: Vec<usize> = log.iter().map(|(_, n)| *n).collect();
        sizes.sort_unstable();
        log.sort_unstable_by_key(|(us, _)| *us);
        let pct =
            |p: f64| log[((p / 100.0) * (log.len() - 1) as f64).round() as usize].0 as f64 / 1000.0;
        writeln!(
            out,
            "batches: {} committed; sizes min {} / median {} / max {} (adaptive); commit latency p50 {:.1} ms, p99 {:.1} ms",
            log.len(),
            sizes[0],
            sizes[sizes.len() / 2],
            sizes[sizes.len() - 1],
            pct(50.0),
            pct(99.0)
        )?;
    }

    writeln!(out)?;
    writeln!(out, "the seed document's records:")?;
    let seed = sqlx::query(
        "SELECT customer_id, data_type, outcome, before_image, after_image FROM govsync_change_log \
         WHERE customer_id LIKE 'CUST_320102_00_' ORDER BY customer_id",
    )
    .fetch_all(pool)
    .await?;
    for r in seed {
        let id: String = r.try_get(0)?;
        let outcome: String = r.try_get(2)?;
        let before: Option<String> = r.try_get(3)?;
        let after: Option<String> = r.try_get(4)?;
        writeln!(
            out,
            "  {id} {:<8} {:<9} {}",
            r.try_get::<String, _>(1)?,
            outcome,
            change_text(before.as_deref(), after.as_deref())
        )?;
        if let Some(reason) = seed_reviews.get(&id) {
            writeln!(out, "      on the review topic, {reason}")?;
        }
    }

    writeln!(out)?;
    writeln!(out, "three changes from the change log (masked):")?;
    for dt in ["address", "phone", "id_card"] {
        let row = sqlx::query(
            "SELECT customer_id, before_image, after_image FROM govsync_change_log \
             WHERE data_type = ?1 AND outcome IN ('applied', 'flagged') AND customer_id NOT LIKE 'CUST_320102_00_' ORDER BY id LIMIT 1",
        )
        .bind(dt)
        .fetch_optional(pool)
        .await?;
        if let Some(r) = row {
            let b: Option<String> = r.try_get(1)?;
            let a: Option<String> = r.try_get(2)?;
            writeln!(
                out,
                "  {} {dt}: {}",
                r.try_get::<String, _>(0)?,
                change_text(b.as_deref(), a.as_deref())
            )?;
        }
    }

    writeln!(out)?;
    writeln!(out, "where to look next:")?;
    writeln!(
        out,
        "  the database:    sqlite3 {} 'SELECT * FROM govsync_batch LIMIT 5'",
        opts.db.display()
    )?;
    writeln!(
        out,
        "  the batches:     govsync batches --config {}",
        cfg_path.display()
    )?;
    writeln!(
        out,
        "  undo a batch:    govsync rollback --config {} --batch <id> --dry-run",
        cfg_path.display()
    )?;
    writeln!(
        out,
        "  the DLQ (on your Kafka): govsync dlq inspect --config config/local.toml"
    )?;
    if let Some(m) = opts.metrics {
        writeln!(
            out,
            "  metrics:         http://{m}/metrics (while govsync runs)"
        )?;
    }
    Ok(())
}

/// `address: 江苏南京*** → 江苏省南京市玄武区***` with every value masked.
fn change_text(before: Option<&str>, after: Option<&str>) -> String {
    let parse = |s: Option<&str>| {
        s.and_then(|s| serde_json::from_str::<Value>(s).ok())
            .unwrap_or(Value::Null)
    };
    let (b, a) = (parse(before), parse(after));
    let Some(am) = a.as_object() else {
        return String::new();
    };
    let mut parts = Vec::new();
    for (k, av) in am {
        if k == "last_governance_time" {
            continue;
        }
        let bv = b.get(k).cloned().unwrap_or(Value::Null);
        if &bv == av {
            continue; // written but unchanged (e.g. a verified phone number)
        }
        let show = |v: &Value| match (k.as_str(), v) {
            ("address", Value::String(s)) => mask::address(s),
            ("id_card", Value::String(s)) => mask::id_card(s),
            ("phone", Value::String(s)) => mask::phone(s),
            ("carrier_info", Value::String(s)) => serde_json::from_str::<Value>(s)
                .ok()
                .and_then(|v| {
                    v.get("carrier")
                        .and_then(|c| c.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "…".into()),
            (_, Value::Null) => "∅".into(),
            (_, Value::Number(n)) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or_default())
                .trim_end_matches('0')
                .to_string(),
            (_, Value::String(s)) => s.clone(),
            (_, other) => other.to_string(),
        };
        parts.push(format!("{k} {} → {}", show(&bv), show(av)));
    }
    parts.join(", ")
}

/// Whether stdout is a terminal (for the progress bar).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::change_text;

    #[test]
    fn change_text_masks_values_and_skips_unchanged_fields() {
        let before = r#"{"phone":"18787101980","quality_score":0.49,"carrier_info":null}"#;
        let after = r#"{"phone":"18787101980","quality_score":0.9,"carrier_info":"{\"carrier\":\"中国移动\"}","last_governance_time":"2024-01-26T15:46:55Z"}"#;
        let text = change_text(Some(before), Some(after));
        assert_eq!(text, "carrier_info ∅ → 中国移动, quality_score 0.49 → 0.9");
        let text = change_text(
            Some(r#"{"address":"江苏南京玄武区中山路1号"}"#),
            Some(r#"{"address":"江苏省南京市玄武区中山路1号"}"#),
        );
        assert!(!text.contains("中山路"), "unmasked address in {text}");
        assert!(text.starts_with("address "), "{text}");
    }
}
