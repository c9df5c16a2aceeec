//! consume → decode/check → batch per partition → ONE database transaction
//! per batch → ONE Kafka transaction for the batch's side outputs and
//! offsets.
//!
//! # Delivery guarantee
//!
//! *Data*: exactly once. Each batch's database transaction also advances
//! the partition's watermark (group, topic, partition → next offset), under
//! a row lock. On assignment a partition starts at the higher of Kafka's
//! committed offset and the watermark; inside every transaction records
//! below the watermark are skipped. So a batch whose database commit
//! happened but whose Kafka commit did not is never applied twice, and a
//! zombie instance (one whose partition moved) cannot apply a batch twice
//! or move the watermark backwards.
//!
//! *Side outputs* (review and dead-letter messages): exactly once with
//! `kafka.delivery = transactional`. They are stored in the database outbox
//! in the batch's transaction, then published together with the offsets in
//! one Kafka transaction. Kafka's committed offset therefore says which
//! outbox rows are published: anything between it and the watermark is
//! republished (by the next batch of the partition, or at assignment).
//!
//! *Ordering*: at most one batch per partition is in flight (database and
//! Kafka stages), so results of one region apply in offset order.
//!
//! *Infrastructure faults* never dead-letter: a failing batch is retried by
//! error class, then the partition stalls and keeps retrying.

pub mod batcher;
pub mod committer;
pub mod consumer;
pub mod flow;
pub mod memory;
pub mod retry;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::batcher::Aimd;
use self::committer::{CommitError, Committer};
use self::consumer::{AssignedPartition, FromConsumer, Incoming, ToConsumer};
use self::flow::Limits;
use self::retry::{RetryState, Step};
use crate::config::Config;
use crate::event::{DataType, Priority};
use crate::message::OutMessage;
use crate::output::{self, Failure};
use crate::sink::protocol::{self, ApplyOptions, BatchReport};
use crate::sink::{Database, Outcome, PartitionKey, SinkBatch, SinkRecord};
use crate::telemetry::metrics;

/// Messages between the consumer thread and the main loop: with the
/// per-partition buffers and librdkafka's queue, what a backlog can put in
/// memory.
pub const CHANNEL: usize = 4096;

/// Entries [`Progress::batch_log`] keeps.
pub const BATCH_LOG_MAX: usize = 100_000;

/// Live counters of a running pipeline (the demo's progress bar, tests).
#[derive(Debug, Default)]
pub struct Progress {
    /// Records by outcome, indexed like [`Outcome::ALL`].
    pub outcomes: [AtomicU64; 9],
    pub consumed: AtomicU64,
    pub batches: AtomicU64,
    pub assigned: AtomicUsize,
    pub stalled: AtomicUsize,
    /// Commit latencies (µs) and sizes of committed batches, for summaries:
    /// the latest [`BATCH_LOG_MAX`] at most (a long run must not grow it
    /// for ever).
    pub batch_log: Mutex<Vec<(u64, usize)>>,
}

impl Progress {
    pub fn count(&self, o: Outcome) -> u64 {
        let i = Outcome::ALL
            .iter()
            .position(|x| *x == o)
            .expect("known outcome");
        self.outcomes[i].load(Ordering::Relaxed)
    }

