//! The database side: one transaction per batch.
//!
//! [`protocol`] is the batch protocol, written once (its module doc has the
//! table of which statement carries which guarantee):
//!
//! ```text
//! lock watermark ─▶ read snapshot ─▶ plan ─▶ write ─────────────────────────▶ verify ─▶ commit
//! (FOR UPDATE)      rows FOR UPDATE   pure    change log, rows, row state,       stored
//!                   row state         (plan)  outbox, ledger, watermark          vs planned
//!                   (dedupe entries:          (one statement on PostgreSQL;
//!                   bisect or after a         the change log's unique key
//!                   duplicate only)           rejects a logged result)
//! ```
//!
//! A first attempt takes no savepoint; a batch the database refused is
//! applied again with savepoints and bisected ([`Tx`]'s savepoint steps).
//! Each database implements the primitive steps ([`Tx`]) in its own
//! dialect: [`postgres`], [`sqlite`] (sharing [`sqlx_common`]) and
//! [`oracle`]; [`rollback`] undoes a batch from the change log.

pub mod decisions;
pub mod error;
pub mod migrate;
pub mod nodelay;
pub mod oracle;
pub mod plan;
pub mod postgres;
pub mod protocol;
pub mod rollback;
pub mod sqlite;
pub mod sqlx_common;
pub mod sqlx_review;
pub mod table;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use error::{SinkError, Transient};
pub use plan::{Outcome, Snapshot};

use crate::event::{Checked, DataType, Row};
use crate::message::{OutMessage, RawMessage};

pub type SinkResult<T> = Result<T, SinkError>;

/// The change log's retention horizon: rows logged before it are pruned.
/// `None` when the retention reaches back before year 1 (nothing to prune;
/// the subtraction would overflow, and no database stores such a time).
pub fn retention_horizon(
    now: DateTime<Utc>,
    retention: std::time::Duration,
) -> Option<DateTime<Utc>> {
    let year_one = DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .ok()?;
    chrono::Duration::from_std(retention)
        .ok()
        .and_then(|r| now.checked_sub_signed(r))
        .filter(|h| *h > year_one)
}

/// Identifies a source partition for the watermark and the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// A checked record and the message it came from.
#[derive(Debug, Clone)]
pub struct SinkRecord {
    pub raw: Arc<RawMessage>,
    pub checked: Checked,
}

/// One batch of one partition.
#[derive(Debug, Clone)]
pub struct SinkBatch {
    pub batch_id: String,
    pub key: PartitionKey,
    /// The watermark this processor believes the database holds. When the
    /// database holds a higher one, another instance applied the batches in
    /// between: their records are skipped and their outbox is republished.
    pub expected_watermark: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    /// Decoded and checked records, in offset order.
    pub records: Vec<SinkRecord>,
    /// Dead-letter messages of records rejected before the database, with
    /// their offsets.
    pub rejected: Vec<(i64, OutMessage)>,
    /// Outbox rows of this partition up to this offset were published.
    pub prune_outbox_upto: Option<i64>,
    pub attempt: u32,
}

impl SinkBatch {
    pub fn next_offset(&self) -> i64 {
        self.last_offset + 1
    }
}

/// A change-log row.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub event_id: String,
    pub customer_id: String,
    pub data_type: DataType,
    pub operation: String,
    /// An [`Outcome`] name, or `rollback`.
    pub outcome: &'static str,
    pub governed_at: DateTime<Utc>,
    /// Images of the written columns, as JSON objects (text).
    pub before: Option<String>,
    pub after: Option<String>,
    pub partition: i32,
    pub offset: i64,
}

/// A change-log row read back (rollback).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedChange {
    pub event_id: String,
    pub customer_id: String,
    pub data_type: String,
    pub operation: String,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// A batch-ledger row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LedgerEntry {
    pub batch_id: String,
    pub kind: String,
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub records: i64,
    pub counts: BTreeMap<String, i64>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub attempts: i32,
    pub status: String,
}

/// Filter for `govsync batches`.
#[derive(Debug, Clone, Default)]
pub struct BatchFilter {
    pub limit: i64,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub batch_id: Option<String>,
}

/// A result's identity in the change log: a duplicate has the same event
/// id AND the same governed_at (a re-sent event carries both; the
/// PostgreSQL change log is partitioned by governed_at).
pub type EventKey = (String, DateTime<Utc>);

