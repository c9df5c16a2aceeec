//! Reviewers' decisions, applied in one database transaction per batch of
//! decision messages, with the guarantees of the governance batch protocol
//! ([`super::protocol`]):
//!
//! | step | guarantee |
//! |---|---|
//! | lock the decision partition's watermark | one batch of a partition at a time; messages below it were applied (a crash before the offset commit) and are skipped |
//! | lock the items (event-id order), then the rows | nobody decides the same item or changes the row between the check and the write |
//! | check each decision ([`decide`], pure) | applied at most once (the decision id is recorded, applied or refused); refused when the item is not open or the row's version moved since the item was raised |
//! | write: rows, change log (the reviewer as source, event id = decision id), row states, the decision's record, the item's status, ledger, watermark | all or nothing |
//! | verify the rows as stored | as for governance results |
//!
//! A decision writes through the same statements as a governance batch
//! (mapping, adapters, version bump, supersession of the other open items
//! of the customer and data type), so `govsync rollback BATCH` undoes a
//! decision batch like any other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};

use super::plan::RowWrite;
use super::protocol::{verify, written_ids};
use super::table::TableMap;
use super::{
    Database, DecisionRecord, LedgerEntry, LockedItem, LogEntry, PartitionKey, RowState,
    SinkResult, Stored, Writes,
};
use crate::event::{Column, DataType, Row, RuleSet, Value, value_from_json};
use crate::review::{ReviewDecision, Verdict, check_corrected};

/// One message of the decision topic, decoded (or why it is not a
/// decision).
#[derive(Debug, Clone)]
pub struct DecisionMessage {
    pub offset: i64,
    pub decision: Result<ReviewDecision, String>,
}

/// The messages of one partition of the decision topic, in offset order.
#[derive(Debug, Clone)]
pub struct DecisionBatch {
    pub batch_id: String,
    pub key: PartitionKey,
    pub messages: Vec<DecisionMessage>,
    pub attempt: u32,
}

/// Why a decision was refused (a metric label; the full reason is stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// Not a decision message (schema v1).
    Invalid,
    /// No review item for the event.
    NoItem,
    /// The item was decided or superseded already.
    NotOpen,
    /// The row's version moved since the item was raised.
    RowChanged,
    /// A corrected value fails the governance rules.
    Correction,
    /// Nothing to write to (no row, or a proposal govsync cannot read).
    Unwritable,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::Invalid,
        Refusal::NoItem,
        Refusal::NotOpen,
        Refusal::RowChanged,
        Refusal::Correction,
        Refusal::Unwritable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::NoItem => "no_item",
            Refusal::NotOpen => "not_open",
            Refusal::RowChanged => "row_changed",
            Refusal::Correction => "correction",
            Refusal::Unwritable => "unwritable",
        }
    }
}

/// What became of one decision message.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionOutcome {
    Applied(Verdict),
    Refused(Refusal, String),
    /// A decision id applied or refused before (a re-sent decision).
    Duplicate,
    /// Below the watermark: applied by an earlier attempt.
    Skipped,
}

/// What a committed decision batch did.
#[derive(Debug, Clone, Default)]
pub struct DecisionReport {
    /// One per message of the batch.
    pub outcomes: Vec<DecisionOutcome>,
    pub watermark_before: i64,
    pub watermark_after: i64,
}

/// What applying one decision does.
#[derive(Debug, Clone, PartialEq)]
struct Effect {
    /// The item's new status.
    close: &'static str,
    /// The row written: the columns and their images before and after.
    write: Option<(Vec<Column>, String, String)>,
}

