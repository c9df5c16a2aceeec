//! SQLite: the embedded database of `govsync demo` and of single-node use.
//! Set-based SQL over `json_each` of one bound JSON array per statement;
//! `BEGIN IMMEDIATE` takes the write lock up front (SQLite has one writer,
//! so there are no row locks to take); savepoints for bisection. Times are
//! stored as fixed-form RFC 3339 text (UTC, microseconds).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row as _, Sqlite, Transaction};

use super::plan::RowWrite;
use super::{
    BatchFilter, Database, LedgerEntry, LogEntry, LoggedChange, PartitionKey, SinkError,
    SinkResult, Tx, migrate,
};
use crate::config::DatabaseConfig;
use crate::event::{DataType, Row};
use crate::message::{OutMessage, decode_headers, encode_headers};

pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

#[derive(Debug)]
struct Sql {
    lock_rows: String,
    update: String,
    insert: String,
    delete: String,
}

const ROW_COLUMNS: &str = "customer_id, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, \
    quality_score, validation_status, review_flag, review_priority, last_governance_time, last_update, version";

impl Sql {
    fn new(table: &str) -> Self {
        Sql {
            lock_rows: format!(
                "SELECT {ROW_COLUMNS} FROM {table} WHERE customer_id IN (SELECT value FROM json_each(?1)) ORDER BY customer_id"
            ),
            update: format!(
                "UPDATE {table} SET address = j.value->>1, geo_lat = j.value->>2, geo_lon = j.value->>3, \
                 geo_accuracy = j.value->>4, id_card = j.value->>5, phone = j.value->>6, carrier_info = j.value->>7, \
                 quality_score = j.value->>8, validation_status = j.value->>9, review_flag = j.value->>10, \
                 review_priority = j.value->>11, last_governance_time = j.value->>12, version = j.value->>13 \
                 FROM json_each(?1) AS j WHERE {table}.customer_id = j.value->>0"
            ),
            insert: format!(
                "INSERT INTO {table} (customer_id, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, \
                 quality_score, validation_status, review_flag, review_priority, last_governance_time, version, name) \
                 SELECT j.value->>0, j.value->>1, j.value->>2, j.value->>3, j.value->>4, j.value->>5, j.value->>6, \
                 j.value->>7, j.value->>8, j.value->>9, j.value->>10, j.value->>11, j.value->>12, j.value->>13, \
                 j.value->>14 FROM json_each(?1) AS j"
            ),
            delete: format!(
                "DELETE FROM {table} WHERE customer_id IN (SELECT value FROM json_each(?1))"
            ),
        }
    }
}

pub struct SqliteDatabase {
    pool: SqlitePool,
    sql: std::sync::Arc<Sql>,
}

