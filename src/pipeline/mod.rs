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
//!
//! # Threads and channels
//!
//! ```text
//!  consumer thread (consumer.rs)          main loop (this file, partitions.rs)
//!  poll librdkafka, decode + check ──Message/Assigned/Revoked──▶ buffers (batcher.rs)
//!  pause / resume / shutdown ◀──────────ToConsumer───────────── dispatch: cut a batch
//!  rebalance callback waits ◀──────────revoke ack────────────── when its batches finished
//!                                                │ tokio::spawn per batch (apply.rs)
//!                                                ▼
//!                          rate limits (flow.rs) → DB transaction (sink::protocol)
//!                          retries by class (retry.rs)
//!                                                │ CommitRequest (std channel)
//!                                                ▼
//!                          committer thread (committer.rs): one Kafka transaction
//!                          for side outputs + offsets, batches grouped
//!                                                │ oneshot reply
//!                                                ▼
//!  main loop ◀────────────Completion (unbounded)── batch task
//! ```
//!
//! The consumer thread owns the consumer (librdkafka blocks, and the
//! rebalance callback must wait for the main loop). The main loop is one
//! task: it owns every partition's state, so no locks; a `biased` select
//! takes completions before new messages, which frees memory before more is
//! taken. The channel from the consumer is bounded ([`CHANNEL`]), the
//! per-partition buffers by `flow.max_buffered_per_partition` (credit), the
//! batches in flight by `flow.max_in_flight`.

pub mod apply;
pub mod batcher;
pub mod committer;
pub mod consumer;
pub mod flow;
pub mod memory;
pub mod partition;
pub mod partitions;
pub mod retry;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::apply::{BatchCtx, Completion};
use self::committer::Committer;
use self::consumer::FromConsumer;
use self::flow::Limits;
use self::partitions::Partitions;
use crate::config::Config;
use crate::sink::protocol::ApplyOptions;
use crate::sink::{Database, Outcome};

pub use self::partitions::BATCH_LOG_MAX;

/// Sends (of up to [`consumer::TURN`] messages of one partition) between
/// the consumer thread and the main loop. What they hold counts against the
/// partitions' credit, like their buffers.
pub const CHANNEL: usize = 64;

/// Live counters of a running pipeline (the demo's progress bar, tests).
#[derive(Debug, Default)]
pub struct Progress {
    /// Records by outcome, indexed like [`Outcome::ALL`].
    pub outcomes: [AtomicU64; 9],
    pub consumed: AtomicU64,
    pub batches: AtomicU64,
    pub assigned: AtomicUsize,
    pub stalled: AtomicUsize,
    /// Committed batches' transactions, for summaries and benchmarks: the
    /// latest [`BATCH_LOG_MAX`] at most (a long run must not grow it for
    /// ever).
    pub batch_log: Mutex<Vec<BatchTiming>>,
}

/// One committed batch's transaction, as the pipeline saw it.
#[derive(Debug, Clone, Copy)]
pub struct BatchTiming {
    pub partition: i32,
    pub records: usize,
    /// When its transaction began and committed.
    pub began: std::time::Instant,
    pub committed: std::time::Instant,
}

impl BatchTiming {
    pub fn latency(&self) -> Duration {
        self.committed.duration_since(self.began)
    }
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

    /// A batch's transaction committed just now.
    pub(crate) fn log_batch(&self, partition: i32, latency: Duration, records: usize) {
        let committed = std::time::Instant::now();
        let mut log = self.batch_log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() >= BATCH_LOG_MAX {
            log.drain(..BATCH_LOG_MAX / 2);
        }
        log.push(BatchTiming {
            partition,
            records,
            began: committed.checked_sub(latency).unwrap_or(committed),
            committed,
        });
    }

    pub(crate) fn add(&self, o: Outcome, n: u64) {
        let i = Outcome::ALL
            .iter()
            .position(|x| *x == o)
            .expect("known outcome");
        self.outcomes[i].fetch_add(n, Ordering::Relaxed);
    }
}

impl crate::telemetry::http::Readiness for Progress {
    fn partitions_assigned(&self) -> usize {
        self.assigned.load(Ordering::Relaxed)
    }
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
    tokio::spawn(watch_open_reviews(db.clone(), shutdown.clone()));
    tokio::spawn(keep_change_log(
        db.clone(),
        cfg.change_log_retention,
        shutdown.clone(),
    ));
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
        max_buffered: cfg.flow.max_buffered_per_partition,
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
            duplicates_met: Default::default(),
        },
        cfg: cfg.clone(),
        limits: Limits::new(cfg.flow.rate_per_region, cfg.flow.rate_global),
        completions: done_tx,
        progress: progress.clone(),
    });
    let mut state = Partitions::new(cfg.clone(), ctx, commands, progress);
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
                state.shut_down();
            }
            // The buffered gauges change with every message; they are set
            // here and when a batch is taken, not per message.
            _ = ticker.tick() => state.report_buffered(),
        }
        if !events_open && state.in_flight() == 0 {
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

/// How often the review gauges are refreshed from the database.
const REVIEWS_EVERY: Duration = Duration::from_secs(30);

/// Publishes the open review items as gauges (by priority and region, and
/// the age of the oldest per priority) now and every 30 s, until shutdown.
/// A failed read is logged once per failing stretch and tried at the next
/// turn.
async fn watch_open_reviews(db: Arc<dyn Database>, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        match db.open_reviews().await {
            Ok(open) => {
                crate::telemetry::metrics::open_reviews(&open, chrono::Utc::now());
                if std::mem::take(&mut failing) {
                    tracing::info!("the review gauges are read again");
                }
            }
            // Said once per failing stretch: a database outage is reported
            // by the batches already, a missing govsync_review_item (no
            // `govsync migrate`) must not go unnoticed.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "reading the open review items failed; the review gauges keep their last values until it works");
            }
            Err(e) => tracing::debug!(error = %e, "reading the open review items failed again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REVIEWS_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// How often the processor applies `change_log.retention`.
const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);

/// Applies the change log's retention now and every hour, until shutdown.
/// A failure is logged and tried again at the next turn: retention is
/// housekeeping, never a reason to stop applying batches.
async fn keep_change_log(db: Arc<dyn Database>, retention: Duration, shutdown: CancellationToken) {
    loop {
        match db.maintain(retention).await {
            Ok(done) => tracing::info!(retention = ?retention, "change log kept: {done}"),
            Err(e) => {
                tracing::warn!(error = %e, "change-log retention failed; trying again in an hour")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(MAINTAIN_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