    /// Records that reached a final outcome.
    pub fn done(&self) -> u64 {
        self.outcomes
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    fn add(&self, o: Outcome, n: u64) {
        let i = Outcome::ALL
            .iter()
            .position(|x| *x == o)
            .expect("known outcome");
        self.outcomes[i].fetch_add(n, Ordering::Relaxed);
    }
}

/// Per-partition state of the main loop.
struct PartitionState {
    buffer: VecDeque<Incoming>,
    /// When the buffer's head arrived (max_wait counts from it).
    oldest: Option<Instant>,
    /// High-priority records in the buffer.
    high: usize,
    in_flight: bool,
    /// Records of the in-flight batch. They count towards
    /// `max_buffered_per_partition` with the buffer: what bounds memory is
    /// every record the partition holds, not only those still waiting.
    in_flight_records: usize,
    /// Offsets and side outputs confirmed in Kafka up to here.
    kafka_confirmed: i64,
    /// The database watermark as far as we know.
    db_watermark: i64,
    /// Outbox rows were published since the last prune.
    outbox_dirty: bool,
    /// Side outputs between kafka_confirmed and the watermark still need
    /// publishing (after a failed Kafka commit, or found at assignment).
    needs_recovery: bool,
    aimd: Aimd,
    /// Paused in the consumer (buffer full, or stalled).
    paused: bool,
    /// The consumer's assignment this state belongs to (named in pause and
    /// resume commands).
    generation: u64,
    revoking: bool,
    /// Cancels (abandons) the in-flight batch at its next retry wait.
    cancel: CancellationToken,
    /// Regions of the in-flight batch (released when it completes).
    regions: Vec<String>,
}

enum Completion {
    Done {
        partition: i32,
        size: usize,
        was_full: bool,
        /// The upper size bound of the batch's data type: the target does
        /// not grow past what a batch may hold.
        ceiling: usize,
        result: BatchResult,
    },
    Stalled {
        partition: i32,
        stalled: bool,
    },
}

enum BatchResult {
    Committed(Box<Committed>),
    Abandoned,
}

struct Committed {
    report: BatchReport,
    records: Vec<SinkRecord>,
    rejected: Vec<RejectedMeta>,
    kafka: Result<(), CommitError>,
    failures: u32,
}

/// Labels of a record rejected before the database: (offset, data type,
/// region).
type RejectedMeta = (i64, Option<DataType>, Option<String>);

/// Shared by every batch task.
struct BatchCtx {
    db: Arc<dyn Database>,
    committer: Committer,
    opts: ApplyOptions,
    cfg: Arc<Config>,
    limits: Limits,
    completions: mpsc::UnboundedSender<Completion>,
}

/// Runs the processor until `shutdown` is cancelled (or the consumer
/// fails). In-flight batches are finished; buffered records are left for
/// the next run (their offsets were not committed).
pub async fn run(
    cfg: Arc<Config>,
    db: Arc<dyn Database>,
    shutdown: CancellationToken,
    progress: Arc<Progress>,
) -> anyhow::Result<()> {
    memory::tune();
    let mut trimmer = memory::Trimmer::default();
    let (ev_tx, mut events) = mpsc::channel::<FromConsumer>(CHANNEL);
    let setup = consumer::ConsumerSetup {
        config: crate::kafka::consumer_config(&cfg.kafka),
        topic: cfg.kafka.source_topic.clone(),
        group: cfg.kafka.group_id.clone(),
        rules: Arc::new(cfg.rules.clone()),
        max_message_bytes: cfg.kafka.max_message_bytes,
        db: db.clone(),
        revoke_timeout: Duration::from_secs(120),
        shutdown: shutdown.clone(),
    };
    let (consumer, commands, consumer_thread) = consumer::start(setup, ev_tx)?;
    let (committer, committer_thread) =
        Committer::start(&cfg.kafka, consumer.clone(), shutdown.clone())?;
    drop(consumer);

    let (done_tx, mut completions) = mpsc::unbounded_channel();
    let ctx = Arc::new(BatchCtx {
        db: db.clone(),
        committer,
        opts: ApplyOptions {
            review_topic: cfg.kafka.review_topic.clone(),
            dlq_topic: cfg.kafka.dlq_topic.clone(),
            policies: cfg.conflict.clone(),
            max_poison_fraction: cfg.max_poison_fraction,
        },
        cfg: cfg.clone(),
        limits: Limits::new(cfg.flow.rate_per_region, cfg.flow.rate_global),
        completions: done_tx,
    });
    let mut state = Loop {
        cfg: cfg.clone(),
        ctx,
        parts: BTreeMap::new(),
        in_flight: 0,
        region_in_flight: HashMap::new(),
        commands,
        revoke: None,
        progress,
    };
    let tick = (cfg.batch.max_wait / 4).clamp(Duration::from_millis(5), Duration::from_millis(100));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    let mut events_open = true;
    loop {
        tokio::select! {
            biased;
            Some(c) = completions.recv() => {
                let done = matches!(c, Completion::Done { .. });
                state.on_completion(c);
                if done {
                    trimmer.after_batch();
                }
            }
            ev = events.recv(), if events_open => match ev {
                Some(FromConsumer::Closed) | None => events_open = false,
                Some(ev) => state.on_event(ev),
            },
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                tracing::info!("shutting down: finishing in-flight batches, leaving the group");
                let _ = state.commands.send(ToConsumer::Shutdown);
                for p in state.parts.values() {
                    p.cancel.cancel();
                }
            }
            // The buffered gauges change with every message; they are set
            // here and when a batch is taken, not per message.
            _ = ticker.tick() => state.report_buffered(),
        }
        if !events_open && state.in_flight == 0 {
            break;
        }
        state.check_revoke_done();
        if !stopping {
            state.dispatch();
        }
    }
    drop(state);
    let joined = tokio::task::spawn_blocking(move || {
        let c = consumer_thread.join();
        let k = committer_thread.join();
        c.is_ok() && k.is_ok()
    })
    .await
    .unwrap_or(false);
    if !joined {
        anyhow::bail!("a pipeline thread panicked");
    }
    if !stopping {
        anyhow::bail!("the consumer stopped unexpectedly");
    }
    Ok(())
}

