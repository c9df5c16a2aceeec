//! The batch protocol, written once for every database.
//!
//! One call of [`apply`] is one database transaction (two when a record is
//! rejected, see below). The steps, and the guarantee each carries:
//!
//! | step | statement(s) | guarantee |
//! |---|---|---|
//! | 1. lock the watermark | `SELECT … FOR UPDATE` of (group, topic, partition) | one batch of a partition at a time, across instances; records below it were applied (a zombie, a crash) and are skipped, the outbox of the batches in between is returned for republishing |
//! | 2. read the snapshot | the rows `FOR UPDATE`, govsync's row states (and, see below, the change log's entries of these results) | row locks: nobody changes a row between its read and its write; staleness |
//! | 3. plan | none ([`super::plan`], pure) | outcomes decided against the rows as they are |
//! | 4. write | change log (before and after images), rows, row states, outbox, ledger, watermark: ONE statement on PostgreSQL, one per kind elsewhere | audit and rollback backup; dedupe: the change log's unique key (event id, governed at) rejects a result logged before; side outputs stored with the data; the watermark moves with the data |
//! | 5. verify | the written rows as stored (`RETURNING` on PostgreSQL, a re-read elsewhere) compared with the plan | nothing the database changed (a trigger, a rule) goes unnoticed |
//! | 6. commit | | all of it or nothing |
//!
//! No savepoint on the way: a record the database rejects (value too long,
//! a constraint) fails the write, the transaction is dropped, and the batch
//! is applied again in a new transaction that writes the changes inside a
//! savepoint and finds the record by bisection; it is dead-lettered alone,
//! the rest commits.
//!
//! Dedupe costs no read on the way either. Every outcome the plan gives a
//! result, except `duplicate`, is logged ([`Outcome::is_logged`]), so a
//! result logged before makes the change log's unique key reject the
//! write: the first attempt fails like one with a rejected record, and the
//! second (bisecting) attempt reads the change log's entries of the
//! batch's results, plans them as duplicates and writes the rest. Because a
//! replay brings duplicates in runs, for a minute after one was met every
//! first attempt reads the entries too ([`DuplicatesMet`]).
//!
//! Nothing here talks to Kafka: the caller publishes the returned outputs and
//! commits the offsets after this commit (see `pipeline`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::plan::{self, Decision, Outcome, Plan, RowWrite, Snapshot};
use super::{
    Database, EventKey, LedgerEntry, LogEntry, SinkBatch, SinkError, SinkResult, Stored, Tx, Writes,
};
use crate::event::{Checked, Column, ConflictPolicy, DataType, Row};
use crate::message::OutMessage;
use crate::output::{self, Failure, ReviewReason};

/// Settings of the protocol (from the config).
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub review_topic: String,
    pub dlq_topic: String,
    pub policies: HashMap<DataType, ConflictPolicy>,
    /// More rejected records than this fraction of a batch means something
    /// systemic (a schema change): fail the batch instead of dead-lettering.
    pub max_poison_fraction: f64,
    /// When a batch last met a result logged before.
    pub duplicates_met: DuplicatesMet,
}

impl ApplyOptions {
    fn policy(&self, dt: DataType) -> ConflictPolicy {
        self.policies.get(&dt).copied().unwrap_or_default()
    }
}

/// What a committed batch did.
#[derive(Debug, Clone, Default)]
pub struct BatchReport {
    /// One per `SinkBatch::records` entry.
    pub outcomes: Vec<Outcome>,
    /// Review and dead-letter messages of this batch, in offset order.
    pub outputs: Vec<OutMessage>,
    /// Outbox of batches another instance applied: publish these too.
    pub foreign_outputs: Vec<OutMessage>,
    pub watermark_before: i64,
    pub watermark_after: i64,
    pub counts: BTreeMap<Outcome, usize>,
    /// Records rejected by the database: (offset, SQLSTATE/ORA code).
    pub poison: Vec<(i64, Option<String>)>,
    pub timings: Timings,
}

#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub read: Duration,
    pub write: Duration,
    pub verify: Duration,
    pub commit: Duration,
    pub total: Duration,
    /// Each database round trip of the transaction, in order (the sink
    /// benchmark prints them).
    pub steps: Vec<(&'static str, Duration)>,
}

