//! SQLite: the embedded database of `govsync demo` and of single-node use.
//! Set-based SQL over `jsonb_each` of one bound JSON array per statement
//! (parsed once into SQLite's binary JSON, so each `->>` is a lookup);
//! `BEGIN IMMEDIATE` takes the write lock up front (SQLite has one writer,
//! so there are no row locks to take); savepoints for bisection. Times are
//! stored as fixed-form RFC 3339 text (UTC, microseconds).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row as _, Sqlite, Transaction};

use super::plan::RowWrite;
use super::sqlx_common::{Arg, Dialect, SqlxDatabase};
use super::{EventKey, LogEntry, PartitionKey, RowState, SinkError, SinkResult, migrate};
use crate::config::DatabaseConfig;
use crate::event::Row;
use crate::message::{OutMessage, encode_headers};

pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

#[derive(Debug)]
pub struct Sql {
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
                 FROM jsonb_each(?1) AS j WHERE {table}.customer_id = j.value->>0"
            ),
            insert: format!(
                "INSERT INTO {table} (customer_id, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, \
                 quality_score, validation_status, review_flag, review_priority, last_governance_time, version, name) \
                 SELECT j.value->>0, j.value->>1, j.value->>2, j.value->>3, j.value->>4, j.value->>5, j.value->>6, \
                 j.value->>7, j.value->>8, j.value->>9, j.value->>10, j.value->>11, j.value->>12, j.value->>13, \
                 j.value->>14 FROM jsonb_each(?1) AS j"
            ),
            delete: format!(
                "DELETE FROM {table} WHERE customer_id IN (SELECT value FROM json_each(?1))"
            ),
        }
    }
}

/// The SQLite sink.
pub type SqliteDatabase = SqlxDatabase<Sqlite>;

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
        Ok(SqlxDatabase::new(pool, Sql::new(&cfg.target_table)))
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
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    b.as_ref().map(|b| {
        b.iter()
            .flat_map(|x| [DIGITS[usize::from(x >> 4)], DIGITS[usize::from(x & 15)]])
            .map(char::from)
            .collect()
    })
}

#[async_trait]
impl Dialect for Sqlite {
    const KIND: &'static str = "sqlite";
    /// `BEGIN IMMEDIATE` holds the database's one write lock.
    const LOCK: &'static str = "";
    const NOW: &'static str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
    const BEGIN: Option<&'static str> = Some("BEGIN IMMEDIATE");
    const BATCHES: &'static str = "SELECT batch_id, kind, consumer_group, topic, partition_id, first_offset, \
        last_offset, records, counts, started_at, duration_ms, attempts, status FROM govsync_batch \
        WHERE (?1 IS NULL OR topic = ?1) AND (?2 IS NULL OR partition_id = ?2) \
        AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR started_at >= ?4) AND (?5 IS NULL OR batch_id = ?5) \
        ORDER BY started_at DESC, batch_id LIMIT ?6";
    const BATCH_LOG: &'static str = "SELECT event_id, customer_id, data_type, operation, before_image, \
        after_image FROM govsync_change_log WHERE batch_id = ?1 AND outcome IN ('applied', 'flagged') \
        ORDER BY id";
    type TableSql = Sql;