/// govsync's state of one customer's row (`govsync_row_state`): when the
/// last applied or flagged result of each data type was governed, for
/// staleness.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowState {
    pub customer_id: String,
    /// By [`DataType::index`].
    pub governed_at: [Option<DateTime<Utc>>; 3],
    /// The row's write count ([`Row::version`]) as of this state, for a
    /// target table without a version column of its own
    /// (`database.mapping.version = ""`); `None` leaves the stored count.
    pub version: Option<i64>,
}

/// A review item (`govsync_review_item`): a record the batch sent to the
/// review topic, written in the same transaction, so the open items and
/// the review topic never disagree after a crash.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewItem {
    pub event_id: String,
    pub batch_id: String,
    pub customer_id: String,
    pub data_type: DataType,
    pub region_code: String,
    /// `flagged`, `check_contradiction` or `conflict`.
    pub reason: &'static str,
    /// `high`, `medium` or `low`.
    pub priority: &'static str,
    /// govsync's reasons, a JSON array.
    pub details: String,
    /// What the event would write, a JSON object of logical fields.
    pub proposed: String,
    /// The row's mapped fields when the item was raised (JSON object);
    /// `None` when the row did not exist.
    pub current: Option<String>,
    /// The row's version when the item was raised.
    pub row_version: Option<i64>,
    pub governed_at: DateTime<Utc>,
    /// `open`, or `superseded` when a later record of the same batch
    /// applied a newer result for the same customer and data type.
    pub status: &'static str,
    pub superseded_by: Option<String>,
}

/// The open items of a customer and data type, superseded by the applied
/// result `by` (an event id) of this batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Supersede {
    pub customer_id: String,
    pub data_type: DataType,
    pub by: String,
}

/// The supersessions a batch's change log makes: per customer and data
/// type, its last applied or flagged result.
pub fn supersessions(log: &[LogEntry]) -> Vec<Supersede> {
    let mut last: BTreeMap<(&str, DataType), &str> = BTreeMap::new();
    for l in log {
        if l.outcome == Outcome::Applied.as_str() || l.outcome == Outcome::Flagged.as_str() {
            last.insert((l.customer_id.as_str(), l.data_type), l.event_id.as_str());
        }
    }
    last.into_iter()
        .map(|((customer, dt), by)| Supersede {
            customer_id: customer.to_string(),
            data_type: dt,
            by: by.to_string(),
        })
        .collect()
}

/// Open review items of one priority and region.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenReviews {
    pub priority: String,
    pub region_code: String,
    pub count: i64,
    pub oldest: Option<DateTime<Utc>>,
}

/// A review item as stored (the review tools and the tests read these).
/// Columns in the order of [`REVIEW_ITEM_COLUMNS`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredReviewItem {
    pub event_id: String,
    pub customer_id: String,
    pub data_type: String,
    pub reason: String,
    pub priority: String,
    pub status: String,
    pub superseded_by: Option<String>,
    pub row_version: Option<i64>,
    /// The values approving writes: a JSON object by govsync's field names.
    pub proposed: String,
    pub region_code: String,
    /// Why the item was raised (the engine's issues, govsync's reasons): a
    /// JSON array of text.
    pub details: String,
    /// The row's mapped fields when the item was raised (JSON object), if
    /// it had one.
    pub current_row: Option<String>,
    pub governed_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision: Option<String>,
    pub comment: Option<String>,
    /// The decision that closed it.
    pub decision_id: Option<String>,
}

/// The columns of a [`StoredReviewItem`] read, in its fields' order (Oracle
/// quotes "COMMENT").
pub const REVIEW_ITEM_COLUMNS: &str = "event_id, customer_id, data_type, reason, priority, status, \
    superseded_by, row_version, proposed, region_code, details, current_row, governed_at, \
    created_at, decided_by, decided_at, decision, comment, decision_id";

/// A review item as the decision applier reads it, under lock.
#[derive(Debug, Clone, PartialEq)]
pub struct LockedItem {
    pub event_id: String,
    pub customer_id: String,
    pub data_type: String,
    pub reason: String,
    pub status: String,
    pub row_version: Option<i64>,
    pub proposed: String,
    pub governed_at: DateTime<Utc>,
}

