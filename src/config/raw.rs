//! The configuration file as written (TOML), with every default. Each field's
//! doc comment is its user documentation (`config/govsync.toml` repeats it).
//! Every key can be overridden by an environment variable:
//! `GOVSYNC_<SECTION>__<KEY>`, e.g. `GOVSYNC_KAFKA__BOOTSTRAP_SERVERS`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::Column;

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub kafka: RawKafka,
    pub database: RawDatabase,
    pub batch: RawBatch,
    pub flow: RawFlow,
    pub retry: RawRetry,
    pub rules: RawRules,
    pub metrics: RawMetrics,
    pub log: RawLog,
    pub dlq: RawDlq,
    pub change_log: RawChangeLog,
    pub review: RawReview,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKafka {
    /// Brokers, comma-separated host:port.
    pub bootstrap_servers: String,
    /// Consumer group; also names the offset watermark rows in the database.
    pub group_id: String,
    /// Stable, unique name of this instance: the transactional.id is
    /// `<group_id>-<instance_id>`, so a restarted instance fences its previous
    /// incarnation. Empty: the host name.
    pub instance_id: String,
    /// Static group membership (group.instance.id = instance_id): a restart
    /// within the session timeout gets its partitions back without a rebalance.
    pub static_membership: bool,
    /// Topic of governance events.
    pub source_topic: String,
    /// Topic for records a person must look at.
    pub review_topic: String,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Topic of reviewers' decisions (`govsync review serve` and
    /// `govsync review decide` publish them, `govsync run` applies them).
    pub decision_topic: String,
    /// `transactional`: review/DLQ messages and offsets commit in one Kafka
    /// transaction (exactly once). `idempotent`: they are produced, then the
    /// offsets committed (at least once for the side outputs; the database
    /// stays exactly once through its watermark). For brokers without
    /// transactions, and the embedded demo broker.
    pub delivery: String,
    /// Messages larger than this are dead-lettered unread.
    pub max_message_bytes: usize,
    /// Largest payload the review and dead-letter topics take (their
    /// max.message.bytes). A dead letter over it is cut to this size and
    /// marked with a `govsync.payload.truncated` header instead of stalling
    /// the partition.
    pub side_output_max_bytes: usize,
    /// Consumer session timeout.
    pub session_timeout: String,
    /// Kafka transaction timeout.
    pub transaction_timeout: String,
    /// Extra librdkafka properties for every client (security.protocol,
    /// sasl.mechanisms, sasl.username, ssl.ca.location...). Never a
    /// password: `sasl.password` comes from `sasl_password_file` or the
    /// variable `sasl_password_env` names.
    pub client: BTreeMap<String, String>,
    /// How the group spreads partitions among instances: `eager` (every
    /// rebalance revokes every partition) or `cooperative` (incremental
    /// rebalancing, cooperative-sticky: only the partitions that move
    /// pause; shorter pauses when scaling in, but see the README: a broker
    /// restart left an instance without partitions for minutes in 2 of 15
    /// runs). All instances of a group must use the same.
    pub assignment: String,
    /// Environment variable holding the SASL password.
    pub sasl_password_env: String,
    /// File holding the SASL password (a mounted secret); wins over the
    /// environment variable.
    pub sasl_password_file: String,
    /// Allows kafka.client to turn TLS verification off
    /// (`enable.ssl.certificate.verification = "false"` or
    /// `ssl.endpoint.identification.algorithm = "none"`); logged as a
    /// warning at startup. Never in production.
    pub allow_insecure_tls: bool,
}

