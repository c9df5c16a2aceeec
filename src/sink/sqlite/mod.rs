//! SQLite: the embedded database of `govsync demo` and of single-node use.
//! Set-based SQL over `jsonb_each` of one bound JSON array per statement
//! (parsed once into SQLite's binary JSON, so each `->>` is a lookup);
//! `BEGIN IMMEDIATE` takes the write lock up front (SQLite has one writer,
//! so there are no row locks to take); savepoints for bisection. Times are
//! stored as fixed-form RFC 3339 text (UTC, microseconds).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row as _, Sqlite, Transaction};

use super::plan::RowWrite;
use super::sqlx_common::{Arg, Dialect, SqlxDatabase};
use super::table::{Adapter, Catalog, TableMap, quote};
use super::{
    EventKey, LogEntry, PartitionKey, ReviewItem, RowState, SinkError, SinkResult, Supersede,
    migrate,
};
use crate::config::DatabaseConfig;
use crate::event::{Column, Row, Value};
use crate::message::{OutMessage, encode_headers};

mod catalog;

pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// SQL texts that name the target table, built once from its mapping.
/// Values cross as JSON arrays already in the table's encoding
/// ([`physical`]); rows come back as the table stores them and are decoded
/// into logical fields in Rust ([`row_from`]).
#[derive(Debug)]
pub struct Sql {
    map: Arc<TableMap>,
    lock_rows: String,
    update: String,
    insert: String,
    delete: String,
}

impl Sql {
    fn new(map: Arc<TableMap>) -> Self {
        let table = &map.table;
        let key = map.key_quoted();
        // Read: the key, the twelve fields (NULL where unmapped), the last
        // update, the version (the table's, or govsync's count).
        let mut read = vec![format!("t.{key}")];
        for c in Column::ALL {
            read.push(
                map.field(c)
                    .map_or("NULL".to_string(), |m| format!("t.{}", m.quoted())),
            );
        }
        read.push(
            map.last_update
                .as_ref()
                .map_or("NULL".to_string(), |m| format!("t.{}", m.quoted())),
        );
        let (version, join) = match &map.version {
            Some(v) => (format!("t.{}", quote(v)), String::new()),
            None => (
                "coalesce(s.version, 0)".to_string(),
                format!(" LEFT JOIN govsync_row_state s ON s.customer_id = t.{key}"),
            ),
        };
        read.push(version);
        // Write: element i of each JSON row is field i (1..=12), then the
        // version (13) and the name (14).
        let mut set = Vec::new();
        let mut cols = vec![key.clone()];
        let mut vals = vec!["j.value->>0".to_string()];
        for (i, c) in Column::ALL.into_iter().enumerate() {
            if let Some(m) = map.field(c) {
                set.push(format!("{} = j.value->>{}", m.quoted(), i + 1));
                cols.push(m.quoted());
                vals.push(format!("j.value->>{}", i + 1));
            }
        }
        if let Some(v) = &map.version {
            set.push(format!("{} = j.value->>13", quote(v)));
            cols.push(quote(v));
            vals.push("j.value->>13".into());
        }
        if let Some(n) = &map.name {
            cols.push(quote(n));
            vals.push("j.value->>14".into());
        }
        Sql {
            lock_rows: format!(
                "SELECT {} FROM {table} AS t{join} WHERE t.{key} IN (SELECT value FROM json_each(?1)) ORDER BY t.{key}",
                read.join(", ")
            ),
            update: format!(
                "UPDATE {table} SET {} FROM jsonb_each(?1) AS j WHERE {table}.{key} = j.value->>0",
                set.join(", ")
            ),
            insert: format!(
                "INSERT INTO {table} ({}) SELECT {} FROM jsonb_each(?1) AS j",
                cols.join(", "),
                vals.join(", ")
            ),
            delete: format!("DELETE FROM {table} WHERE {key} IN (SELECT value FROM json_each(?1))"),
            map,
        }
    }
}

