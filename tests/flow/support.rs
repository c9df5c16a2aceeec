//! What the flow-control tests need besides the shared harness: running
//! one at a time, reading the processor's /metrics and its RSS, slowing the
//! test's table down, publishing large backlogs fast, a TCP proxy that cuts
//! or silences the database connection, and restarting PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use govsync::demo::generate::{self, Customer};
use govsync::event::DataType;
use rdkafka::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::common::harness::{Env, pg_url};

/// The tests of this binary run one at a time: one restarts PostgreSQL,
/// others measure rates, latencies and memory, which parallel tests would
/// disturb. (Cargo runs test binaries one after another, so no test of
/// `tests/it` runs alongside them either.)
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A free local port (for metrics.listen).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Samples of the processor's Prometheus text: (name, labels, value).
#[derive(Debug, Default, Clone)]
pub struct Scrape(pub Vec<(String, String, f64)>);

impl Scrape {
    /// Values of `name` by label text (`partition="0"`).
    pub fn by_label(&self, name: &str) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.clone(), *v))
            .collect()
    }

    /// The value of `name` with exactly these labels (`""` for none).
    pub fn get(&self, name: &str, labels: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|(_, _, v)| *v)
    }

    /// Sum over every label set of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
            .sum()
    }
}

/// GET /metrics of a processor listening on `port`; None while it is not
/// up.
pub async fn scrape(port: u16) -> Option<Scrape> {
    let fut = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()??;
    let text = String::from_utf8_lossy(&buf);
    let body = text.split_once("\r\n\r\n")?.1;
    let mut out = Vec::new();
    for line in body.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match key.split_once('{') {
            Some((n, l)) => (n.to_string(), l.trim_end_matches('}').to_string()),
            None => (key.to_string(), String::new()),
        };
        out.push((name, labels, v));
    }
    Some(Scrape(out))
}

/// (VmRSS, VmHWM) of a process in MiB, from /proc/<pid>/status.
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Makes every row update of the test's `customer_profile` sleep
/// `ms_per_row` milliseconds (a trigger in the test's schema only).
pub async fn slow_down(env: &Env, ms_per_row: f64) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE OR REPLACE FUNCTION govsync_test_slow() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep({}); RETURN NEW; END $$",
        ms_per_row / 1000.0
    )))
    .execute(&env.pg)
    .await
    .unwrap();
    sqlx::query(
        "CREATE OR REPLACE TRIGGER govsync_test_slow BEFORE UPDATE ON customer_profile \
         FOR EACH ROW EXECUTE FUNCTION govsync_test_slow()",
    )
    .execute(&env.pg)
    .await
    .unwrap();
}

/// Ends [`slow_down`].
pub async fn speed_up(env: &Env) {
    sqlx::query("DROP TRIGGER IF EXISTS govsync_test_slow ON customer_profile")
        .execute(&env.pg)
        .await
        .unwrap();
}

/// Pre-serialised events: one template per (customer, data type) with a
/// fixed-width event id patched in per message, so a million messages cost
/// a copy each, not a JSON serialisation.
pub struct Templates {
    items: Vec<(Vec<u8>, Vec<u8>, usize)>,
    /// Largest payload.
    pub max_bytes: usize,
    /// Mean payload.
    pub mean_bytes: f64,
}

const ID_SLOT: &str = "##########";

impl Templates {
    /// Templates for `customers`; each message of customer `c` goes to key
    /// (region) `c.region`. `high` marks every event `priority: high`.
    pub fn new(customers: &[Customer], prefix: &str, high: bool) -> Templates {
        let mut items = Vec::new();
        for (i, c) in customers.iter().enumerate() {
            let dt = DataType::ALL[i % 3];
            let e = generate::event(
                c,
                dt,
                &format!("{prefix}-{ID_SLOT}"),
                generate::governed_at(10_000),
                high,
            );
            let bytes = serde_json::to_vec(&e).unwrap();
            let at = bytes
                .windows(ID_SLOT.len())
                .position(|w| w == ID_SLOT.as_bytes())
                .unwrap();
            items.push((c.region.as_bytes().to_vec(), bytes, at));
        }
        let max_bytes = items.iter().map(|(_, b, _)| b.len()).max().unwrap_or(0);
        let mean_bytes =
            items.iter().map(|(_, b, _)| b.len()).sum::<usize>() as f64 / items.len() as f64;
        Templates {
            items,
            max_bytes,
            mean_bytes,
        }
    }

