//! `check`: a [`RawConfig`] into a [`Config`], one section at a time, in the
//! order the file lists them; the first problem found is the error.

use std::collections::{BTreeMap, HashMap};

use super::raw::{
    RawBatch, RawDatabase, RawFlow, RawKafka, RawLog, RawMapping, RawMetrics, RawRetry, RawReview,
    RawRules,
};
use super::values::{
    duration, host_name, identifier, parse_db_url, parse_offset, positive, postgres_tls, topic,
};
use super::{
    BatchConfig, Config, ConfigError, DatabaseConfig, DbKind, Delivery, FlowConfig, KafkaConfig,
    LogFormat, RawConfig, RetryConfig, ReviewConfig, Secret, TableMapping, err,
};
use crate::event::ConflictPolicy;
use crate::event::{Column, DataType, RuleSet};

/// Checks a raw configuration.
pub fn check(r: RawConfig) -> Result<Config, ConfigError> {
    let kafka = check_kafka(&r.kafka)?;
    let database = check_database(&r.database)?;
    let batch = check_batch(&r.batch)?;
    let flow = check_flow(&r.flow, &r.batch)?;
    let retry = check_retry(&r.retry)?;
    let ru = &r.rules;
    let rules = check_rules(ru)?;
    check_allow_mapped(&rules, &database.mapping)?;
    let conflict = check_conflict(ru)?;
    check_poison_fraction(ru)?;
    let metrics_listen = check_metrics(&r.metrics)?;
    let log_format = check_log(&r.log)?;
    let review = check_review(&r.review, &kafka)?;
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
        change_log_retention: positive(
            "change_log.retention",
            duration("change_log.retention", &r.change_log.retention)?,
        )?,
        review,
    })
}

fn check_review(r: &RawReview, kafka: &KafkaConfig) -> Result<ReviewConfig, ConfigError> {
    let decision_group = match r.decision_group.trim() {
        "" => format!("{}.decisions", kafka.group_id),
        g if g == kafka.group_id => {
            return Err(err(
                "review.decision_group",
                "must differ from kafka.group_id (a rebalance of the decisions would pause the \
                 governance results); leave it empty for \"<group_id>.decisions\"",
            ));
        }
        g => g.to_string(),
    };
    let console_listen = r.console_listen.trim().parse().map_err(|_| {
        err(
            "review.console_listen",
            format!(
                "`{}` is not ip:port (e.g. 127.0.0.1:8088)",
                r.console_listen
            ),
        )
    })?;
    let header = r.trusted_proxy_header.trim();
    if !header.is_empty()
        && !header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(err(
            "review.trusted_proxy_header",
            format!("`{header}` is not an HTTP header name (letters, digits, - and _)"),
        ));
    }
    Ok(ReviewConfig {
        apply_decisions: r.apply_decisions,
        decision_group,
        console_listen,
        reviewers_file: match r.reviewers_file.trim() {
            "" => None,
            f => Some(f.into()),
        },
        trusted_proxy_header: (!header.is_empty()).then(|| header.to_string()),
    })
}

