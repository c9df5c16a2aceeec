//! The embedded broker and the demo's traffic on it: its topics, publishing
//! at the pace the processor consumes, and the check that the broker dropped
//! nothing unread before the counts are reported.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{
    BaseProducer, DefaultProducerContext, FutureProducer, FutureRecord, Producer,
};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::generate::Customer;
use super::mix::Mixer;
use super::summary::Bar;
use crate::pipeline::Progress;

pub(super) const SOURCE: &str = "governance.results";
pub(super) const REVIEW: &str = "governance.review";
pub(super) const DLQ: &str = "governance.results.dlq";
/// Reviewers' decisions (`govsync demo --review`).
pub(super) const DECISIONS: &str = "governance.review.decisions";
const PARTITIONS: i32 = 4;
/// Messages published but not yet consumed. The mock broker keeps only the
/// newest 5 MiB of message sets of each partition (librdkafka's
/// rdkafka_mock.c) and drops older ones silently; the demo's messages are
/// compressed (lz4, about 4 to 1 for these JSON events), so at ~800 bytes a
/// message this keeps the unread part of a partition near 2.5 MiB even if
/// every unread message sits in one partition.
const MAX_AHEAD: u64 = 12_000;

/// The embedded broker: librdkafka's mock cluster, owned by a client
/// handle that does nothing else. Dropping it stops the broker.
pub(super) struct Embedded {
    owner: BaseProducer,
}

impl Embedded {
    /// Starts the broker with the source, review, dead-letter and decision
    /// topics.
    pub(super) fn start() -> anyhow::Result<Self> {
        let owner: BaseProducer = rdkafka::ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()
            .context("starting the embedded Kafka broker")?;
        let embedded = Embedded { owner };
        let mock = embedded.cluster();
        mock.create_topic(SOURCE, PARTITIONS, 1)?;
        mock.create_topic(REVIEW, 1, 1)?;
        mock.create_topic(DLQ, 1, 1)?;
        mock.create_topic(DECISIONS, 1, 1)?;
        // Like a real broker, the mock one waits
        // group.initial.rebalance.delay.ms (3 s) before it hands the first
        // member of a new group its partitions; the demo has one member, so
        // the wait is only a pause before the first batch.
        // SAFETY: the handle is alive (owned by `embedded`) and was created
        // with a mock cluster, so the pointer is valid and non-null (checked
        // by `cluster()` above); the call only sets an integer on it.
        unsafe {
            let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(
                embedded.owner.client().native_ptr(),
            );
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        }
        drop(mock);
        Ok(embedded)
    }

    pub(super) fn bootstrap_servers(&self) -> String {
        self.cluster().bootstrap_servers()
    }

    fn cluster(&self) -> MockCluster<'_, DefaultProducerContext> {
        self.owner
            .client()
            .mock_cluster()
            .expect("the owner handle was created with test.mock.num.brokers")
    }
}

pub(super) fn producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    Ok(rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("enable.idempotence", "true")
        .create()?)
}

/// Publishes the seed document's events, then the mix, at most
/// [`MAX_AHEAD`] messages ahead of the processor. Returns the messages
/// published per partition.
pub(super) async fn publish(
    producer: &FutureProducer,
    customers: &[Customer],
    conflicted: usize,
    seed: u64,
    total: u64,
    progress: &Progress,
    bar: &Bar,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut mixer = Mixer::new(customers, conflicted, seed);
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
            bar.update(progress);
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
            bar.update(progress);
        }
    }
    {
        use futures::StreamExt;
        while let Some(r) = pending.next().await {
            let d = r.context("publishing to the embedded broker")?;
            *published_per_partition.entry(d.partition).or_default() += 1;
        }
    }
    Ok(published_per_partition)
}

/// Every published message was read: the broker dropped nothing unread
/// (it may have dropped read ones: its log keeps ~5 MiB per partition).
pub(super) fn check_nothing_dropped(
    checker: &BaseConsumer,
    progress: &Progress,
    published_per_partition: &BTreeMap<i32, i64>,
    total: u64,
) -> anyhow::Result<()> {
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
    Ok(())
}

/// Every message value of a one-partition topic, read to its end.
pub(super) fn read_values(
    base: &rdkafka::ClientConfig,
    topic: &str,
) -> anyhow::Result<Vec<Vec<u8>>> {
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