struct Loop {
    cfg: Arc<Config>,
    ctx: Arc<BatchCtx>,
    parts: BTreeMap<i32, PartitionState>,
    in_flight: usize,
    region_in_flight: HashMap<String, usize>,
    commands: std::sync::mpsc::Sender<ToConsumer>,
    revoke: Option<(HashSet<i32>, std::sync::mpsc::SyncSender<()>)>,
    progress: Arc<Progress>,
}

impl Loop {
    fn report_buffered(&self) {
        for (p, st) in &self.parts {
            metrics::buffered(*p, st.buffer.len());
        }
    }

    fn on_event(&mut self, ev: FromConsumer) {
        match ev {
            FromConsumer::Message(inc) => {
                self.progress.consumed.fetch_add(1, Ordering::Relaxed);
                let p = inc.raw.partition;
                let max_buffered = self.cfg.flow.max_buffered_per_partition;
                let Some(st) = self.parts.get_mut(&p) else {
                    return;
                };
                if st.revoking {
                    return;
                }
                if st.buffer.is_empty() {
                    st.oldest = Some(Instant::now());
                }
                if matches!(&inc.verdict, Ok(c) if c.priority == Priority::High) {
                    st.high += 1;
                }
                st.buffer.push_back(*inc);
                let buffered = st.buffer.len();
                let held = buffered + st.in_flight_records;
                if held >= max_buffered && !st.paused {
                    self.set_paused(p, true);
                    tracing::debug!(
                        partition = p,
                        buffered,
                        held,
                        "partition paused (buffer full)"
                    );
                }
            }
            FromConsumer::Assigned(list) => self.on_assigned(list),
            FromConsumer::Revoked { partitions, ack } => {
                for p in &partitions {
                    if let Some(st) = self.parts.get_mut(p) {
                        st.revoking = true;
                        st.cancel.cancel();
                    }
                }
                self.revoke = Some((partitions.into_iter().collect(), ack));
            }
            FromConsumer::Closed => {}
            FromConsumer::HighWatermarks(marks) => {
                for (p, high) in marks {
                    if let Some(st) = self.parts.get(&p) {
                        metrics::lag(p, high - st.db_watermark);
                    }
                }
            }
        }
    }