/// Checks one decision against its item and the row as earlier decisions
/// of the batch left it, and applies it to `row` (pure; the transaction
/// around it is [`apply`]'s).
fn decide(
    d: &ReviewDecision,
    item: Option<&mut LockedItem>,
    row: Option<&mut Row>,
    map: &TableMap,
    rules: &RuleSet,
    today: NaiveDate,
) -> Result<Effect, (Refusal, String)> {
    let Some(item) = item else {
        return Err((
            Refusal::NoItem,
            format!("there is no review item for event {}", d.event_id),
        ));
    };
    if item.status != "open" {
        return Err((
            Refusal::NotOpen,
            format!("the item is {}, no longer open", item.status),
        ));
    }
    let data_type = DataType::parse(&item.data_type).ok_or_else(|| {
        (
            Refusal::Unwritable,
            format!("the item's data type `{}` is unknown", item.data_type),
        )
    })?;
    if d.decision == Verdict::Reject {
        item.status = Verdict::Reject.status().to_string();
        return Ok(Effect {
            close: Verdict::Reject.status(),
            write: None,
        });
    }
    let Some(row) = row else {
        return Err((
            Refusal::Unwritable,
            format!(
                "customer {} has no row in the target table (an insert is not decided here: \
                 re-send the governance result)",
                item.customer_id
            ),
        ));
    };
    // A flagged result was written when the item was raised: the row's
    // version then was one more than the one recorded before that write.
    let expected = item
        .row_version
        .map(|v| v + i64::from(item.reason == "flagged"));
    if expected != Some(row.version) {
        return Err((
            Refusal::RowChanged,
            format!(
                "the row changed since the item was raised (version {} then, {} now)",
                expected.map_or("none".into(), |v| v.to_string()),
                row.version
            ),
        ));
    }
    let values = match (d.decision, &d.corrected) {
        (Verdict::Correct, Some(corrected)) => check_corrected(corrected, data_type, rules, today)
            .map_err(|e| (Refusal::Correction, e))?,
        _ => proposal(&item.proposed).map_err(|e| (Refusal::Unwritable, e))?,
    };
    let values: Vec<(Column, Value)> = values
        .into_iter()
        .filter(|(c, _)| map.field(*c).is_some())
        .map(|(c, v)| (c, map.normalize(c, v)))
        .collect();
    let cols: Vec<Column> = values.iter().map(|(c, _)| *c).collect();
    let before = row.image_json(&cols);
    for (c, v) in &values {
        row.set(*c, v);
    }
    row.version += 1;
    let after = row.image_json(&cols);
    item.status = d.decision.status().to_string();
    Ok(Effect {
        close: d.decision.status(),
        write: Some((cols, before, after)),
    })
}

/// The item's proposal (a JSON object by field name) as values.
fn proposal(json: &str) -> Result<Vec<(Column, Value)>, String> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
        .map_err(|e| format!("the item's proposal is not a JSON object: {e}"))?;
    map.iter()
        .map(|(k, v)| {
            let c = Column::parse(k).ok_or_else(|| format!("the proposal names `{k}`"))?;
            let v = value_from_json(c, v)
                .ok_or_else(|| format!("the proposal's {k} is not a value it takes"))?;
            Ok((c, v))
        })
        .collect()
}

