//! Configuration: parse the raw file (plus environment overrides), then
//! check it into a typed [`Config`]. Every error names the key and the fix.
//!
//! This module owns the checked types and loading; [`raw`] is the file as
//! written, `check` turns it into a [`Config`] section by section (with
//! `values` checking single values), and `suggest` explains a file that does
//! not parse ("did you mean").

mod check;
pub mod raw;
mod suggest;
mod values;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use crate::event::ConflictPolicy;
use crate::event::{DataType, RuleSet};
pub use check::check;
pub use raw::RawConfig;

/// A configuration problem: the key and what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// A password: shown as `****` by Debug and Display, so a config printed
/// whole (a log line, `check-config`, an error) never carries it. Read it
/// with [`Secret::expose`] where a client needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Postgres,
    Sqlite,
    Oracle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Transactional,
    Idempotent,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub instance_id: String,
    pub static_membership: bool,
    pub source_topic: String,
    pub review_topic: String,
    pub dlq_topic: String,
    pub decision_topic: String,
    pub delivery: Delivery,
    pub max_message_bytes: usize,
    pub side_output_max_bytes: usize,
    pub session_timeout: Duration,
    pub transaction_timeout: Duration,
    /// Extra librdkafka properties (never a password).
    pub client: Vec<(String, String)>,
    /// `sasl.password`, from `kafka.sasl_password_file` or the environment.
    pub sasl_password: Option<Secret>,
    /// `kafka.allow_insecure_tls` with verification turned off: a warning
    /// at startup.
    pub insecure_tls: bool,
}

impl KafkaConfig {
    pub fn transactional_id(&self) -> String {
        format!("{}-{}", self.group_id, self.instance_id)
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub kind: DbKind,
    /// The URL without a password (with `sslmode=verify-full` added for a
    /// remote PostgreSQL that named none).
    pub url: String,
    pub password: Option<Secret>,
    /// `database.allow_insecure_tls` with an unverified remote connection:
    /// a warning at startup.
    pub insecure_tls: bool,
    pub pool_size: u32,
    pub schema: Option<String>,
    pub target_table: String,
    pub mapping: TableMapping,
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    pub connect_timeout: Duration,
}

/// `database.mapping`, checked as names (the table's columns are checked
/// against it when the database is reached: `sink::table`).
#[derive(Debug, Clone, PartialEq)]
pub struct TableMapping {
    pub key: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub last_update: Option<String>,
    /// Offset of time columns without a zone.
    pub zone: chrono::FixedOffset,
    /// The mapped fields only.
    pub columns: std::collections::BTreeMap<crate::event::Column, String>,
}

impl TableMapping {
    /// The column `c` is mapped to, if any.
    pub fn column(&self, c: crate::event::Column) -> Option<&str> {
        self.columns.get(&c).map(String::as_str)
    }
}

impl Default for TableMapping {
    /// The dev table's mapping (`customer_profile`, govsync's names).
    fn default() -> Self {
        check::check_mapping(&raw::RawMapping::default()).expect("the default mapping is valid")
    }
}

#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub max_wait: Duration,
    pub target_commit_latency: Duration,
    pub min_size: usize,
    pub max_size: usize,
    pub per_type: HashMap<DataType, (usize, usize)>,
}

impl BatchConfig {
    /// Bounds for a data type, within the absolute bounds.
    pub fn bounds(&self, dt: DataType) -> (usize, usize) {
        let (lo, hi) = self
            .per_type
            .get(&dt)
            .copied()
            .unwrap_or((self.min_size, self.max_size));
        (lo.max(self.min_size), hi.min(self.max_size))
    }
}

#[derive(Debug, Clone)]
pub struct FlowConfig {
    pub max_in_flight: usize,
    pub max_in_flight_per_region: usize,
    pub max_buffered_per_partition: usize,
    pub rate_per_region: u32,
    pub rate_global: u32,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub connection_base: Duration,
    pub connection_attempts: u32,
    pub timeout_step: Duration,
    pub timeout_attempts: u32,
    pub conflict_attempts: u32,
    pub stalled_backoff_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub database: DatabaseConfig,
    pub batch: BatchConfig,
    pub flow: FlowConfig,
    pub retry: RetryConfig,
    pub rules: RuleSet,
    pub conflict: HashMap<DataType, ConflictPolicy>,
    pub max_poison_fraction: f64,
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub max_replays: u32,
    /// `change_log.retention`.
    pub change_log_retention: Duration,
    pub review: ReviewConfig,
}

/// `[review]`: the decision applier and the review console.
#[derive(Debug, Clone)]
pub struct ReviewConfig {
    pub apply_decisions: bool,
    pub decision_group: String,
    pub console_listen: std::net::SocketAddr,
    pub reviewers_file: Option<std::path::PathBuf>,
    pub trusted_proxy_header: Option<String>,
}

/// Reads the file (if any) and the `GOVSYNC_*` environment into raw form.
pub fn load_raw(path: Option<&Path>) -> Result<RawConfig, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(p) = path {
        if !p.exists() {
            return Err(err(
                "--config",
                format!(
                    "{} does not exist; pass an existing file (see config/govsync.toml)",
                    p.display()
                ),
            ));
        }
        fig = fig.merge(Toml::file(p));
    }
    suggest::check_env_names()?;
    // Only GOVSYNC_<SECTION>__<KEY> variables are configuration; others
    // with the prefix (GOVSYNC_DB_PASSWORD, GOVSYNC_TEST_*, ...) are not.
    fig = fig.merge(
        Env::prefixed("GOVSYNC_")
            .filter(|k| k.as_str().contains("__"))
            .split("__"),
    );
    fig.extract::<RawConfig>().map_err(suggest::explain)
}

/// Loads and checks the configuration.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    check(load_raw(path)?)
}