    fn on_assigned(&mut self, list: Vec<AssignedPartition>) {
        let b = &self.cfg.batch;
        for a in list {
            let committed = a.committed.unwrap_or(0);
            let watermark = a.watermark.unwrap_or(0);
            let st = PartitionState {
                buffer: VecDeque::new(),
                oldest: None,
                high: 0,
                in_flight: false,
                in_flight_records: 0,
                kafka_confirmed: committed,
                db_watermark: watermark,
                outbox_dirty: true,
                needs_recovery: watermark > committed,
                aimd: Aimd::new(
                    b.per_type.values().map(|x| x.0).min().unwrap_or(b.min_size),
                    b.min_size,
                    b.max_size,
                ),
                paused: false,
                generation: a.generation,
                revoking: false,
                cancel: CancellationToken::new(),
                regions: vec![],
            };
            if st.needs_recovery {
                tracing::info!(
                    partition = a.partition,
                    committed,
                    watermark,
                    "database is ahead of Kafka: republishing the outbox of the batches in between"
                );
            }
            metrics::target_size(a.partition, st.aimd.target());
            self.parts.insert(a.partition, st);
        }
        self.progress
            .assigned
            .store(self.parts.len(), Ordering::Relaxed);
        metrics::assigned(self.parts.len());
    }

    fn check_revoke_done(&mut self) {
        let Some((set, _)) = &self.revoke else { return };
        if set
            .iter()
            .any(|p| self.parts.get(p).is_some_and(|s| s.in_flight))
        {
            return;
        }
        let (set, ack) = self.revoke.take().expect("checked above");
        for p in &set {
            self.parts.remove(p);
            metrics::partition_released(*p);
        }
        self.progress
            .assigned
            .store(self.parts.len(), Ordering::Relaxed);
        metrics::assigned(self.parts.len());
        let _ = ack.send(());
    }

    fn on_completion(&mut self, c: Completion) {
        match c {
            Completion::Stalled { partition, stalled } => {
                metrics::stalled(partition, stalled);
                if stalled {
                    self.progress.stalled.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.progress.stalled.fetch_sub(1, Ordering::Relaxed);
                }
                if stalled && self.parts.get(&partition).is_some_and(|st| !st.paused) {
                    self.set_paused(partition, true);
                }
            }
            Completion::Done {
                partition,
                size,
                was_full,
                ceiling,
                result,
            } => {
                self.in_flight -= 1;
                metrics::in_flight(self.in_flight);
                let Some(st) = self.parts.get_mut(&partition) else {
                    return;
                };
                st.in_flight = false;
                st.in_flight_records = 0;
                for r in st.regions.drain(..) {
                    if let Some(n) = self.region_in_flight.get_mut(&r) {
                        *n -= 1;
                    }
                }
                match result {
                    BatchResult::Abandoned => {}
                    BatchResult::Committed(c) => {
                        let Committed {
                            report,
                            records,
                            rejected,
                            kafka,
                            failures,
                        } = *c;
                        st.db_watermark = st.db_watermark.max(report.watermark_after);
                        match kafka {
                            Ok(()) => {
                                st.kafka_confirmed = report.watermark_after;
                                st.needs_recovery = false;
                                st.outbox_dirty |= !report.outputs.is_empty()
                                    || !report.foreign_outputs.is_empty();
                            }
                            Err(e) => {
                                tracing::warn!(
                                    partition, error = %e,
                                    "the batch committed in the database but its Kafka commit failed; \
                                     its side outputs will be republished from the outbox"
                                );
                                st.needs_recovery = true;
                            }
                        }
                        if failures > 0 {
                            st.aimd.on_error(ceiling);
                        } else if size > 0 {
                            st.aimd.on_commit(
                                report.timings.total,
                                self.cfg.batch.target_commit_latency,
                                was_full,
                                ceiling,
                            );
                        }
                        metrics::target_size(partition, st.aimd.target());
                        if size > 0 {
                            record_metrics(&report, &records, &rejected, &self.progress);
                            let mut log = self.progress.batch_log.lock().expect("progress lock");
                            if log.len() >= BATCH_LOG_MAX {
                                log.drain(..BATCH_LOG_MAX / 2);
                            }
                            log.push((report.timings.total.as_micros() as u64, size));
                        }
                    }
                }
                if st.paused && st.buffer.len() <= self.cfg.flow.max_buffered_per_partition / 2 {
                    self.set_paused(partition, false);
                }
            }
        }
    }

