//! What the two sqlx databases (PostgreSQL, SQLite) share: one [`Tx`] and
//! one [`Database`] implementation over a [`Dialect`].
//!
//! The statements that are the same in both (watermark, outbox reads and
//! pruning, ledger, batch status, the batch's change log) are written here
//! once, as templates with `$n` placeholders ([`dialect_sql`] turns them into
//! SQLite's `?n`), with their values as [`Arg`]s that each dialect binds with
//! its own types (times are `TIMESTAMPTZ` in PostgreSQL and fixed-form RFC
//! 3339 text in SQLite). What differs in substance, the set-based reads and
//! writes of a batch (`UNNEST` of arrays against `jsonb_each` of a JSON
//! array), is each dialect's own ([`Dialect`]'s async functions, in
//! postgres/ and sqlite.rs).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Executor, IntoArguments, Pool, Transaction};

use super::plan::RowWrite;
use super::sqlx_review::{ReviewSql, stored_item};
use super::table::{Catalog, TableMap};
use super::{
    BatchFilter, Database, DecisionRecord, EventKey, LedgerEntry, LockedItem, LogEntry,
    LoggedChange, OpenReviews, PartitionKey, ReviewItem, RowState, SinkError, SinkResult, Snapshot,
    Stored, StoredDecision, StoredReviewItem, Supersede, Tx, Writes,
};
use crate::config::{DatabaseConfig, TableMapping};
use crate::event::Row;
use crate::message::{OutMessage, decode_headers};

/// A value bound to a shared statement.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    I32(i32),
    OptI32(Option<i32>),
    I64(i64),
    Time(DateTime<Utc>),
    OptTime(Option<DateTime<Utc>>),
}

type Query<'q, D> = sqlx::query::Query<'q, D, <D as sqlx::Database>::Arguments>;