/// Awaits one step of the transaction and records how long it took.
async fn step<T>(
    timings: &mut Timings,
    name: &'static str,
    f: impl std::future::Future<Output = SinkResult<T>>,
) -> SinkResult<T> {
    let t = Instant::now();
    let r = f.await;
    timings.steps.push((name, t.elapsed()));
    r
}

/// When (seconds since the Unix epoch) a batch last met a result already
/// in the change log; 0: never. Shared by the clones of [`ApplyOptions`]
/// (all partitions of a process). A hint for [`reads_seen`], never needed
/// for correctness.
#[derive(Debug, Clone, Default)]
pub struct DuplicatesMet(Arc<AtomicU64>);

/// How long after meeting a duplicate first attempts read the change log.
const READ_SEEN_AFTER_DUPLICATE: u64 = 60;

impl DuplicatesMet {
    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn record(&self) {
        self.0.store(Self::now(), Ordering::Relaxed);
    }

    fn recently(&self) -> bool {
        Self::now().saturating_sub(self.0.load(Ordering::Relaxed)) < READ_SEEN_AFTER_DUPLICATE
    }
}

/// Whether an attempt reads the change log's entries of its results
/// before planning (see the module doc).
fn reads_seen(mode: Mode, opts: &ApplyOptions) -> bool {
    mode == Mode::Bisect || opts.duplicates_met.recently()
}

/// How the changes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Everything in one write, no savepoint.
    Fast,
    /// The changes inside a savepoint, records the database rejects found
    /// by bisection.
    Bisect,
}

/// Applies one batch in one transaction.
pub async fn apply(
    db: &dyn Database,
    batch: &SinkBatch,
    opts: &ApplyOptions,
) -> SinkResult<BatchReport> {
    match attempt(db, batch, opts, Mode::Fast).await {
        Err(SinkError::Record { .. }) => {
            // The fast transaction is gone (dropped uncommitted): the batch
            // again, finding the record the database rejects, or planning
            // the results logged before as duplicates.
            let report = attempt(db, batch, opts, Mode::Bisect).await?;
            if report.counts.contains_key(&Outcome::Duplicate) {
                opts.duplicates_met.record();
            }
            Ok(report)
        }
        other => other,
    }
}