    fn bind<'q>(
        q: sqlx::query::Query<'q, Self, sqlx::sqlite::SqliteArguments>,
        a: Arg<'_>,
    ) -> sqlx::query::Query<'q, Self, sqlx::sqlite::SqliteArguments> {
        match a {
            Arg::Str(v) => q.bind(v.to_string()),
            Arg::OptStr(v) => q.bind(v.map(str::to_string)),
            Arg::I32(v) => q.bind(v),
            Arg::OptI32(v) => q.bind(v),
            Arg::I64(v) => q.bind(v),
            Arg::Time(v) => q.bind(time_text(v)),
            Arg::OptTime(v) => q.bind(v.map(time_text)),
        }
    }

    fn get_text(row: &SqliteRow, i: usize) -> Result<Option<String>, sqlx::Error> {
        row.try_get(i)
    }

    fn get_i64(row: &SqliteRow, i: usize) -> Result<i64, sqlx::Error> {
        row.try_get(i)
    }

    fn get_bytes(row: &SqliteRow, i: usize) -> Result<Option<Vec<u8>>, sqlx::Error> {
        row.try_get(i)
    }

    fn get_time(row: &SqliteRow, i: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        Ok(parse_time(row.try_get(i)?))
    }

    async fn migrate(pool: &sqlx::Pool<Self>, with_target_table: bool) -> SinkResult<Vec<String>> {
        migrate::run_sqlx(
            pool,
            migrate::SQLITE,
            migrate::SQLITE_DEV,
            with_target_table,
        )
        .await
    }

    /// Deletes what was logged before `now - retention`.
    async fn maintain(
        pool: &sqlx::Pool<Self>,
        retention: std::time::Duration,
    ) -> SinkResult<String> {
        let Some(horizon) = super::retention_horizon(Utc::now(), retention) else {
            return Ok("retention reaches before year 1: nothing to delete".into());
        };
        let done = sqlx::query("DELETE FROM govsync_change_log WHERE logged_at < ?1")
            .bind(time_text(horizon))
            .execute(pool)
            .await?;
        Ok(format!("{} change-log rows deleted", done.rows_affected()))
    }

    async fn lock_rows(
        tx: &mut Transaction<'static, Self>,
        sql: &Sql,
        ids: &[String],
    ) -> SinkResult<HashMap<String, Row>> {
        let rows = sqlx::query(AssertSqlSafe(sql.lock_rows.clone()))
            .bind(json_ids(ids))
            .fetch_all(&mut **tx)
            .await?;
        Ok(rows.iter().map(row_from).collect::<Result<_, _>>()?)
    }

    /// One writer at a time: the transaction's write lock covers the rows.
    async fn read_rows(
        tx: &mut Transaction<'static, Self>,
        sql: &Sql,
        ids: &[String],
    ) -> SinkResult<HashMap<String, Row>> {
        Self::lock_rows(tx, sql, ids).await
    }

    async fn seen_events(
        tx: &mut Transaction<'static, Self>,
        events: &[EventKey],
    ) -> SinkResult<HashSet<String>> {
        let keys: Vec<serde_json::Value> = events
            .iter()
            .map(|(e, t)| json!([e, time_text(*t)]))
            .collect();
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT c.event_id FROM jsonb_each(?1) AS j JOIN govsync_change_log c \
             ON c.event_id = j.value->>0 AND c.governed_at = j.value->>1",
        )
        .bind(serde_json::Value::Array(keys).to_string())
        .fetch_all(&mut **tx)
        .await?;
        Ok(found.into_iter().collect())
    }

    async fn row_states(
        tx: &mut Transaction<'static, Self>,
        ids: &[String],
    ) -> SinkResult<Vec<RowState>> {
        let rows = sqlx::query(
            "SELECT customer_id, address_governed_at, id_card_governed_at, phone_governed_at \
             FROM govsync_row_state WHERE customer_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json_ids(ids))
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RowState {
                    customer_id: r.try_get(0)?,
                    governed_at: [
                        parse_time(r.try_get(1)?),
                        parse_time(r.try_get(2)?),
                        parse_time(r.try_get(3)?),
                    ],
                })
            })
            .collect()
    }

    async fn write_state(
        tx: &mut Transaction<'static, Self>,
        state: &[RowState],
    ) -> SinkResult<()> {
        let arr: Vec<serde_json::Value> = state
            .iter()
            .map(|s| {
                json!([
                    s.customer_id,
                    s.governed_at[0].map(time_text),
                    s.governed_at[1].map(time_text),
                    s.governed_at[2].map(time_text),
                ])
            })
            .collect();
        sqlx::query(
            "INSERT INTO govsync_row_state (customer_id, address_governed_at, id_card_governed_at, \
             phone_governed_at) SELECT j.value->>0, j.value->>1, j.value->>2, j.value->>3 FROM jsonb_each(?1) AS j \
             WHERE true ON CONFLICT (customer_id) DO UPDATE SET address_governed_at = excluded.address_governed_at, \
             id_card_governed_at = excluded.id_card_governed_at, phone_governed_at = excluded.phone_governed_at",
        )
        .bind(serde_json::Value::Array(arr).to_string())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn write_changes(
        tx: &mut Transaction<'static, Self>,
        sql: &Sql,
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
                 j.value->>6, j.value->>7, j.value->>8, j.value->>9 FROM jsonb_each(?2) AS j",
            )
            .bind(batch_id)
            .bind(serde_json::Value::Array(arr).to_string())
            .execute(&mut **tx)
            .await?;
        }
        if !updates.is_empty() {
            let done = sqlx::query(AssertSqlSafe(sql.update.clone()))
                .bind(rows_json(updates))
                .execute(&mut **tx)
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
            sqlx::query(AssertSqlSafe(sql.insert.clone()))
                .bind(rows_json(inserts))
                .execute(&mut **tx)
                .await?;
        }
        if !deletes.is_empty() {
            sqlx::query(AssertSqlSafe(sql.delete.clone()))
                .bind(json_ids(deletes))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    async fn write_outbox(
        tx: &mut Transaction<'static, Self>,
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
             unhex(j.value->>4) FROM jsonb_each(?6) AS j",
        )
        .bind(batch_id)
        .bind(&key.group)
        .bind(&key.topic)
        .bind(key.partition)
        .bind(next_offset)
        .bind(serde_json::Value::Array(arr).to_string())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