/// What the applier did with one decision message
/// (`govsync_review_decision`), written in the transaction that applied or
/// refused it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub decision_id: String,
    pub event_id: String,
    pub reviewer: String,
    pub decision: String,
    /// `applied` or `refused`.
    pub outcome: &'static str,
    pub reason: Option<String>,
    pub comment: Option<String>,
    /// A correction's values (JSON object).
    pub corrected: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub partition: i32,
    pub offset: i64,
    /// An applied decision: the item's new status (approved, rejected,
    /// corrected).
    pub close_item: Option<&'static str>,
    /// An applied decision that wrote the row: its change-log entry (event
    /// id = decision id) is marked with the reviewer as source.
    pub logged: bool,
}

/// The change log's source of a reviewer's write.
pub fn reviewer_source(reviewer: &str) -> String {
    format!("reviewer:{reviewer}")
}

/// A decision as stored (the console's history of an item).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDecision {
    pub decision_id: String,
    pub event_id: String,
    pub reviewer: String,
    pub decision: String,
    pub outcome: String,
    pub reason: Option<String>,
    pub comment: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
}

/// What [`Tx::write`] knows about the rows it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The database compared each updated or inserted row, as stored (after
    /// its triggers), with the values it was given.
    Compared {
        /// Rows updated or inserted.
        written: usize,
        /// Customers whose stored row differs from what was written.
        differ: Vec<String>,
    },
    /// Not compared: the protocol re-reads the rows.
    NotCompared,
}

