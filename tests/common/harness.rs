//! Shared test harness: the real Kafka broker and PostgreSQL that
//! `scripts/services up` starts. Each test gets its own topics, consumer
//! group and PostgreSQL schema. A missing service fails the test with a
//! message saying how to start it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use govsync::config::{Config, RawConfig};
use govsync::message::RawMessage;
use govsync::pipeline::Progress;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio_util::sync::CancellationToken;

pub fn pg_url() -> String {
    std::env::var("GOVSYNC_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://govsync:govsync@127.0.0.1:5432/govsync".into())
}

pub fn kafka_servers() -> String {
    std::env::var("GOVSYNC_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A message to publish as it is: key, value, headers.
pub type RawOut = (Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

const HOW: &str = "start the test services with `scripts/services up` (see README)";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique, lower-case name for this test's topics, group and schema.
pub fn unique(test: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 100_000_000;
    format!(
        "{}_{}_{}_{}",
        test.replace('-', "_"),
        std::process::id(),
        t,
        n
    )
}

pub struct Env {
    pub name: String,
    pub schema: String,
    /// Pool whose search_path is this test's schema.
    pub pg: PgPool,
    pub raw: RawConfig,
    pub partitions: i32,
}

impl Env {
    /// Creates the schema and topics. `partitions` of the source topic.
    pub async fn new(test: &str, partitions: i32) -> Env {
        let name = unique(test);
        let schema = format!("t_{name}");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&pg_url())
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} is not reachable ({e}): {HOW}", pg_url()));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let pg = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(
                PgConnectOptions::from_str(&pg_url())
                    .unwrap()
                    .options([("search_path", schema.as_str())]),
            )
            .await
            .unwrap();

        let mut raw = RawConfig::default();
        raw.kafka.bootstrap_servers = kafka_servers();
        raw.kafka.group_id = format!("g_{name}");
        raw.kafka.instance_id = format!("i_{name}");
        raw.kafka.source_topic = format!("{name}.results");
        raw.kafka.review_topic = format!("{name}.review");
        raw.kafka.dlq_topic = format!("{name}.dlq");
        raw.kafka.decision_topic = format!("{name}.decisions");
        raw.kafka.session_timeout = "6s".into();
        raw.kafka.transaction_timeout = "10s".into();
        raw.database.url = pg_url();
        raw.database.schema = schema.clone();
        raw.database.pool_size = 4;
        raw.batch.max_wait = "100ms".into();
        raw.metrics.listen = String::new();
        raw.log.format = "text".into();
        let env = Env {
            name,
            schema,
            pg,
            raw,
            partitions,
        };
        let created = govsync::kafka::ensure_topics(
            &env.client_config(),
            &[
                (env.raw.kafka.source_topic.as_str(), partitions),
                (env.raw.kafka.review_topic.as_str(), 1),
                (env.raw.kafka.dlq_topic.as_str(), 1),
                (env.raw.kafka.decision_topic.as_str(), 2),
            ],
            1,
        )
        .await
        .unwrap_or_else(|e| panic!("Kafka at {} is not reachable ({e}): {HOW}", kafka_servers()));
        assert_eq!(
            created.len(),
            4,
            "topics of a fresh test exist already: {created:?}"
        );
        env
    }

    pub fn config(&self) -> Config {
        govsync::config::check(self.raw.clone()).expect("test config is valid")
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", kafka_servers());
        c
    }

    pub fn source(&self) -> &str {
        &self.raw.kafka.source_topic
    }

    pub async fn db(&self) -> Arc<dyn govsync::sink::Database> {
        govsync::sink::connect(&self.config().database)
            .await
            .unwrap()
    }

    pub async fn migrate(&self) {
        let db = self.db().await;
        db.migrate(true).await.unwrap();
        db.close().await;
    }

    /// Inserts customer rows as the business side holds them.
    pub async fn seed(&self, customers: &[govsync::demo::generate::Customer]) {
        govsync::demo::generate::seed_postgres(&self.pg, customers)
            .await
            .unwrap();
    }

    /// Publishes JSON events with the project's own producer code.
    pub async fn publish(&self, events: &[Value]) {
        let producer: FutureProducer = self.client_config().create().unwrap();
        let items = events.iter().map(|e| {
            let bytes = serde_json::to_vec(e).unwrap();
            (govsync::kafka::region_key(&bytes), bytes)
        });
        govsync::kafka::publish(&producer, self.source(), items)
            .await
            .unwrap();
    }

    /// Publishes raw messages (key, value, headers) as they are, in order;
    /// returns each one's (partition, offset).
    pub async fn publish_raw(&self, msgs: &[RawOut]) -> Vec<(i32, i64)> {
        self.publish_raw_to(self.source(), msgs).await
    }

    /// [`Env::publish_raw`] to another topic.
    pub async fn publish_raw_to(&self, topic: &str, msgs: &[RawOut]) -> Vec<(i32, i64)> {
        use rdkafka::producer::FutureRecord;
        let producer: FutureProducer = self
            .client_config()
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        let mut out = Vec::with_capacity(msgs.len());
        for chunk in msgs.chunks(500) {
            let sends = chunk.iter().map(|(k, v, h)| {
                let mut rec = FutureRecord::<Vec<u8>, Vec<u8>>::to(topic)
                    .payload(v)
                    .headers(govsync::kafka::owned_headers(h));
                if let Some(k) = k {
                    rec = rec.key(k);
                }
                producer.send(rec, Duration::from_secs(10))
            });
            for r in futures::future::join_all(sends).await {
                let d = r.map_err(|(e, _)| e).unwrap();
                out.push((d.partition, d.offset));
            }
        }
        out
    }

    /// Runs the processor in this process until the returned handle stops it.
    pub fn start(&self) -> Running {
        self.start_with(self.config())
    }

    pub fn start_with(&self, cfg: Config) -> Running {
        let token = CancellationToken::new();
        let progress = Arc::new(Progress::default());
        let (t, p) = (token.clone(), progress.clone());
        let handle = tokio::spawn(async move {
            let db = govsync::sink::connect(&cfg.database).await?;
            govsync::pipeline::run(Arc::new(cfg), db, t, p).await
        });
        Running {
            token,
            progress,
            handle,
        }
    }

    /// Runs the review decision applier in this process until the returned
    /// handle stops it.
    pub fn start_applier(&self, cfg: Config) -> Running {
        let token = CancellationToken::new();
        let t = token.clone();
        let handle = tokio::spawn(async move {
            let db = govsync::sink::connect(&cfg.database).await?;
            govsync::review::applier::run(Arc::new(cfg), db, t).await
        });
        Running {
            token,
            progress: Arc::new(Progress::default()),
            handle,
        }
    }

    /// Writes the config as TOML for the binary.
    pub fn write_config(&self, raw: &RawConfig) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("{}-{}.toml", self.name, raw.kafka.instance_id));
        std::fs::write(&path, toml_of(raw)).unwrap();
        path
    }

    /// Starts `govsync run` as a real process; its log goes to `log`.
    pub fn spawn_binary(
        &self,
        raw: &RawConfig,
        env: &[(&str, String)],
        log: &std::path::Path,
    ) -> Proc {
        let path = self.write_config(raw);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"));
        cmd.arg("run")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "govsync=info,warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        cmd.stdout(std::process::Stdio::null()).stderr(file);
        Proc(Some(cmd.spawn().expect("start the govsync binary")))
    }

    /// A log file for a spawned process.
    pub fn log_path(&self, tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("{}-{tag}.log", self.name))
    }

    /// Kafka's committed offsets of the group, per partition.
    pub fn committed(&self) -> BTreeMap<i32, Option<i64>> {
        patiently("committed offsets", || self.try_committed())
    }

    /// [`Env::committed`], or the broker's error (a busy broker times out).
    fn try_committed(&self) -> Result<BTreeMap<i32, Option<i64>>, rdkafka::error::KafkaError> {
        let c: BaseConsumer = self
            .client_config()
            .set("group.id", &self.raw.kafka.group_id)
            .set("isolation.level", "read_committed")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(self.source(), p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(10))?;
        Ok(got
            .elements()
            .iter()
            .map(|e| {
                (
                    e.partition(),
                    match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    },
                )
            })
            .collect())
    }

    /// Kafka's committed offsets equal the end offsets on every partition
    /// (an empty partition needs no commit). A broker too busy to answer
    /// within its timeout counts as "not yet" (this is polled).
    pub fn all_committed(&self) -> bool {
        let (Ok(ends), Ok(committed)) = (self.try_end_offsets(), self.try_committed()) else {
            return false;
        };
        ends.iter()
            .all(|(p, e)| committed.get(p).copied().flatten().unwrap_or(0) == *e)
    }

    /// High watermarks (end offsets) of the source topic.
    pub fn end_offsets(&self) -> BTreeMap<i32, i64> {
        patiently("end offsets", || self.try_end_offsets())
    }

    fn try_end_offsets(&self) -> Result<BTreeMap<i32, i64>, rdkafka::error::KafkaError> {
        let c: BaseConsumer = self.client_config().create()?;
        (0..self.partitions)
            .map(|p| {
                c.fetch_watermarks(self.source(), p, Duration::from_secs(10))
                    .map(|w| (p, w.1))
            })
            .collect()
    }

    /// Every committed message of a topic (read_committed), in order.
    pub fn read_topic(&self, topic: &str) -> Vec<RawMessage> {
        read_topic(&self.client_config(), topic)
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.pg)
            .await
            .unwrap()
    }
}

