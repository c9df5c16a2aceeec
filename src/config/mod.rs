//! Configuration: parse the raw file (plus environment overrides), then
//! check it into a typed [`Config`]. Every error names the key and the fix.

pub mod raw;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use crate::event::ConflictPolicy;
use crate::event::{Column, DataType, RuleSet};
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
    pub delivery: Delivery,
    pub max_message_bytes: usize,
    pub side_output_max_bytes: usize,
    pub session_timeout: Duration,
    pub transaction_timeout: Duration,
    pub client: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn transactional_id(&self) -> String {
        format!("{}-{}", self.group_id, self.instance_id)
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub kind: DbKind,
    /// The URL without a password.
    pub url: String,
    pub password: Option<String>,
    pub pool_size: u32,
    pub schema: Option<String>,
    pub target_table: String,
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    pub connect_timeout: Duration,
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
    check_env_names()?;
    // Only GOVSYNC_<SECTION>__<KEY> variables are configuration; others
    // with the prefix (GOVSYNC_DB_PASSWORD, GOVSYNC_TEST_*, ...) are not.
    fig = fig.merge(
        Env::prefixed("GOVSYNC_")
            .filter(|k| k.as_str().contains("__"))
            .split("__"),
    );
    fig.extract::<RawConfig>().map_err(|e| {
        let key = if e.path.is_empty() {
            "(file)".to_string()
        } else {
            e.path.join(".")
        };
        let hint = match &e.kind {
            figment::error::Kind::UnknownField(f, expected) => {
                let guess = closest(f, expected)
                    .map(|g| format!("did you mean `{g}`? "))
                    .unwrap_or_default();
                format!(
                    "unknown key `{f}`; {guess}known keys here: {}. Fix the spelling or remove it",
                    expected.join(", ")
                )
            }
            figment::error::Kind::InvalidType(actual, expected) => {
                match default_duration(&e.path) {
                    Some(d) => format!(
                        "has {actual}, expected a duration in quotes, e.g. \"500ms\", \"2s\" or \"1m\" (default \"{d}\")"
                    ),
                    None => format!("has {actual}, expected {expected}"),
                }
            }
            other => other.to_string(),
        };
        let origin = e
            .metadata
            .as_ref()
            .map(|m| format!(" (from {})", m.name))
            .unwrap_or_default();
        err(&key, format!("{hint}{origin}"))
    })
}

/// The known name nearest to `f` (a typo: at most 2 edits, or a third of
/// its length), if there is one.
fn closest<'a>(f: &str, known: &'a [&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    let limit = (f.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (distance(f, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k)
}

/// The default of the key at `path` when it is a duration (so a bare
/// number there gets a useful hint).
fn default_duration(path: &[String]) -> Option<String> {
    let mut v = serde_json::to_value(RawConfig::default()).ok()?;
    for p in path {
        v = v.get(p)?.clone();
    }
    let s = v.as_str()?;
    humantime::parse_duration(s).ok().map(|_| s.to_string())
}

const SECTIONS: [&str; 9] = [
    "kafka", "database", "batch", "flow", "retry", "rules", "metrics", "log", "dlq",
];

/// Names that look like configuration overrides but miss the double
/// underscore (GOVSYNC_KAFKA_BOOTSTRAP_SERVERS) would be ignored silently:
/// refuse them instead.
fn check_env_names() -> Result<(), ConfigError> {
    const NOT_CONFIG: [&str; 3] = [
        "GOVSYNC_KAFKA_SASL_PASSWORD",
        "GOVSYNC_DB_PASSWORD",
        "GOVSYNC_CONFIG",
    ];
    for (name, _) in std::env::vars() {
        let Some(rest) = name.strip_prefix("GOVSYNC_") else {
            continue;
        };
        if rest.contains("__") || NOT_CONFIG.contains(&name.as_str()) {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        if let Some(section) = SECTIONS
            .iter()
            .find(|s| lower.starts_with(&format!("{s}_")))
        {
            let key = &lower[section.len() + 1..];
            return Err(err(
                &format!("{section}.{key}"),
                format!(
                    "environment variable {name} is not read: write GOVSYNC_{}__{} (two underscores between section and key)",
                    section.to_ascii_uppercase(),
                    key.to_ascii_uppercase()
                ),
            ));
        }
    }
    Ok(())
}

/// Loads and checks the configuration.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    check(load_raw(path)?)
}

fn duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        err(
            key,
            format!("`{s}` is not a duration ({e}); write e.g. \"500ms\", \"2s\" or \"1m\""),
        )
    })
}