fn check_kafka(k: &RawKafka) -> Result<KafkaConfig, ConfigError> {
    check_bootstrap_servers(&k.bootstrap_servers)?;
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
    let decision = topic("kafka.decision_topic", &k.decision_topic)?;
    if [&source, &review, &dlq].contains(&&decision) {
        return Err(err(
            "kafka.decision_topic",
            "must differ from the source, review and dead-letter topics",
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
    let client = check_client(&k.client)?;
    let sasl_password = kafka_password(k, &client)?;
    let insecure_tls = check_kafka_tls(k, &client)?;
    Ok(KafkaConfig {
        bootstrap_servers: k.bootstrap_servers.trim().to_string(),
        group_id: k.group_id.trim().to_string(),
        instance_id,
        static_membership: k.static_membership,
        source_topic: source,
        review_topic: review,
        dlq_topic: dlq,
        decision_topic: decision,
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
        sasl_password,
        insecure_tls,
    })
}

fn check_bootstrap_servers(servers: &str) -> Result<(), ConfigError> {
    if servers.trim().is_empty() {
        return Err(err(
            "kafka.bootstrap_servers",
            "is empty; set host:port of at least one broker",
        ));
    }
    for hp in servers.split(',') {
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
    Ok(())
}

/// The extra librdkafka properties, refusing those govsync sets itself and
/// any password.
fn check_client(raw: &BTreeMap<String, String>) -> Result<Vec<(String, String)>, ConfigError> {
    let client: Vec<(String, String)> = raw.clone().into_iter().collect();
    for (name, _) in &client {
        if name.ends_with("password") || name == "sasl.oauthbearer.client.secret" {
            return Err(err(
                &format!("kafka.client.{name}"),
                "is a secret, and a secret never belongs in the config file: for sasl.password \
                 use kafka.sasl_password_file or the environment variable named by \
                 kafka.sasl_password_env; remove it here",
            ));
        }
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
    Ok(client)
}

/// `sasl.password` from `kafka.sasl_password_file`, else the variable
/// `kafka.sasl_password_env` names; required when `sasl.username` is set.
fn kafka_password(
    k: &RawKafka,
    client: &[(String, String)],
) -> Result<Option<Secret>, ConfigError> {
    let password = if !k.sasl_password_file.is_empty() {
        let p = std::fs::read_to_string(&k.sasl_password_file).map_err(|e| {
            err(
                "kafka.sasl_password_file",
                format!("cannot read {}: {e}", k.sasl_password_file),
            )
        })?;
        Some(Secret::new(p.trim_end_matches(['\n', '\r'])))
    } else {
        std::env::var(&k.sasl_password_env)
            .ok()
            .filter(|_| !k.sasl_password_env.is_empty())
            .map(Secret::new)
    };
    let has_user = client.iter().any(|(n, _)| n == "sasl.username");
    if has_user && password.is_none() {
        return Err(err(
            "kafka.sasl_password_env",
            format!(
                "kafka.client.sasl.username is set but there is no password: set the \
                 environment variable {} or point kafka.sasl_password_file at a file holding it",
                if k.sasl_password_env.is_empty() {
                    "named by kafka.sasl_password_env"
                } else {
                    &k.sasl_password_env
                }
            ),
        ));
    }
    Ok(password)
}

/// TLS verification stays on unless `kafka.allow_insecure_tls` says it may
/// be turned off. Returns whether it is off (a startup warning).
fn check_kafka_tls(k: &RawKafka, client: &[(String, String)]) -> Result<bool, ConfigError> {
    let off = client.iter().find(|(n, v)| {
        (n == "enable.ssl.certificate.verification" && v.trim().eq_ignore_ascii_case("false"))
            || (n == "ssl.endpoint.identification.algorithm"
                && v.trim().eq_ignore_ascii_case("none"))
    });
    match off {
        Some((n, v)) if !k.allow_insecure_tls => Err(err(
            &format!("kafka.client.{n}"),
            format!(
                "= \"{v}\" turns off the verification of the broker's certificate; remove it \
                 (point ssl.ca.location at your CA instead), or set kafka.allow_insecure_tls = \
                 true to accept that"
            ),
        )),
        Some(_) => Ok(true),
        None => Ok(false),
    }
}

fn check_database(d: &RawDatabase) -> Result<DatabaseConfig, ConfigError> {
    let (kind, url, url_password) = parse_db_url(&d.url)?;
    if kind == DbKind::Oracle && url_password.is_some() {
        return Err(err(
            "database.url",
            "contains a password (user:password@); an Oracle URL names the user only \
             (oracle://user@host:1521/service): put the password in the environment variable named by \
             database.password_env or in database.password_file",
        ));
    }
    let password = database_password(d, url_password)?;
    let (url, insecure_tls) = if kind == DbKind::Postgres {
        postgres_tls(&url, d.allow_insecure_tls)?
    } else {
        (url, false)
    };
    if d.pool_size == 0 {
        return Err(err("database.pool_size", "must be at least 1"));
    }
    Ok(DatabaseConfig {
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
        mapping: check_mapping(&d.mapping)?,
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
        insecure_tls,
    })
}

/// A column name: letters, digits and `_`, starting with a letter. It is
/// matched against the table's own columns when the database is reached
/// (the catalog's spelling is what goes into SQL, quoted).
fn column_name(key: &str, s: &str) -> Result<String, ConfigError> {
    if s.contains('.') {
        return Err(err(
            key,
            format!("`{s}` is a column of the target table: write it without a table or schema"),
        ));
    }
    identifier(key, s)
}

/// `database.mapping`.
pub(super) fn check_mapping(m: &RawMapping) -> Result<TableMapping, ConfigError> {
    let optional = |key: &str, s: &str| -> Result<Option<String>, ConfigError> {
        if s.trim().is_empty() {
            Ok(None)
        } else {
            column_name(key, s.trim()).map(Some)
        }
    };
    let mut columns = BTreeMap::new();
    let mut used: HashMap<String, String> = HashMap::new();
    for (field, col) in &m.columns {
        let key = format!("database.mapping.columns.{field}");
        let c = Column::parse(field).ok_or_else(|| {
            let known: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
            err(
                &key,
                format!(
                    "`{field}` is not a field govsync writes (known: {}); fix the name or remove it",
                    known.join(", ")
                ),
            )
        })?;
        if let Some(name) = optional(&key, col)? {
            if let Some(other) = used.insert(name.to_lowercase(), field.clone()) {
                return Err(err(
                    &key,
                    format!(
                        "column `{name}` is already mapped to `{other}`; a column holds one field"
                    ),
                ));
            }
            columns.insert(c, name);
        }
    }
    let key = column_name("database.mapping.key", m.key.trim())?;
    Ok(TableMapping {
        key,
        name: optional("database.mapping.name", &m.name)?,
        version: optional("database.mapping.version", &m.version)?,
        last_update: optional("database.mapping.last_update", &m.last_update)?,
        zone: parse_offset(&m.zone).ok_or_else(|| {
            err(
                "database.mapping.zone",
                format!("`{}` is not a UTC offset like +08:00", m.zone),
            )
        })?,
        columns,
    })
}

/// Every field an allow-list names is mapped to a column: an event that
/// targets it would otherwise fail at run time, one dead letter at a time.
fn check_allow_mapped(rules: &RuleSet, mapping: &TableMapping) -> Result<(), ConfigError> {
    for dt in DataType::ALL {
        for c in rules.allow.get(&dt).into_iter().flatten() {
            if mapping.column(*c).is_none() {
                return Err(err(
                    &format!("rules.allow.{dt}"),
                    format!(
                        "`{c}` is allowed but maps to no column of the target table; map it \
                         (database.mapping.columns.{c}) or remove it from this list"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The password from `password_file`, else the variable `password_env`
/// names, else the URL's.
fn database_password(
    d: &RawDatabase,
    url_password: Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    Ok(Some(Secret::new(if !d.password_file.is_empty() {
        let p = std::fs::read_to_string(&d.password_file).map_err(|e| {
            err(
                "database.password_file",
                format!("cannot read {}: {e}", d.password_file),
            )
        })?;
        p.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = std::env::var(&d.password_env)
        .ok()
        .filter(|_| !d.password_env.is_empty())
    {
        p
    } else {
        match url_password {
            Some(p) => p,
            None => return Ok(None),
        }
    })))
}

fn check_batch(b: &RawBatch) -> Result<BatchConfig, ConfigError> {
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
    let per_type = check_per_type(b)?;
    Ok(BatchConfig {
        max_wait: positive("batch.max_wait", duration("batch.max_wait", &b.max_wait)?)?,
        target_commit_latency: positive(
            "batch.target_commit_latency",
            duration("batch.target_commit_latency", &b.target_commit_latency)?,
        )?,
        min_size: b.min_size,
        max_size: b.max_size,
        per_type,
    })
}

/// The per-data-type [min, max] bounds, each within the absolute bounds.
fn check_per_type(b: &RawBatch) -> Result<HashMap<DataType, (usize, usize)>, ConfigError> {
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
    Ok(per_type)
}

fn check_flow(f: &RawFlow, b: &RawBatch) -> Result<FlowConfig, ConfigError> {
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
    Ok(FlowConfig {
        max_in_flight: f.max_in_flight,
        max_in_flight_per_region: f.max_in_flight_per_region,
        max_buffered_per_partition: f.max_buffered_per_partition,
        rate_per_region: f.rate_per_region,
        rate_global: f.rate_global,
    })
}

fn check_retry(rt: &RawRetry) -> Result<RetryConfig, ConfigError> {
    Ok(RetryConfig {
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
    })
}

/// The business rules: the local UTC offset and the columns each data type
/// may write.
fn check_rules(ru: &RawRules) -> Result<RuleSet, ConfigError> {
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
    Ok(RuleSet {
        allow,
        local_offset,
        id_card_region_match: ru.id_card_region_match,
        id_card_max_age: ru.id_card_max_age,
    })
}

fn check_conflict(ru: &RawRules) -> Result<HashMap<DataType, ConflictPolicy>, ConfigError> {
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
    Ok(conflict)
}

fn check_poison_fraction(ru: &RawRules) -> Result<(), ConfigError> {
    if !(0.0..=1.0).contains(&ru.max_poison_fraction) {
        return Err(err("rules.max_poison_fraction", "must be between 0 and 1"));
    }
    Ok(())
}

fn check_metrics(m: &RawMetrics) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    Ok(if m.listen.trim().is_empty() {
        None
    } else {
        Some(m.listen.trim().parse().map_err(|_| {
            err(
                "metrics.listen",
                format!(
                    "`{}` is not ip:port (e.g. 127.0.0.1:9464); leave empty to disable",
                    m.listen
                ),
            )
        })?)
    })
}

fn check_log(l: &RawLog) -> Result<LogFormat, ConfigError> {
    let log_format = match l.format.as_str() {
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
    if tracing_subscriber::EnvFilter::try_new(&l.level).is_err() {
        return Err(err(
            "log.level",
            format!("`{}` is not a filter like info or govsync=debug", l.level),
        ));
    }
    Ok(log_format)
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
    fn kafka_secrets_come_from_a_file_or_the_environment_only() {
        let mut r = RawConfig::default();
        r.kafka
            .client
            .insert("sasl.password".into(), "hunter2".into());
        let e = check(r).unwrap_err();
        assert_eq!(e.key, "kafka.client.sasl.password");
        assert!(!e.to_string().contains("hunter2"), "{e}");

        let mut r = RawConfig::default();
        r.kafka
            .client
            .insert("sasl.username".into(), "govsync".into());
        r.kafka.sasl_password_env = "GOVSYNC_TEST_NO_SUCH_PASSWORD_VARIABLE".into();
        let e = check(r.clone()).unwrap_err();
        assert_eq!(e.key, "kafka.sasl_password_env");
        assert!(
            e.message.contains("GOVSYNC_TEST_NO_SUCH_PASSWORD_VARIABLE"),
            "{e}"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sasl");
        std::fs::write(&file, "s3cret-from-file\n").unwrap();
        r.kafka.sasl_password_file = file.display().to_string();
        let c = check(r).unwrap();
        let secret = c.kafka.sasl_password.as_ref().unwrap();
        assert_eq!(secret.expose(), "s3cret-from-file");
        let shown = format!("{:?} {secret}", c.kafka);
        assert!(
            !shown.contains("s3cret"),
            "Debug and Display hide it: {shown}"
        );
        assert!(
            crate::kafka::consumer_config(&c.kafka).get("sasl.password")
                == Some("s3cret-from-file"),
            "the client gets it"
        );
    }

    #[test]
    fn tls_verification_is_on_unless_explicitly_allowed_off() {
        for (k, v) in [
            ("enable.ssl.certificate.verification", "false"),
            ("ssl.endpoint.identification.algorithm", "none"),
        ] {
            let mut r = RawConfig::default();
            r.kafka.client.insert(k.into(), v.into());
            let e = check(r.clone()).unwrap_err();
            assert_eq!(e.key, format!("kafka.client.{k}"));
            assert!(e.message.contains("kafka.allow_insecure_tls"), "{e}");
            r.kafka.allow_insecure_tls = true;
            assert!(check(r).unwrap().kafka.insecure_tls);
        }
        let url = |u: &str, allow: bool| {
            let mut r = RawConfig::default();
            r.database.url = u.into();
            r.database.allow_insecure_tls = allow;
            check(r).map(|c| (c.database.url, c.database.insecure_tls))
        };
        assert_eq!(
            url("postgres://govsync@db.bank.internal:5432/crm", false).unwrap(),
            (
                "postgres://govsync@db.bank.internal:5432/crm?sslmode=verify-full".into(),
                false
            )
        );
        assert_eq!(
            url(
                "postgres://govsync@db:5432/crm?application_name=x&sslmode=verify-ca",
                false
            )
            .unwrap()
            .0,
            "postgres://govsync@db:5432/crm?application_name=x&sslmode=verify-ca"
        );
        let e = url("postgres://govsync@db:5432/crm?sslmode=require", false).unwrap_err();
        assert_eq!(e.key, "database.url");
        assert!(
            e.message.contains("sslmode=require does not verify")
                && e.message.contains("database.allow_insecure_tls"),
            "{e}"
        );
        assert!(
            url("postgres://govsync@db:5432/crm?sslmode=require", true)
                .unwrap()
                .1
        );
        for local in [
            "postgres://govsync@127.0.0.1:5432/govsync",
            "postgres://govsync@localhost/govsync?sslmode=disable",
            "postgres://govsync@[::1]:5432/govsync",
        ] {
            assert_eq!(url(local, false).unwrap(), (local.to_string(), false));
        }
    }
}