impl Default for RawKafka {
    fn default() -> Self {
        RawKafka {
            bootstrap_servers: "127.0.0.1:9092".into(),
            group_id: "govsync".into(),
            instance_id: String::new(),
            static_membership: false,
            source_topic: "governance.results".into(),
            review_topic: "governance.review".into(),
            dlq_topic: "governance.results.dlq".into(),
            decision_topic: "governance.review.decisions".into(),
            delivery: "transactional".into(),
            max_message_bytes: 1024 * 1024,
            side_output_max_bytes: 1_000_000,
            session_timeout: "10s".into(),
            transaction_timeout: "60s".into(),
            assignment: "eager".into(),
            sasl_password_env: "GOVSYNC_KAFKA_SASL_PASSWORD".into(),
            sasl_password_file: String::new(),
            allow_insecure_tls: false,
            client: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDatabase {
    /// `postgres://user@host:5432/db`, `sqlite://path/to/file.db` or
    /// `oracle://user@host:1521/service`.
    pub url: String,
    /// Environment variable holding the password (never put it in this file).
    pub password_env: String,
    /// File holding the password (e.g. a mounted secret); wins over the
    /// environment variable.
    pub password_file: String,
    /// Connections in the pool; bounds the batches that can commit at once.
    pub pool_size: u32,
    /// PostgreSQL schema / Oracle schema for govsync's and the target table.
    pub schema: String,
    /// The business table, schema-qualified where it lives in another
    /// schema (`crm.cust_base`).
    pub target_table: String,
    /// Where govsync's fields live in the target table.
    pub mapping: RawMapping,
    /// Upper bound for one statement.
    pub statement_timeout: String,
    /// Upper bound for waiting on a row lock.
    pub lock_timeout: String,
    pub connect_timeout: String,
    /// Allows a PostgreSQL connection to a host other than this machine
    /// without verifying the server's certificate (`sslmode` disable,
    /// allow, prefer or require in the URL); logged as a warning at startup.
    /// Without it such a URL is refused, and a URL without `sslmode` gets
    /// `verify-full` (add `sslrootcert=/path/ca.pem` for a private CA).
    pub allow_insecure_tls: bool,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            url: "postgres://govsync@127.0.0.1:5432/govsync".into(),
            password_env: "GOVSYNC_DB_PASSWORD".into(),
            password_file: String::new(),
            pool_size: 8,
            schema: String::new(),
            target_table: "customer_profile".into(),
            mapping: RawMapping::default(),
            statement_timeout: "30s".into(),
            lock_timeout: "10s".into(),
            connect_timeout: "5s".into(),
            allow_insecure_tls: false,
        }
    }
}

/// Where govsync's logical fields live in the target table. Every name is
/// checked against the table's columns before anything is consumed
/// (`check-config`, `run`); govsync never alters the table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMapping {
    /// The key column: text, with a primary key or unique index on it alone.
    pub key: String,
    /// Column an insert fills with `original_data.name` ("" = none).
    pub name: String,
    /// Column counting govsync's writes to a row ("" = the table has none:
    /// govsync keeps the count in its own `govsync_row_state`).
    pub version: String,
    /// The business's own last-update time, read (never written) to detect
    /// a conflicting update ("" = no conflict detection).
    pub last_update: String,
    /// UTC offset of the time columns without a zone (TIMESTAMP, DATE).
    pub zone: String,
    /// Logical field -> column of the table; "" = not mapped. The fields:
    /// address, geo_lat, geo_lon, geo_accuracy, id_card, phone,
    /// carrier_info, quality_score, validation_status, review_flag,
    /// review_priority, last_governance_time.
    pub columns: BTreeMap<String, String>,
}

