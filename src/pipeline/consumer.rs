//! The consumer thread: polls Kafka, decodes and checks each message, and
//! handles rebalances.
//!
//! It runs on its own OS thread because librdkafka's calls block and the
//! rebalance callback must *wait* for the pipeline to finish the revoked
//! partitions' batches before giving them up. On assignment it computes
//! each partition's start offset as the higher of Kafka's committed offset
//! and the database watermark, and assigns the partitions at those offsets
//! itself (no seek race).
//!
//! Pausing (backpressure, stalls) is per assignment. The pipeline's state
//! for a partition starts unpaused at every assignment, so a pause or
//! resume command still queued from an earlier assignment (the pipeline
//! sent it just before a rebalance) is dropped by its generation, and every
//! assignment resumes its partitions explicitly in case librdkafka kept an
//! application pause on them. Otherwise a partition could come back paused
//! under a pipeline that believes it is not, and never be read again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::{self, Checked, Rejected, RuleSet};
use crate::message::RawMessage;
use crate::sink::{Database, PartitionKey};

/// A message as the pipeline receives it: raw bytes plus the verdict.
#[derive(Debug)]
pub struct Incoming {
    pub raw: Arc<RawMessage>,
    pub verdict: Result<Checked, Rejected>,
}

/// A partition handed to this instance, with where it starts.
#[derive(Debug, Clone)]
pub struct AssignedPartition {
    pub partition: i32,
    pub start: i64,
    /// Kafka's committed offset (what the side outputs reached).
    pub committed: Option<i64>,
    /// The database watermark (what the data reached).
    pub watermark: Option<i64>,
    /// The assignment this partition belongs to; pause and resume commands
    /// name it.
    pub generation: u64,
}

pub enum FromConsumer {
    Message(Box<Incoming>),
    Assigned(Vec<AssignedPartition>),
    /// The pipeline must finish or abandon these partitions' batches, then
    /// answer on `ack`; the consumer gives them up after that.
    Revoked {
        partitions: Vec<i32>,
        ack: std_mpsc::SyncSender<()>,
    },
    HighWatermarks(Vec<(i32, i64)>),
    /// The consumer left the group; nothing more will come.
    Closed,
}

pub enum ToConsumer {
    /// Stop fetching a partition of assignment `generation`.
    Pause {
        partition: i32,
        generation: u64,
    },
    /// Fetch it again.
    Resume {
        partition: i32,
        generation: u64,
    },
    Shutdown,
}

pub struct GovContext {
    events: mpsc::Sender<FromConsumer>,
    db: Arc<dyn Database>,
    rt: tokio::runtime::Handle,
    group: String,
    topic: String,
    /// Upper bound for the pipeline to drain revoked partitions.
    revoke_timeout: Duration,
    shutdown: CancellationToken,
    /// Counts assignments; only touched on the consumer thread (the
    /// rebalance callback runs inside `poll`).
    generation: AtomicU64,
}

impl ClientContext for GovContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::log_to_tracing(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }

    /// librdkafka's statistics carry each partition's last stable offset:
    /// the lag metric comes from here, without a blocking request.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some(t) = statistics.topics.get(&self.topic) else {
            return;
        };
        let marks: Vec<(i32, i64)> = t
            .partitions
            .values()
            .filter(|p| p.partition >= 0 && p.ls_offset >= 0)
            .map(|p| (p.partition, p.ls_offset))
            .collect();
        if !marks.is_empty() {
            let _ = self.events.try_send(FromConsumer::HighWatermarks(marks));
        }
    }
}

impl ConsumerContext for GovContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(tpl);
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error; dropping the assignment");
                self.on_revoke(tpl);
                let _ = consumer.unassign();
            }
        }
    }
}

impl GovContext {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let parts = self.partitions(tpl);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        // Kafka's committed offsets (read_committed makes this wait for
        // pending transactional commits to settle: KIP-447).
        let committed = retry_until(&self.shutdown, "reading committed offsets", || {
            consumer.committed_offsets(tpl.clone(), Duration::from_secs(10))
        });
        let Some(committed) = committed else { return };
        let mut assigned = Vec::with_capacity(parts.len());
        for p in parts {
            let c = match committed.find_partition(&self.topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            let key = PartitionKey {
                group: self.group.clone(),
                topic: self.topic.clone(),
                partition: p,
            };
            let w = retry_until(&self.shutdown, "reading the database watermark", || {
                self.rt.block_on(self.db.watermark(&key))
            });
            let Some(w) = w else { return };
            let start = c.unwrap_or(0).max(w.unwrap_or(0));
            let offset = if c.is_none() && w.is_none() {
                Offset::Beginning
            } else {
                Offset::Offset(start)
            };
            if let Err(e) = tpl.set_partition_offset(&self.topic, p, offset) {
                // The partition then starts at Kafka's committed offset; the
                // database watermark skips what was applied already.
                tracing::warn!(partition = p, error = %e, "could not seek to the watermark");
            }
            tracing::info!(partition = p, committed = ?c, watermark = ?w, start, "partition assigned");
            assigned.push(AssignedPartition {
                partition: p,
                start,
                committed: c,
                watermark: w,
                generation,
            });
        }
        // Tell the pipeline before any message of these partitions arrives.
        if self
            .events
            .blocking_send(FromConsumer::Assigned(assigned))
            .is_err()
        {
            return;
        }
        if let Err(e) = consumer.assign(tpl) {
            tracing::error!(error = %e, "assigning partitions failed");
        }
        // This assignment starts unpaused, as the pipeline's fresh state for
        // it says, whatever an earlier assignment left behind.
        if let Err(e) = consumer.resume(tpl) {
            tracing::warn!(error = %e, "resuming newly assigned partitions failed");
        }
    }