pub fn read_topic(base: &ClientConfig, topic: &str) -> Vec<RawMessage> {
    let c: BaseConsumer = base
        .clone()
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("group.id", "unused")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
        ends.insert(
            *p,
            c.fetch_watermarks(topic, *p, Duration::from_secs(10))
                .unwrap()
                .1,
        );
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(RawMessage::from_kafka(&m)),
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {
                let pos = c.position().unwrap();
                let done =
                    parts.iter().all(
                        |p| match pos.find_partition(topic, *p).map(|e| e.offset()) {
                            Some(Offset::Offset(o)) => o >= ends[p],
                            _ => ends[p] == 0,
                        },
                    );
                if done || Instant::now() > deadline {
                    break;
                }
            }
        }
    }
    out
}

pub fn header<'a>(m: &'a RawMessage, name: &str) -> Option<&'a str> {
    m.header(name).and_then(|v| std::str::from_utf8(v).ok())
}

/// A spawned `govsync` process; killed (SIGKILL) when dropped, so a failing
/// test leaves no processor behind.
pub struct Proc(pub Option<std::process::Child>);

impl Proc {
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.id() as i32, sig);
        }
    }

    /// Waits for the exit, SIGKILLing the process after `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A processor running in this process.
pub struct Running {
    pub token: CancellationToken,
    pub progress: Arc<Progress>,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn stop(self) {
        self.token.cancel();
        match tokio::time::timeout(Duration::from_secs(60), self.handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("processor failed: {e:#}"),
            Ok(Err(e)) => panic!("processor panicked: {e}"),
            Err(_) => panic!("processor did not stop within 60 s"),
        }
    }
}

