//! One batch, from its cut to its completion: the rate limits, the
//! database transaction with its retries, then the Kafka commit of its side
//! outputs and offsets. Each batch runs as its own tokio task and ends by
//! sending a [`Completion`] to the main loop.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Progress;
use super::committer::{CommitError, Committer};
use super::consumer::Incoming;
use super::flow::Limits;
use super::partition::KafkaOutcome;
use super::retry::{RetryState, Step};
use crate::config::Config;
use crate::event::DataType;
use crate::message::OutMessage;
use crate::output::{self, Failure};
use crate::sink::protocol::{self, ApplyOptions, BatchReport};
use crate::sink::{Database, Outcome, PartitionKey, SinkBatch, SinkError, SinkRecord, Transient};
use crate::telemetry::{metrics, outage};

/// Shared by every batch task.
pub struct BatchCtx {
    pub db: Arc<dyn Database>,
    pub committer: Committer,
    pub opts: ApplyOptions,
    pub cfg: Arc<Config>,
    pub limits: Limits,
    pub completions: mpsc::UnboundedSender<Completion>,
    /// Counts by outcome (the demo's progress, tests).
    pub progress: Arc<Progress>,
}

/// What a batch task tells the main loop.
pub enum Completion {
    /// The batch's database transaction committed; its Kafka commit follows.
    DbCommitted(DbCommitted),
    /// The batch ended: committed in Kafka (or not), or abandoned.
    Done {
        partition: i32,
        /// Records of the batch (an abandoned batch's leave memory now).
        size: usize,
        result: BatchResult,
    },
    /// The partition's batch ran out of retries (`true`) or recovered.
    Stalled { partition: i32, stalled: bool },
}

/// A batch's transaction committed.
pub struct DbCommitted {
    pub partition: i32,
    /// Records of the batch: counted, and gone from memory.
    pub size: usize,
    pub was_full: bool,
    /// The upper size bound of the batch's data type: the target does not
    /// grow past what a batch may hold.
    pub ceiling: usize,
    /// Failed attempts before it committed.
    pub failures: u32,
    /// Its transaction's duration (the batch-size controller's input).
    pub latency: Duration,
    pub watermark_after: i64,
}

/// How a batch fits among its partition's others (see partition.rs).
pub struct Stage {
    /// The previous batch's Kafka outcome: this batch's Kafka commit waits
    /// for it, and is skipped when it failed.
    pub previous: Option<KafkaOutcome>,
    /// Where this batch's Kafka outcome goes, for the next batch.
    pub outcome: oneshot::Sender<bool>,
    pub was_full: bool,
    pub ceiling: usize,
}

pub enum BatchResult {
    Committed(Box<Committed>),
    Abandoned,
}

/// A batch whose transaction committed (its records were counted and let
/// go then), with how its Kafka commit went.
pub struct Committed {
    pub report: BatchReport,
    pub kafka: Result<(), CommitError>,
}

/// Labels of a record rejected before the database: (offset, data type,
/// region).
pub type RejectedMeta = (i64, Option<DataType>, Option<String>);

/// A cut batch ready to run: what [`build`] makes of the records.
pub struct Prepared {
    pub batch: SinkBatch,
    pub rejected: Vec<RejectedMeta>,
}

/// Turns a partition's cut records into a [`SinkBatch`]: checked records go
/// to the database, rejected ones become dead-letter messages written with
/// the batch (so they commit with it, exactly once).
pub fn build(
    cfg: &Config,
    key: PartitionKey,
    items: Vec<Incoming>,
    expected_watermark: i64,
    db_watermark: i64,
    prune_outbox_upto: Option<i64>,
) -> Prepared {
    let (first, last) = match (items.first(), items.last()) {
        (Some(f), Some(l)) => (f.raw.offset, l.raw.offset),
        // A recovery batch: nothing new, only the outbox to republish.
        _ => (db_watermark, db_watermark - 1),
    };
    let batch_id = format!(
        "{}:{}:{}:{}-{}",
        key.group, key.topic, key.partition, first, last
    );
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
                let f = Failure::new(r.rejection.class(), r.rejection.to_string(), &batch_id, 1)
                    .labelled(r.data_type, r.region.as_deref());
                rejected.push((
                    inc.raw.offset,
                    output::dead_letter(&inc.raw, &f, &cfg.kafka.dlq_topic),
                ));
                rejected_meta.push((inc.raw.offset, r.data_type, r.region));
            }
        }
    }
    Prepared {
        batch: SinkBatch {
            batch_id,
            key,
            expected_watermark,
            first_offset: first,
            last_offset: last,
            records,
            rejected,
            prune_outbox_upto,
            attempt: 1,
        },
        rejected: rejected_meta,
    }
}