async fn attempt(
    db: &dyn Database,
    batch: &SinkBatch,
    opts: &ApplyOptions,
    mode: Mode,
) -> SinkResult<BatchReport> {
    let started = Instant::now();
    let started_at = Utc::now();
    let mut report = BatchReport::default();
    let t = &mut report.timings;
    let mut tx = step(t, "begin", db.begin()).await?;

    let w_db = step(t, "lock watermark", tx.lock_watermark(&batch.key)).await?;
    report.watermark_before = w_db;
    if w_db > batch.expected_watermark {
        report.foreign_outputs = step(
            &mut report.timings,
            "read outbox",
            tx.read_outbox(&batch.key, batch.expected_watermark, w_db),
        )
        .await?;
    }
    let live: Vec<usize> = (0..batch.records.len())
        .filter(|&i| batch.records[i].raw.offset >= w_db)
        .collect();
    let checked: Vec<&Checked> = live.iter().map(|&i| &batch.records[i].checked).collect();
    let rejected_live = batch
        .rejected
        .iter()
        .filter(|(off, _)| *off >= w_db)
        .count();
    if live.is_empty() && rejected_live == 0 {
        // Nothing of ours left to apply: a recovery batch, or records another
        // instance applied already. Only the foreign outbox goes out.
        report.outcomes = vec![Outcome::Skipped; batch.records.len()];
        let skipped = batch.records.len() + batch.rejected.len();
        if skipped > 0 {
            report.counts.insert(Outcome::Skipped, skipped);
        }
        report.watermark_after = w_db;
        tx.commit().await?;
        report.timings.total = started.elapsed();
        return Ok(report);
    }

    let ids: Vec<String> = checked
        .iter()
        .map(|c| c.customer_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let events: Vec<EventKey> = if reads_seen(mode, opts) {
        checked
            .iter()
            .map(|c| (c.event_id.clone(), c.governed_at))
            .collect()
    } else {
        Vec::new()
    };
    let snap = step(
        &mut report.timings,
        "read snapshot",
        tx.read_snapshot(&ids, &events),
    )
    .await?;
    report.timings.read = started.elapsed();

    let t_write = Instant::now();
    let (plan, poison) = match mode {
        Mode::Fast => {
            let include = vec![true; checked.len()];
            let map = tx.table_map();
            let plan = plan::plan(
                &checked,
                &include,
                &snap,
                |dt| opts.policy(dt),
                |c, v| map.normalize(c, v),
            );
            (plan, Vec::new())
        }
        Mode::Bisect => {
            bisect(
                tx.as_mut(),
                batch,
                &live,
                &checked,
                &snap,
                opts,
                &mut report.timings,
            )
            .await?
        }
    };
    let log = log_entries(batch, &live, &checked, &plan);
    let review_items = review_items(batch, &checked, &plan, &snap, &tx.table_map());
    record_outcomes(&mut report, batch, &live, &plan, &poison, opts, w_db);

    let next = batch.next_offset().max(w_db);
    let ledger = ledger_entry(batch, &report, started_at, started);
    let writes = Writes {
        batch_id: &batch.batch_id,
        log: &log,
        updates: &plan.updates,
        inserts: &plan.inserts,
        deletes: &[],
        state: &plan.state,
        review_items: &review_items,
        review_log: &log,
        outbox: Some((&batch.key, next, &report.outputs)),
        prune_outbox: batch.prune_outbox_upto.map(|upto| (&batch.key, upto)),
        ledger: Some(&ledger),
        watermark: Some((&batch.key, next)),
    };
    let writes = match mode {
        Mode::Fast => writes,
        // The changes were written inside the bisection's savepoint.
        Mode::Bisect => writes.without_changes(),
    };
    let stored = step(&mut report.timings, "write", tx.write(&writes)).await?;
    report.watermark_after = next;
    report.timings.write = t_write.elapsed();

    let t_verify = Instant::now();
    let written = written_ids(&plan.updates, &plan.inserts);
    match stored {
        Stored::Compared { written: n, differ } if mode == Mode::Fast => {
            if n != written.len() {
                return Err(SinkError::Verification(format!(
                    "wrote {n} rows, expected {}",
                    written.len()
                )));
            }
            if !differ.is_empty() {
                // Say what differs: the rows as they are now, against the plan.
                let rows = tx.read_rows(&differ).await?;
                verify(&plan.updates, &plan.inserts, &rows, &differ)?;
                return Err(SinkError::Verification(format!(
                    "the database reports rows that differ from what was written: {}",
                    differ.join(", ")
                )));
            }
        }
        _ if !written.is_empty() => {
            let rows = step(&mut report.timings, "verify (read)", tx.read_rows(&written)).await?;
            verify(&plan.updates, &plan.inserts, &rows, &written)?;
        }
        _ => {}
    }
    report.timings.verify = t_verify.elapsed();

    crate::failpoint::hit("db_before_commit");
    let t_commit = Instant::now();
    step(&mut report.timings, "commit", tx.commit()).await?;
    report.timings.commit = t_commit.elapsed();
    report.timings.total = started.elapsed();
    crate::failpoint::hit("db_after_commit");
    Ok(report)
}

/// Outcomes, side outputs (in offset order) and counts of a planned batch.
fn record_outcomes(
    report: &mut BatchReport,
    batch: &SinkBatch,
    live: &[usize],
    plan: &Plan,
    poison: &[(usize, SinkError)],
    opts: &ApplyOptions,
    w_db: i64,
) {
    report.outcomes = vec![Outcome::Skipped; batch.records.len()];
    let mut outputs: Vec<(i64, OutMessage)> = batch
        .rejected
        .iter()
        .filter(|(off, _)| *off >= w_db)
        .cloned()
        .collect();
    let rejected_live = outputs.len();
    let poison_err: HashMap<usize, &SinkError> = poison.iter().map(|(i, e)| (*i, e)).collect();
    for (j, &i) in live.iter().enumerate() {
        let rec = &batch.records[i];
        let (outcome, out) = match (&plan.decisions[j], poison_err.get(&j)) {
            (Some(d), _) => (d.outcome, side_output(batch, rec, d, opts)),
            (None, Some(err)) => {
                let (code, constraint) = match err {
                    SinkError::Record {
                        code, constraint, ..
                    } => (code.clone(), constraint.clone()),
                    _ => (None, None),
                };
                report.poison.push((rec.raw.offset, code.clone()));
                let f = Failure::new(
                    "db_rejected",
                    err.to_string(),
                    &batch.batch_id,
                    batch.attempt,
                )
                .labelled(Some(rec.checked.data_type), Some(&rec.checked.region_code))
                .rejected_by_db(code, constraint);
                (
                    Outcome::Poison,
                    Some(output::dead_letter(&rec.raw, &f, &opts.dlq_topic)),
                )
            }
            (None, None) => unreachable!("a record is excluded only when it is poison"),
        };
        report.outcomes[i] = outcome;
        if let Some(m) = out {
            outputs.push((rec.raw.offset, m));
        }
    }
    outputs.sort_by_key(|(off, _)| *off);
    report.outputs = outputs.into_iter().map(|(_, m)| m).collect();
    for o in &report.outcomes {
        *report.counts.entry(*o).or_default() += 1;
    }
    if rejected_live > 0 {
        *report.counts.entry(Outcome::Invalid).or_default() += rejected_live;
    }
    let skipped_rejected = batch.rejected.len() - rejected_live;
    if skipped_rejected > 0 {
        *report.counts.entry(Outcome::Skipped).or_default() += skipped_rejected;
    }
}

fn ledger_entry(
    batch: &SinkBatch,
    report: &BatchReport,
    started_at: chrono::DateTime<Utc>,
    started: Instant,
) -> LedgerEntry {
    LedgerEntry {
        batch_id: batch.batch_id.clone(),
        kind: "apply".into(),
        group: batch.key.group.clone(),
        topic: batch.key.topic.clone(),
        partition: batch.key.partition,
        first_offset: batch.first_offset,
        last_offset: batch.last_offset,
        records: (batch.records.len() + batch.rejected.len()) as i64,
        counts: report
            .counts
            .iter()
            .map(|(o, n)| (o.as_str().to_string(), *n as i64))
            .collect(),
        started_at,
        duration_ms: started.elapsed().as_millis() as i64,
        attempts: batch.attempt as i32,
        status: "committed".into(),
    }
}

/// Plans and writes the changes inside a savepoint, excluding the records
/// the database rejects one by one ([`find_culprit`]). Returns the plan
/// whose changes are written and the rejected records (index into
/// `checked`, error).
#[allow(clippy::too_many_arguments)]
async fn bisect(
    tx: &mut dyn Tx,
    batch: &SinkBatch,
    live: &[usize],
    checked: &[&Checked],
    snap: &Snapshot,
    opts: &ApplyOptions,
    timings: &mut Timings,
) -> SinkResult<(Plan, Vec<(usize, SinkError)>)> {
    let mut include = vec![true; checked.len()];
    let mut poison: Vec<(usize, SinkError)> = Vec::new();
    let max_poison = ((checked.len() as f64 * opts.max_poison_fraction).floor() as usize).max(1);
    loop {
        let map = tx.table_map();
        let plan = plan::plan(
            checked,
            &include,
            snap,
            |dt| opts.policy(dt),
            |c, v| map.normalize(c, v),
        );
        let log = log_entries(batch, live, checked, &plan);
        step(timings, "savepoint", tx.savepoint()).await?;
        let changes = Writes::changes(&batch.batch_id, &log, &plan.updates, &plan.inserts);
        match step(timings, "write changes", tx.write(&changes)).await {
            Ok(_) => {
                step(timings, "release savepoint", tx.release_savepoint()).await?;
                return Ok((plan, poison));
            }
            Err(err @ SinkError::Record { .. }) => {
                tx.rollback_to_savepoint().await?;
                let (culprit, err) =
                    find_culprit(tx, batch, live, checked, &include, snap, opts, err).await?;
                include[culprit] = false;
                poison.push((culprit, err));
                if poison.len() > max_poison {
                    return Err(SinkError::Fatal(format!(
                        "the database rejected more than {max_poison} of {} records (last: {}); \
                         this looks systemic, so the batch is not dead-lettered",
                        checked.len(),
                        poison
                            .last()
                            .map(|(_, e)| e.to_string())
                            .unwrap_or_default()
                    )));
                }
            }
            Err(other) => return Err(other),
        }
    }
}

pub(super) fn log_entries(
    batch: &SinkBatch,
    live: &[usize],
    checked: &[&Checked],
    plan: &Plan,
) -> Vec<LogEntry> {
    let mut out = Vec::with_capacity(checked.len());
    for (j, d) in plan.decisions.iter().enumerate() {
        let Some(d) = d else { continue };
        if !d.outcome.is_logged() {
            continue;
        }
        let c = checked[j];
        out.push(LogEntry {
            event_id: c.event_id.clone(),
            customer_id: c.customer_id.clone(),
            data_type: c.data_type,
            operation: d.operation.to_string(),
            outcome: d.outcome.as_str(),
            governed_at: c.governed_at,
            before: d.before.clone(),
            after: d.after.clone(),
            partition: batch.key.partition,
            offset: batch.records[live[j]].raw.offset,
        });
    }
    out
}

/// The review items a planned batch raises, one per record it sends to
/// the review topic. Records are taken in offset order: an item is raised
/// superseded when a later record of the same batch applies a result for
/// the same customer and data type (the open items of earlier batches are
/// superseded by the write, from the change log: [`super::supersessions`]).
/// A held result (govsync's check contradicts the engine) older than a
/// result already applied for its customer and data type is raised
/// superseded too: the message still goes to the review topic, but nobody
/// needs to decide on data that has moved on. Nothing is allocated for a
/// batch that raises no item (most of them).
fn review_items(
    batch: &SinkBatch,
    checked: &[&Checked],
    plan: &Plan,
    snap: &Snapshot,
    map: &super::table::TableMap,
) -> Vec<super::ReviewItem> {
    let reason = |d: &Decision| match d.outcome {
        Outcome::Flagged => Some(ReviewReason::Flagged),
        Outcome::Review => Some(ReviewReason::CheckContradiction),
        Outcome::Conflict => Some(ReviewReason::Conflict),
        _ => None,
    };
    let raising: std::collections::HashSet<(&str, DataType)> = plan
        .decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.as_ref().and_then(reason).is_some())
        .map(|(j, _)| (checked[j].customer_id.as_str(), checked[j].data_type))
        .collect();
    if raising.is_empty() {
        return Vec::new();
    }
    let mapped: Vec<Column> = map.mapped().map(|(c, _)| c).collect();
    let mut items: Vec<super::ReviewItem> = Vec::new();
    // Of the customers and data types that raise an item: when the last
    // result applied so far in this batch was governed.
    let mut applied: HashMap<(&str, DataType), chrono::DateTime<Utc>> = HashMap::new();
    for (j, d) in plan.decisions.iter().enumerate() {
        let Some(d) = d else { continue };
        let c = checked[j];
        let key = (c.customer_id.as_str(), c.data_type);
        if !raising.contains(&key) {
            continue;
        }
        if d.outcome.wrote() {
            for it in items.iter_mut().filter(|it| {
                it.status == "open"
                    && it.customer_id == c.customer_id
                    && it.data_type == c.data_type
            }) {
                it.status = "superseded";
                it.superseded_by = Some(c.event_id.clone());
            }
            applied.insert(key, c.governed_at);
        }
        let Some(reason) = reason(d) else { continue };
        let newest_applied = applied
            .get(&key)
            .copied()
            .max(snap.last_governed(&c.customer_id, c.data_type));
        let stale =
            d.outcome == Outcome::Review && newest_applied.is_some_and(|t| t > c.governed_at);
        let mut proposed = serde_json::Map::new();
        for (col, v) in c.proposal() {
            proposed.insert(
                col.name().to_string(),
                serde_json::to_value(v).unwrap_or_default(),
            );
        }
        items.push(super::ReviewItem {
            event_id: c.event_id.clone(),
            batch_id: batch.batch_id.clone(),
            customer_id: c.customer_id.clone(),
            data_type: c.data_type,
            region_code: c.region_code.clone(),
            reason: output::reason_name(reason),
            priority: output::review_priority(c, reason),
            details: serde_json::to_string(&d.details).unwrap_or_else(|_| "[]".into()),
            proposed: serde_json::Value::Object(proposed).to_string(),
            current: d.raised.as_ref().map(|r| r.image_json(&mapped)),
            row_version: d.raised.as_ref().map(|r| r.version),
            governed_at: c.governed_at,
            status: if stale { "superseded" } else { "open" },
            superseded_by: None,
        });
    }
    items
}