impl SqliteDatabase {
    pub async fn connect(cfg: &DatabaseConfig) -> SinkResult<Self> {
        let opts = SqliteConnectOptions::from_str(&cfg.url)
            .map_err(|e| SinkError::Fatal(format!("database.url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(cfg.lock_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(cfg.pool_size.min(4))
            .acquire_timeout(cfg.connect_timeout)
            .connect_with(opts)
            .await?;
        Ok(SqliteDatabase {
            pool,
            sql: std::sync::Arc::new(Sql::new(&cfg.target_table)),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn json_ids(ids: &[String]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

fn row_from(r: &SqliteRow) -> Result<(String, Row), sqlx::Error> {
    Ok((
        r.try_get(0)?,
        Row {
            address: r.try_get(1)?,
            geo_lat: r.try_get(2)?,
            geo_lon: r.try_get(3)?,
            geo_accuracy: r.try_get(4)?,
            id_card: r.try_get(5)?,
            phone: r.try_get(6)?,
            carrier_info: r.try_get(7)?,
            quality_score: r.try_get(8)?,
            validation_status: r.try_get(9)?,
            review_flag: r.try_get::<Option<i64>, _>(10)?.map(|v| v != 0),
            review_priority: r.try_get(11)?,
            last_governance_time: parse_time(r.try_get(12)?),
            last_update: parse_time(r.try_get(13)?),
            version: r.try_get(14)?,
        },
    ))
}

fn rows_json(writes: &[RowWrite]) -> String {
    let arr: Vec<serde_json::Value> = writes
        .iter()
        .map(|w| {
            let r = &w.row;
            json!([
                w.customer_id,
                r.address,
                r.geo_lat,
                r.geo_lon,
                r.geo_accuracy,
                r.id_card,
                r.phone,
                r.carrier_info,
                r.quality_score,
                r.validation_status,
                r.review_flag,
                r.review_priority,
                r.last_governance_time.map(time_text),
                r.version,
                w.name,
            ])
        })
        .collect();
    serde_json::Value::Array(arr).to_string()
}

fn hex(b: &Option<Vec<u8>>) -> Option<String> {
    b.as_ref()
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
}

pub struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    sql: std::sync::Arc<Sql>,
}

#[async_trait]
impl Tx for SqliteTx {
    async fn lock_watermark(&mut self, key: &PartitionKey) -> SinkResult<i64> {
        sqlx::query(
            "INSERT OR IGNORE INTO govsync_watermark (consumer_group, topic, partition_id, next_offset) VALUES (?1, ?2, ?3, 0)",
        )
        .bind(&key.group)
        .bind(&key.topic)
        .bind(key.partition)
        .execute(&mut *self.tx)
        .await?;
        Ok(sqlx::query_scalar(
            "SELECT next_offset FROM govsync_watermark WHERE consumer_group = ?1 AND topic = ?2 AND partition_id = ?3",
        )
        .bind(&key.group)
        .bind(&key.topic)
        .bind(key.partition)
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn read_outbox(
        &mut self,
        key: &PartitionKey,
        from: i64,
        to: i64,
    ) -> SinkResult<Vec<OutMessage>> {
        let rows = sqlx::query(
            "SELECT dest_topic, msg_key, msg_value, headers FROM govsync_outbox \
             WHERE consumer_group = ?1 AND topic = ?2 AND partition_id = ?3 AND next_offset > ?4 AND next_offset <= ?5 \
             ORDER BY next_offset, seq",
        )
        .bind(&key.group)
        .bind(&key.topic)
        .bind(key.partition)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                let headers: Vec<u8> = r.try_get(3)?;
                Ok(OutMessage {
                    topic: r.try_get(0)?,
                    key: r.try_get(1)?,
                    payload: r.try_get(2)?,
                    headers: decode_headers(&headers).ok_or_else(|| {
                        SinkError::Fatal("corrupt headers in govsync_outbox".into())
                    })?,
                })
            })
            .collect()
    }

    async fn lock_rows(&mut self, ids: &[String]) -> SinkResult<HashMap<String, Row>> {
        let rows = sqlx::query(AssertSqlSafe(self.sql.lock_rows.clone()))
            .bind(json_ids(ids))
            .fetch_all(&mut *self.tx)
            .await?;
        Ok(rows.iter().map(row_from).collect::<Result<_, _>>()?)
    }

    async fn read_rows(&mut self, ids: &[String]) -> SinkResult<HashMap<String, Row>> {
        self.lock_rows(ids).await
    }

    async fn seen_events(&mut self, ids: &[String]) -> SinkResult<HashSet<String>> {
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT event_id FROM govsync_change_log WHERE event_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_ids(ids))
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(found.into_iter().collect())
    }

    async fn last_governed(
        &mut self,
        ids: &[String],
    ) -> SinkResult<HashMap<(String, DataType), DateTime<Utc>>> {
        let rows = sqlx::query(
            "SELECT customer_id, data_type, max(governed_at) FROM govsync_change_log \
             WHERE customer_id IN (SELECT value FROM json_each(?1)) AND outcome IN ('applied', 'flagged') \
             GROUP BY customer_id, data_type",
        )
        .bind(json_ids(ids))
        .fetch_all(&mut *self.tx)
        .await?;
        let mut out = HashMap::new();
        for r in rows {
            let dt: String = r.try_get(1)?;
            if let (Some(dt), Some(t)) = (DataType::parse(&dt), parse_time(r.try_get(2)?)) {
                out.insert((r.try_get(0)?, dt), t);
            }
        }
        Ok(out)
    }

    async fn savepoint(&mut self) -> SinkResult<()> {
        sqlx::query("SAVEPOINT govsync_write")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn rollback_to_savepoint(&mut self) -> SinkResult<()> {
        // SQLite's ROLLBACK TO keeps the savepoint open: release it too.
        sqlx::query("ROLLBACK TO SAVEPOINT govsync_write")
            .execute(&mut *self.tx)
            .await?;
        sqlx::query("RELEASE SAVEPOINT govsync_write")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn release_savepoint(&mut self) -> SinkResult<()> {
        sqlx::query("RELEASE SAVEPOINT govsync_write")
            .execute(&mut *self.tx)
            .await?;
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
        if !log.is_empty() {
            let arr: Vec<serde_json::Value> = log
                .iter()
                .map(|l| {
                    json!([
                        l.event_id,
                        l.customer_id,
                        l.data_type.as_str(),
                        l.operation,
                        l.outcome,
                        time_text(l.governed_at),
                        l.before,
                        l.after,
                        l.partition,
                        l.offset,
                    ])
                })
                .collect();
            sqlx::query(
                "INSERT INTO govsync_change_log (batch_id, event_id, customer_id, data_type, operation, outcome, \
                 governed_at, before_image, after_image, source_partition, source_offset) \
                 SELECT ?1, j.value->>0, j.value->>1, j.value->>2, j.value->>3, j.value->>4, j.value->>5, \
                 j.value->>6, j.value->>7, j.value->>8, j.value->>9 FROM json_each(?2) AS j",
            )
            .bind(batch_id)
            .bind(serde_json::Value::Array(arr).to_string())
            .execute(&mut *self.tx)
            .await?;
        }
        if !updates.is_empty() {
            let done = sqlx::query(AssertSqlSafe(self.sql.update.clone()))
                .bind(rows_json(updates))
                .execute(&mut *self.tx)
                .await?;
            if done.rows_affected() != updates.len() as u64 {
                return Err(SinkError::Verification(format!(
                    "updated {} rows, expected {}",
                    done.rows_affected(),
                    updates.len()
                )));
            }
        }
        if !inserts.is_empty() {
            sqlx::query(AssertSqlSafe(self.sql.insert.clone()))
                .bind(rows_json(inserts))
                .execute(&mut *self.tx)
                .await?;
        }
        if !deletes.is_empty() {
            sqlx::query(AssertSqlSafe(self.sql.delete.clone()))
                .bind(json_ids(deletes))
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn write_outbox(
        &mut self,
        batch_id: &str,
        key: &PartitionKey,
        next_offset: i64,
        msgs: &[OutMessage],
    ) -> SinkResult<()> {
        let arr: Vec<serde_json::Value> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                json!([
                    i,
                    m.topic,
                    hex(&m.key),
                    hex(&m.payload),
                    hex(&Some(encode_headers(&m.headers)))
                ])
            })
            .collect();
        sqlx::query(
            "INSERT INTO govsync_outbox (batch_id, seq, consumer_group, topic, partition_id, next_offset, dest_topic, \
             msg_key, msg_value, headers) \
             SELECT ?1, j.value->>0, ?2, ?3, ?4, ?5, j.value->>1, unhex(j.value->>2), unhex(j.value->>3), \
             unhex(j.value->>4) FROM json_each(?6) AS j",
        )
        .bind(batch_id)
        .bind(&key.group)
        .bind(&key.topic)
        .bind(key.partition)
        .bind(next_offset)
        .bind(serde_json::Value::Array(arr).to_string())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn prune_outbox(&mut self, key: &PartitionKey, upto: i64) -> SinkResult<()> {
        sqlx::query(
            "DELETE FROM govsync_outbox WHERE consumer_group = ?1 AND topic = ?2 AND partition_id = ?3 AND next_offset <= ?4",
        )
        .bind(&key.group)
        .bind(&key.topic)
        .bind(key.partition)
        .bind(upto)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn write_ledger(&mut self, e: &LedgerEntry) -> SinkResult<()> {
        sqlx::query(
            "INSERT INTO govsync_batch (batch_id, kind, consumer_group, topic, partition_id, first_offset, last_offset, \
             records, counts, started_at, duration_ms, attempts, status) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .bind(&e.batch_id)
        .bind(&e.kind)
        .bind(&e.group)
        .bind(&e.topic)
        .bind(e.partition)
        .bind(e.first_offset)
        .bind(e.last_offset)
        .bind(e.records)
        .bind(serde_json::to_string(&e.counts).unwrap_or_default())
        .bind(time_text(e.started_at))
        .bind(e.duration_ms)
        .bind(e.attempts)
        .bind(&e.status)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn advance_watermark(
        &mut self,
        key: &PartitionKey,
        next: i64,
        batch_id: &str,
    ) -> SinkResult<()> {
        sqlx::query(
            "UPDATE govsync_watermark SET next_offset = ?4, batch_id = ?5, \
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE consumer_group = ?1 AND topic = ?2 AND partition_id = ?3 AND next_offset <= ?4",
        )
        .bind(&key.group)
        .bind(&key.topic)
        .bind(key.partition)
        .bind(next)
        .bind(batch_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn read_batch_log(&mut self, batch_id: &str) -> SinkResult<Vec<LoggedChange>> {
        let rows = sqlx::query(
            "SELECT event_id, customer_id, data_type, operation, before_image, after_image FROM govsync_change_log \
             WHERE batch_id = ?1 AND outcome IN ('applied', 'flagged') ORDER BY id",
        )
        .bind(batch_id)
        .fetch_all(&mut *self.tx)
        .await?;
        let parse = |s: Option<String>| {
            s.and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(serde_json::Value::Null)
        };
        rows.iter()
            .map(|r| {
                Ok(LoggedChange {
                    event_id: r.try_get(0)?,
                    customer_id: r.try_get(1)?,
                    data_type: r.try_get(2)?,
                    operation: r.try_get(3)?,
                    before: parse(r.try_get(4)?),
                    after: parse(r.try_get(5)?),
                })
            })
            .collect()
    }

    async fn set_batch_status(
        &mut self,
        batch_id: &str,
        status: &str,
    ) -> SinkResult<Option<String>> {
        let prev: Option<String> =
            sqlx::query_scalar("SELECT status FROM govsync_batch WHERE batch_id = ?1")
                .bind(batch_id)
                .fetch_optional(&mut *self.tx)
                .await?;
        sqlx::query("UPDATE govsync_batch SET status = ?2 WHERE batch_id = ?1")
            .bind(batch_id)
            .bind(status)
            .execute(&mut *self.tx)
            .await?;
        Ok(prev)
    }

    async fn commit(self: Box<Self>) -> SinkResult<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Database for SqliteDatabase {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn begin(&self) -> SinkResult<Box<dyn Tx>> {
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteTx {
            tx,
            sql: self.sql.clone(),
        }))
    }

    async fn watermark(&self, key: &PartitionKey) -> SinkResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT next_offset FROM govsync_watermark WHERE consumer_group = ?1 AND topic = ?2 AND partition_id = ?3",
        )
        .bind(&key.group)
        .bind(&key.topic)
        .bind(key.partition)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn ping(&self) -> SinkResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self, with_target_table: bool) -> SinkResult<Vec<String>> {
        migrate::run_sqlx(
            &self.pool,
            migrate::SQLITE,
            migrate::SQLITE_DEV,
            with_target_table,
        )
        .await
    }

    async fn batches(&self, f: &BatchFilter) -> SinkResult<Vec<LedgerEntry>> {
        let rows = sqlx::query(
            "SELECT batch_id, kind, consumer_group, topic, partition_id, first_offset, last_offset, records, counts, \
             started_at, duration_ms, attempts, status FROM govsync_batch \
             WHERE (?1 IS NULL OR topic = ?1) AND (?2 IS NULL OR partition_id = ?2) \
             AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR started_at >= ?4) AND (?5 IS NULL OR batch_id = ?5) \
             ORDER BY started_at DESC, batch_id LIMIT ?6",
        )
        .bind(&f.topic)
        .bind(f.partition)
        .bind(&f.status)
        .bind(f.since.map(time_text))
        .bind(&f.batch_id)
        .bind(if f.limit > 0 { f.limit } else { 50 })
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let counts: String = r.try_get(8)?;
                Ok(LedgerEntry {
                    batch_id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    group: r.try_get(2)?,
                    topic: r.try_get(3)?,
                    partition: r.try_get(4)?,
                    first_offset: r.try_get(5)?,
                    last_offset: r.try_get(6)?,
                    records: r.try_get(7)?,
                    counts: serde_json::from_str(&counts).unwrap_or_default(),
                    started_at: parse_time(r.try_get(9)?).unwrap_or_default(),
                    duration_ms: r.try_get(10)?,
                    attempts: r.try_get(11)?,
                    status: r.try_get(12)?,
                })
            })
            .collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