    fn on_revoke(&self, tpl: &TopicPartitionList) {
        let partitions = self.partitions(tpl);
        if partitions.is_empty() {
            return;
        }
        tracing::info!(?partitions, "partitions revoked; finishing their batches");
        let (ack, done) = std_mpsc::sync_channel(1);
        if self
            .events
            .blocking_send(FromConsumer::Revoked { partitions, ack })
            .is_err()
        {
            return;
        }
        if done.recv_timeout(self.revoke_timeout).is_err() {
            tracing::warn!(
                timeout = ?self.revoke_timeout,
                "the pipeline did not drain the revoked partitions in time; giving them up anyway \
                 (the database watermark keeps the data exactly-once)"
            );
        }
    }
}

/// Retries a blocking call with capped backoff until it succeeds or
/// shutdown is requested.
fn retry_until<T, E: std::fmt::Display>(
    shutdown: &CancellationToken,
    what: &str,
    mut f: impl FnMut() -> Result<T, E>,
) -> Option<T> {
    let mut delay = Duration::from_millis(200);
    loop {
        match f() {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "{what} failed during assignment");
                if shutdown.is_cancelled() {
                    return None;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Settings the consumer thread needs.
pub struct ConsumerSetup {
    pub config: rdkafka::ClientConfig,
    pub topic: String,
    pub group: String,
    pub rules: Arc<RuleSet>,
    pub max_message_bytes: usize,
    pub db: Arc<dyn Database>,
    pub revoke_timeout: Duration,
    pub shutdown: CancellationToken,
}

pub type GovConsumer = BaseConsumer<GovContext>;

/// Creates the consumer and starts its thread.
pub fn start(
    setup: ConsumerSetup,
    events: mpsc::Sender<FromConsumer>,
) -> anyhow::Result<(
    Arc<GovConsumer>,
    std_mpsc::Sender<ToConsumer>,
    std::thread::JoinHandle<()>,
)> {
    let ctx = GovContext {
        events: events.clone(),
        db: setup.db.clone(),
        rt: tokio::runtime::Handle::current(),
        group: setup.group.clone(),
        topic: setup.topic.clone(),
        revoke_timeout: setup.revoke_timeout,
        shutdown: setup.shutdown.clone(),
        generation: AtomicU64::new(0),
    };
    let consumer: GovConsumer = setup.config.create_with_context(ctx)?;
    consumer.subscribe(&[&setup.topic])?;
    let consumer = Arc::new(consumer);
    let (cmd_tx, cmd_rx) = std_mpsc::channel();
    let c = consumer.clone();
    let handle = std::thread::Builder::new()
        .name("govsync-consumer".into())
        .spawn(move || consumer_loop(c, setup, events, cmd_rx))?;
    Ok((consumer, cmd_tx, handle))
}

fn consumer_loop(
    consumer: Arc<GovConsumer>,
    setup: ConsumerSetup,
    events: mpsc::Sender<FromConsumer>,
    commands: std_mpsc::Receiver<ToConsumer>,
) {
    'outer: loop {
        loop {
            let current = consumer.context().generation.load(Ordering::Relaxed);
            match commands.try_recv() {
                Ok(ToConsumer::Pause {
                    partition,
                    generation,
                }) if generation == current => {
                    if let Err(e) = consumer.pause(&single(&setup.topic, partition)) {
                        tracing::warn!(partition, error = %e, "pausing the partition failed");
                    }
                }
                Ok(ToConsumer::Resume {
                    partition,
                    generation,
                }) if generation == current => {
                    if let Err(e) = consumer.resume(&single(&setup.topic, partition)) {
                        tracing::warn!(partition, error = %e, "resuming the partition failed");
                    }
                }
                // Meant for an earlier assignment: this one started unpaused.
                Ok(ToConsumer::Pause { .. } | ToConsumer::Resume { .. }) => {}
                Ok(ToConsumer::Shutdown) | Err(std_mpsc::TryRecvError::Disconnected) => {
                    break 'outer;
                }
                Err(std_mpsc::TryRecvError::Empty) => break,
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let incoming = to_incoming(&m, &setup);
                if events
                    .blocking_send(FromConsumer::Message(Box::new(incoming)))
                    .is_err()
                {
                    break;
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            None => {}
        }
    }
    // Leave the group: unsubscribing revokes the assignment through the
    // rebalance callback (which waits for the pipeline to drain).
    consumer.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(100));
        if consumer
            .assignment()
            .map(|a| a.count() == 0)
            .unwrap_or(true)
        {
            break;
        }
    }
    tracing::info!("consumer left the group");
    let _ = events.blocking_send(FromConsumer::Closed);
}

fn single(topic: &str, p: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, p);
    tpl
}

/// Copies a consumed message out of librdkafka and attaches its verdict.
fn to_incoming(m: &rdkafka::message::BorrowedMessage<'_>, setup: &ConsumerSetup) -> Incoming {
    let raw = Arc::new(RawMessage::from_kafka(m));
    let verdict = event::decode_and_check(
        raw.value.as_deref().unwrap_or_default(),
        setup.max_message_bytes,
        &setup.rules,
    );
    Incoming { raw, verdict }
}