fn positive(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(err(key, "must be greater than zero"))
    } else {
        Ok(d)
    }
}

fn topic(key: &str, s: &str) -> Result<String, ConfigError> {
    let ok = !s.is_empty()
        && s.len() <= 249
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(err(
            key,
            format!("`{s}` is not a valid topic name (letters, digits, . _ -, at most 249)"),
        ))
    }
}

fn identifier(key: &str, s: &str) -> Result<String, ConfigError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
    if ok {
        Ok(s.to_string())
    } else {
        Err(err(
            key,
            format!(
                "`{s}` is not a plain SQL identifier (letters, digits, _ and one . for a schema)"
            ),
        ))
    }
}

/// Checks a raw configuration.
pub fn check(r: RawConfig) -> Result<Config, ConfigError> {
    // Kafka.
    let k = &r.kafka;
    if k.bootstrap_servers.trim().is_empty() {
        return Err(err(
            "kafka.bootstrap_servers",
            "is empty; set host:port of at least one broker",
        ));
    }
    for hp in k.bootstrap_servers.split(',') {
        let hp = hp.trim();
        let port_ok = hp
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            return Err(err(
                "kafka.bootstrap_servers",
                format!("`{hp}` is not host:port (e.g. 127.0.0.1:9092)"),
            ));
        }
    }
    if k.group_id.trim().is_empty() {
        return Err(err("kafka.group_id", "is empty; name the consumer group"));
    }
    let instance_id = if k.instance_id.trim().is_empty() {
        host_name()
    } else {
        k.instance_id.trim().to_string()
    };
    let source = topic("kafka.source_topic", &k.source_topic)?;
    let review = topic("kafka.review_topic", &k.review_topic)?;
    let dlq = topic("kafka.dlq_topic", &k.dlq_topic)?;
    if source == dlq || source == review || review == dlq {
        return Err(err(
            "kafka.dlq_topic",
            "source, review and dead-letter topics must be three different topics",
        ));
    }
    let delivery = match k.delivery.as_str() {
        "transactional" => Delivery::Transactional,
        "idempotent" => Delivery::Idempotent,
        other => {
            return Err(err(
                "kafka.delivery",
                format!("`{other}`: use \"transactional\" or \"idempotent\""),
            ));
        }
    };
    if k.max_message_bytes < 1024 {
        return Err(err("kafka.max_message_bytes", "must be at least 1024"));
    }
    if k.side_output_max_bytes < 1024 {
        return Err(err("kafka.side_output_max_bytes", "must be at least 1024"));
    }
    let mut client: Vec<(String, String)> = k.client.clone().into_iter().collect();
    for (name, _) in &client {
        if [
            "enable.auto.commit",
            "group.id",
            "bootstrap.servers",
            "transactional.id",
            "isolation.level",
        ]
        .contains(&name.as_str())
        {
            return Err(err(
                &format!("kafka.client.{name}"),
                "is set by govsync itself (exactly-once depends on it); remove it",
            ));
        }
    }
    if let Ok(p) = std::env::var("GOVSYNC_KAFKA_SASL_PASSWORD") {
        client.push(("sasl.password".into(), p));
    }
    let kafka = KafkaConfig {
        bootstrap_servers: k.bootstrap_servers.trim().to_string(),
        group_id: k.group_id.trim().to_string(),
        instance_id,
        static_membership: k.static_membership,
        source_topic: source,
        review_topic: review,
        dlq_topic: dlq,
        delivery,
        max_message_bytes: k.max_message_bytes,
        side_output_max_bytes: k.side_output_max_bytes,
        session_timeout: positive(
            "kafka.session_timeout",
            duration("kafka.session_timeout", &k.session_timeout)?,
        )?,
        transaction_timeout: positive(
            "kafka.transaction_timeout",
            duration("kafka.transaction_timeout", &k.transaction_timeout)?,
        )?,
        client,
    };

    // Database.
    let d = &r.database;
    let (kind, url, url_password) = parse_db_url(&d.url)?;
    if kind == DbKind::Oracle && url_password.is_some() {
        return Err(err(
            "database.url",
            "contains a password (user:password@); an Oracle URL names the user only \
             (oracle://user@host:1521/service): put the password in the environment variable named by \
             database.password_env or in database.password_file",
        ));
    }
    let password = if !d.password_file.is_empty() {
        let p = std::fs::read_to_string(&d.password_file).map_err(|e| {
            err(
                "database.password_file",
                format!("cannot read {}: {e}", d.password_file),
            )
        })?;
        Some(p.trim_end_matches(['\n', '\r']).to_string())
    } else if let Some(p) = std::env::var(&d.password_env)
        .ok()
        .filter(|_| !d.password_env.is_empty())
    {
        Some(p)
    } else {
        url_password
    };
    if d.pool_size == 0 {
        return Err(err("database.pool_size", "must be at least 1"));
    }
    let database = DatabaseConfig {
        kind,
        url,
        password,
        pool_size: d.pool_size,
        schema: if d.schema.is_empty() {
            None
        } else {
            Some(identifier("database.schema", &d.schema)?)
        },
        target_table: identifier("database.target_table", &d.target_table)?,
        statement_timeout: positive(
            "database.statement_timeout",
            duration("database.statement_timeout", &d.statement_timeout)?,
        )?,
        lock_timeout: positive(
            "database.lock_timeout",
            duration("database.lock_timeout", &d.lock_timeout)?,
        )?,
        connect_timeout: positive(
            "database.connect_timeout",
            duration("database.connect_timeout", &d.connect_timeout)?,
        )?,
    };

    // Batches.
    let b = &r.batch;
    if b.min_size < 1 {
        return Err(err("batch.min_size", "must be at least 1"));
    }
    if b.min_size > b.max_size {
        return Err(err(
            "batch.min_size",
            format!(
                "({}) is greater than batch.max_size ({}); make min_size ≤ max_size",
                b.min_size, b.max_size
            ),
        ));
    }
    let mut per_type = HashMap::new();
    for (dt, [lo, hi]) in [
        (DataType::Address, b.address),
        (DataType::IdCard, b.id_card),
        (DataType::Phone, b.phone),
    ] {
        let key = format!("batch.{dt}");
        if lo > hi {
            return Err(err(
                &key,
                format!("[{lo}, {hi}] is inverted; write [min, max] with min ≤ max"),
            ));
        }
        if hi < b.min_size || lo > b.max_size {
            return Err(err(
                &key,
                format!(
                    "[{lo}, {hi}] lies outside batch.min_size..batch.max_size ({}..{})",
                    b.min_size, b.max_size
                ),
            ));
        }
        per_type.insert(dt, (lo, hi));
    }
    let batch = BatchConfig {
        max_wait: positive("batch.max_wait", duration("batch.max_wait", &b.max_wait)?)?,
        target_commit_latency: positive(
            "batch.target_commit_latency",
            duration("batch.target_commit_latency", &b.target_commit_latency)?,
        )?,
        min_size: b.min_size,
        max_size: b.max_size,
        per_type,
    };

    let f = &r.flow;
    if f.max_in_flight == 0 {
        return Err(err("flow.max_in_flight", "must be at least 1"));
    }
    if f.max_in_flight_per_region == 0 {
        return Err(err("flow.max_in_flight_per_region", "must be at least 1"));
    }
    if f.max_buffered_per_partition < b.max_size {
        return Err(err(
            "flow.max_buffered_per_partition",
            format!(
                "({}) is below batch.max_size ({}): a full batch could never form",
                f.max_buffered_per_partition, b.max_size
            ),
        ));
    }
    let flow = FlowConfig {
        max_in_flight: f.max_in_flight,
        max_in_flight_per_region: f.max_in_flight_per_region,
        max_buffered_per_partition: f.max_buffered_per_partition,
        rate_per_region: f.rate_per_region,
        rate_global: f.rate_global,
    };

    let rt = &r.retry;
    let retry = RetryConfig {
        connection_base: positive(
            "retry.connection_base",
            duration("retry.connection_base", &rt.connection_base)?,
        )?,
        connection_attempts: rt.connection_attempts,
        timeout_step: positive(
            "retry.timeout_step",
            duration("retry.timeout_step", &rt.timeout_step)?,
        )?,
        timeout_attempts: rt.timeout_attempts,
        conflict_attempts: rt.conflict_attempts,
        stalled_backoff_max: positive(
            "retry.stalled_backoff_max",
            duration("retry.stalled_backoff_max", &rt.stalled_backoff_max)?,
        )?,
    };

    // Rules.
    let ru = &r.rules;
    let local_offset = parse_offset(&ru.local_offset).ok_or_else(|| {
        err(
            "rules.local_offset",
            format!("`{}` is not a UTC offset like +08:00", ru.local_offset),
        )
    })?;
    let mut allow = HashMap::new();
    for (name, cols) in &ru.allow {
        let key = format!("rules.allow.{name}");
        let dt = DataType::parse(name)
            .ok_or_else(|| err(&key, "unknown data type; use address, id_card or phone"))?;
        let mut list = Vec::new();
        for c in cols {
            let col = Column::parse(c).ok_or_else(|| {
                let known: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
                err(
                    &key,
                    format!(
                        "`{c}` is not a column govsync can write (known: {})",
                        known.join(", ")
                    ),
                )
            })?;
            list.push(col);
        }
        allow.insert(dt, list);
    }
    let mut conflict = HashMap::new();
    for (name, p) in &ru.conflict {
        let key = format!("rules.conflict.{name}");
        let dt = DataType::parse(name)
            .ok_or_else(|| err(&key, "unknown data type; use address, id_card or phone"))?;
        let policy = match p.as_str() {
            "review" => ConflictPolicy::Review,
            "overwrite" => ConflictPolicy::Overwrite,
            "merge" => ConflictPolicy::Merge,
            other => {
                return Err(err(
                    &key,
                    format!("`{other}`: use review, overwrite or merge"),
                ));
            }
        };
        conflict.insert(dt, policy);
    }
    if !(0.0..=1.0).contains(&ru.max_poison_fraction) {
        return Err(err("rules.max_poison_fraction", "must be between 0 and 1"));
    }
    let rules = RuleSet {
        allow,
        local_offset,
        id_card_region_match: ru.id_card_region_match,
        id_card_max_age: ru.id_card_max_age,
    };

    let metrics_listen = if r.metrics.listen.trim().is_empty() {
        None
    } else {
        Some(r.metrics.listen.trim().parse().map_err(|_| {
            err(
                "metrics.listen",
                format!(
                    "`{}` is not ip:port (e.g. 127.0.0.1:9464); leave empty to disable",
                    r.metrics.listen
                ),
            )
        })?)
    };
    let log_format = match r.log.format.as_str() {
        "auto" => LogFormat::Auto,
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            return Err(err(
                "log.format",
                format!("`{other}`: use auto, json or text"),
            ));
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&r.log.level).is_err() {
        return Err(err(
            "log.level",
            format!(
                "`{}` is not a filter like info or govsync=debug",
                r.log.level
            ),
        ));
    }
    Ok(Config {
        kafka,
        database,
        batch,
        flow,
        retry,
        rules,
        conflict,
        max_poison_fraction: ru.max_poison_fraction,
        metrics_listen,
        log_format,
        log_level: r.log.level.clone(),
        max_replays: r.dlq.max_replays,
    })
}

