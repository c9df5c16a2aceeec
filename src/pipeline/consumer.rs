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
//! # Flow control: credit, not pause
//!
//! Every assigned partition's messages come from a queue of its own
//! (librdkafka's partition queues), and the thread takes from a partition
//! only while the pipeline has granted it credit: the pipeline starts each
//! partition with `flow.max_buffered_per_partition` and gives back what a
//! completed batch held. A partition without credit is simply not read;
//! librdkafka keeps prefetching it up to `queued.max.messages.kbytes` (per
//! partition with partition queues) and then stops fetching, so memory
//! stays bounded without pausing. Pausing would throw away what librdkafka
//! had fetched and make every resume fetch it again, leaving the partition
//! with nothing to batch in between: a backlog drained in bursts.
//!
//! A partition whose batch is stalled (the database is down) is not read
//! until it recovers.
//!
//! Partitions with credit are read in turn, at most [`TURN`] messages each,
//! so one partition's backlog never keeps another's messages waiting.
//! Messages fetched for a partition before its queue was split off arrive
//! on the main queue, which is always read first: they are older than
//! anything on the partition's own queue, so offset order holds.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::{self, Checked, Rejected, RuleSet};
use crate::message::RawMessage;
use crate::sink::{Database, PartitionKey};
use crate::telemetry::outage;

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
    /// How much the consumer may hand over for this partition (see the
    /// module doc).
    pub credit: Arc<Credit>,
}

/// What the consumer may read of one partition: shared by the consumer
/// thread (which spends it) and the pipeline (which gives it back).
#[derive(Debug, Default)]
pub struct Credit {
    /// Messages it may still hand over; the pipeline adds what a completed
    /// batch released.
    available: AtomicI64,
    /// The partition's batch is stalled: nothing is read until it recovers.
    stalled: AtomicBool,
}

impl Credit {
    fn new(available: i64) -> Self {
        Credit {
            available: AtomicI64::new(available),
            stalled: AtomicBool::new(false),
        }
    }

    /// Messages the consumer may take now.
    fn room(&self) -> i64 {
        if self.stalled.load(Ordering::Acquire) {
            0
        } else {
            self.available.load(Ordering::Acquire)
        }
    }

    fn spend(&self) {
        self.available.fetch_sub(1, Ordering::AcqRel);
    }

    /// `n` records the partition held left memory.
    pub fn release(&self, n: usize) {
        self.available.fetch_add(n as i64, Ordering::AcqRel);
    }

    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Release);
    }
}

pub enum FromConsumer {
    /// Messages of one partition, in offset order (a turn's worth: one
    /// send, not one per message).
    Messages(Vec<Incoming>),
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
    Shutdown,
}

/// Messages taken from one partition in one turn of the thread's loop.
pub const TURN: i64 = 500;

/// How long the thread waits on the main queue when no partition had a
/// message for it (events wake it earlier; a partition's new messages do
/// not, so this bounds the latency they add when idle).
const IDLE_POLL: Duration = Duration::from_millis(5);

/// A partition being read: its own queue and its credit.
struct Lane {
    partition: i32,
    queue: PartitionQueue<GovContext>,
    credit: Arc<Credit>,
}

/// Assignment changes the rebalance callback leaves for the thread (which
/// owns the consumer's `Arc`, needed to split a partition's queue off).
#[derive(Default)]
struct Pending {
    assigned: Vec<(i32, Arc<Credit>)>,
    revoked: Vec<i32>,
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
    /// Credit a new partition starts with.
    initial_credit: i64,
    pending: Mutex<Pending>,
    /// Set when the consumer was replaced ([`renew_if_fatal`]): its
    /// callbacks, if any still come, no longer speak for this instance.
    retired: AtomicBool,
}

