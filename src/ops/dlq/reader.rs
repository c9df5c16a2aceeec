//! [`DlqReader`]: reads the dead-letter topic, read_committed, from given
//! start offsets up to the end offsets it had when opened; and the offset
//! metadata a replay commits so that a resumed run knows where its range
//! ends.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::KAFKA_TIMEOUT;
use crate::config::KafkaConfig;
use crate::message::RawMessage;

/// Reads a topic, read_committed, from given start offsets up to the end
/// offsets it had when opened.
pub(super) struct DlqReader {
    pub(super) consumer: BaseConsumer,
    pub(super) topic: String,
    /// partition → (first offset this run reads, end offset at open).
    pub(super) bounds: BTreeMap<i32, (i64, i64)>,
    /// partition → next offset to read.
    pub(super) next: BTreeMap<i32, i64>,
    /// partition → the topic's first offset (earlier ones are deleted).
    pub(super) low: BTreeMap<i32, i64>,
    /// The group's offsets belong to a run that did not finish: this one
    /// finishes that run's range.
    pub(super) resumed: bool,
    /// Partitions not at their end yet.
    open: BTreeSet<i32>,
    /// How long the reader waits without any progress before giving up
    /// (an open transaction in the topic resolves within its timeout).
    idle_limit: Duration,
    last_progress: Instant,
}

impl DlqReader {
    /// `group`: start at the group's committed offsets (else the beginning).
    pub(super) fn open(
        k: &KafkaConfig,
        group: Option<&str>,
        idle_limit: Duration,
    ) -> anyhow::Result<Self> {
        let topic = k.dlq_topic.clone();
        let mut c = crate::kafka::tool_config(k);
        c.set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        // librdkafka needs a group id even to assign partitions; without
        // one (inspect) a name is given that nothing ever commits under
        // and no consumer joins.
        c.set("group.id", group.unwrap_or("govsync-dlq-inspect"));
        let consumer: BaseConsumer = c.create().context("creating the Kafka consumer")?;
        let parts = partitions(&consumer, k)?;
        let committed = match group {
            None => BTreeMap::new(),
            Some(g) => committed_offsets(&consumer, &topic, &parts, g)?,
        };
        let mut marks = BTreeMap::new();
        for p in &parts {
            let m = consumer
                .fetch_watermarks(&topic, *p, KAFKA_TIMEOUT)
                .with_context(|| format!("reading the offsets of {topic} partition {p}"))?;
            marks.insert(*p, m);
        }
        // An interrupted run left some partition short of its range's end:
        // this run finishes that range on every partition, not more (what
        // the interrupted run dead-lettered again waits for the next run).
        let resumed = parts.iter().any(|p| match committed.get(p) {
            Some((o, Some(e))) => o < e && *e <= marks[p].1,
            _ => false,
        });
        let mut bounds = BTreeMap::new();
        let mut lows = BTreeMap::new();
        let mut assign = TopicPartitionList::new();
        let mut open = BTreeSet::new();
        for p in parts {
            let (low, high) = marks[&p];
            let (start, end) = match committed.get(&p) {
                None => (low, high),
                Some((o, run_end)) => {
                    let start = (*o).clamp(low, high);
                    match run_end {
                        Some(e) if resumed && *e <= high => (start, (*e).max(start)),
                        _ => (start, high),
                    }
                }
            };
            bounds.insert(p, (start, end));
            lows.insert(p, low);
            if start < end {
                assign.add_partition_offset(&topic, p, Offset::Offset(start))?;
                open.insert(p);
            }
        }
        consumer.assign(&assign)?;
        let next = bounds.iter().map(|(p, (s, _))| (*p, *s)).collect();
        Ok(DlqReader {
            consumer,
            topic,
            bounds,
            next,
            low: lows,
            resumed,
            open,
            idle_limit,
            last_progress: Instant::now(),
        })
    }

    /// Offsets this run covers (messages, plus transaction markers).
    pub(super) fn total(&self) -> u64 {
        self.bounds.values().map(|(s, e)| (e - s) as u64).sum()
    }

    /// Offsets passed so far.
    pub(super) fn passed(&self) -> u64 {
        self.bounds
            .iter()
            .map(|(p, (s, _))| (self.next[p] - s) as u64)
            .sum()
    }