    /// Pauses or resumes a partition in the consumer (and says so in the
    /// metrics).
    fn set_paused(&mut self, partition: i32, paused: bool) {
        let Some(st) = self.parts.get_mut(&partition) else {
            return;
        };
        st.paused = paused;
        let generation = st.generation;
        let cmd = if paused {
            ToConsumer::Pause {
                partition,
                generation,
            }
        } else {
            ToConsumer::Resume {
                partition,
                generation,
            }
        };
        let _ = self.commands.send(cmd);
        metrics::paused(partition, paused);
    }

    /// Starts batches for partitions that are ready, in [`dispatch_order`],
    /// within the in-flight caps.
    fn dispatch(&mut self) {
        let now = Instant::now();
        let max_wait = self.cfg.batch.max_wait;
        let mut ready: Vec<Ready> = Vec::new();
        for (p, st) in &self.parts {
            if st.in_flight || st.revoking {
                continue;
            }
            let size = self.batch_size(st);
            let wait = if st.high > 0 { max_wait / 4 } else { max_wait };
            let aged = st.oldest.is_some_and(|t| now.duration_since(t) >= wait);
            if st.buffer.len() >= size
                || (!st.buffer.is_empty() && aged)
                || (st.buffer.is_empty() && st.needs_recovery)
            {
                ready.push(Ready {
                    partition: *p,
                    high: st.high > 0,
                    since: st.oldest.unwrap_or(now),
                });
            }
        }
        for p in dispatch_order(ready) {
            if self.in_flight >= self.cfg.flow.max_in_flight {
                break;
            }
            let regions = self.head_regions(p);
            let cap = self.cfg.flow.max_in_flight_per_region;
            if regions
                .iter()
                .any(|r| self.region_in_flight.get(r).copied().unwrap_or(0) >= cap)
            {
                continue;
            }
            self.start_batch(p, regions);
        }
    }

    fn batch_size(&self, st: &PartitionState) -> usize {
        self.batch_size_and_ceiling(st).0
    }

    /// The next batch's size, and the upper bound of its head record's data
    /// type (within the absolute bounds and the rate limit's cap).
    fn batch_size_and_ceiling(&self, st: &PartitionState) -> (usize, usize) {
        let head_type = st
            .buffer
            .front()
            .and_then(|i| i.verdict.as_ref().ok())
            .map(|c| c.data_type);
        let bounds = head_type.map_or((self.cfg.batch.min_size, self.cfg.batch.max_size), |d| {
            self.cfg.batch.bounds(d)
        });
        let size = st.aimd.size_for(bounds);
        let ceiling = bounds.1.min(self.cfg.batch.max_size);
        match self.ctx.limits.batch_cap() {
            Some(cap) => (size.min(cap.max(1)), ceiling.min(cap.max(1))),
            None => (size, ceiling),
        }
    }