impl ClientContext for GovContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::log_to_tracing(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
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
        // Cooperative (incremental) rebalancing hands over only the
        // partitions that move: the others keep being read and applied.
        let incremental = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        if self.retired.load(Ordering::SeqCst) {
            // A replaced consumer closing: its partitions were given up
            // already, and may be this instance's again by now.
            let _ = if incremental && err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                consumer.incremental_unassign(tpl)
            } else {
                consumer.unassign()
            };
            return;
        }
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.on_assign(consumer, tpl, incremental)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(tpl);
                let r = if incremental {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
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

    fn on_assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
        incremental: bool,
    ) {
        let parts = self.partitions(tpl);
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
                credit: Arc::new(Credit::new(self.initial_credit)),
            });
        }
        let lanes: Vec<(i32, Arc<Credit>)> = assigned
            .iter()
            .map(|a| (a.partition, a.credit.clone()))
            .collect();
        // Tell the pipeline before any message of these partitions arrives.
        if self
            .events
            .blocking_send(FromConsumer::Assigned(assigned))
            .is_err()
        {
            return;
        }
        let r = if incremental {
            consumer.incremental_assign(tpl)
        } else {
            consumer.assign(tpl)
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "assigning partitions failed");
        }
        self.pending_mut().assigned.extend(lanes);
    }

    fn pending_mut(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_revoke(&self, tpl: &TopicPartitionList) {
        self.revoke(self.partitions(tpl));
    }

    /// Hands `partitions` back: the pipeline finishes their batches first.
    fn revoke(&self, partitions: Vec<i32>) {
        if partitions.is_empty() {
            return;
        }
        tracing::info!(?partitions, "partitions revoked; finishing their batches");
        self.pending_mut()
            .revoked
            .extend(partitions.iter().copied());
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
                outage::KAFKA.failed("assignment", &format!("{what}: {e}"));
                tracing::debug!(error = %e, retry_in = ?delay, "{what} failed during assignment");
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
    /// `flow.max_buffered_per_partition`: each partition's initial credit.
    pub max_buffered: usize,
}

pub type GovConsumer = BaseConsumer<GovContext>;

/// The consumer the committer uses for its group metadata and offset
/// commits: the consumer thread replaces it when librdkafka declares it
/// dead ([`renew_if_fatal`]).
pub struct ConsumerSlot(std::sync::RwLock<Arc<GovConsumer>>);

impl ConsumerSlot {
    pub fn current(&self) -> Arc<GovConsumer> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, consumer: Arc<GovConsumer>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = consumer;
    }
}