fn side_output(
    batch: &SinkBatch,
    rec: &super::SinkRecord,
    d: &Decision,
    opts: &ApplyOptions,
) -> Option<OutMessage> {
    let c = &rec.checked;
    let review = |reason, written| {
        output::review(
            &rec.raw,
            c,
            reason,
            &d.details,
            written,
            d.current.as_deref(),
            &batch.batch_id,
            &opts.review_topic,
        )
    };
    match d.outcome {
        Outcome::Flagged => Some(review(ReviewReason::Flagged, true)),
        Outcome::Review => Some(review(ReviewReason::CheckContradiction, false)),
        Outcome::Conflict => Some(review(ReviewReason::Conflict, false)),
        Outcome::Invalid => {
            let f = Failure::new(
                "target_missing",
                d.details.join("; "),
                &batch.batch_id,
                batch.attempt,
            )
            .labelled(Some(c.data_type), Some(&c.region_code));
            Some(output::dead_letter(&rec.raw, &f, &opts.dlq_topic))
        }
        _ => None,
    }
}

/// Finds one record whose inclusion makes the write fail: binary search
/// for the shortest failing prefix, each probe inside a savepoint that is
/// rolled back. Returns the record's index into `checked` and its error.
#[allow(clippy::too_many_arguments)]
async fn find_culprit(
    tx: &mut dyn Tx,
    batch: &SinkBatch,
    live: &[usize],
    checked: &[&Checked],
    include: &[bool],
    snap: &Snapshot,
    opts: &ApplyOptions,
    first_err: SinkError,
) -> SinkResult<(usize, SinkError)> {
    let candidates: Vec<usize> = (0..checked.len()).filter(|&i| include[i]).collect();
    let (mut lo, mut hi) = (0usize, candidates.len());
    let mut hi_err = first_err;
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        let mut probe = vec![false; checked.len()];
        for &i in &candidates[..mid] {
            probe[i] = true;
        }
        let map = tx.table_map();
        let plan = plan::plan(
            checked,
            &probe,
            snap,
            |dt| opts.policy(dt),
            |c, v| map.normalize(c, v),
        );
        let log = log_entries(batch, live, checked, &plan);
        tx.savepoint().await?;
        let r = tx
            .write(&Writes::changes(
                &batch.batch_id,
                &log,
                &plan.updates,
                &plan.inserts,
            ))
            .await;
        tx.rollback_to_savepoint().await?;
        match r {
            Ok(_) => lo = mid,
            Err(e @ SinkError::Record { .. }) => {
                hi = mid;
                hi_err = e;
            }
            Err(other) => return Err(other),
        }
    }
    Ok((candidates[hi - 1], hi_err))
}

