//! Kafka clients: one place that sets the properties exactly-once depends
//! on, plus admin and publishing helpers shared by `run`, `demo`, the
//! operator tools and the tests.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::config::KafkaConfig;

fn base(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers);
    c.set("client.id", format!("govsync-{}", cfg.instance_id));
    // Request/response round trips (transaction markers, offset commits)
    // should not wait for delayed ACKs; `kafka.client` may turn it back.
    c.set("socket.nagle.disable", "true");
    for (k, v) in &cfg.client {
        c.set(k, v);
    }
    if let Some(p) = &cfg.sasl_password {
        c.set("sasl.password", p.expose());
    }
    c
}

/// librdkafka's log lines as tracing events (target `librdkafka`): errors
/// as ERROR, warnings as WARN, the rest as DEBUG.
pub fn log_to_tracing(level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use crate::telemetry::outage;
    use rdkafka::config::RDKafkaLogLevel as L;
    let serious = matches!(
        level,
        L::Emerg | L::Alert | L::Critical | L::Error | L::Warning
    );
    // A broker connection failing (FAIL) starts or continues a Kafka outage;
    // while one lasts, librdkafka's warnings are its (counted, summarised).
    if serious && (fac == "FAIL" || outage::KAFKA.ongoing()) {
        outage::KAFKA.failed("connection", &message);
        return;
    }
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(target: "librdkafka", fac, "{message}")
        }
        L::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        _ => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}

/// A librdkafka client error (the error callback): part of a Kafka outage
/// ([`crate::telemetry::outage`]), not a line of its own.
pub fn client_error(error: &KafkaError, reason: &str) {
    crate::telemetry::outage::KAFKA.failed("client", &format!("{error}: {reason}"));
}

/// The context of a client that has nothing of its own to add: librdkafka's
/// log and errors go where the processor's go (tracing, the Kafka outage)
/// rather than to rdkafka's default `log` lines.
pub struct OutageContext;

impl rdkafka::ClientContext for OutageContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_to_tracing(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for OutageContext {}

/// Messages librdkafka prefetches per partition, in KiB: at 1 KiB per
/// message about 2,000, what a partition consumes in a fraction of a second
/// at full speed, so its next batch is on hand while a fetch runs.
pub const PREFETCH_KIB: usize = 2048;

/// The processor's consumer: manual offsets (never auto-committed, never
/// auto-stored), read_committed, an eager assignment strategy (govsync
/// assigns partitions itself, at the offsets it computes), and a bounded
/// prefetch per partition (each partition has its own queue, where
/// `queued.max.messages.kbytes` applies per partition) so memory does not
/// grow with the backlog: [`PREFETCH_KIB`] plus one fetch of at most
/// `max.partition.fetch.bytes` (1 MiB) per partition.
pub fn consumer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = base(cfg);
    c.set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("partition.assignment.strategy", "range,roundrobin")
        .set(
            "session.timeout.ms",
            cfg.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (cfg.session_timeout.as_millis() / 4).max(100).to_string(),
        )
        .set("queued.max.messages.kbytes", PREFETCH_KIB.to_string())
        // When a partition's prefetch is full librdkafka waits this long
        // before it fetches that partition again (1 s by default): with a
        // bounded prefetch that second would starve the partition.
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.max.bytes", "8388608")
        .set("max.partition.fetch.bytes", "1048576")
        .set("statistics.interval.ms", "5000");
    if cfg.static_membership {
        c.set("group.instance.id", &cfg.instance_id);
    }
    c
}

/// The side-output producer. Transactional (fencing by transactional.id)
/// or idempotent.
pub fn producer_config(cfg: &KafkaConfig, transactional: bool) -> ClientConfig {
    let mut c = base(cfg);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set(
            "message.max.bytes",
            (cfg.side_output_max_bytes + 256 * 1024).to_string(),
        );
    if transactional {
        c.set("transactional.id", cfg.transactional_id()).set(
            "transaction.timeout.ms",
            cfg.transaction_timeout.as_millis().to_string(),
        );
    }
    c
}

/// A plain client config for tools (admin, replay, inspection).
pub fn tool_config(cfg: &KafkaConfig) -> ClientConfig {
    base(cfg)
}

/// Creates topics that do not exist yet (single-node friendly: replication
/// 1 unless given).
pub async fn ensure_topics(
    cfg: &ClientConfig,
    topics: &[(&str, i32)],
    replication: i32,
) -> Result<Vec<String>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = cfg.create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, parts)| NewTopic::new(name, *parts, TopicReplication::Fixed(replication)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new, &opts).await?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::AdminOp(code)).map_err(|e| {
                    tracing::error!(topic = %name, error = %e, "creating topic failed");
                    e
                });
            }
        }
    }
    Ok(created)
}

/// Publishes governance events (JSON values) keyed by their region code,
/// waiting for every delivery. Returns the number published.
pub async fn publish(
    producer: &FutureProducer,
    topic: &str,
    events: impl IntoIterator<Item = (Option<Vec<u8>>, Vec<u8>)>,
) -> Result<usize, KafkaError> {
    let mut pending = futures::stream::FuturesOrdered::new();
    let mut n = 0;
    for (key, value) in events {
        let producer = producer.clone();
        let topic = topic.to_string();
        pending.push_back(async move {
            let mut rec = FutureRecord::<Vec<u8>, Vec<u8>>::to(&topic).payload(&value);
            if let Some(k) = &key {
                rec = rec.key(k);
            }
            producer
                .send(rec, Duration::from_secs(30))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        });
        n += 1;
        // Bound the futures in flight.
        if pending.len() >= 10_000 {
            use futures::StreamExt;
            if let Some(r) = pending.next().await {
                r?;
            }
        }
    }
    use futures::StreamExt;
    while let Some(r) = pending.next().await {
        r?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(n)
}

/// Headers from (name, bytes) pairs.
pub fn owned_headers(h: &[(String, Vec<u8>)]) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(h.len());
    for (k, v) in h {
        out = out.insert(Header {
            key: k,
            value: Some(v.as_slice()),
        });
    }
    out
}

/// The region key of an event value (its `region_code`), if it has one.
pub fn region_key(value: &[u8]) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct K<'a> {
        #[serde(borrow)]
        region_code: Option<&'a str>,
    }
    serde_json::from_slice::<K<'_>>(value)
        .ok()
        .and_then(|k| k.region_code.map(|r| r.as_bytes().to_vec()))
}
