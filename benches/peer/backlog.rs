//! The backlog both systems drain: fresh topics, one message per customer
//! published before the measured process starts, customer `i` on partition
//! `i % 4` with its region code as key (the generator puts customer `i` in
//! region `i % 4`, so each partition holds one region), and the topics and
//! consumer group removed after the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

pub const PARTITIONS: usize = 4;

pub fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates the source topic with [`PARTITIONS`] partitions and `others`
/// (review, dead letters) with one.
pub async fn create_topics(kafka: &ClientConfig, source: &str, others: &[&str]) {
    let mut topics = vec![(source, PARTITIONS as i32)];
    topics.extend(others.iter().map(|t| (*t, 1)));
    govsync::kafka::ensure_topics(kafka, &topics, 1)
        .await
        .expect("Kafka reachable (scripts/services up)");
}

pub async fn remove(kafka: &ClientConfig, topics: &[&str], group: &str) {
    let admin: AdminClient<DefaultClientContext> = kafka.create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let _ = admin.delete_groups(&[group], &opts).await;
    let _ = admin.delete_topics(topics, &opts).await;
}

/// Counts failed deliveries.
struct Failures(Arc<AtomicU64>);

impl rdkafka::ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            eprintln!("delivery failed: {e}");
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Publishes `message(i)` (key, value) for i in 0..n, customer `i` on
/// partition `i % PARTITIONS`, and waits until the broker has them all.
pub fn publish(
    kafka: &ClientConfig,
    topic: &str,
    n: usize,
    message: impl Fn(usize) -> (Vec<u8>, Vec<u8>),
) {
    let failed = Arc::new(AtomicU64::new(0));
    let producer: BaseProducer<Failures> = kafka
        .clone()
        .set("linger.ms", "20")
        .set("batch.size", "900000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "524288")
        .create_with_context(Failures(failed.clone()))
        .unwrap();
    for i in 0..n {
        let (key, value) = message(i);
        let mut rec = BaseRecord::to(topic)
            .key(&key)
            .payload(&value)
            .partition((i % PARTITIONS) as i32);
        while let Err((_, back)) = producer.send(rec) {
            rec = back;
            producer.poll(Duration::from_millis(5));
        }
        if i % 5000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "every message delivered");
}