/// A consumer of the source topic, subscribed, with a fresh context.
fn create(
    setup: &ConsumerSetup,
    events: &mpsc::Sender<FromConsumer>,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<Arc<GovConsumer>> {
    let ctx = GovContext {
        events: events.clone(),
        db: setup.db.clone(),
        rt: rt.clone(),
        group: setup.group.clone(),
        topic: setup.topic.clone(),
        revoke_timeout: setup.revoke_timeout,
        shutdown: setup.shutdown.clone(),
        initial_credit: setup.max_buffered as i64,
        pending: Mutex::new(Pending::default()),
        retired: AtomicBool::new(false),
    };
    let consumer: GovConsumer = setup.config.create_with_context(ctx)?;
    consumer.subscribe(&[&setup.topic])?;
    Ok(Arc::new(consumer))
}

/// Creates the consumer and starts its thread.
pub fn start(
    setup: ConsumerSetup,
    events: mpsc::Sender<FromConsumer>,
) -> anyhow::Result<(
    Arc<ConsumerSlot>,
    std_mpsc::Sender<ToConsumer>,
    std::thread::JoinHandle<()>,
)> {
    let rt = tokio::runtime::Handle::current();
    let consumer = create(&setup, &events, &rt)?;
    let slot = Arc::new(ConsumerSlot(std::sync::RwLock::new(consumer.clone())));
    let (cmd_tx, cmd_rx) = std_mpsc::channel();
    let thread_slot = slot.clone();
    let handle = std::thread::Builder::new()
        .name("govsync-consumer".into())
        .spawn(move || consumer_loop(consumer, thread_slot, rt, setup, events, cmd_rx))?;
    Ok((slot, cmd_tx, handle))
}

/// When librdkafka has declared the consumer dead (a fatal error: a static
/// member fenced by an instance with the same `group.instance.id`, which a
/// broker restart can make it do to itself), gives up its partitions
/// through the pipeline as a revocation would, and replaces it with a new
/// consumer that joins the group again. A fenced consumer never rejoins by
/// itself: without this the instance would sit idle, holding nothing.
/// Returns false when a new consumer cannot be made (the thread stops).
fn renew_if_fatal(
    consumer: &mut Arc<GovConsumer>,
    slot: &ConsumerSlot,
    lanes: &mut Vec<Lane>,
    rt: &tokio::runtime::Handle,
    setup: &ConsumerSetup,
    events: &mpsc::Sender<FromConsumer>,
) -> bool {
    let Some((code, reason)) = consumer.client().fatal_error() else {
        return true;
    };
    tracing::error!(
        error = %code, reason = %reason,
        "the Kafka consumer failed fatally; giving up its partitions and joining the group \
         again with a new consumer (the database watermark keeps the data exactly-once)"
    );
    outage::KAFKA.failed("consumer", &format!("{code}: {reason}"));
    // The partitions it holds: those read, and those assigned whose queue
    // the thread has not split off yet.
    let pending = std::mem::take(&mut *consumer.context().pending_mut());
    let mut held: Vec<i32> = lanes.iter().map(|l| l.partition).collect();
    held.extend(pending.assigned.iter().map(|(p, _)| *p));
    held.retain(|p| !pending.revoked.contains(p));
    held.sort_unstable();
    held.dedup();
    lanes.clear();
    consumer.context().retired.store(true, Ordering::SeqCst);
    consumer.context().revoke(held);
    let mut delay = Duration::from_millis(200);
    loop {
        match create(setup, events, rt) {
            Ok(c) => {
                slot.replace(c.clone());
                // The dead consumer goes when the committer lets go of it.
                *consumer = c;
                return true;
            }
            Err(e) if !setup.shutdown.is_cancelled() => {
                outage::KAFKA.failed("consumer", &e);
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(_) => return false,
        }
    }
}

fn consumer_loop(
    mut consumer: Arc<GovConsumer>,
    slot: Arc<ConsumerSlot>,
    rt: tokio::runtime::Handle,
    setup: ConsumerSetup,
    events: mpsc::Sender<FromConsumer>,
    commands: std_mpsc::Receiver<ToConsumer>,
) {
    let mut lanes: Vec<Lane> = Vec::new();
    let deliver = |batch: Vec<Incoming>| {
        // Messages fetched: Kafka answers (an outage ends once no failure
        // came for a moment: see telemetry::outage).
        outage::KAFKA.fetched();
        events.blocking_send(FromConsumer::Messages(batch)).is_ok()
    };
    'outer: loop {
        match commands.try_recv() {
            Ok(ToConsumer::Shutdown) | Err(std_mpsc::TryRecvError::Disconnected) => break,
            Err(std_mpsc::TryRecvError::Empty) => {}
        }
        // The main queue first: rebalances, errors, and messages fetched
        // before a partition's queue was split off (older than its queue's).
        // A failed poll may mean the consumer is dead ([`renew_if_fatal`]).
        let mut failed = false;
        while let Some(r) = consumer.poll(Duration::ZERO) {
            match r {
                Ok(m) if !deliver(vec![to_incoming(&m, &setup)]) => break 'outer,
                Ok(_) => {}
                Err(e) => {
                    outage::KAFKA.failed("consumer", &e);
                    failed = true;
                }
            }
        }
        if update_lanes(&consumer, &setup.topic, &mut lanes) {
            // A partition's queue was just split off: what was fetched for it
            // before is on the main queue, and goes first.
            continue;
        }
        let mut delivered = 0;
        for lane in &lanes {
            let room = lane.credit.room().min(TURN);
            let mut turn = Vec::new();
            for _ in 0..room {
                match lane.queue.poll(Duration::ZERO) {
                    Some(Ok(m)) => {
                        lane.credit.spend();
                        turn.push(to_incoming(&m, &setup));
                    }
                    Some(Err(e)) => {
                        outage::KAFKA.failed("consumer", &e);
                        failed = true;
                    }
                    None => break,
                }
            }
            delivered += turn.len();
            if !turn.is_empty() && !deliver(turn) {
                break 'outer;
            }
        }
        if delivered == 0 {
            match consumer.poll(IDLE_POLL) {
                Some(Ok(m)) if !deliver(vec![to_incoming(&m, &setup)]) => break,
                Some(Err(e)) => {
                    outage::KAFKA.failed("consumer", &e);
                    failed = true;
                }
                _ => {}
            }
        }
        if failed && !renew_if_fatal(&mut consumer, &slot, &mut lanes, &rt, &setup, &events) {
            break;
        }
    }
    // Leave the group: unsubscribing revokes the assignment through the
    // rebalance callback (which waits for the pipeline to drain).
    drop(lanes);
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

/// Applies what the rebalance callback left: revoked partitions' lanes go,
/// newly assigned partitions get their own queue. True when a queue was
/// split off.
fn update_lanes(consumer: &Arc<GovConsumer>, topic: &str, lanes: &mut Vec<Lane>) -> bool {
    let pending = std::mem::take(&mut *consumer.context().pending_mut());
    let split = !pending.assigned.is_empty();
    if !pending.revoked.is_empty() {
        lanes.retain(|l| !pending.revoked.contains(&l.partition));
    }
    for (partition, credit) in pending.assigned {
        lanes.retain(|l| l.partition != partition);
        match consumer.split_partition_queue(topic, partition) {
            Some(queue) => lanes.push(Lane {
                partition,
                queue,
                credit,
            }),
            None => tracing::error!(
                partition,
                "could not give the partition a queue of its own; it is not read"
            ),
        }
    }
    split
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