/// Where PostgreSQL and SQLite differ.
#[async_trait]
pub trait Dialect: sqlx::Database + Sized
where
    for<'c> &'c mut <Self as sqlx::Database>::Connection: Executor<'c, Database = Self>,
    <Self as sqlx::Database>::Arguments: IntoArguments<Self>,
{
    /// `postgres` or `sqlite`.
    const KIND: &'static str;
    /// Appended to a SELECT that must lock its rows (empty where the
    /// transaction's write lock covers everything).
    const LOCK: &'static str;
    /// The current time, in the column form of the dialect.
    const NOW: &'static str;
    /// Opens a batch's transaction.
    const BEGIN: Option<&'static str>;
    /// `govsync batches`: its filters and order (the one shared read whose
    /// NULL tests need a dialect's own casts).
    const BATCHES: &'static str;
    /// A batch's logged changes (`$1`: the batch id), in offset order.
    const BATCH_LOG: &'static str;
    /// The review items' filter (`$1`: a status or NULL for all).
    const REVIEW_STATUS_FILTER: &'static str;

    /// The dialect's texts of the statements that name the target table.
    type TableSql: Send + Sync + std::fmt::Debug;

    /// Builds the statements that name the target table from its mapping.
    fn table_sql(map: Arc<TableMap>) -> Self::TableSql;
    fn table_map(sql: &Self::TableSql) -> Arc<TableMap>;
    /// The catalog of `table` (as configured) and how SQL names it;
    /// `None` when there is no such table.
    async fn read_catalog(pool: &Pool<Self>, table: &str) -> SinkResult<Option<(String, Catalog)>>;

    fn bind<'q>(q: Query<'q, Self>, a: Arg<'_>) -> Query<'q, Self>;
    fn get_text(row: &Self::Row, i: usize) -> Result<Option<String>, sqlx::Error>;
    fn get_i64(row: &Self::Row, i: usize) -> Result<i64, sqlx::Error>;
    fn get_opt_i64(row: &Self::Row, i: usize) -> Result<Option<i64>, sqlx::Error>;
    fn get_bytes(row: &Self::Row, i: usize) -> Result<Option<Vec<u8>>, sqlx::Error>;
    fn get_time(row: &Self::Row, i: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
    fn rows_affected(r: &Self::QueryResult) -> u64;

    /// Creates govsync's tables (and the dev target table).
    async fn migrate(pool: &Pool<Self>, with_target_table: bool) -> SinkResult<Vec<String>>;
    /// See [`Database::maintain`].
    async fn maintain(pool: &Pool<Self>, retention: std::time::Duration) -> SinkResult<String>;

    /// Locks and reads the target rows (in customer-id order).
    async fn lock_rows(
        tx: &mut Transaction<'static, Self>,
        sql: &Self::TableSql,
        ids: &[String],
    ) -> SinkResult<HashMap<String, Row>>;
    /// Reads the target rows without locking.
    async fn read_rows(
        tx: &mut Transaction<'static, Self>,
        sql: &Self::TableSql,
        ids: &[String],
    ) -> SinkResult<HashMap<String, Row>>;
    async fn seen_events(
        tx: &mut Transaction<'static, Self>,
        events: &[EventKey],
    ) -> SinkResult<HashSet<String>>;
    async fn row_states(
        tx: &mut Transaction<'static, Self>,
        ids: &[String],
    ) -> SinkResult<Vec<RowState>>;
    async fn write_state(tx: &mut Transaction<'static, Self>, state: &[RowState])
    -> SinkResult<()>;
    /// See [`Tx::write_review`].
    async fn write_review(
        tx: &mut Transaction<'static, Self>,
        items: &[ReviewItem],
        supersede: &[Supersede],
    ) -> SinkResult<()>;
    /// The plan's inputs; by default one statement per kind.
    async fn read_snapshot(
        tx: &mut SqlxTx<Self>,
        ids: &[String],
        events: &[EventKey],
    ) -> SinkResult<Snapshot> {
        super::read_each(tx, ids, events).await
    }
    /// A batch's writes; by default one statement per kind, the rows re-read
    /// for the verification.
    async fn write(tx: &mut SqlxTx<Self>, w: &Writes<'_>) -> SinkResult<Stored> {
        super::write_each(tx, w).await?;
        Ok(Stored::NotCompared)
    }
    async fn write_changes(
        tx: &mut Transaction<'static, Self>,
        sql: &Self::TableSql,
        batch_id: &str,
        log: &[LogEntry],
        updates: &[RowWrite],
        inserts: &[RowWrite],
        deletes: &[String],
    ) -> SinkResult<()>;
    async fn write_outbox(
        tx: &mut Transaction<'static, Self>,
        batch_id: &str,
        key: &PartitionKey,
        next_offset: i64,
        msgs: &[OutMessage],
    ) -> SinkResult<()>;
}

/// A shared template in the dialect's placeholders: `$n` stays for
/// PostgreSQL and becomes `?n` for SQLite (an explicit index, whatever the
/// order the placeholders appear in).
pub fn dialect_sql(template: &str, question_marks: bool) -> String {
    if !question_marks {
        return template.to_string();
    }
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// The shared statements, in one dialect's placeholders.
#[derive(Debug)]
pub struct SharedSql {
    watermark_read: String,
    watermark_lock: String,
    watermark_create: String,
    watermark_advance: String,
    outbox_read: String,
    outbox_prune: String,
    ledger_insert: String,
    batch_status_read: String,
    batch_status_set: String,
    batch_log_read: String,
    batches: String,
    open_reviews: String,
    /// The review items' and decisions' statements.
    pub(super) review: ReviewSql,
}

/// The open review items by priority and region (`min` of the RFC 3339
/// text SQLite keeps is the oldest too).
const OPEN_REVIEWS: &str = "SELECT priority, region_code, count(*), min(created_at) \
    FROM govsync_review_item WHERE status = 'open' GROUP BY priority, region_code";

const WATERMARK_READ: &str = "SELECT next_offset FROM govsync_watermark \
    WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3";

impl SharedSql {
    pub fn new<D: Dialect>() -> Self
    where
        for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
        D::Arguments: IntoArguments<D>,
    {
        let q = D::KIND == "sqlite";
        let t = |s: &str| dialect_sql(s, q);
        SharedSql {
            watermark_read: t(WATERMARK_READ),
            watermark_lock: t(&format!("{WATERMARK_READ}{}", D::LOCK)),
            watermark_create: t(
                "INSERT INTO govsync_watermark (consumer_group, topic, partition_id, next_offset) \
                 VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
            ),
            watermark_advance: t(&format!(
                "UPDATE govsync_watermark SET next_offset = $4, batch_id = $5, updated_at = {} \
                 WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3 AND next_offset <= $4",
                D::NOW
            )),
            outbox_read: t(
                "SELECT dest_topic, msg_key, msg_value, headers FROM govsync_outbox \
                 WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3 AND next_offset > $4 \
                 AND next_offset <= $5 ORDER BY next_offset, seq",
            ),
            outbox_prune: t(
                "DELETE FROM govsync_outbox WHERE consumer_group = $1 AND topic = $2 \
                 AND partition_id = $3 AND next_offset <= $4",
            ),
            ledger_insert: t(
                "INSERT INTO govsync_batch (batch_id, kind, consumer_group, topic, partition_id, \
                 first_offset, last_offset, records, counts, started_at, duration_ms, attempts, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            ),
            batch_status_read: t(&format!(
                "SELECT status FROM govsync_batch WHERE batch_id = $1{}",
                D::LOCK
            )),
            batch_status_set: t("UPDATE govsync_batch SET status = $2 WHERE batch_id = $1"),
            batch_log_read: t(D::BATCH_LOG),
            batches: t(D::BATCHES),
            open_reviews: t(OPEN_REVIEWS),
            review: ReviewSql::new::<D>(),
        }
    }
}

fn query<'q, D: Dialect>(sql: &str, args: &[Arg<'_>]) -> Query<'q, D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
{
    args.iter()
        .fold(sqlx::query(AssertSqlSafe(sql.to_string())), |q, a| {
            D::bind(q, *a)
        })
}

fn key_args(key: &PartitionKey) -> [Arg<'_>; 3] {
    [
        Arg::Str(&key.group),
        Arg::Str(&key.topic),
        Arg::I32(key.partition),
    ]
}

/// A batch's transaction on a sqlx database.
pub struct SqlxTx<D: Dialect>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
{
    pub(super) tx: Transaction<'static, D>,
    pub(super) shared: Arc<SharedSql>,
    pub(super) table: Arc<D::TableSql>,
}

impl<D: Dialect> SqlxTx<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
{
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> SinkResult<()> {
        query::<D>(sql, args).execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn fetch_all(&mut self, sql: &str, args: &[Arg<'_>]) -> SinkResult<Vec<D::Row>> {
        Ok(query::<D>(sql, args).fetch_all(&mut *self.tx).await?)
    }

    async fn fetch_optional(&mut self, sql: &str, args: &[Arg<'_>]) -> SinkResult<Option<D::Row>> {
        Ok(query::<D>(sql, args).fetch_optional(&mut *self.tx).await?)
    }
}

#[async_trait]
impl<D: Dialect> Tx for SqlxTx<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
{
    fn table_map(&self) -> Arc<TableMap> {
        D::table_map(&self.table)
    }

    async fn lock_watermark(&mut self, key: &PartitionKey) -> SinkResult<i64> {
        let shared = self.shared.clone();
        let args = key_args(key);
        if let Some(r) = self.fetch_optional(&shared.watermark_lock, &args).await? {
            return Ok(D::get_i64(&r, 0)?);
        }
        self.execute(&shared.watermark_create, &args).await?;
        let r = self.fetch_optional(&shared.watermark_lock, &args).await?;
        let r = r.ok_or_else(|| SinkError::Fatal("the watermark row vanished".into()))?;
        Ok(D::get_i64(&r, 0)?)
    }

    async fn read_outbox(
        &mut self,
        key: &PartitionKey,
        from: i64,
        to: i64,
    ) -> SinkResult<Vec<OutMessage>> {
        let shared = self.shared.clone();
        let [g, t, p] = key_args(key);
        let rows = self
            .fetch_all(
                &shared.outbox_read,
                &[g, t, p, Arg::I64(from), Arg::I64(to)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let headers = D::get_bytes(r, 3)?.unwrap_or_default();
                Ok(OutMessage {
                    topic: D::get_text(r, 0)?.unwrap_or_default(),
                    key: D::get_bytes(r, 1)?,
                    payload: D::get_bytes(r, 2)?,
                    headers: decode_headers(&headers).ok_or_else(|| {
                        SinkError::Fatal("corrupt headers in govsync_outbox".into())
                    })?,
                })
            })
            .collect()
    }

    async fn lock_rows(&mut self, ids: &[String]) -> SinkResult<HashMap<String, Row>> {
        D::lock_rows(&mut self.tx, &self.table, ids).await
    }

    async fn read_rows(&mut self, ids: &[String]) -> SinkResult<HashMap<String, Row>> {
        D::read_rows(&mut self.tx, &self.table, ids).await
    }

    async fn seen_events(&mut self, events: &[EventKey]) -> SinkResult<HashSet<String>> {
        D::seen_events(&mut self.tx, events).await
    }

    async fn row_states(&mut self, ids: &[String]) -> SinkResult<Vec<RowState>> {
        D::row_states(&mut self.tx, ids).await
    }

    async fn read_snapshot(&mut self, ids: &[String], events: &[EventKey]) -> SinkResult<Snapshot> {
        D::read_snapshot(self, ids, events).await
    }

    async fn write_state(&mut self, state: &[RowState]) -> SinkResult<()> {
        D::write_state(&mut self.tx, state).await
    }

    async fn write_review(
        &mut self,
        items: &[ReviewItem],
        supersede: &[Supersede],
    ) -> SinkResult<()> {
        D::write_review(&mut self.tx, items, supersede).await
    }

    async fn write(&mut self, w: &Writes<'_>) -> SinkResult<Stored> {
        D::write(self, w).await
    }

    async fn savepoint(&mut self) -> SinkResult<()> {
        self.execute("SAVEPOINT govsync_write", &[]).await?;
        Ok(())
    }

    /// Rolls back to the savepoint and releases it (SQLite's ROLLBACK TO
    /// keeps it open; PostgreSQL's too).
    async fn rollback_to_savepoint(&mut self) -> SinkResult<()> {
        self.execute("ROLLBACK TO SAVEPOINT govsync_write", &[])
            .await?;
        self.execute("RELEASE SAVEPOINT govsync_write", &[]).await?;
        Ok(())
    }

    async fn release_savepoint(&mut self) -> SinkResult<()> {
        self.execute("RELEASE SAVEPOINT govsync_write", &[]).await?;
        Ok(())
    }

    async fn write_changes(
        &mut self,
        batch_id: &str,
        log: &[LogEntry],
        updates: &[RowWrite],
        inserts: &[RowWrite],
        deletes: &[String],
    ) -> SinkResult<()> {
        D::write_changes(
            &mut self.tx,
            &self.table,
            batch_id,
            log,
            updates,
            inserts,
            deletes,
        )
        .await
    }

    async fn write_outbox(
        &mut self,
        batch_id: &str,
        key: &PartitionKey,
        next_offset: i64,
        msgs: &[OutMessage],
    ) -> SinkResult<()> {
        D::write_outbox(&mut self.tx, batch_id, key, next_offset, msgs).await
    }

    async fn prune_outbox(&mut self, key: &PartitionKey, upto: i64) -> SinkResult<()> {
        let shared = self.shared.clone();
        let [g, t, p] = key_args(key);
        self.execute(&shared.outbox_prune, &[g, t, p, Arg::I64(upto)])
            .await?;
        Ok(())
    }

    async fn write_ledger(&mut self, e: &LedgerEntry) -> SinkResult<()> {
        let shared = self.shared.clone();
        let counts = serde_json::to_string(&e.counts).unwrap_or_default();
        let args = [
            Arg::Str(&e.batch_id),
            Arg::Str(&e.kind),
            Arg::Str(&e.group),
            Arg::Str(&e.topic),
            Arg::I32(e.partition),
            Arg::I64(e.first_offset),
            Arg::I64(e.last_offset),
            Arg::I32(e.records as i32),
            Arg::Str(&counts),
            Arg::Time(e.started_at),
            Arg::I64(e.duration_ms),
            Arg::I32(e.attempts),
            Arg::Str(&e.status),
        ];
        self.execute(&shared.ledger_insert, &args).await?;
        Ok(())
    }

    async fn advance_watermark(
        &mut self,
        key: &PartitionKey,
        next: i64,
        batch_id: &str,
    ) -> SinkResult<()> {
        let shared = self.shared.clone();
        let [g, t, p] = key_args(key);
        let args = [g, t, p, Arg::I64(next), Arg::Str(batch_id)];
        self.execute(&shared.watermark_advance, &args).await?;
        Ok(())
    }

    async fn read_batch_log(&mut self, batch_id: &str) -> SinkResult<Vec<LoggedChange>> {
        let shared = self.shared.clone();
        let rows = self
            .fetch_all(&shared.batch_log_read, &[Arg::Str(batch_id)])
            .await?;
        let image = |s: Option<String>| {
            s.and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(serde_json::Value::Null)
        };
        rows.iter()
            .map(|r| {
                Ok(LoggedChange {
                    event_id: D::get_text(r, 0)?.unwrap_or_default(),
                    customer_id: D::get_text(r, 1)?.unwrap_or_default(),
                    data_type: D::get_text(r, 2)?.unwrap_or_default(),
                    operation: D::get_text(r, 3)?.unwrap_or_default(),
                    before: image(D::get_text(r, 4)?),
                    after: image(D::get_text(r, 5)?),
                })
            })
            .collect()
    }

    async fn lock_review_item(&mut self, event_id: &str) -> SinkResult<Option<LockedItem>> {
        let shared = self.shared.clone();
        let Some(r) = self
            .fetch_optional(&shared.review.item_lock, &[Arg::Str(event_id)])
            .await?
        else {
            return Ok(None);
        };
        let text = |i| -> SinkResult<String> { Ok(D::get_text(&r, i)?.unwrap_or_default()) };
        Ok(Some(LockedItem {
            event_id: text(0)?,
            customer_id: text(1)?,
            data_type: text(2)?,
            status: text(3)?,
            row_version: D::get_opt_i64(&r, 4)?,
            proposed: text(5)?,
            governed_at: D::get_time(&r, 6)?.ok_or_else(|| {
                SinkError::Fatal(format!("review item {event_id} has no governed_at"))
            })?,
            reason: text(7)?,
        }))
    }

    async fn decision_known(&mut self, decision_id: &str) -> SinkResult<bool> {
        let shared = self.shared.clone();
        Ok(self
            .fetch_optional(&shared.review.decision_known, &[Arg::Str(decision_id)])
            .await?
            .is_some())
    }

    async fn write_decisions(
        &mut self,
        batch_id: &str,
        records: &[DecisionRecord],
    ) -> SinkResult<()> {
        let shared = self.shared.clone();
        for d in records {
            self.execute(
                &shared.review.decision_insert,
                &[
                    Arg::Str(&d.decision_id),
                    Arg::Str(&d.event_id),
                    Arg::Str(&d.reviewer),
                    Arg::Str(&d.decision),
                    Arg::Str(d.outcome),
                    Arg::OptStr(d.reason.as_deref()),
                    Arg::OptStr(d.comment.as_deref()),
                    Arg::OptStr(d.corrected.as_deref()),
                    Arg::OptTime(d.decided_at),
                    Arg::Str(batch_id),
                    Arg::I32(d.partition),
                    Arg::I64(d.offset),
                ],
            )
            .await?;
            if let Some(status) = d.close_item {
                self.execute(
                    &shared.review.item_close,
                    &[
                        Arg::Str(&d.event_id),
                        Arg::Str(status),
                        Arg::Str(&d.reviewer),
                        Arg::OptTime(d.decided_at),
                        Arg::Str(&d.decision),
                        Arg::OptStr(d.comment.as_deref()),
                        Arg::Str(&d.decision_id),
                    ],
                )
                .await?;
            }
            if d.logged {
                let source = super::reviewer_source(&d.reviewer);
                self.execute(
                    &shared.review.log_source,
                    &[Arg::Str(&d.decision_id), Arg::Str(&source)],
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn set_batch_status(
        &mut self,
        batch_id: &str,
        status: &str,
    ) -> SinkResult<Option<String>> {
        let shared = self.shared.clone();
        let prev = match self
            .fetch_optional(&shared.batch_status_read, &[Arg::Str(batch_id)])
            .await?
        {
            Some(r) => D::get_text(&r, 0)?,
            None => None,
        };
        self.execute(
            &shared.batch_status_set,
            &[Arg::Str(batch_id), Arg::Str(status)],
        )
        .await?;
        Ok(prev)
    }

    async fn commit(self: Box<Self>) -> SinkResult<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// A sqlx database: a pool and the dialect's statement texts.
pub struct SqlxDatabase<D: Dialect>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
{
    pub(super) pool: Pool<D>,
    pub(super) shared: Arc<SharedSql>,
    /// `database.target_table` and `database.mapping`.
    target: (String, TableMapping),
    /// Resolved on first use ([`Database::check_table`]).
    table: tokio::sync::OnceCell<Arc<D::TableSql>>,
}

impl<D: Dialect> SqlxDatabase<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
{
    pub fn new(pool: Pool<D>, cfg: &DatabaseConfig) -> Self {
        SqlxDatabase {
            pool,
            shared: Arc::new(SharedSql::new::<D>()),
            target: (cfg.target_table.clone(), cfg.mapping.clone()),
            table: tokio::sync::OnceCell::new(),
        }
    }

    /// The target table's statements, built once its catalog has been
    /// checked against the mapping.
    async fn table(&self) -> SinkResult<Arc<D::TableSql>> {
        self.table
            .get_or_try_init(|| async {
                let (name, mapping) = &self.target;
                let found = D::read_catalog(&self.pool, name).await?;
                let map = super::table::resolve_found(mapping, name, found)?;
                Ok(Arc::new(D::table_sql(Arc::new(map))))
            })
            .await
            .cloned()
    }
}

/// Upper bound for closing the pool: a connection whose server went silent
/// (a cut network) would hold the close, and with it a shutdown, for ever.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

#[async_trait]
impl<D: Dialect> Database for SqlxDatabase<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
{
    fn kind(&self) -> &'static str {
        D::KIND
    }

    async fn begin(&self) -> SinkResult<Box<dyn Tx>> {
        let table = self.table().await?;
        let tx = match D::BEGIN {
            Some(stmt) => self.pool.begin_with(stmt).await?,
            None => self.pool.begin().await?,
        };
        Ok(Box::new(SqlxTx::<D> {
            tx,
            shared: self.shared.clone(),
            table,
        }))
    }

    async fn watermark(&self, key: &PartitionKey) -> SinkResult<Option<i64>> {
        let r = query::<D>(&self.shared.watermark_read, &key_args(key))
            .fetch_optional(&self.pool)
            .await?;
        Ok(match r {
            Some(r) => Some(D::get_i64(&r, 0)?),
            None => None,
        })
    }

    async fn ping(&self) -> SinkResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self, with_target_table: bool) -> SinkResult<Vec<String>> {
        D::migrate(&self.pool, with_target_table).await
    }

    async fn maintain(&self, retention: std::time::Duration) -> SinkResult<String> {
        let done = D::maintain(&self.pool, retention).await?;
        let Some(horizon) = super::retention_horizon(chrono::Utc::now(), retention) else {
            return Ok(done);
        };
        let items = query::<D>(&self.shared.review.review_prune, &[Arg::Time(horizon)])
            .execute(&self.pool)
            .await?;
        let decisions = query::<D>(&self.shared.review.decisions_prune, &[Arg::Time(horizon)])
            .execute(&self.pool)
            .await?;
        Ok(format!(
            "{done}; {} closed review items and {} decisions deleted",
            D::rows_affected(&items),
            D::rows_affected(&decisions)
        ))
    }

    async fn review_items(&self, status: Option<&str>) -> SinkResult<Vec<StoredReviewItem>> {
        let rows = query::<D>(&self.shared.review.review_items, &[Arg::OptStr(status)])
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_item::<D>).collect()
    }

    async fn review_item(&self, event_id: &str) -> SinkResult<Option<StoredReviewItem>> {
        let row = query::<D>(&self.shared.review.review_item, &[Arg::Str(event_id)])
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored_item::<D>).transpose()
    }

    async fn review_decisions(&self, event_id: &str) -> SinkResult<Vec<StoredDecision>> {
        let rows = query::<D>(&self.shared.review.decisions_read, &[Arg::Str(event_id)])
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let text = |i| -> SinkResult<String> { Ok(D::get_text(r, i)?.unwrap_or_default()) };
                Ok(StoredDecision {
                    decision_id: text(0)?,
                    event_id: text(1)?,
                    reviewer: text(2)?,
                    decision: text(3)?,
                    outcome: text(4)?,
                    reason: D::get_text(r, 5)?,
                    comment: D::get_text(r, 6)?,
                    decided_at: D::get_time(r, 7)?,
                    applied_at: D::get_time(r, 8)?,
                })
            })
            .collect()
    }

    async fn open_reviews(&self) -> SinkResult<Vec<OpenReviews>> {
        let rows = query::<D>(&self.shared.open_reviews, &[])
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OpenReviews {
                    priority: D::get_text(r, 0)?.unwrap_or_default(),
                    region_code: D::get_text(r, 1)?.unwrap_or_default(),
                    count: D::get_i64(r, 2)?,
                    oldest: D::get_time(r, 3)?,
                })
            })
            .collect()
    }

    async fn check_table(&self) -> SinkResult<Arc<TableMap>> {
        Ok(D::table_map(&*self.table().await?))
    }

    async fn batches(&self, f: &BatchFilter) -> SinkResult<Vec<LedgerEntry>> {
        let args = [
            Arg::OptStr(f.topic.as_deref()),
            Arg::OptI32(f.partition),
            Arg::OptStr(f.status.as_deref()),
            Arg::OptTime(f.since),
            Arg::OptStr(f.batch_id.as_deref()),
            Arg::I64(if f.limit > 0 { f.limit } else { 50 }),
        ];
        let rows = query::<D>(&self.shared.batches, &args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(ledger_from::<D>).collect()
    }

    async fn close(&self) {
        if tokio::time::timeout(CLOSE_TIMEOUT, self.pool.close())
            .await
            .is_err()
        {
            tracing::warn!(
                timeout = ?CLOSE_TIMEOUT,
                "database connections did not close in time; leaving them to the operating system"
            );
        }
    }
}

fn ledger_from<D: Dialect>(r: &D::Row) -> SinkResult<LedgerEntry>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
{
    let text = |i| -> SinkResult<String> { Ok(D::get_text(r, i)?.unwrap_or_default()) };
    Ok(LedgerEntry {
        batch_id: text(0)?,
        kind: text(1)?,
        group: text(2)?,
        topic: text(3)?,
        partition: D::get_i64(r, 4)? as i32,
        first_offset: D::get_i64(r, 5)?,
        last_offset: D::get_i64(r, 6)?,
        records: D::get_i64(r, 7)?,
        counts: serde_json::from_str(&text(8)?).unwrap_or_default(),
        started_at: D::get_time(r, 9)?.unwrap_or_default(),
        duration_ms: D::get_i64(r, 10)?,
        attempts: D::get_i64(r, 11)? as i32,
        status: text(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_placeholders_keep_their_index() {
        assert_eq!(
            dialect_sql(
                "UPDATE t SET a = $4 WHERE b = $1 AND c = '$x' AND d = $10",
                true
            ),
            "UPDATE t SET a = ?4 WHERE b = ?1 AND c = '$x' AND d = ?10"
        );
        assert_eq!(dialect_sql("a = $1", false), "a = $1");
    }
}