/// Polls `f` until it returns true or `timeout` passes (then panics with
/// `what`).
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Serialises a raw config to TOML (through JSON: figment reads both).
pub fn toml_of(raw: &RawConfig) -> String {
    let v = serde_json::to_value(raw).unwrap();
    let mut out = String::new();
    for (section, body) in v.as_object().unwrap() {
        out.push_str(&format!("[{section}]\n"));
        let mut nested = Vec::new();
        for (k, val) in body.as_object().unwrap() {
            if val.is_object() {
                nested.push((k.clone(), val.clone()));
            } else {
                out.push_str(&format!("{k} = {}\n", toml_value(val)));
            }
        }
        for (k, val) in nested {
            out.push_str(&format!("[{section}.{k}]\n"));
            for (kk, vv) in val.as_object().unwrap() {
                out.push_str(&format!("\"{kk}\" = {}\n", toml_value(vv)));
            }
        }
    }
    out
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        // An inline table (`database.mapping.columns`).
        Value::Object(m) => format!(
            "{{ {} }}",
            m.iter()
                .map(|(k, v)| format!("\"{k}\" = {}", toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// Asks the broker again when it is too busy to answer in time (CI saw a
/// metadata request time out while two crash tests ran side by side): up to
/// five attempts a second apart, then the test fails with the broker's error.
fn patiently<T>(what: &str, ask: impl Fn() -> Result<T, rdkafka::error::KafkaError>) -> T {
    let mut attempt = 1;
    loop {
        match ask() {
            Ok(got) => return got,
            Err(e) if attempt < 5 => {
                eprintln!("{what}: {e}; asking again ({attempt}/5)");
                attempt += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => panic!("{what} after {attempt} attempts: {e}"),
        }
    }
}