/// Customer ids of the written rows.
pub(super) fn written_ids(updates: &[RowWrite], inserts: &[RowWrite]) -> Vec<String> {
    updates
        .iter()
        .chain(inserts)
        .map(|w| w.customer_id.clone())
        .collect()
}

/// Compares the rows as the database stored them with the plan (those of
/// `ids`).
pub(super) fn verify(
    updates: &[RowWrite],
    inserts: &[RowWrite],
    stored: &HashMap<String, Row>,
    ids: &[String],
) -> SinkResult<()> {
    let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    for w in updates
        .iter()
        .chain(inserts)
        .filter(|w| ids.contains(w.customer_id.as_str()))
    {
        let Some(actual) = stored.get(&w.customer_id) else {
            return Err(SinkError::Verification(format!(
                "row {} is missing after the write",
                w.customer_id
            )));
        };
        let mut want = w.row.clone();
        // last_update belongs to the business side; compare what we wrote.
        want.last_update = actual.last_update;
        if *actual != want {
            let diff: Vec<&str> = Column::ALL
                .iter()
                .filter(|c| actual.get(**c) != want.get(**c))
                .map(|c| c.name())
                .chain((actual.version != want.version).then_some("version"))
                .collect();
            return Err(SinkError::Verification(format!(
                "row {} differs from what was written in: {}",
                w.customer_id,
                diff.join(", ")
            )));
        }
    }
    Ok(())
}