    /// The `n`-th message: (key, value), event id `<prefix>-<n>`.
    pub fn message(&self, n: usize) -> (&[u8], Vec<u8>) {
        let (key, bytes, at) = &self.items[n % self.items.len()];
        let mut v = bytes.clone();
        v[*at..*at + ID_SLOT.len()].copy_from_slice(format!("{n:010}").as_bytes());
        (key.as_slice(), v)
    }
}

#[derive(Clone)]
struct Deliveries(Arc<Counts>);

struct Counts {
    failed: AtomicU64,
    delivered: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.0.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Publishes messages `range` of `t` as fast as the broker takes them (large
/// lz4 batches), `partition_of` choosing the partition (None: by key).
/// Returns the time it took. Panics if any delivery fails.
pub fn publish_fast(
    env: &Env,
    t: &Templates,
    range: std::ops::Range<usize>,
    partition_of: impl Fn(usize) -> Option<i32>,
) -> Duration {
    let started = Instant::now();
    let counts = Arc::new(Counts {
        failed: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
    });
    let producer: BaseProducer<Deliveries> = env
        .client_config()
        .set("linger.ms", "50")
        .set("batch.size", "900000")
        .set("batch.num.messages", "100000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "524288")
        .set("acks", "1")
        .create_with_context(Deliveries(counts.clone()))
        .unwrap();
    let topic = env.source().to_string();
    let n = range.len() as u64;
    for i in range {
        let (key, value) = t.message(i);
        let mut rec = BaseRecord::to(&topic).key(key).payload(&value);
        if let Some(p) = partition_of(i) {
            rec = rec.partition(p);
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "producing: {e}"
                    );
                    rec = back;
                    producer.poll(Duration::from_millis(20));
                }
            }
        }
        if i % 5000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    assert_eq!(
        counts.failed.load(Ordering::Relaxed),
        0,
        "failed deliveries"
    );
    assert_eq!(
        counts.delivered.load(Ordering::Relaxed),
        n,
        "every message delivered"
    );
    started.elapsed()
}

/// Deletes the test's topics (the large backlogs would otherwise stay on
/// the broker's disk until retention).
pub async fn delete_topics(env: &Env) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = env.client_config().create().unwrap();
    let topics = [
        env.raw.kafka.source_topic.as_str(),
        env.raw.kafka.review_topic.as_str(),
        env.raw.kafka.dlq_topic.as_str(),
    ];
    let _ = admin.delete_topics(&topics, &AdminOptions::new()).await;
}

/// Drops the test's schema.
pub async fn drop_schema(env: &Env) {
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        env.schema
    )))
    .execute(&env.pg)
    .await;
}

/// Seeds `n` customers in `regions` regions and returns them.
pub async fn seed(env: &Env, n: usize, regions: usize, seed: u64) -> Vec<Customer> {
    let cs = generate::customers(n, regions, seed);
    env.seed(&cs).await;
    cs
}

/// Sum of the watermarks (records applied, counting from offset 0 on every
/// partition).
pub async fn applied_upto(env: &Env) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(SUM(next_offset), 0)::int8 FROM govsync_watermark")
        .fetch_one(&env.pg)
        .await
        .unwrap_or(0)
}

// ------------------------------------------------------------------ proxy

/// What the proxy does with the database traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Close every connection and refuse new ones (the database is down).
    Refuse,
    /// Accept, but never forward a byte again (a cut network: nothing
    /// closes, nothing answers). Connections held so far are closed when the
    /// mode changes again.
    Blackhole,
}

/// A TCP proxy in front of PostgreSQL that a test can cut, for faults that
/// must not touch the database other tests use.
pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    pub async fn start() -> Proxy {
        let upstream = pg_host_port();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, rx) = watch::channel(Mode::Pass);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mut rx = rx.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let current = *rx.borrow_and_update();
                    match current {
                        Mode::Refuse => drop(client),
                        Mode::Blackhole => {
                            let _ = rx.changed().await;
                            drop(client);
                        }
                        Mode::Pass => {
                            let Ok(server) = TcpStream::connect(&upstream).await else {
                                return;
                            };
                            pipe(client, server, rx).await;
                        }
                    }
                });
            }
        });
        Proxy { port, mode }
    }

    pub fn set(&self, m: Mode) {
        self.mode.send_replace(m);
    }

    /// The database URL through this proxy.
    pub fn url(&self) -> String {
        pg_url().replace(&pg_host_port(), &format!("127.0.0.1:{}", self.port))
    }
}