/// One batch: rate limits, the database transaction with retries, then the
/// Kafka commit, after the previous batch's.
pub async fn run_batch(
    ctx: &BatchCtx,
    mut batch: SinkBatch,
    rejected: Vec<RejectedMeta>,
    cancel: CancellationToken,
    stage: Stage,
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
    let Some(report) = apply_with_retries(ctx, &mut batch, &mut retry, &cancel).await else {
        return BatchResult::Abandoned;
    };
    // The records reached their outcomes: count them and let them go, so
    // the partition's next batch can fill while this one commits in Kafka.
    let size = batch.records.len() + rejected.len();
    if size > 0 {
        record_metrics(&report, &batch.records, &rejected, &ctx.progress);
        ctx.progress.log_batch(p, report.timings.total, size);
    }
    drop(std::mem::take(&mut batch.records));
    let _ = ctx.completions.send(Completion::DbCommitted(DbCommitted {
        partition: p,
        size,
        was_full: stage.was_full,
        ceiling: stage.ceiling,
        failures: retry.failures(),
        latency: report.timings.total,
        watermark_after: report.watermark_after,
    }));
    let previous_ok = match stage.previous {
        Some(previous) => previous.await.unwrap_or(false),
        None => true,
    };
    let kafka = if previous_ok {
        let mut outputs: Vec<OutMessage> = report.foreign_outputs.clone();
        outputs.extend(report.outputs.iter().cloned());
        ctx.committer
            .commit(p, report.watermark_after, outputs)
            .await
    } else {
        // Committing these offsets would pass the earlier batch's side
        // outputs, which did not reach Kafka: both are republished from the
        // outbox by the partition's next batch.
        Err(CommitError::Failed(
            "an earlier batch's Kafka commit failed; republishing from the outbox".into(),
        ))
    };
    let _ = stage.outcome.send(kafka.is_ok());
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
    BatchResult::Committed(Box::new(Committed { report, kafka }))
}

/// The database transaction, retried by error class until it commits;
/// `None` when it was abandoned (partition revoked, shutting down). A
/// partition whose retries ran out is reported stalled, and recovered when
/// the transaction finally commits or is abandoned.
async fn apply_with_retries(
    ctx: &BatchCtx,
    batch: &mut SinkBatch,
    retry: &mut RetryState,
    cancel: &CancellationToken,
) -> Option<BatchReport> {
    let p = batch.key.partition;
    // `Some(by_outage)` while the partition is stalled; stalled by a
    // database outage (connection, timeout), its lines are the outage's.
    let mut stalled: Option<bool> = None;
    let set_stalled = |stalled: bool| {
        let _ = ctx.completions.send(Completion::Stalled {
            partition: p,
            stalled,
        });
    };
    let unstall = |by_outage: bool| {
        set_stalled(false);
        if by_outage {
            outage::DATABASE.stall(false);
        }
    };
    loop {
        let started = Instant::now();
        let Some(attempt) = attempt(ctx, batch, cancel).await else {
            if let Some(by_outage) = stalled {
                unstall(by_outage);
            }
            tracing::info!(
                partition = p,
                "in-flight transaction abandoned (partition revoked or shutting down); its records will be re-read"
            );
            return None;
        };
        let e = match attempt {
            Ok(report) => {
                metrics::commit_latency(started.elapsed().as_secs_f64());
                metrics::batch("committed");
                outage::DATABASE.recovered();
                match stalled {
                    Some(true) => {
                        unstall(true);
                        tracing::debug!(partition = p, "partition recovered");
                    }
                    Some(false) => {
                        unstall(false);
                        tracing::info!(partition = p, "partition recovered");
                    }
                    None => {}
                }
                return Some(report);
            }
            Err(e) => e,
        };
        metrics::batch("failed");
        metrics::retry(e.class());
        let step = retry.next(&e, &ctx.cfg.retry);
        let msg = crate::telemetry::mask::digits_in(&e.to_string());
        // The database unreachable: one outage, logged as such (a line when
        // it starts, a summary a minute, a line when it ends), not a line
        // per attempt and partition.
        let unreachable = matches!(e.class(), "connection" | "timeout");
        if unreachable {
            outage::DATABASE.failed(e.class(), &msg);
        }
        match step {
            Step::Retry(d) if unreachable => {
                tracing::debug!(partition = p, class = e.class(), attempt = batch.attempt, retry_in = ?d, error = %msg, "batch failed; retrying");
            }
            Step::Retry(d) => {
                tracing::warn!(partition = p, class = e.class(), attempt = batch.attempt, retry_in = ?d, error = %msg, "batch failed; retrying");
            }
            Step::Stalled(d) => {
                if stalled.is_none() {
                    stalled = Some(unreachable);
                    set_stalled(true);
                    if unreachable {
                        outage::DATABASE.stall(true);
                        tracing::debug!(partition = p, class = e.class(), error = %msg, "partition stalled");
                    } else {
                        tracing::error!(partition = p, class = e.class(), error = %msg,
                            "partition stalled: retries exhausted; it is paused and retried with backoff until the database recovers (nothing is dead-lettered)");
                    }
                } else if unreachable {
                    tracing::debug!(partition = p, class = e.class(), retry_in = ?d, error = %msg, "partition still stalled");
                } else {
                    tracing::warn!(partition = p, class = e.class(), retry_in = ?d, error = %msg, "partition still stalled");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(step.delay()) => {}
            _ = cancel.cancelled() => {
                if let Some(by_outage) = stalled {
                    unstall(by_outage);
                }
                tracing::info!(partition = p, "in-flight batch abandoned (partition revoked or shutting down); it will be re-read");
                return None;
            }
        }
        batch.attempt += 1;
    }
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
) -> Option<Result<BatchReport, SinkError>> {
    let deadline = transaction_deadline(&ctx.cfg);
    let grace = cancel_grace(&ctx.cfg);
    let apply = tokio::time::timeout(deadline, protocol::apply(ctx.db.as_ref(), batch, &ctx.opts));
    tokio::select! {
        biased;
        r = apply => Some(r.unwrap_or_else(|_| {
            Err(SinkError::transient(
                Transient::Timeout,
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
pub fn record_metrics(
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