    /// Where this run starts, per partition.
    pub(super) fn start_offsets(&self) -> BTreeMap<i32, i64> {
        self.bounds.iter().map(|(p, (s, _))| (*p, *s)).collect()
    }

    fn finish(&mut self, p: i32) {
        if self.open.remove(&p) {
            let end = self.bounds[&p].1;
            self.next.insert(p, end);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.topic, p);
            let _ = self.consumer.pause(&tpl);
        }
    }

    /// Marks partitions whose position reached their end (the rest of the
    /// range was transaction markers or aborted messages).
    fn check_positions(&mut self) {
        let Ok(pos) = self.consumer.position() else {
            return;
        };
        let done: Vec<i32> = self
            .open
            .iter()
            .copied()
            .filter(|p| {
                matches!(
                    pos.find_partition(&self.topic, *p).map(|e| e.offset()),
                    Some(Offset::Offset(o)) if o >= self.bounds[p].1
                )
            })
            .collect();
        for p in done {
            self.last_progress = Instant::now();
            self.finish(p);
        }
    }

    /// The next message below the end offsets, or None when every
    /// partition reached its end.
    pub(super) fn next_message(&mut self) -> anyhow::Result<Option<RawMessage>> {
        loop {
            if self.open.is_empty() {
                return Ok(None);
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let p = m.partition();
                    let o = m.offset();
                    if !self.open.contains(&p) {
                        continue;
                    }
                    self.last_progress = Instant::now();
                    let end = self.bounds[&p].1;
                    if o >= end {
                        self.finish(p);
                        continue;
                    }
                    self.next.insert(p, o + 1);
                    let raw = RawMessage::from_kafka(&m);
                    if o + 1 >= end {
                        self.finish(p);
                    }
                    return Ok(Some(raw));
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {
                    self.check_positions();
                    if !self.open.is_empty() && self.last_progress.elapsed() > self.idle_limit {
                        let stuck: Vec<String> = self
                            .open
                            .iter()
                            .map(|p| {
                                format!("partition {p} at {} of {}", self.next[p], self.bounds[p].1)
                            })
                            .collect();
                        bail!(
                            "{} made no progress for {:?} ({}): an open transaction, or the broker is unreachable; \
                             progress so far is kept, run the command again",
                            self.topic,
                            self.idle_limit,
                            stuck.join(", ")
                        );
                    }
                }
                Some(Err(e)) => {
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
                        bail!("reading {}: {e}", self.topic);
                    }
                    tracing::warn!(error = %e, topic = %self.topic, "consumer error; retrying");
                }
            }
        }
    }
}

/// The dead-letter topic's partitions; an error naming the config key when
/// it does not exist.
fn partitions(consumer: &BaseConsumer, k: &KafkaConfig) -> anyhow::Result<Vec<i32>> {
    let topic = k.dlq_topic.as_str();
    let md = consumer
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .with_context(|| {
            format!(
                "cannot reach Kafka at {} (kafka.bootstrap_servers)",
                k.bootstrap_servers
            )
        })?;
    match md.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().iter().map(|p| p.id()).collect())
        }
        _ => bail!(
            "the dead-letter topic {topic} (config key `kafka.dlq_topic`) does not exist; \
             check the key, or create it with `govsync migrate --topics`"
        ),
    }
}

/// partition → (the group's committed offset, the end of the run that
/// committed it, from the offset's metadata).
fn committed_offsets(
    consumer: &BaseConsumer,
    topic: &str,
    parts: &[i32],
    g: &str,
) -> anyhow::Result<BTreeMap<i32, (i64, Option<i64>)>> {
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        tpl.add_partition(topic, *p);
    }
    let got = consumer
        .committed_offsets(tpl, KAFKA_TIMEOUT)
        .with_context(|| format!("reading the committed offsets of group {g}"))?;
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), (o, parse_range_end(e.metadata())))),
            _ => None,
        })
        .collect())
}

/// The offset metadata a replay commits: the end of its range, so that a
/// run resuming it finishes the same range.
pub(super) fn range_metadata(end: i64) -> String {
    format!("govsync-replay end={end}")
}

fn parse_range_end(metadata: &str) -> Option<i64> {
    metadata.strip_prefix("govsync-replay end=")?.parse().ok()
}