fn parse_offset(s: &str) -> Option<chrono::FixedOffset> {
    let s = s.trim();
    if s == "Z" || s == "+00:00" {
        return chrono::FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    chrono::FixedOffset::east_opt(sign * secs)
}

/// Splits a database URL into kind, URL without password, and password.
fn parse_db_url(url: &str) -> Result<(DbKind, String, Option<String>), ConfigError> {
    let key = "database.url";
    let url = url.trim();
    let (scheme, rest) = url.split_once(':').ok_or_else(|| {
        err(
            key,
            format!("`{url}` has no scheme; use postgres://…, sqlite://… or oracle://…"),
        )
    })?;
    let kind = match scheme {
        "postgres" | "postgresql" => DbKind::Postgres,
        "sqlite" => DbKind::Sqlite,
        "oracle" => DbKind::Oracle,
        other => {
            return Err(err(
                key,
                format!("unknown database `{other}`; use postgres://…, sqlite://… or oracle://…"),
            ));
        }
    };
    if kind == DbKind::Sqlite {
        let path = rest.trim_start_matches("//");
        if path.is_empty() {
            return Err(err(
                key,
                "sqlite URL has no file; write sqlite://path/to/file.db",
            ));
        }
        return Ok((kind, url.to_string(), None));
    }
    let Some(authority_path) = rest.strip_prefix("//") else {
        return Err(err(
            key,
            format!("`{url}` is not scheme://user@host:port/name"),
        ));
    };
    let (authority, path) = authority_path
        .split_once('/')
        .unwrap_or((authority_path, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if hostport.is_empty() {
        return Err(err(key, format!("`{url}` has no host")));
    }
    if let Some((_, port)) = hostport.rsplit_once(':')
        && port.parse::<u16>().is_err()
    {
        return Err(err(
            key,
            format!(
                "`{port}` is not a port number; write {scheme}://user@host:port/name with a numeric port (PostgreSQL: 5432)"
            ),
        ));
    }
    if path.is_empty() {
        return Err(err(
            key,
            format!("`{url}` names no database/service (…/name)"),
        ));
    }
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pw)) => (Some(user), Some(pw.to_string())),
            None => (Some(u), None),
        },
        None => (None, None),
    };
    let clean = match user {
        Some(u) => format!("{scheme}://{u}@{hostport}/{path}"),
        None => format!("{scheme}://{hostport}/{path}"),
    };
    Ok((kind, clean, password))
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(s) = std::str::from_utf8(&buf[..end])
            && !s.is_empty()
        {
            return s.to_string();
        }
    }
    "govsync".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = check(RawConfig::default()).unwrap();
        assert_eq!(c.batch.bounds(DataType::Phone), (3000, 5000));
        assert_eq!(c.database.kind, DbKind::Postgres);
    }

    #[test]
    fn broken_configs_name_the_key() {
        type Mutation = Box<dyn Fn(&mut RawConfig)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|r| r.kafka.bootstrap_servers = "localhost".into()),
                "kafka.bootstrap_servers",
            ),
            (
                Box::new(|r| r.database.url = "mysql://x/y".into()),
                "database.url",
            ),
            (
                Box::new(|r| r.batch.max_wait = "5 parsecs".into()),
                "batch.max_wait",
            ),
            (Box::new(|r| r.batch.min_size = 6000), "batch.min_size"),
            (Box::new(|r| r.batch.phone = [5000, 3000]), "batch.phone"),
            (
                Box::new(|r| {
                    r.rules
                        .conflict
                        .insert("phone".into(), "ignore".into())
                        .map(drop)
                        .unwrap_or(())
                }),
                "rules.conflict.phone",
            ),
            (
                Box::new(|r| {
                    r.rules
                        .allow
                        .insert("phone".into(), vec!["password".into()]);
                }),
                "rules.allow.phone",
            ),
            (
                Box::new(|r| {
                    r.kafka
                        .client
                        .insert("enable.auto.commit".into(), "true".into())
                        .map(drop)
                        .unwrap_or(())
                }),
                "kafka.client.enable.auto.commit",
            ),
        ];
        for (mutate, key) in cases {
            let mut r = RawConfig::default();
            mutate(&mut r);
            let e = check(r).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn near_misses_get_a_suggestion() {
        let known = ["bootstrap_servers", "group_id", "dlq_topic"];
        assert_eq!(
            closest("bootstrap_server", &known),
            Some("bootstrap_servers")
        );
        assert_eq!(closest("dlq_topc", &known), Some("dlq_topic"));
        assert_eq!(closest("colour", &known), None);
        assert_eq!(
            default_duration(&["batch".into(), "max_wait".into()]).as_deref(),
            Some("500ms")
        );
        assert_eq!(default_duration(&["batch".into(), "min_size".into()]), None);
    }

    #[test]
    fn an_oracle_url_never_carries_a_password() {
        for url in [
            "oracle://govsync:secret@db:1521/FREEPDB1",
            "oracle://govsync:@db:1521/FREEPDB1",
            "oracle://govsync:p@ss:w0rd@db/FREEPDB1",
            "oracle://govsync:secret@db/FREEPDB1",
        ] {
            let mut r = RawConfig::default();
            r.database.url = url.into();
            let e = check(r).unwrap_err();
            assert_eq!(e.key, "database.url", "{url}");
            assert!(e.message.contains("database.password_env"), "{e}");
            assert!(e.message.contains("database.password_file"), "{e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
        let mut r = RawConfig::default();
        r.database.url = "oracle://govsync@db:1521/FREEPDB1".into();
        assert_eq!(check(r).unwrap().database.kind, DbKind::Oracle);
    }

    #[test]
    fn db_urls() {
        let (k, u, p) = parse_db_url("postgres://govsync:secret@127.0.0.1:5432/govsync").unwrap();
        assert_eq!(
            (k, u.as_str(), p.as_deref()),
            (
                DbKind::Postgres,
                "postgres://govsync@127.0.0.1:5432/govsync",
                Some("secret")
            )
        );
        let (k, _, _) = parse_db_url("oracle://govsync@db:1521/FREEPDB1").unwrap();
        assert_eq!(k, DbKind::Oracle);
        assert!(parse_db_url("postgres://127.0.0.1:port/x").is_err());
        let (k, u, p) = parse_db_url("oracle://govsync@db:1521/FREEPDB1").unwrap();
        assert_eq!(
            (k, u.as_str(), p),
            (DbKind::Oracle, "oracle://govsync@db:1521/FREEPDB1", None)
        );
        assert!(parse_db_url("sqlite://").is_err());
    }
}