/// Applies one batch of decisions in one transaction.
pub async fn apply(
    db: &dyn Database,
    batch: &DecisionBatch,
    rules: &RuleSet,
) -> SinkResult<DecisionReport> {
    let started = Instant::now();
    let started_at = Utc::now();
    let mut report = DecisionReport::default();
    let mut tx = db.begin().await?;
    let w = tx.lock_watermark(&batch.key).await?;
    report.watermark_before = w;
    let last = batch.messages.last().map_or(w - 1, |m| m.offset);
    let next = (last + 1).max(w);
    report.watermark_after = next;
    let live: Vec<&DecisionMessage> = batch.messages.iter().filter(|m| m.offset >= w).collect();
    if live.is_empty() {
        report.outcomes = vec![DecisionOutcome::Skipped; batch.messages.len()];
        tx.commit().await?;
        return Ok(report);
    }
    let decisions = || live.iter().filter_map(|m| m.decision.as_ref().ok());

    // Items in event-id order, so two appliers never wait on each other in
    // a cycle; then the rows of the open ones.
    let mut event_ids: Vec<&str> = decisions().map(|d| d.event_id.as_str()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let mut items: HashMap<String, LockedItem> = HashMap::new();
    for e in event_ids {
        if let Some(it) = tx.lock_review_item(e).await? {
            items.insert(it.event_id.clone(), it);
        }
    }
    // Decision ids recorded before (a message that is not a decision is
    // recorded under its partition and offset).
    let mut known: HashSet<String> = HashSet::new();
    for m in &live {
        let id = match &m.decision {
            Ok(d) => d.decision_id.clone(),
            Err(_) => invalid_id(batch.key.partition, m.offset),
        };
        if tx.decision_known(&id).await? {
            known.insert(id);
        }
    }
    let mut customers: Vec<String> = items
        .values()
        .filter(|it| it.status == "open")
        .map(|it| it.customer_id.clone())
        .collect();
    customers.sort_unstable();
    customers.dedup();
    let snap = tx.read_snapshot(&customers, &[]).await?;
    let map = tx.table_map();
    let mut rows: HashMap<String, Row> = snap.rows.into_iter().collect();
    let today = Utc::now().with_timezone(&rules.local_offset).date_naive();

    let mut log: Vec<LogEntry> = Vec::new();
    let mut records: Vec<DecisionRecord> = Vec::new();
    // Per written customer: the newest governed_at of each data type.
    let mut governed: BTreeMap<String, [Option<DateTime<Utc>>; 3]> = BTreeMap::new();
    for m in &batch.messages {
        if m.offset < w {
            report.outcomes.push(DecisionOutcome::Skipped);
            continue;
        }
        let d = match &m.decision {
            Ok(d) => d,
            Err(why) => {
                let id = invalid_id(batch.key.partition, m.offset);
                if !known.insert(id.clone()) {
                    report.outcomes.push(DecisionOutcome::Duplicate);
                    continue;
                }
                records.push(DecisionRecord {
                    decision_id: id,
                    event_id: String::new(),
                    reviewer: String::new(),
                    decision: String::new(),
                    outcome: "refused",
                    reason: Some(why.clone()),
                    comment: None,
                    corrected: None,
                    decided_at: None,
                    partition: batch.key.partition,
                    offset: m.offset,
                    close_item: None,
                    logged: false,
                });
                report
                    .outcomes
                    .push(DecisionOutcome::Refused(Refusal::Invalid, why.clone()));
                continue;
            }
        };
        if !known.insert(d.decision_id.clone()) {
            report.outcomes.push(DecisionOutcome::Duplicate);
            continue;
        }
        let item = items.get_mut(&d.event_id);
        let customer = item.as_ref().map(|it| it.customer_id.clone());
        let row = customer.as_ref().and_then(|c| rows.get_mut(c));
        let item_governed = item.as_ref().map(|it| it.governed_at);
        let data_type = item.as_ref().and_then(|it| DataType::parse(&it.data_type));
        let mut record = DecisionRecord {
            decision_id: d.decision_id.clone(),
            event_id: d.event_id.clone(),
            reviewer: d.reviewer.clone(),
            decision: d.decision.as_str().to_string(),
            outcome: "applied",
            reason: None,
            comment: d.comment.clone(),
            corrected: d
                .corrected
                .as_ref()
                .map(|c| serde_json::Value::Object(c.clone()).to_string()),
            decided_at: Some(d.decided_at),
            partition: batch.key.partition,
            offset: m.offset,
            close_item: None,
            logged: false,
        };
        match decide(d, item, row, &map, rules, today) {
            Ok(effect) => {
                record.close_item = Some(effect.close);
                if let (Some((_, before, after)), Some(customer), Some(dt), Some(at)) =
                    (effect.write, customer, data_type, item_governed)
                {
                    record.logged = true;
                    let g = governed.entry(customer.clone()).or_insert_with(|| {
                        std::array::from_fn(|i| snap.governed.get(&customer).and_then(|g| g[i]))
                    });
                    g[dt.index()] = g[dt.index()].max(Some(at));
                    log.push(LogEntry {
                        event_id: d.decision_id.clone(),
                        customer_id: customer,
                        data_type: dt,
                        operation: format!("review_{}", d.decision.as_str()),
                        outcome: "applied",
                        governed_at: started_at,
                        before: Some(before),
                        after: Some(after),
                        partition: batch.key.partition,
                        offset: m.offset,
                    });
                }
                report.outcomes.push(DecisionOutcome::Applied(d.decision));
            }
            Err((class, why)) => {
                record.outcome = "refused";
                record.reason = Some(why.clone());
                report.outcomes.push(DecisionOutcome::Refused(class, why));
            }
        }
        records.push(record);
    }

    let updates: Vec<RowWrite> = governed
        .keys()
        .map(|c| RowWrite {
            customer_id: c.clone(),
            name: None,
            row: rows[c].clone(),
        })
        .collect();
    let state: Vec<RowState> = governed
        .iter()
        .map(|(c, g)| RowState {
            customer_id: c.clone(),
            governed_at: *g,
            version: Some(rows[c].version),
        })
        .collect();
    let ledger = ledger_entry(batch, &report, started_at, started);
    let writes = Writes {
        batch_id: &batch.batch_id,
        log: &log,
        updates: &updates,
        inserts: &[],
        deletes: &[],
        state: &state,
        review_items: &[],
        review_log: &log,
        outbox: None,
        prune_outbox: None,
        ledger: Some(&ledger),
        watermark: Some((&batch.key, next)),
    };
    let stored = tx.write(&writes).await?;
    let written = written_ids(&updates, &[]);
    let compared = matches!(&stored, Stored::Compared { written: n, differ } if *n == written.len() && differ.is_empty());
    if !compared && !written.is_empty() {
        let now = tx.read_rows(&written).await?;
        verify(&updates, &[], &now, &written)?;
    }
    tx.write_decisions(&batch.batch_id, &records).await?;
    crate::failpoint::hit("decision_before_commit");
    tx.commit().await?;
    crate::failpoint::hit("decision_after_commit");
    Ok(report)
}

/// The id a message that is not a decision is recorded under.
fn invalid_id(partition: i32, offset: i64) -> String {
    format!("invalid:{partition}:{offset}")
}

fn ledger_entry(
    batch: &DecisionBatch,
    report: &DecisionReport,
    started_at: DateTime<Utc>,
    started: Instant,
) -> LedgerEntry {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for o in &report.outcomes {
        let k = match o {
            DecisionOutcome::Applied(v) => v.status().to_string(),
            DecisionOutcome::Refused(..) => "refused".into(),
            DecisionOutcome::Duplicate => "duplicate".into(),
            DecisionOutcome::Skipped => "skipped".into(),
        };
        *counts.entry(k).or_default() += 1;
    }
    LedgerEntry {
        batch_id: batch.batch_id.clone(),
        kind: "review".into(),
        group: batch.key.group.clone(),
        topic: batch.key.topic.clone(),
        partition: batch.key.partition,
        first_offset: batch.messages.first().map_or(0, |m| m.offset),
        last_offset: batch.messages.last().map_or(0, |m| m.offset),
        records: batch.messages.len() as i64,
        counts,
        started_at,
        duration_ms: started.elapsed().as_millis() as i64,
        attempts: batch.attempt as i32,
        status: "committed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(status: &str, version: Option<i64>, reason: &str) -> LockedItem {
        LockedItem {
            event_id: "e1".into(),
            customer_id: "C1".into(),
            data_type: "id_card".into(),
            reason: reason.into(),
            status: status.into(),
            row_version: version,
            proposed: r#"{"id_card":"11010519491231002X","validation_status":"valid"}"#.into(),
            governed_at: Utc::now(),
        }
    }

    fn decision(v: Verdict, corrected: Option<serde_json::Value>) -> ReviewDecision {
        ReviewDecision::new(
            "e1",
            v,
            corrected.map(|c| c.as_object().unwrap().clone()),
            "wang.li",
            None,
        )
    }

    fn row(version: i64) -> Row {
        let mut r = Row {
            version,
            ..Row::default()
        };
        r.set(Column::IdCard, &Value::Text("110105194912310021".into()));
        r
    }

    fn run(
        d: &ReviewDecision,
        it: &mut Option<LockedItem>,
        r: &mut Option<Row>,
    ) -> Result<Effect, (Refusal, String)> {
        let map = TableMap::dev(
            "customer_profile",
            super::super::table::Adapter::Bool,
            super::super::table::Adapter::Float,
        );
        let today = NaiveDate::from_ymd_opt(2024, 1, 15).unwrap();
        decide(d, it.as_mut(), r.as_mut(), &map, &RuleSet::default(), today)
    }

    #[test]
    fn approve_writes_the_proposal_and_bumps_the_version_once() {
        let (mut it, mut r) = (
            Some(item("open", Some(3), "check_contradiction")),
            Some(row(3)),
        );
        let e = run(&decision(Verdict::Approve, None), &mut it, &mut r).unwrap();
        assert_eq!(e.close, "approved");
        let r = r.unwrap();
        assert_eq!(r.version, 4);
        assert_eq!(
            r.get(Column::IdCard),
            Value::Text("11010519491231002X".into())
        );
        let (cols, before, after) = e.write.unwrap();
        assert_eq!(cols.len(), 2);
        assert!(before.contains("110105194912310021") && after.contains("11010519491231002X"));
        assert_eq!(it.unwrap().status, "approved");
    }

    #[test]
    fn a_second_decision_on_the_item_and_a_moved_row_are_refused() {
        let (mut it, mut r) = (Some(item("open", Some(3), "conflict")), Some(row(3)));
        run(&decision(Verdict::Reject, None), &mut it, &mut r).unwrap();
        assert_eq!(r.as_ref().unwrap().version, 3, "reject writes nothing");
        let (class, why) = run(&decision(Verdict::Approve, None), &mut it, &mut r).unwrap_err();
        assert_eq!(class, Refusal::NotOpen);
        assert!(why.contains("rejected"), "{why}");

        let (mut it, mut r) = (Some(item("open", Some(3), "conflict")), Some(row(5)));
        let (class, why) = run(&decision(Verdict::Approve, None), &mut it, &mut r).unwrap_err();
        assert_eq!(class, Refusal::RowChanged);
        assert!(why.contains("version 3 then, 5 now"), "{why}");
        assert_eq!(it.unwrap().status, "open");
        // A flagged item's own write is not a change.
        let (mut it, mut r) = (Some(item("open", Some(3), "flagged")), Some(row(4)));
        run(&decision(Verdict::Approve, None), &mut it, &mut r).unwrap();
        let mut none = None;
        let (class, _) = run(&decision(Verdict::Approve, None), &mut none, &mut r).unwrap_err();
        assert_eq!(class, Refusal::NoItem);
    }

    #[test]
    fn a_correction_is_checked_with_the_rules_before_it_is_written() {
        let (mut it, mut r) = (Some(item("open", Some(3), "flagged")), Some(row(4)));
        let bad = decision(
            Verdict::Correct,
            Some(serde_json::json!({"id_card": "110105194912310021"})),
        );
        let (class, why) = run(&bad, &mut it, &mut r).unwrap_err();
        assert_eq!(class, Refusal::Correction);
        assert!(why.contains("GB 11643"), "{why}");
        assert_eq!(r.as_ref().unwrap().version, 4);
        let good = decision(
            Verdict::Correct,
            Some(serde_json::json!({"id_card": "11010519491231002X"})),
        );
        let e = run(&good, &mut it, &mut r).unwrap();
        assert_eq!(e.close, "corrected");
        assert_eq!(r.unwrap().version, 5);
    }
}
