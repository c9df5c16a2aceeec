//! The database side: one transaction per batch.
//!
//! [`protocol`] is the batch protocol, written once: lock the watermark and
//! the rows, decide every record ([`plan`]), write the change log and the
//! rows with set-based SQL, store the side outputs (outbox), write the
//! ledger, advance the watermark, re-read and verify, commit. Each database
//! implements the primitive steps ([`Tx`]) in its own dialect:
//! [`postgres`], [`sqlite`] and [`oracle`].

pub mod error;
pub mod migrate;
pub mod nodelay;
pub mod oracle;
pub mod plan;
pub mod postgres;
pub mod protocol;
pub mod sqlite;
pub mod sqlx_common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use error::{SinkError, Transient};
pub use plan::Outcome;

use crate::event::{Checked, DataType, Row};
use crate::message::{OutMessage, RawMessage};

pub type SinkResult<T> = Result<T, SinkError>;

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

/// The primitive steps of one database transaction.
#[async_trait]
pub trait Tx: Send {
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
    /// Event ids among `ids` already in the change log.
    async fn seen_events(&mut self, ids: &[String]) -> SinkResult<HashSet<String>>;
    /// Latest governed_at of written results per (customer, data type).
    async fn last_governed(
        &mut self,
        ids: &[String],
    ) -> SinkResult<HashMap<(String, DataType), DateTime<Utc>>>;
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
    /// Written change-log rows of a batch, in order.
    async fn read_batch_log(&mut self, batch_id: &str) -> SinkResult<Vec<LoggedChange>>;
    /// Sets a batch's ledger status; returns the previous status.
    async fn set_batch_status(
        &mut self,
        batch_id: &str,
        status: &str,
    ) -> SinkResult<Option<String>>;
    async fn commit(self: Box<Self>) -> SinkResult<()>;
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
    async fn batches(&self, filter: &BatchFilter) -> SinkResult<Vec<LedgerEntry>>;
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