/// Everything one batch writes, handed to the database in one call: a
/// dialect may send it as one statement ([`Tx::write`]).
#[derive(Debug, Clone, Copy)]
pub struct Writes<'a> {
    pub batch_id: &'a str,
    pub log: &'a [LogEntry],
    pub updates: &'a [plan::RowWrite],
    pub inserts: &'a [plan::RowWrite],
    /// Rows to delete (the rollback of an insert).
    pub deletes: &'a [String],
    pub state: &'a [RowState],
    /// Review items raised by the batch.
    pub review_items: &'a [ReviewItem],
    /// The batch's change-log entries: their applied and flagged results
    /// supersede the open review items of their customer and data type
    /// ([`supersessions`]). Kept by [`Writes::without_changes`]: a bisected
    /// batch wrote its log inside the savepoint, but supersedes here.
    pub review_log: &'a [LogEntry],
    /// The batch's review and dead-letter messages, with its partition and
    /// next offset.
    pub outbox: Option<(&'a PartitionKey, i64, &'a [OutMessage])>,
    /// Outbox rows of this partition up to this next offset were published.
    pub prune_outbox: Option<(&'a PartitionKey, i64)>,
    pub ledger: Option<&'a LedgerEntry>,
    /// The partition's new watermark.
    pub watermark: Option<(&'a PartitionKey, i64)>,
}

impl<'a> Writes<'a> {
    /// Only the change log and the rows (a bisection probe).
    pub fn changes(
        batch_id: &'a str,
        log: &'a [LogEntry],
        updates: &'a [plan::RowWrite],
        inserts: &'a [plan::RowWrite],
    ) -> Self {
        Writes {
            batch_id,
            log,
            updates,
            inserts,
            deletes: &[],
            state: &[],
            review_items: &[],
            review_log: &[],
            outbox: None,
            prune_outbox: None,
            ledger: None,
            watermark: None,
        }
    }

    /// These writes without the change log and the rows (written already).
    pub fn without_changes(self) -> Self {
        Writes {
            log: &[],
            updates: &[],
            inserts: &[],
            deletes: &[],
            ..self
        }
    }
}

/// The primitive steps of one database transaction.
#[async_trait]
pub trait Tx: Send {
    /// The target table as mapped (values are planned as it stores them).
    fn table_map(&self) -> Arc<table::TableMap>;
    /// Locks the partition's watermark row (creating it at 0) and returns it.
    async fn lock_watermark(&mut self, key: &PartitionKey) -> SinkResult<i64>;
    /// Outbox messages of batches whose next offset is in `(from, to]`.
    async fn read_outbox(
        &mut self,
        key: &PartitionKey,
        from: i64,
        to: i64,
    ) -> SinkResult<Vec<OutMessage>>;
    /// Locks and reads the target rows (in customer-id order).
    async fn lock_rows(&mut self, ids: &[String]) -> SinkResult<HashMap<String, Row>>;
    /// Reads the rows without locking (post-write verification).
    async fn read_rows(&mut self, ids: &[String]) -> SinkResult<HashMap<String, Row>>;
    /// Event ids among `events` already in the change log.
    async fn seen_events(&mut self, events: &[EventKey]) -> SinkResult<HashSet<String>>;
    /// govsync's state of these customers' rows (customers without one are
    /// left out).
    async fn row_states(&mut self, ids: &[String]) -> SinkResult<Vec<RowState>>;
    /// The plan's inputs, read under lock: the rows (locked), the results
    /// already logged among `events` (none read when it is empty), and the
    /// rows' states. A dialect may
    /// read them in fewer round trips.
    async fn read_snapshot(
        &mut self,
        ids: &[String],
        events: &[EventKey],
    ) -> SinkResult<plan::Snapshot> {
        read_each(self, ids, events).await
    }
    async fn savepoint(&mut self) -> SinkResult<()>;
    async fn rollback_to_savepoint(&mut self) -> SinkResult<()>;
    async fn release_savepoint(&mut self) -> SinkResult<()>;
    /// Change log, row updates, row inserts and row deletes (rollback of an
    /// insert): one statement per kind.
    async fn write_changes(
        &mut self,
        batch_id: &str,
        log: &[LogEntry],
        updates: &[plan::RowWrite],
        inserts: &[plan::RowWrite],
        deletes: &[String],
    ) -> SinkResult<()>;
    /// Upserts rows' states.
    async fn write_state(&mut self, state: &[RowState]) -> SinkResult<()>;
    /// Inserts review items (an event id already there is left alone) and
    /// marks the open items of each superseded customer and data type
    /// superseded. The supersession does not touch the items inserted by
    /// the same call.
    async fn write_review(
        &mut self,
        items: &[ReviewItem],
        supersede: &[Supersede],
    ) -> SinkResult<()>;
    async fn write_outbox(
        &mut self,
        batch_id: &str,
        key: &PartitionKey,
        next_offset: i64,
        msgs: &[OutMessage],
    ) -> SinkResult<()>;
    /// Deletes outbox rows with next offset ≤ `upto`.
    async fn prune_outbox(&mut self, key: &PartitionKey, upto: i64) -> SinkResult<()>;
    async fn write_ledger(&mut self, e: &LedgerEntry) -> SinkResult<()>;
    async fn advance_watermark(
        &mut self,
        key: &PartitionKey,
        next: i64,
        batch_id: &str,
    ) -> SinkResult<()>;
    /// Everything a batch writes. A dialect whose statements can compare the
    /// rows as stored with what it was asked to write (RETURNING) says what
    /// it found ([`Stored::Compared`]); otherwise the protocol re-reads the
    /// rows. The default is one statement per kind, not compared.
    async fn write(&mut self, w: &Writes<'_>) -> SinkResult<Stored> {
        write_each(self, w).await?;
        Ok(Stored::NotCompared)
    }
    /// Written change-log rows of a batch, in order.
    async fn read_batch_log(&mut self, batch_id: &str) -> SinkResult<Vec<LoggedChange>>;
    /// Locks and reads one review item (the decision applier).
    async fn lock_review_item(&mut self, event_id: &str) -> SinkResult<Option<LockedItem>>;
    /// Whether a decision of this id was applied or refused already.
    async fn decision_known(&mut self, decision_id: &str) -> SinkResult<bool>;
    /// Records decisions, closes the items of the applied ones and marks
    /// their change-log entries with the reviewer as source.
    async fn write_decisions(
        &mut self,
        batch_id: &str,
        records: &[DecisionRecord],
    ) -> SinkResult<()>;
    /// Sets a batch's ledger status; returns the previous status.
    async fn set_batch_status(
        &mut self,
        batch_id: &str,
        status: &str,
    ) -> SinkResult<Option<String>>;
    async fn commit(self: Box<Self>) -> SinkResult<()>;
}

/// Reads a batch's snapshot one statement per kind (the default
/// [`Tx::read_snapshot`]).
pub async fn read_each<T: Tx + ?Sized>(
    tx: &mut T,
    ids: &[String],
    events: &[EventKey],
) -> SinkResult<plan::Snapshot> {
    let rows = tx.lock_rows(ids).await?;
    let seen = if events.is_empty() {
        HashSet::new()
    } else {
        tx.seen_events(events).await?
    };
    let states = tx.row_states(ids).await?;
    Ok(plan::Snapshot::new(rows, seen, states))
}

/// Writes a batch one statement per kind (the default [`Tx::write`]).
pub async fn write_each<T: Tx + ?Sized>(tx: &mut T, w: &Writes<'_>) -> SinkResult<()> {
    if !(w.log.is_empty() && w.updates.is_empty() && w.inserts.is_empty() && w.deletes.is_empty()) {
        tx.write_changes(w.batch_id, w.log, w.updates, w.inserts, w.deletes)
            .await?;
    }
    if !w.state.is_empty() {
        tx.write_state(w.state).await?;
    }
    let supersede = supersessions(w.review_log);
    if !w.review_items.is_empty() || !supersede.is_empty() {
        tx.write_review(w.review_items, &supersede).await?;
    }
    if let Some((key, next, msgs)) = w.outbox
        && !msgs.is_empty()
    {
        tx.write_outbox(w.batch_id, key, next, msgs).await?;
    }
    if let Some((key, upto)) = w.prune_outbox {
        tx.prune_outbox(key, upto).await?;
    }
    if let Some(e) = w.ledger {
        tx.write_ledger(e).await?;
    }
    if let Some((key, next)) = w.watermark {
        tx.advance_watermark(key, next, w.batch_id).await?;
    }
    Ok(())
}

/// A database govsync can write to.
#[async_trait]
pub trait Database: Send + Sync {
    fn kind(&self) -> &'static str;
    async fn begin(&self) -> SinkResult<Box<dyn Tx>>;
    /// The stored watermark of a partition, without locking.
    async fn watermark(&self, key: &PartitionKey) -> SinkResult<Option<i64>>;
    async fn ping(&self) -> SinkResult<()>;
    /// Creates govsync's tables (and the target table in dev); returns what
    /// was applied.
    async fn migrate(&self, with_target_table: bool) -> SinkResult<Vec<String>>;
    /// Reads the target table's columns and checks `database.mapping`
    /// against them (done once; a batch's transaction does it first if
    /// nothing did). `Err` names every problem and its fix.
    async fn check_table(&self) -> SinkResult<Arc<table::TableMap>>;
    async fn batches(&self, filter: &BatchFilter) -> SinkResult<Vec<LedgerEntry>>;
    /// Review items, oldest first, of `status` if given.
    async fn review_items(&self, status: Option<&str>) -> SinkResult<Vec<StoredReviewItem>>;
    /// One review item.
    async fn review_item(&self, event_id: &str) -> SinkResult<Option<StoredReviewItem>>;
    /// The decisions on an item, applied and refused, in the order applied.
    async fn review_decisions(&self, event_id: &str) -> SinkResult<Vec<StoredDecision>>;
    /// The open review items by priority and region: how many, and when
    /// the oldest was raised (the review metrics).
    async fn open_reviews(&self) -> SinkResult<Vec<OpenReviews>>;
    /// Keeps the change log to `retention`, counted from when a row was
    /// logged: drops or deletes what is older, and prepares what is coming
    /// (PostgreSQL's daily partitions). Returns what it did.
    async fn maintain(&self, retention: std::time::Duration) -> SinkResult<String>;
    async fn close(&self);
}

/// Opens the database named by the config.
pub async fn connect(cfg: &crate::config::DatabaseConfig) -> SinkResult<Arc<dyn Database>> {
    use crate::config::DbKind;
    Ok(match cfg.kind {
        DbKind::Postgres => Arc::new(postgres::PgDatabase::connect(cfg).await?),
        DbKind::Sqlite => Arc::new(sqlite::SqliteDatabase::connect(cfg).await?),
        DbKind::Oracle => Arc::new(oracle::OracleDatabase::connect(cfg).await?),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_retention_horizon_is_now_minus_retention_and_none_before_year_one() {
        let now: DateTime<Utc> = "2026-12-02T00:00:00Z".parse().unwrap();
        assert_eq!(
            retention_horizon(now, Duration::from_secs(30 * 86_400)),
            Some("2026-11-02T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            retention_horizon(now, Duration::from_secs(3_000 * 365 * 86_400)),
            None
        );
        assert_eq!(retention_horizon(now, Duration::MAX), None);
    }
}