fn pg_host_port() -> String {
    let url = pg_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let hp = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    hp.to_string()
}

async fn pipe(client: TcpStream, server: TcpStream, mut mode: watch::Receiver<Mode>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut a = vec![0u8; 64 * 1024];
    let mut b = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            r = cr.read(&mut a) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => if sw.write_all(&a[..n]).await.is_err() { return },
            },
            r = sr.read(&mut b) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => if cw.write_all(&b[..n]).await.is_err() { return },
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                let m = *mode.borrow_and_update();
                match m {
                    Mode::Pass => {}
                    Mode::Refuse => return,
                    Mode::Blackhole => {
                        // Hold both sockets open, silent, until the next
                        // change; then drop them.
                        let _ = mode.changed().await;
                        return;
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------ PostgreSQL

/// The local cluster `scripts/services` manages ("15 main").
fn pg_cluster() -> (String, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".services/pg.cluster");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} unreadable ({e}): this test restarts the local PostgreSQL cluster that \
             `scripts/services up` started",
            path.display()
        )
    });
    let mut it = text.split_whitespace();
    let (Some(v), Some(n)) = (it.next(), it.next()) else {
        panic!("{}: expected `<version> <name>`", path.display());
    };
    (v.to_string(), n.to_string())
}

/// `pg_ctlcluster <version> <name> <action>`; panics with its output when
/// it fails.
pub fn pg_ctl(action: &str) {
    let (v, n) = pg_cluster();
    let out = std::process::Command::new("pg_ctlcluster")
        .args([v.as_str(), n.as_str(), action])
        .output()
        .unwrap_or_else(|e| {
            panic!("pg_ctlcluster: {e} (needs root and Debian's postgresql-common)")
        });
    assert!(
        out.status.success(),
        "pg_ctlcluster {v} {n} {action} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops PostgreSQL; it is started again by [`Stopped::start`], or when
/// the guard drops (a failing test must not leave the database down for
/// everything else on the machine).
pub fn pg_stop() -> Stopped {
    pg_ctl("stop");
    Stopped { started: false }
}

pub struct Stopped {
    started: bool,
}

impl Stopped {
    pub fn start(mut self) {
        self.started = true;
        pg_ctl("start");
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.started {
            let (v, n) = pg_cluster();
            let _ = std::process::Command::new("pg_ctlcluster")
                .args([v.as_str(), n.as_str(), "start"])
                .status();
        }
    }
}

/// Waits until PostgreSQL accepts connections again.
pub async fn wait_for_pg(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let ok = async {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(2))
                .connect(&pg_url())
                .await
                .ok()?;
            let r = sqlx::query("SELECT 1").execute(&pool).await.ok();
            pool.close().await;
            r
        }
        .await;
        if ok.is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not come back within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Terminates every session with this application_name; returns how many.
pub async fn terminate_sessions(env: &Env, application_name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int8 FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(application_name)
    .fetch_one(&env.pg)
    .await
    .unwrap()
}

/// `scripts/services <action>` of this repository; panics with its output
/// when it fails.
pub fn services(action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services");
    let out = std::process::Command::new(script)
        .arg(action)
        .output()
        .unwrap_or_else(|e| panic!("{script} {action}: {e}"));
    assert!(
        out.status.success(),
        "scripts/services {action} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The broker stopped (`scripts/services stop-kafka`); started again by
/// [`KafkaStopped::start`], or when dropped (a failing test leaves the
/// broker running for the next one).
pub struct KafkaStopped {
    started: bool,
}

pub fn kafka_stop() -> KafkaStopped {
    services("stop-kafka");
    KafkaStopped { started: false }
}

impl KafkaStopped {
    pub fn start(mut self) {
        self.started = true;
        services("up");
    }
}

impl Drop for KafkaStopped {
    fn drop(&mut self) {
        if !self.started {
            let _ = std::process::Command::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/services"
            ))
            .arg("up")
            .status();
        }
    }
}
