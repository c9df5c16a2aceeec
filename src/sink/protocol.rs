//! The batch protocol, written once for every database.
//!
//! One call of [`apply`] is one database transaction:
//!
//! 1. lock the partition's watermark row; records below it were applied by
//!    another instance (a zombie, or before a crash) and are skipped, and the
//!    outbox of the batches in between is returned for republishing;
//! 2. lock the target rows, read the dedupe and staleness state;
//! 3. plan ([`super::plan`]) and write the change log and the rows, one
//!    statement per kind, inside a savepoint; a record the database rejects
//!    is found by bisection over savepoints and dead-lettered alone;
//! 4. store the batch's review and dead-letter messages in the outbox, write
//!    the ledger row, advance the watermark;
//! 5. re-read the written rows and compare them with the plan;
//! 6. commit.
//!
//! Nothing here talks to Kafka: the caller publishes the returned outputs and
//! commits the offsets after this commit (see `pipeline`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::plan::{self, Decision, Outcome, Plan, RowWrite, Snapshot};
use super::{Database, LedgerEntry, LogEntry, SinkBatch, SinkError, SinkResult, Tx};
use crate::event::{Checked, Column, ConflictPolicy, DataType, Row, columns::value_from_json};
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

/// Applies one batch in one transaction.
pub async fn apply(
    db: &dyn Database,
    batch: &SinkBatch,
    opts: &ApplyOptions,
) -> SinkResult<BatchReport> {
    let started = Instant::now();
    let started_at = Utc::now();
    let mut report = BatchReport::default();
    let mut tx = step(&mut report.timings, "begin", db.begin()).await?;

    let w_db = step(
        &mut report.timings,
        "lock watermark",
        tx.lock_watermark(&batch.key),
    )
    .await?;
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

    let mut ids: Vec<String> = checked
        .iter()
        .map(|c| c.customer_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let event_ids: Vec<String> = checked.iter().map(|c| c.event_id.clone()).collect();
    let snap = Snapshot {
        rows: step(&mut report.timings, "lock rows", tx.lock_rows(&ids)).await?,
        seen: step(
            &mut report.timings,
            "seen events",
            tx.seen_events(&event_ids),
        )
        .await?,
        last_governed: step(&mut report.timings, "last governed", tx.last_governed(&ids)).await?,
    };
    report.timings.read = started.elapsed();

    // Plan and write; bisect out records the database rejects.
    let t_write = Instant::now();
    let mut include = vec![true; checked.len()];
    let mut poison: Vec<(usize, SinkError)> = Vec::new();
    let max_poison = ((checked.len() as f64 * opts.max_poison_fraction).floor() as usize).max(1);
    let plan = loop {
        let plan = plan::plan(&checked, &include, &snap, |dt| opts.policy(dt));
        let log = log_entries(batch, &live, &checked, &plan);
        step(&mut report.timings, "savepoint", tx.savepoint()).await?;
        let written = step(
            &mut report.timings,
            "write changes",
            tx.write_changes(&batch.batch_id, &log, &plan.updates, &plan.inserts, &[]),
        )
        .await;
        match written {
            Ok(()) => {
                step(
                    &mut report.timings,
                    "release savepoint",
                    tx.release_savepoint(),
                )
                .await?;
                break plan;
            }
            Err(err @ SinkError::Record { .. }) => {
                tx.rollback_to_savepoint().await?;
                let (culprit, err) = find_culprit(
                    tx.as_mut(),
                    batch,
                    &live,
                    &checked,
                    &include,
                    &snap,
                    opts,
                    err,
                )
                .await?;
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
    };
    report.timings.write = t_write.elapsed();

    // Outcomes and side outputs, in offset order.
    report.outcomes = vec![Outcome::Skipped; batch.records.len()];
    let mut outputs: Vec<(i64, OutMessage)> = batch
        .rejected
        .iter()
        .filter(|(off, _)| *off >= w_db)
        .cloned()
        .collect();
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

    // Outbox, ledger, watermark.
    let next = batch.next_offset().max(w_db);
    if !report.outputs.is_empty() {
        step(
            &mut report.timings,
            "write outbox",
            tx.write_outbox(&batch.batch_id, &batch.key, next, &report.outputs),
        )
        .await?;
    }
    if let Some(upto) = batch.prune_outbox_upto {
        step(
            &mut report.timings,
            "prune outbox",
            tx.prune_outbox(&batch.key, upto),
        )
        .await?;
    }
    let ledger = LedgerEntry {
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
    };
    step(
        &mut report.timings,
        "write ledger",
        tx.write_ledger(&ledger),
    )
    .await?;
    step(
        &mut report.timings,
        "advance watermark",
        tx.advance_watermark(&batch.key, next, &batch.batch_id),
    )
    .await?;
    report.watermark_after = next;

    // Post-write verification: the rows hold exactly what was planned.
    let t_verify = Instant::now();
    step(
        &mut report.timings,
        "verify",
        verify(tx.as_mut(), &plan.updates, &plan.inserts, &mut ids),
    )
    .await?;
    report.timings.verify = t_verify.elapsed();

    crate::failpoint::hit("db_before_commit");
    let t_commit = Instant::now();
    step(&mut report.timings, "commit", tx.commit()).await?;
    report.timings.commit = t_commit.elapsed();
    report.timings.total = started.elapsed();
    crate::failpoint::hit("db_after_commit");
    Ok(report)
}

fn log_entries(
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
            d.current.as_ref(),
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
        let plan = plan::plan(checked, &probe, snap, |dt| opts.policy(dt));
        let log = log_entries(batch, live, checked, &plan);
        tx.savepoint().await?;
        let r = tx
            .write_changes(&batch.batch_id, &log, &plan.updates, &plan.inserts, &[])
            .await;
        tx.rollback_to_savepoint().await?;
        match r {
            Ok(()) => lo = mid,
            Err(e @ SinkError::Record { .. }) => {
                hi = mid;
                hi_err = e;
            }
            Err(other) => return Err(other),
        }
    }
    Ok((candidates[hi - 1], hi_err))
}

/// Re-reads the written rows and compares them with the plan.
async fn verify(
    tx: &mut dyn Tx,
    updates: &[RowWrite],
    inserts: &[RowWrite],
    scratch: &mut Vec<String>,
) -> SinkResult<()> {
    if updates.is_empty() && inserts.is_empty() {
        return Ok(());
    }
    scratch.clear();
    scratch.extend(updates.iter().chain(inserts).map(|w| w.customer_id.clone()));
    let rows = tx.read_rows(scratch).await?;
    for w in updates.iter().chain(inserts) {
        let Some(actual) = rows.get(&w.customer_id) else {
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

/// What a rollback did (or would do, with `dry_run`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RollbackReport {
    pub batch_id: String,
    pub rollback_batch_id: String,
    /// Rows restored to their before-images.
    pub restored: Vec<String>,
    /// Rows inserted by the batch and deleted by the rollback.
    pub deleted: Vec<String>,
    /// Rows changed since the batch, left alone: (customer, columns).
    pub changed_since: Vec<(String, Vec<String>)>,
    pub dry_run: bool,
}

/// Restores the before-images of a batch for rows that still hold its
/// after-images; rows changed since are reported and left alone. The
/// rollback is itself logged (change log + ledger) as a batch.
pub async fn rollback(
    db: &dyn Database,
    batch_id: &str,
    dry_run: bool,
) -> SinkResult<RollbackReport> {
    let started = Instant::now();
    let started_at = Utc::now();
    let mut tx = db.begin().await?;
    let rb_id = format!(
        "rollback:{batch_id}:{}",
        started_at.format("%Y%m%dT%H%M%S%.3fZ")
    );
    let mut report = RollbackReport {
        batch_id: batch_id.to_string(),
        rollback_batch_id: rb_id.clone(),
        dry_run,
        ..Default::default()
    };
    let changes = tx.read_batch_log(batch_id).await?;
    if changes.is_empty() {
        return Err(SinkError::Fatal(format!(
            "batch {batch_id} wrote nothing that can be rolled back (unknown batch id, or no applied records)"
        )));
    }

    // Per customer: the first before-image and the last after-image of
    // every column the batch wrote.
    struct Span {
        first_before: BTreeMap<Column, serde_json::Value>,
        last_after: BTreeMap<Column, serde_json::Value>,
        inserted: bool,
        data_type: DataType,
    }
    let mut spans: BTreeMap<String, Span> = BTreeMap::new();
    for ch in &changes {
        let span = spans.entry(ch.customer_id.clone()).or_insert_with(|| Span {
            first_before: BTreeMap::new(),
            last_after: BTreeMap::new(),
            inserted: ch.operation == "insert",
            data_type: DataType::parse(&ch.data_type).unwrap_or(DataType::Address),
        });
        for (name, v) in ch.before.as_object().into_iter().flatten() {
            if let Some(c) = Column::parse(name) {
                span.first_before.entry(c).or_insert_with(|| v.clone());
            }
        }
        for (name, v) in ch.after.as_object().into_iter().flatten() {
            if let Some(c) = Column::parse(name) {
                span.last_after.insert(c, v.clone());
            }
        }
    }
    let ids: Vec<String> = spans.keys().cloned().collect();
    let rows = tx.lock_rows(&ids).await?;
    let mut updates = Vec::new();
    let mut log = Vec::new();
    for (cust, span) in &spans {
        let Some(row) = rows.get(cust) else {
            report
                .changed_since
                .push((cust.clone(), vec!["(row deleted)".into()]));
            continue;
        };
        let differs: Vec<String> = span
            .last_after
            .iter()
            .filter(|(c, v)| value_from_json(**c, v).as_ref() != Some(&row.get(**c)))
            .map(|(c, _)| c.name().to_string())
            .collect();
        if !differs.is_empty() {
            report.changed_since.push((cust.clone(), differs));
            continue;
        }
        let cols: Vec<Column> = span.first_before.keys().copied().collect();
        let mut restored: Row = row.clone();
        for (c, v) in &span.first_before {
            if let Some(v) = value_from_json(*c, v) {
                restored.set(*c, &v);
            }
        }
        restored.version += 1;
        if span.inserted {
            report.deleted.push(cust.clone());
        } else {
            report.restored.push(cust.clone());
            updates.push(RowWrite {
                customer_id: cust.clone(),
                name: None,
                row: restored.clone(),
            });
        }
        log.push(LogEntry {
            event_id: format!("{rb_id}:{cust}"),
            customer_id: cust.clone(),
            data_type: span.data_type,
            operation: if span.inserted {
                "rollback_delete"
            } else {
                "rollback"
            }
            .into(),
            outcome: "rollback",
            governed_at: started_at,
            before: Some(row.image_json(&cols)),
            after: Some(if span.inserted {
                "null".to_string()
            } else {
                restored.image_json(&cols)
            }),
            partition: -1,
            offset: -1,
        });
    }
    if dry_run {
        return Ok(report);
    }
    let previous = tx.set_batch_status(batch_id, "rolled_back").await?;
    if previous.as_deref() == Some("rolled_back") {
        return Err(SinkError::Fatal(format!(
            "batch {batch_id} was already rolled back"
        )));
    }
    tx.write_changes(&rb_id, &log, &updates, &[], &report.deleted)
        .await?;
    let mut counts = BTreeMap::new();
    counts.insert("restored".to_string(), report.restored.len() as i64);
    counts.insert("deleted".to_string(), report.deleted.len() as i64);
    counts.insert(
        "changed_since".to_string(),
        report.changed_since.len() as i64,
    );
    tx.write_ledger(&LedgerEntry {
        batch_id: rb_id,
        kind: "rollback".into(),
        group: String::new(),
        topic: String::new(),
        partition: -1,
        first_offset: -1,
        last_offset: -1,
        records: spans.len() as i64,
        counts,
        started_at,
        duration_ms: started.elapsed().as_millis() as i64,
        attempts: 1,
        status: "committed".into(),
    })
    .await?;
    let mut scratch = Vec::new();
    verify(tx.as_mut(), &updates, &[], &mut scratch).await?;
    tx.commit().await?;
    Ok(report)
}