    fn head_regions(&self, p: i32) -> Vec<String> {
        let st = &self.parts[&p];
        let n = self.batch_size(st).min(st.buffer.len());
        let mut regions: Vec<String> = st
            .buffer
            .iter()
            .take(n)
            .filter_map(|i| {
                i.raw
                    .key
                    .as_ref()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        regions.sort();
        regions
    }

    fn start_batch(&mut self, p: i32, regions: Vec<String>) {
        let (size, ceiling) = self.batch_size_and_ceiling(&self.parts[&p]);
        let cfg = self.cfg.clone();
        let st = self.parts.get_mut(&p).expect("ready partition exists");
        let n = size.min(st.buffer.len());
        let was_full = n >= size;
        let items: Vec<Incoming> = st.buffer.drain(..n).collect();
        st.high = st
            .buffer
            .iter()
            .filter(|i| matches!(&i.verdict, Ok(c) if c.priority == Priority::High))
            .count();
        st.oldest = if st.buffer.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        st.in_flight = true;
        st.in_flight_records = n;
        st.cancel = CancellationToken::new();
        for r in &regions {
            *self.region_in_flight.entry(r.clone()).or_default() += 1;
        }
        st.regions = regions;
        self.in_flight += 1;
        metrics::in_flight(self.in_flight);
        metrics::buffered(p, st.buffer.len());

        let key = PartitionKey {
            group: cfg.kafka.group_id.clone(),
            topic: cfg.kafka.source_topic.clone(),
            partition: p,
        };
        let (first, last) = match (items.first(), items.last()) {
            (Some(f), Some(l)) => (f.raw.offset, l.raw.offset),
            // A recovery batch: nothing new, only the outbox to republish.
            _ => (st.db_watermark, st.db_watermark - 1),
        };
        let batch_id = format!("{}:{}:{}:{}-{}", key.group, key.topic, p, first, last);
        let mut records = Vec::with_capacity(items.len());
        let mut rejected = Vec::new();
        let mut rejected_meta = Vec::new();
        for inc in items {
            match inc.verdict {
                Ok(checked) => records.push(SinkRecord {
                    raw: inc.raw,
                    checked,
                }),
                Err(r) => {
                    let f = Failure {
                        class: r.rejection.class().to_string(),
                        message: r.rejection.to_string(),
                        batch_id: batch_id.clone(),
                        attempts: 1,
                        data_type: r.data_type.map(|d| d.as_str().to_string()),
                        region: r.region.clone(),
                        ..Default::default()
                    };
                    rejected.push((
                        inc.raw.offset,
                        output::dead_letter(&inc.raw, &f, &cfg.kafka.dlq_topic),
                    ));
                    rejected_meta.push((inc.raw.offset, r.data_type, r.region));
                }
            }
        }
        let batch = SinkBatch {
            batch_id: batch_id.clone(),
            key,
            expected_watermark: st.kafka_confirmed,
            first_offset: first,
            last_offset: last,
            records,
            rejected,
            prune_outbox_upto: st.outbox_dirty.then_some(st.kafka_confirmed),
            attempt: 1,
        };
        st.outbox_dirty = false;
        let cancel = st.cancel.clone();
        let ctx = self.ctx.clone();
        let span = tracing::info_span!("batch", batch_id = %batch_id, partition = p, first_offset = first, last_offset = last, records = n);
        tokio::spawn(
            async move {
                let result = run_batch(&ctx, batch, rejected_meta, cancel).await;
                let _ = ctx.completions.send(Completion::Done {
                    partition: p,
                    size: n,
                    was_full,
                    ceiling,
                    result,
                });
            }
            .instrument(span),
        );
    }
}

/// A partition with a batch ready to start.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ready {
    partition: i32,
    /// Its buffer holds `priority: high` records.
    high: bool,
    /// Since when its head has waited (its buffer's head arrived, or its
    /// previous batch started).
    since: Instant,
}

/// The order in which ready partitions get the free in-flight slots:
/// partitions holding `high` records first, then the one that has waited
/// longest (so standard partitions take turns and none is skipped for
/// ever). Within a partition records stay in offset order: priority
/// decides which partition goes next, never reorders a region.
fn dispatch_order(mut ready: Vec<Ready>) -> Vec<i32> {
    ready.sort_by(|a, b| {
        b.high
            .cmp(&a.high)
            .then(a.since.cmp(&b.since))
            .then(a.partition.cmp(&b.partition))
    });
    ready.into_iter().map(|r| r.partition).collect()
}

/// One batch: rate limits, the database transaction with retries, then the
/// Kafka commit.
async fn run_batch(
    ctx: &BatchCtx,
    mut batch: SinkBatch,
    rejected: Vec<RejectedMeta>,
    cancel: CancellationToken,
) -> BatchResult {
    let p = batch.key.partition;
    if ctx.limits.enabled() {
        let mut per_region: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &batch.records {
            *per_region
                .entry(r.checked.region_code.as_str())
                .or_default() += 1;
        }
        for (region, n) in per_region {
            tokio::select! {
                _ = ctx.limits.acquire(region, n) => {}
                _ = cancel.cancelled() => return BatchResult::Abandoned,
            }
        }
    }
    let mut retry = RetryState::default();
    let mut stalled = false;
    let report = loop {
        let started = Instant::now();
        let Some(attempt) = attempt(ctx, &batch, &cancel).await else {
            if stalled {
                let _ = ctx.completions.send(Completion::Stalled {
                    partition: p,
                    stalled: false,
                });
            }
            tracing::info!(
                partition = p,
                "in-flight transaction abandoned (partition revoked or shutting down); its records will be re-read"
            );
            return BatchResult::Abandoned;
        };
        match attempt {
            Ok(report) => {
                metrics::commit_latency(started.elapsed().as_secs_f64());
                metrics::batch("committed");
                break report;
            }
            Err(e) => {
                metrics::batch("failed");
                metrics::retry(e.class());
                let step = retry.next(&e, &ctx.cfg.retry);
                let msg = crate::telemetry::mask::digits_in(&e.to_string());
                match step {
                    Step::Retry(d) => {
                        tracing::warn!(partition = p, class = e.class(), attempt = batch.attempt, retry_in = ?d, error = %msg, "batch failed; retrying");
                    }
                    Step::Stalled(d) => {
                        if !stalled {
                            stalled = true;
                            let _ = ctx.completions.send(Completion::Stalled {
                                partition: p,
                                stalled: true,
                            });
                            tracing::error!(partition = p, class = e.class(), error = %msg,
                                "partition stalled: retries exhausted; it is paused and retried with backoff until the database recovers (nothing is dead-lettered)");
                        } else {
                            tracing::warn!(partition = p, class = e.class(), retry_in = ?d, error = %msg, "partition still stalled");
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(step.delay()) => {}
                    _ = cancel.cancelled() => {
                        if stalled {
                            let _ = ctx.completions.send(Completion::Stalled { partition: p, stalled: false });
                        }
                        tracing::info!(partition = p, "in-flight batch abandoned (partition revoked or shutting down); it will be re-read");
                        return BatchResult::Abandoned;
                    }
                }
                batch.attempt += 1;
            }
        }
    };
    if stalled {
        let _ = ctx.completions.send(Completion::Stalled {
            partition: p,
            stalled: false,
        });
        tracing::info!(partition = p, "partition recovered");
    }
    let mut outputs: Vec<OutMessage> = report.foreign_outputs.clone();
    outputs.extend(report.outputs.iter().cloned());
    let kafka = ctx
        .committer
        .commit(p, report.watermark_after, outputs)
        .await;
    if kafka.is_ok() {
        metrics::last_commit_now();
    }
    if !report.poison.is_empty() {
        tracing::warn!(
            partition = p,
            rejected = report.poison.len(),
            "the database rejected records; they were dead-lettered, the rest committed"
        );
    }
    tracing::debug!(
        applied = report.counts.get(&Outcome::Applied).copied().unwrap_or(0),
        total_ms = report.timings.total.as_millis() as u64,
        "batch committed"
    );
    BatchResult::Committed(Box::new(Committed {
        records: batch.records,
        rejected,
        report,
        kafka,
        failures: retry.failures(),
    }))
}

/// Grace a running transaction gets to finish after shutdown or revocation
/// is asked for: twice the target commit latency, within 1–10 s.
fn cancel_grace(cfg: &Config) -> Duration {
    (cfg.batch.target_commit_latency * 2).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// Longest a batch's transaction may run: `statement_timeout +
/// connect_timeout`. The database enforces statement_timeout per
/// statement, but nothing fires when the connection goes silent (a cut
/// network, a frozen server): past this the attempt counts as a timeout and
/// is retried on another connection.
fn transaction_deadline(cfg: &Config) -> Duration {
    cfg.database.statement_timeout + cfg.database.connect_timeout
}

/// One attempt of the batch's transaction. `None` when it was abandoned:
/// cancelled (shutdown, revocation) and still running after the grace.
/// Dropping an attempt is safe at any point: an uncommitted transaction
/// rolls back with its connection, and one whose COMMIT went through has
/// advanced the watermark, so its records are skipped when re-read.
async fn attempt(
    ctx: &BatchCtx,
    batch: &SinkBatch,
    cancel: &CancellationToken,
) -> Option<Result<BatchReport, crate::sink::SinkError>> {
    let deadline = transaction_deadline(&ctx.cfg);
    let grace = cancel_grace(&ctx.cfg);
    let apply = tokio::time::timeout(deadline, protocol::apply(ctx.db.as_ref(), batch, &ctx.opts));
    tokio::select! {
        biased;
        r = apply => Some(r.unwrap_or_else(|_| {
            Err(crate::sink::SinkError::transient(
                crate::sink::Transient::Timeout,
                format!("the transaction did not finish within {deadline:?} (statement_timeout + connect_timeout); its connection is presumed dead"),
            ))
        })),
        _ = async {
            cancel.cancelled().await;
            tokio::time::sleep(grace).await;
        } => None,
    }
}

/// Per-batch metric emission: counts aggregated by (outcome, data type,
/// region) first, so the recorder sees one update per label set.
fn record_metrics(
    report: &BatchReport,
    records: &[SinkRecord],
    rejected: &[RejectedMeta],
    progress: &Progress,
) {
    let mut counts: HashMap<(Outcome, &str, &str), u64> = HashMap::new();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let outcomes = || records.iter().zip(&report.outcomes);
    for (r, o) in outcomes() {
        *counts
            .entry((
                *o,
                r.checked.data_type.as_str(),
                r.checked.region_code.as_str(),
            ))
            .or_default() += 1;
    }
    metrics::end_to_end(
        outcomes()
            .filter(|(_, o)| o.wrote())
            .filter_map(|(r, _)| r.raw.timestamp_ms)
            .map(|ts| ((now_ms - ts).max(0) as f64) / 1000.0),
    );
    metrics::quality_gain(
        outcomes()
            .filter(|(_, o)| **o == Outcome::Applied)
            .filter_map(|(r, _)| r.checked.quality_gain),
    );
    for (offset, dt, region) in rejected {
        let dt = dt.map(|d| d.as_str()).unwrap_or("unknown");
        let region = region.as_deref().unwrap_or("unknown");
        let o = if *offset >= report.watermark_before {
            Outcome::Invalid
        } else {
            Outcome::Skipped
        };
        *counts.entry((o, dt, region)).or_default() += 1;
    }
    for ((o, dt, region), n) in counts {
        metrics::records(o.as_str(), dt, region, n);
        progress.add(o, n);
    }
    progress.batches.fetch_add(1, Ordering::Relaxed);
    metrics::batch_records(records.len() + rejected.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(partition: i32, high: bool, waited_ms: u64, now: Instant) -> Ready {
        Ready {
            partition,
            high,
            since: now - Duration::from_millis(waited_ms),
        }
    }

    #[test]
    fn partitions_with_high_priority_records_go_first_then_the_longest_waiting() {
        let now = Instant::now();
        let order = dispatch_order(vec![
            ready(0, false, 900, now),
            ready(1, true, 10, now),
            ready(2, false, 50, now),
            ready(3, true, 400, now),
            ready(4, false, 900, now),
        ]);
        assert_eq!(order, vec![3, 1, 0, 4, 2]);
    }

    /// With one free slot per round and a partition that always has high
    /// records, the high partition gets every slot; standard partitions
    /// take turns by waiting time, so each one gets a slot within as many
    /// rounds as there are standard partitions once the high work is done.
    #[test]
    fn a_high_partition_is_never_queued_behind_a_standard_backlog() {
        let start = Instant::now();
        let mut since: BTreeMap<i32, Instant> = (0..8).map(|p| (p, start)).collect();
        let mut served = Vec::new();
        for round in 0..16u64 {
            let now = start + Duration::from_millis(100 * (round + 1));
            // Partition 7 gets high records for the first 8 rounds.
            let cands = since
                .iter()
                .map(|(p, s)| Ready {
                    partition: *p,
                    high: *p == 7 && round < 8,
                    since: *s,
                })
                .collect();
            let p = dispatch_order(cands)[0];
            served.push(p);
            since.insert(p, now);
        }
        assert!(served[..8].iter().all(|p| *p == 7), "{served:?}");
        let mut rest = served[8..].to_vec();
        rest.sort();
        assert_eq!(
            rest,
            (0..8).collect::<Vec<_>>(),
            "then every partition in turn"
        );
    }
}
