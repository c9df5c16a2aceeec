//! `govsync rollback`: restores the before-images of a batch where the
//! rows still hold its after-images, as a batch of its own (change log and
//! ledger), in one transaction.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;

use super::plan::RowWrite;
use super::protocol::{verify, written_ids};
use super::{Database, LedgerEntry, LogEntry, RowState, SinkError, SinkResult};
use crate::event::{Column, DataType, Row, columns::value_from_json};

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
    // Images hold govsync's logical field names, so a batch written before
    // a column was renamed rolls back into the renamed column; a field that
    // is no longer mapped cannot be restored.
    let map = tx.table_map();
    for span in spans.values() {
        if let Some(c) = span
            .first_before
            .keys()
            .chain(span.last_after.keys())
            .find(|c| map.field(**c).is_none())
        {
            return Err(SinkError::Fatal(format!(
                "batch {batch_id} wrote `{c}`, which database.mapping.columns no longer maps to \
                 a column; map it again to roll this batch back"
            )));
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
    // The restored rows' write count, where govsync keeps it (a table
    // without a version column): their states with the new version.
    if !updates.is_empty() {
        let ids = written_ids(&updates, &[]);
        let mut states: BTreeMap<String, RowState> = tx
            .row_states(&ids)
            .await?
            .into_iter()
            .map(|s| (s.customer_id.clone(), s))
            .collect();
        for w in &updates {
            states
                .entry(w.customer_id.clone())
                .or_insert_with(|| RowState {
                    customer_id: w.customer_id.clone(),
                    ..RowState::default()
                })
                .version = Some(w.row.version);
        }
        let states: Vec<RowState> = states.into_values().collect();
        tx.write_state(&states).await?;
    }
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
    if !updates.is_empty() {
        let ids = written_ids(&updates, &[]);
        let stored = tx.read_rows(&ids).await?;
        verify(&updates, &[], &stored, &ids)?;
    }
    tx.commit().await?;
    Ok(report)
}