impl Default for RawMapping {
    fn default() -> Self {
        RawMapping {
            key: "customer_id".into(),
            name: "name".into(),
            version: "version".into(),
            last_update: "last_update".into(),
            zone: "+00:00".into(),
            columns: Column::ALL
                .iter()
                .map(|c| (c.name().to_string(), c.name().to_string()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBatch {
    /// A partial batch is flushed after this long.
    pub max_wait: String,
    /// Batches grow while their commit stays under this, shrink above it.
    pub target_commit_latency: String,
    /// Absolute bounds of the adaptive batch size.
    pub min_size: usize,
    pub max_size: usize,
    /// Per data type [min, max] (the seed's advice), within the absolute bounds.
    pub address: [usize; 2],
    pub id_card: [usize; 2],
    pub phone: [usize; 2],
}

impl Default for RawBatch {
    fn default() -> Self {
        RawBatch {
            max_wait: "500ms".into(),
            target_commit_latency: "1s".into(),
            min_size: 100,
            max_size: 5000,
            address: [1000, 2000],
            id_card: [2000, 3000],
            phone: [3000, 5000],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFlow {
    /// Batches committing at once, over all partitions.
    pub max_in_flight: usize,
    /// Batches committing at once per region (partition key).
    pub max_in_flight_per_region: usize,
    /// Records per partition, buffered plus in the running batch: the
    /// partition's credit; the consumer reads a partition only while it has
    /// credit. With the batch sizes it bounds memory whatever the backlog
    /// (README: Memory).
    pub max_buffered_per_partition: usize,
    /// Records/s per region (0 = unlimited).
    pub rate_per_region: u32,
    /// Records/s over all regions (0 = unlimited).
    pub rate_global: u32,
}

impl Default for RawFlow {
    fn default() -> Self {
        RawFlow {
            max_in_flight: 8,
            max_in_flight_per_region: 2,
            max_buffered_per_partition: 5_000,
            rate_per_region: 0,
            rate_global: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetry {
    /// Connection errors: exponential backoff from this base…
    pub connection_base: String,
    /// …for this many attempts.
    pub connection_attempts: u32,
    /// Timeouts: linear backoff of this step…
    pub timeout_step: String,
    pub timeout_attempts: u32,
    /// Deadlock / serialization / lock wait: immediate retries with jitter.
    pub conflict_attempts: u32,
    /// When the attempts run out the partition is paused and retried with
    /// backoff capped at this, marked stalled; never dead-lettered.
    pub stalled_backoff_max: String,
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            connection_base: "500ms".into(),
            connection_attempts: 3,
            timeout_step: "1s".into(),
            timeout_attempts: 2,
            conflict_attempts: 3,
            stalled_backoff_max: "30s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRules {
    /// UTC offset of `original_data.last_update` values written without one.
    pub local_offset: String,
    /// An ID number's division code must equal the event's county_code.
    pub id_card_region_match: bool,
    pub id_card_max_age: u32,
    /// Columns each data type may write (DESIGN.md section 3).
    pub allow: BTreeMap<String, Vec<String>>,
    /// Conflict policy per data type: review, overwrite or merge.
    pub conflict: BTreeMap<String, String>,
    /// Above this fraction of rejected records a batch fails instead of
    /// dead-lettering them (a schema change is not a poison message).
    pub max_poison_fraction: f64,
}

impl Default for RawRules {
    fn default() -> Self {
        use crate::event::DataType;
        RawRules {
            local_offset: "+08:00".into(),
            id_card_region_match: true,
            id_card_max_age: 120,
            allow: DataType::ALL
                .iter()
                .map(|d| {
                    (
                        d.as_str().to_string(),
                        Column::default_allow_list(*d)
                            .iter()
                            .map(|c| c.name().to_string())
                            .collect(),
                    )
                })
                .collect(),
            conflict: DataType::ALL
                .iter()
                .map(|d| (d.as_str().to_string(), "review".to_string()))
                .collect(),
            max_poison_fraction: 0.1,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// Address of /metrics, /healthz and /readyz; empty disables.
    pub listen: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `auto` (human-readable on a terminal, JSON otherwise), `json` or `text`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `govsync=debug,rdkafka=warn`.
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "auto".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDlq {
    /// A message replayed this many times is not replayed again.
    pub max_replays: u32,
}

impl Default for RawDlq {
    fn default() -> Self {
        RawDlq { max_replays: 3 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawChangeLog {
    /// How long change-log rows are kept after govsync logged them: the
    /// window in which a re-sent result is recognised as a duplicate and a
    /// batch can be rolled back. PostgreSQL drops a whole day of its change
    /// log (partitioned by day of governed_at) once every row in it is that
    /// old; SQLite and Oracle delete the rows. The processor applies it at
    /// start and every hour.
    pub retention: String,
}

impl Default for RawChangeLog {
    fn default() -> Self {
        RawChangeLog {
            retention: "30d".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReview {
    /// `govsync run` applies reviewers' decisions from `kafka.decision_topic`.
    pub apply_decisions: bool,
    /// Consumer group of the decision applier (its own group, so a
    /// rebalance of one topic never pauses the other). Empty:
    /// "<kafka.group_id>.decisions".
    pub decision_group: String,
    /// Address of the review console (`govsync review serve`).
    pub console_listen: String,
    /// Reviewers who may sign in to the console: one `name:argon2-hash` per
    /// line (`govsync review hash-password` makes the hash). Empty: no
    /// password sign-in.
    pub reviewers_file: String,
    /// Behind a trusted reverse proxy that authenticates reviewers: the
    /// request header carrying the reviewer's name. Empty: not used. Only
    /// set it when the console is reachable through the proxy alone.
    pub trusted_proxy_header: String,
}

impl Default for RawReview {
    fn default() -> Self {
        RawReview {
            apply_decisions: true,
            decision_group: String::new(),
            console_listen: "127.0.0.1:8088".into(),
            reviewers_file: String::new(),
            trusted_proxy_header: String::new(),
        }
    }
}