/// A logical value as the column stores it (a JSON value bound in a row).
fn physical(map: &TableMap, adapter: Option<Adapter>, v: Value) -> serde_json::Value {
    match (adapter, v) {
        (_, Value::Null) | (None, _) => serde_json::Value::Null,
        (Some(Adapter::BoolYn), Value::Bool(b)) => json!(if b { "Y" } else { "N" }),
        (Some(_), Value::Bool(b)) => json!(i64::from(b)),
        (Some(Adapter::TimeLocal { digits }), Value::Time(t)) => {
            json!(local_text(map, t, digits))
        }
        (Some(_), Value::Time(t)) => json!(time_text(t)),
        (Some(_), Value::Float(x)) => json!(x),
        (Some(_), Value::Text(s)) => json!(s),
    }
}

/// Local wall-clock time in the mapping's zone, as SQLite's date functions
/// write it (`YYYY-MM-DD HH:MM:SS` and the fraction's `digits`).
fn local_text(map: &TableMap, t: DateTime<Utc>, digits: u32) -> String {
    let local = map.to_local(t);
    match digits {
        0 => local.format("%Y-%m-%d %H:%M:%S").to_string(),
        1..=3 => local.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        _ => local.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
    }
}

/// A stored time back as UTC: RFC 3339 text, or local text in the zone.
fn stored_time(map: &TableMap, adapter: Adapter, s: Option<String>) -> Option<DateTime<Utc>> {
    match adapter {
        Adapter::TimeLocal { .. } => s.and_then(|s| {
            chrono::NaiveDateTime::parse_from_str(&s.replacen('T', " ", 1), "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .and_then(|n| map.from_local(n))
        }),
        _ => parse_time(s),
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
        Ok(SqlxDatabase::new(pool, cfg))
    }
}

fn json_ids(ids: &[String]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// A stored row as govsync's logical fields (see [`Sql::new`]'s columns).
fn row_from(map: &TableMap, r: &SqliteRow) -> Result<(String, Row), sqlx::Error> {
    let mut row = Row::default();
    for (i, c) in Column::ALL.into_iter().enumerate() {
        let Some(m) = map.field(c) else { continue };
        let i = i + 1;
        let v = match m.adapter {
            Adapter::Text => r.try_get::<Option<String>, _>(i)?.map(Value::Text),
            Adapter::Float | Adapter::Decimal { .. } => {
                r.try_get_unchecked::<Option<f64>, _>(i)?.map(Value::Float)
            }
            Adapter::Bool | Adapter::BoolNumber | Adapter::Integer => r
                .try_get_unchecked::<Option<i64>, _>(i)?
                .map(|v| Value::Bool(v != 0)),
            Adapter::BoolYn => r
                .try_get::<Option<String>, _>(i)?
                .and_then(|v| match v.as_str() {
                    "Y" => Some(Value::Bool(true)),
                    "N" => Some(Value::Bool(false)),
                    _ => None,
                }),
            Adapter::TimeTz { .. } | Adapter::TimeLocal { .. } | Adapter::TimeText => {
                stored_time(map, m.adapter, r.try_get(i)?).map(Value::Time)
            }
        };
        row.set(c, &v.unwrap_or(Value::Null));
    }
    row.last_update = match &map.last_update {
        Some(m) => stored_time(map, m.adapter, r.try_get(13)?),
        None => None,
    };
    row.version = r.try_get_unchecked(14)?;
    Ok((r.try_get(0)?, row))
}

/// Rows to write as one JSON array: per row the key, the twelve fields in
/// the table's encoding, the version and the name.
fn rows_json(map: &TableMap, writes: &[RowWrite]) -> String {
    let arr: Vec<serde_json::Value> = writes
        .iter()
        .map(|w| {
            let mut v = Vec::with_capacity(15);
            v.push(json!(w.customer_id));
            for c in Column::ALL {
                v.push(physical(map, map.field(c).map(|m| m.adapter), w.row.get(c)));
            }
            v.push(json!(w.row.version));
            v.push(json!(w.name));
            serde_json::Value::Array(v)
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
    const REVIEW_STATUS_FILTER: &'static str = "$1 IS NULL OR status = $1";
    type TableSql = Sql;

    fn table_sql(map: Arc<TableMap>) -> Sql {
        Sql::new(map)
    }

    fn table_map(sql: &Sql) -> Arc<TableMap> {
        sql.map.clone()
    }

    async fn read_catalog(
        pool: &sqlx::Pool<Self>,
        table: &str,
    ) -> SinkResult<Option<(String, Catalog)>> {
        catalog::read_catalog(pool, table).await
    }

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

    fn get_opt_i64(row: &SqliteRow, i: usize) -> Result<Option<i64>, sqlx::Error> {
        row.try_get(i)
    }

    fn get_bytes(row: &SqliteRow, i: usize) -> Result<Option<Vec<u8>>, sqlx::Error> {
        row.try_get(i)
    }

    fn rows_affected(r: &Self::QueryResult) -> u64 {
        r.rows_affected()
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
        Ok(rows
            .iter()
            .map(|r| row_from(&sql.map, r))
            .collect::<Result<_, _>>()?)
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
                    version: None,
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
                    s.version,
                ])
            })
            .collect();
        sqlx::query(
            "INSERT INTO govsync_row_state (customer_id, address_governed_at, id_card_governed_at, \
             phone_governed_at, version) SELECT j.value->>0, j.value->>1, j.value->>2, j.value->>3, j.value->>4 \
             FROM jsonb_each(?1) AS j \
             WHERE true ON CONFLICT (customer_id) DO UPDATE SET address_governed_at = excluded.address_governed_at, \
             id_card_governed_at = excluded.id_card_governed_at, phone_governed_at = excluded.phone_governed_at, \
             version = coalesce(excluded.version, govsync_row_state.version)",
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
                .bind(rows_json(&sql.map, updates))
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
                .bind(rows_json(&sql.map, inserts))
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

    /// The supersession first, so it leaves this call's items alone.
    async fn write_review(
        tx: &mut Transaction<'static, Self>,
        items: &[ReviewItem],
        supersede: &[Supersede],
    ) -> SinkResult<()> {
        if !supersede.is_empty() {
            let arr: Vec<serde_json::Value> = supersede
                .iter()
                .map(|s| json!([s.customer_id, s.data_type.as_str(), s.by]))
                .collect();
            sqlx::query(
                "UPDATE govsync_review_item SET status = 'superseded', superseded_by = j.value->>2 \
                 FROM jsonb_each(?1) AS j WHERE govsync_review_item.status = 'open' \
                 AND govsync_review_item.customer_id = j.value->>0 AND govsync_review_item.data_type = j.value->>1",
            )
            .bind(serde_json::Value::Array(arr).to_string())
            .execute(&mut **tx)
            .await?;
        }
        if !items.is_empty() {
            let arr: Vec<serde_json::Value> = items
                .iter()
                .map(|i| {
                    json!([
                        i.event_id,
                        i.batch_id,
                        i.customer_id,
                        i.data_type.as_str(),
                        i.region_code,
                        i.reason,
                        i.priority,
                        i.details,
                        i.proposed,
                        i.current,
                        i.row_version,
                        time_text(i.governed_at),
                        i.status,
                        i.superseded_by,
                    ])
                })
                .collect();
            sqlx::query(
                "INSERT INTO govsync_review_item (event_id, batch_id, customer_id, data_type, region_code, reason, \
                 priority, details, proposed, current_row, row_version, governed_at, status, superseded_by) \
                 SELECT j.value->>0, j.value->>1, j.value->>2, j.value->>3, j.value->>4, j.value->>5, j.value->>6, \
                 j.value->>7, j.value->>8, j.value->>9, j.value->>10, j.value->>11, j.value->>12, j.value->>13 \
                 FROM jsonb_each(?1) AS j WHERE true ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(serde_json::Value::Array(arr).to_string())
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
