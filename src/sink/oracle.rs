//! Oracle: the business database in the field, through the `oracle` crate
//! (ODPI-C, bundled; the Oracle Client library is loaded at run time, so
//! govsync builds without one and says how to install it when it is
//! missing, see [`init_client`]).
//!
//! The same primitive steps as [`super::postgres`], in Oracle's idioms:
//! - the `oracle` crate is synchronous: every call runs on tokio's blocking
//!   threads through [`BlockingPool`], which admits at most `pool_size` at
//!   once, never on the async workers;
//! - sessions come from the crate's session pool (`pool_size` sessions, a
//!   statement cache per session, so every SQL text below is parsed once per
//!   session);
//! - one transaction per [`Database::begin`]: Oracle opens it implicitly,
//!   [`Tx::commit`] commits, and a transaction dropped uncommitted is rolled
//!   back (on a blocking thread) before its session goes back to the pool;
//! - `SELECT … FOR UPDATE WAIT n` (n = `database.lock_timeout`) for the
//!   watermark and the target rows, so a lock wait ends in ORA-30006, a
//!   retryable error, instead of hanging;
//! - lists of ids are bound as ONE collection (`SYS.ODCIVARCHAR2LIST`,
//!   `TABLE(:p_ids)`), so each query has one text whatever the batch size;
//! - the change log, the row updates, inserts and deletes and the outbox are
//!   array DML (`Batch`): one round trip per statement kind;
//! - the watermark row is created with a `MERGE` the first time a partition
//!   is seen;
//! - bind variables everywhere, with explicit types: strings as VARCHAR2
//!   (not NVARCHAR2, which would make Oracle convert the indexed column and
//!   skip the index), floats as BINARY_DOUBLE (exact), times as TIMESTAMP
//!   WITH TIME ZONE in UTC; a value too long for an inline VARCHAR2/RAW bind
//!   goes to its CLOB/BLOB column as a LONG/LONG RAW bind (Oracle's LOB data
//!   interface: no temporary LOB, no extra round trip), which Oracle takes
//!   only in INSERT values and UPDATE SET, last in the bind list: those
//!   columns come last in their statements;
//! - identifiers come only from the config: `database.target_table` in the
//!   SQL texts, `database.schema` as the session's current schema.
//!
//! Oracle stores an empty string as NULL. A record that would write `""` to
//! a column could not be verified after the write, so it is rejected as a
//! record-level error (dead-lettered alone) before any SQL runs.
//!
//! Migrations: sqlx has no Oracle driver, so the DDL files of
//! `migrations/oracle/` are embedded and applied here, statement by
//! statement, tracked in `GOVSYNC_MIGRATIONS` (version + checksum).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use oracle::pool::{CloseMode, GetMode, Pool, PoolBuilder};
use oracle::sql_type::{Collection, OracleType, ToSql};
use oracle::{Connection, SqlValue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{ORACLE_CLIENT_URL, Transient};
use super::plan::RowWrite;
use super::{
    BatchFilter, Database, LedgerEntry, LogEntry, LoggedChange, PartitionKey, SinkError,
    SinkResult, Tx, migrate,
};
use crate::config::DatabaseConfig;
use crate::event::{Column, DataType, Row};
use crate::message::{OutMessage, decode_headers, encode_headers};

// ---------------------------------------------------------------------------
// The blocking pool.

/// Runs the synchronous Oracle calls on tokio's blocking threads, at most
/// `size` at once.
#[derive(Debug, Clone)]
pub struct BlockingPool {
    /// One permit per database session in use. A transaction holds one for
    /// its whole life (its calls run one after another), a one-off call for
    /// the call. So both the sessions checked out of the Oracle pool and the
    /// blocking threads busy with Oracle are bounded by `size`, and a session
    /// is never requested from the Oracle pool while all are out (which would
    /// park a blocking thread in the pool's wait).
    slots: Arc<Semaphore>,
    size: usize,
    /// How long a caller waits for a free slot (`database.connect_timeout`)
    /// before the batch fails with a retryable timeout.
    wait: Duration,
}

impl BlockingPool {
    pub fn new(size: usize, wait: Duration) -> Self {
        let size = size.max(1);
        BlockingPool {
            slots: Arc::new(Semaphore::new(size)),
            size,
            wait,
        }
    }

    /// Waits for a free slot.
    pub async fn slot(&self) -> SinkResult<OwnedSemaphorePermit> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(SinkError::Fatal("the Oracle session pool is closed".into())),
            Err(_) => Err(SinkError::transient(
                Transient::Timeout,
                format!(
                    "all {} Oracle sessions (database.pool_size) stayed busy for {:?}",
                    self.size, self.wait
                ),
            )),
        }
    }

    /// Runs one job on a blocking thread, holding a slot while it runs.
    pub async fn run<T, F>(&self, f: F) -> SinkResult<T>
    where
        F: FnOnce() -> SinkResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.slot().await?;
        blocking(move || {
            let _permit = permit;
            f()
        })
        .await
    }

    /// Refuses new jobs; running ones finish.
    pub fn close(&self) {
        self.slots.close();
    }
}

/// Runs `f` on a blocking thread. Callers hold a slot (see [`BlockingPool`]).
async fn blocking<T, F>(f: F) -> SinkResult<T>
where
    F: FnOnce() -> SinkResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SinkError::Fatal(format!("an Oracle call did not complete: {e}")))?
}

// ---------------------------------------------------------------------------
// SQL texts.

/// The collection type ids are bound as: a VARRAY(32767) OF VARCHAR2(4000)
/// that every Oracle database has and grants to PUBLIC.
pub const ID_LIST_TYPE: &str = "SYS.ODCIVARCHAR2LIST";
/// Ids per collection bind (the VARRAY's limit is 32767).
const ID_CHUNK: usize = 30_000;
/// Rows per fetch round trip of multi-row queries.
const FETCH_ROWS: u32 = 1000;
/// Statements cached per session (the sink runs about 25 distinct texts).
const STMT_CACHE: u32 = 64;
/// Longest string bound as VARCHAR2 into a CLOB column, and longest value
/// bound as RAW into a BLOB column; longer ones are LONG / LONG RAW binds.
/// The crate rounds bind buffers up to a power of two, and a buffer over
/// 4000 bytes (VARCHAR2) or 2000 bytes (RAW) would already be a LONG bind:
/// these limits keep inline binds inline.
const MAX_INLINE_TEXT: usize = 2000;
const MAX_INLINE_RAW: usize = 1024;
/// The largest VARCHAR2 bind (bytes); a longer value for a VARCHAR2 column
/// cannot fit whatever the column.
const MAX_VARCHAR2_BIND: usize = 32767;

/// The id list of the queries that take one: a bound collection.
const IDS: &str = "SELECT /*+ CARDINALITY(ids 1000) */ ids.column_value FROM TABLE(:p_ids) ids";

/// Columns of the target table read into a [`Row`], in [`row_from`]'s
/// order. Times are normalised to UTC in SQL (`SYS_EXTRACT_UTC`), so a
/// business column holding another time zone is read correctly.
const ROW_SELECT: &str = "customer_id, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, \
    quality_score, validation_status, review_flag, review_priority, SYS_EXTRACT_UTC(last_governance_time), \
    SYS_EXTRACT_UTC(last_update), version";

pub const WATERMARK_READ: &str = "SELECT next_offset FROM govsync_watermark \
    WHERE consumer_group = :p_group AND topic = :p_topic AND partition_id = :p_partition";

/// Creates the watermark row at 0 when it is missing.
pub const WATERMARK_CREATE: &str = "MERGE INTO govsync_watermark w \
    USING (SELECT :p_group AS consumer_group, :p_topic AS topic, :p_partition AS partition_id FROM dual) s \
    ON (w.consumer_group = s.consumer_group AND w.topic = s.topic AND w.partition_id = s.partition_id) \
    WHEN NOT MATCHED THEN INSERT (consumer_group, topic, partition_id, next_offset) \
    VALUES (s.consumer_group, s.topic, s.partition_id, 0)";

pub const WATERMARK_ADVANCE: &str = "UPDATE govsync_watermark \
    SET next_offset = :p_next_offset, batch_id = :p_batch_id, updated_at = SYSTIMESTAMP \
    WHERE consumer_group = :p_group AND topic = :p_topic AND partition_id = :p_partition \
    AND next_offset <= :p_upto";

pub const OUTBOX_READ: &str = "SELECT dest_topic, msg_key, msg_value, headers FROM govsync_outbox \
    WHERE consumer_group = :p_group AND topic = :p_topic AND partition_id = :p_partition \
    AND next_offset > :p_from AND next_offset <= :p_to ORDER BY next_offset, seq";

/// The message columns (BLOBs) come last: a value too long to bind inline is
/// a LONG RAW bind, which must follow the others.
pub const OUTBOX_INSERT: &str = "INSERT INTO govsync_outbox (batch_id, seq, consumer_group, topic, partition_id, \
    next_offset, dest_topic, msg_key, msg_value, headers) VALUES (:p_batch_id, :p_seq, :p_group, :p_topic, \
    :p_partition, :p_next_offset, :p_dest_topic, :p_key, :p_value, :p_headers)";

pub const OUTBOX_PRUNE: &str = "DELETE FROM govsync_outbox \
    WHERE consumer_group = :p_group AND topic = :p_topic AND partition_id = :p_partition AND next_offset <= :p_upto";

pub const CHANGE_LOG_INSERT: &str = "INSERT INTO govsync_change_log (batch_id, event_id, customer_id, data_type, \
    operation, outcome, governed_at, source_partition, source_offset, before_image, after_image) \
    VALUES (:p_batch_id, :p_event_id, :p_customer_id, :p_data_type, :p_operation, :p_outcome, :p_governed_at, \
    :p_partition, :p_offset, :p_before_image, :p_after_image)";

pub fn seen_events_sql() -> String {
    format!("SELECT event_id FROM govsync_change_log WHERE event_id IN ({IDS})")
}

pub fn last_governed_sql() -> String {
    format!(
        "SELECT customer_id, data_type, SYS_EXTRACT_UTC(MAX(governed_at)) FROM govsync_change_log \
         WHERE customer_id IN ({IDS}) AND outcome IN ('applied', 'flagged') GROUP BY customer_id, data_type"
    )
}

pub const BATCH_LOG_READ: &str = "SELECT event_id, customer_id, data_type, operation, before_image, after_image \
    FROM govsync_change_log WHERE batch_id = :p_batch_id AND outcome IN ('applied', 'flagged') ORDER BY id";

pub const LEDGER_INSERT: &str = "INSERT INTO govsync_batch (batch_id, kind, consumer_group, topic, partition_id, \
    first_offset, last_offset, records, counts, started_at, duration_ms, attempts, status) VALUES (:p_batch_id, \
    :p_kind, :p_group, :p_topic, :p_partition, :p_first_offset, :p_last_offset, :p_records, :p_counts, \
    :p_started_at, :p_duration_ms, :p_attempts, :p_status)";

pub const BATCH_STATUS_SET: &str =
    "UPDATE govsync_batch SET status = :p_status WHERE batch_id = :p_batch_id";

/// `govsync batches`: every filter is optional (a NULL bind disables it).
pub const BATCHES_LIST: &str = "SELECT batch_id, kind, consumer_group, topic, partition_id, first_offset, \
    last_offset, records, counts, SYS_EXTRACT_UTC(started_at), duration_ms, attempts, status FROM govsync_batch \
    WHERE (:p_topic IS NULL OR topic = :p_topic_eq) AND (:p_partition IS NULL OR partition_id = :p_partition_eq) \
    AND (:p_status IS NULL OR status = :p_status_eq) AND (:p_since IS NULL OR started_at >= :p_since_ge) \
    AND (:p_batch_id IS NULL OR batch_id = :p_batch_id_eq) \
    ORDER BY started_at DESC, batch_id FETCH FIRST :p_limit ROWS ONLY";

pub const SAVEPOINT: &str = "SAVEPOINT govsync_write";
pub const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT govsync_write";

/// SQL texts that depend on the config (the target table, the lock wait),
/// built once.
#[derive(Debug)]
pub struct Sql {
    pub watermark_lock: String,
    pub lock_rows: String,
    pub read_rows: String,
    pub update_rows: String,
    pub insert_rows: String,
    pub delete_rows: String,
    pub seen_events: String,
    pub last_governed: String,
    pub batch_status_lock: String,
}

impl Sql {
    /// `table` is a checked identifier from the config; `lock_wait` bounds
    /// every row-lock wait (whole seconds, at least 1).
    pub fn new(table: &str, lock_wait: Duration) -> Self {
        let wait = lock_wait_secs(lock_wait);
        Sql {
            watermark_lock: format!("{WATERMARK_READ} FOR UPDATE WAIT {wait}"),
            lock_rows: format!(
                "SELECT {ROW_SELECT} FROM {table} WHERE customer_id IN ({IDS}) \
                 ORDER BY customer_id FOR UPDATE WAIT {wait}"
            ),
            read_rows: format!("SELECT {ROW_SELECT} FROM {table} WHERE customer_id IN ({IDS})"),
            // carrier_info (a CLOB) is the last assignment: a long value is
            // a LONG bind, which must follow the other SET binds.
            update_rows: format!(
                "UPDATE {table} SET address = :p_address, geo_lat = :p_geo_lat, geo_lon = :p_geo_lon, \
                 geo_accuracy = :p_geo_accuracy, id_card = :p_id_card, phone = :p_phone, \
                 quality_score = :p_quality_score, validation_status = :p_validation_status, \
                 review_flag = :p_review_flag, review_priority = :p_review_priority, \
                 last_governance_time = :p_last_governance_time, version = :p_version, \
                 carrier_info = :p_carrier_info WHERE customer_id = :p_customer_id"
            ),
            insert_rows: format!(
                "INSERT INTO {table} (customer_id, name, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, \
                 quality_score, validation_status, review_flag, review_priority, last_governance_time, version, \
                 carrier_info) VALUES (:p_customer_id, :p_name, :p_address, :p_geo_lat, :p_geo_lon, \
                 :p_geo_accuracy, :p_id_card, :p_phone, :p_quality_score, :p_validation_status, :p_review_flag, \
                 :p_review_priority, :p_last_governance_time, :p_version, :p_carrier_info)"
            ),
            delete_rows: format!("DELETE FROM {table} WHERE customer_id = :p_customer_id"),
            seen_events: seen_events_sql(),
            last_governed: last_governed_sql(),
            batch_status_lock: format!(
                "SELECT status FROM govsync_batch WHERE batch_id = :p_batch_id FOR UPDATE WAIT {wait}"
            ),
        }
    }
}

/// `FOR UPDATE WAIT n` takes whole seconds; round up, at least 1.
pub fn lock_wait_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

// ---------------------------------------------------------------------------
// Bind values: built by pure functions, in the order of the placeholders.

/// One bind value, with the Oracle type it is bound as.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// A VARCHAR2 column.
    Str(Option<String>),
    /// A CLOB column: inline VARCHAR2 when short, LONG when long.
    Text(Option<String>),
    /// A BLOB column: inline RAW when short, LONG RAW when long.
    Bytes(Option<Vec<u8>>),
    Int(Option<i64>),
    /// BINARY_DOUBLE: the exact IEEE value.
    Double(Option<f64>),
    /// TIMESTAMP WITH TIME ZONE, UTC.
    Time(Option<DateTime<Utc>>),
}

/// A statement's binds: (placeholder without `:`, value).
pub type Binds = Vec<(&'static str, Bind)>;

fn s(v: &str) -> Bind {
    Bind::Str(Some(v.to_string()))
}
fn os(v: &Option<String>) -> Bind {
    Bind::Str(v.clone())
}
fn int(v: impl Into<i64>) -> Bind {
    Bind::Int(Some(v.into()))
}

impl Bind {
    /// Byte length of the value (0 for NULL and fixed-size types).
    fn len(&self) -> usize {
        match self {
            Bind::Str(Some(v)) | Bind::Text(Some(v)) => v.len(),
            Bind::Bytes(Some(v)) => v.len(),
            _ => 0,
        }
    }

    /// The Oracle type for a column whose longest value is `max_len` bytes.
    fn oracle_type(&self, max_len: usize) -> OracleType {
        let n = max_len.max(1) as u32;
        match self {
            Bind::Str(_) => OracleType::Varchar2(n),
            Bind::Text(_) if max_len <= MAX_INLINE_TEXT => OracleType::Varchar2(n),
            Bind::Text(_) => OracleType::Long,
            Bind::Bytes(_) if max_len <= MAX_INLINE_RAW => OracleType::Raw(n),
            Bind::Bytes(_) => OracleType::LongRaw,
            Bind::Int(_) => OracleType::Int64,
            Bind::Double(_) => OracleType::BinaryDouble,
            Bind::Time(_) => OracleType::TimestampTZ(6),
        }
    }
}

impl ToSql for Bind {
    fn oratype(&self, _conn: &Connection) -> oracle::Result<OracleType> {
        Ok(self.oracle_type(self.len()))
    }

    fn to_sql(&self, val: &mut SqlValue) -> oracle::Result<()> {
        match self {
            Bind::Str(v) | Bind::Text(v) => v.to_sql(val),
            Bind::Bytes(v) => v.to_sql(val),
            Bind::Int(v) => v.to_sql(val),
            Bind::Double(v) => v.to_sql(val),
            Bind::Time(v) => v.to_sql(val),
        }
    }
}

/// The Oracle type of each column of an array DML, from its longest value.
pub fn column_types(rows: &[Binds]) -> Vec<OracleType> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(i, (_, b))| {
            let max = rows.iter().map(|r| r[i].1.len()).max().unwrap_or(0);
            b.oracle_type(max)
        })
        .collect()
}

pub fn key_binds(key: &PartitionKey) -> Binds {
    vec![
        ("p_group", s(&key.group)),
        ("p_topic", s(&key.topic)),
        ("p_partition", int(key.partition)),
    ]
}

pub fn outbox_read_binds(key: &PartitionKey, from: i64, to: i64) -> Binds {
    let mut b = key_binds(key);
    b.push(("p_from", int(from)));
    b.push(("p_to", int(to)));
    b
}

pub fn advance_binds(key: &PartitionKey, next: i64, batch_id: &str) -> Binds {
    let mut b = vec![("p_next_offset", int(next)), ("p_batch_id", s(batch_id))];
    b.extend(key_binds(key));
    b.push(("p_upto", int(next)));
    b
}

pub fn prune_binds(key: &PartitionKey, upto: i64) -> Binds {
    let mut b = key_binds(key);
    b.push(("p_upto", int(upto)));
    b
}

/// One row per change-log entry, in `CHANGE_LOG_INSERT`'s order.
pub fn change_log_binds(batch_id: &str, log: &[LogEntry]) -> Vec<Binds> {
    let image = |v: &Option<String>| Bind::Text(v.clone());
    log.iter()
        .map(|l| {
            vec![
                ("p_batch_id", s(batch_id)),
                ("p_event_id", s(&l.event_id)),
                ("p_customer_id", s(&l.customer_id)),
                ("p_data_type", s(l.data_type.as_str())),
                ("p_operation", s(&l.operation)),
                ("p_outcome", s(l.outcome)),
                ("p_governed_at", Bind::Time(Some(l.governed_at))),
                ("p_partition", int(l.partition)),
                ("p_offset", int(l.offset)),
                ("p_before_image", image(&l.before)),
                ("p_after_image", image(&l.after)),
            ]
        })
        .collect()
}

/// The written columns of a row, in the order shared by the update and
/// the insert (after their leading binds).
fn row_value_binds(r: &Row) -> Binds {
    vec![
        ("p_address", os(&r.address)),
        ("p_geo_lat", Bind::Double(r.geo_lat)),
        ("p_geo_lon", Bind::Double(r.geo_lon)),
        ("p_geo_accuracy", os(&r.geo_accuracy)),
        ("p_id_card", os(&r.id_card)),
        ("p_phone", os(&r.phone)),
        ("p_quality_score", Bind::Double(r.quality_score)),
        ("p_validation_status", os(&r.validation_status)),
        ("p_review_flag", Bind::Int(r.review_flag.map(i64::from))),
        ("p_review_priority", os(&r.review_priority)),
        ("p_last_governance_time", Bind::Time(r.last_governance_time)),
        ("p_version", int(r.version)),
        ("p_carrier_info", Bind::Text(r.carrier_info.clone())),
    ]
}

/// One row per update, in `Sql::update_rows`' order.
pub fn update_binds(writes: &[RowWrite]) -> Vec<Binds> {
    writes
        .iter()
        .map(|w| {
            let mut b = row_value_binds(&w.row);
            b.push(("p_customer_id", s(&w.customer_id)));
            b
        })
        .collect()
}

/// One row per insert, in `Sql::insert_rows`' order.
pub fn insert_binds(writes: &[RowWrite]) -> Vec<Binds> {
    writes
        .iter()
        .map(|w| {
            let mut b = vec![
                ("p_customer_id", s(&w.customer_id)),
                ("p_name", os(&w.name)),
            ];
            b.extend(row_value_binds(&w.row));
            b
        })
        .collect()
}

pub fn delete_binds(ids: &[String]) -> Vec<Binds> {
    ids.iter()
        .map(|id| vec![("p_customer_id", s(id))])
        .collect()
}

/// One row per message, in `OUTBOX_INSERT`'s order; `seq` is the position.
pub fn outbox_binds(
    batch_id: &str,
    key: &PartitionKey,
    next_offset: i64,
    msgs: &[OutMessage],
) -> Vec<Binds> {
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            vec![
                ("p_batch_id", s(batch_id)),
                ("p_seq", int(i as i64)),
                ("p_group", s(&key.group)),
                ("p_topic", s(&key.topic)),
                ("p_partition", int(key.partition)),
                ("p_next_offset", int(next_offset)),
                ("p_dest_topic", s(&m.topic)),
                ("p_key", Bind::Bytes(m.key.clone())),
                ("p_value", Bind::Bytes(m.payload.clone())),
                ("p_headers", Bind::Bytes(Some(encode_headers(&m.headers)))),
            ]
        })
        .collect()
}

pub fn ledger_binds(e: &LedgerEntry) -> Binds {
    vec![
        ("p_batch_id", s(&e.batch_id)),
        ("p_kind", s(&e.kind)),
        ("p_group", s(&e.group)),
        ("p_topic", s(&e.topic)),
        ("p_partition", int(e.partition)),
        ("p_first_offset", int(e.first_offset)),
        ("p_last_offset", int(e.last_offset)),
        ("p_records", int(e.records)),
        (
            "p_counts",
            s(&serde_json::to_string(&e.counts).unwrap_or_default()),
        ),
        ("p_started_at", Bind::Time(Some(e.started_at))),
        ("p_duration_ms", int(e.duration_ms)),
        ("p_attempts", int(e.attempts)),
        ("p_status", s(&e.status)),
    ]
}

pub fn batches_binds(f: &BatchFilter) -> Binds {
    let topic = Bind::Str(f.topic.clone());
    let partition = Bind::Int(f.partition.map(i64::from));
    let status = Bind::Str(f.status.clone());
    let since = Bind::Time(f.since);
    let batch = Bind::Str(f.batch_id.clone());
    vec![
        ("p_topic", topic.clone()),
        ("p_topic_eq", topic),
        ("p_partition", partition.clone()),
        ("p_partition_eq", partition),
        ("p_status", status.clone()),
        ("p_status_eq", status),
        ("p_since", since.clone()),
        ("p_since_ge", since),
        ("p_batch_id", batch.clone()),
        ("p_batch_id_eq", batch),
        ("p_limit", int(if f.limit > 0 { f.limit } else { 50 })),
    ]
}

/// Rejects, before any SQL runs, a row Oracle cannot store as written: an
/// empty string (Oracle stores it as NULL, so the post-write verification
/// would fail the whole batch) or a string longer than any VARCHAR2 bind.
/// A record-level error, so the protocol's bisection dead-letters the one
/// record that brought the value.
pub fn check_storable(writes: &[RowWrite]) -> SinkResult<()> {
    for w in writes {
        if w.customer_id.is_empty() {
            return Err(not_storable(w, "customer_id", "is empty"));
        }
        for col in Column::ALL {
            let crate::event::Value::Text(v) = w.row.get(col) else {
                continue;
            };
            if v.is_empty() {
                return Err(not_storable(
                    w,
                    col.name(),
                    "is an empty string, which Oracle stores as NULL",
                ));
            }
            if col != Column::CarrierInfo && v.len() > MAX_VARCHAR2_BIND {
                return Err(not_storable(
                    w,
                    col.name(),
                    &format!(
                        "holds {} bytes, more than any Oracle VARCHAR2 column",
                        v.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn not_storable(w: &RowWrite, column: &str, what: &str) -> SinkError {
    SinkError::Record {
        code: None,
        constraint: Some(column.to_string()),
        message: format!(
            "the value for column {column} of customer {} {what}",
            w.customer_id
        ),
    }
}

// ---------------------------------------------------------------------------
// Statement helpers (run on blocking threads only).

fn params<'a>(binds: &'a [(&'static str, Bind)]) -> Vec<&'a dyn ToSql> {
    binds.iter().map(|(_, b)| b as &dyn ToSql).collect()
}

/// Executes one statement; returns the rows it changed.
fn exec(conn: &Connection, sql: &str, binds: &[(&'static str, Bind)]) -> SinkResult<u64> {
    let stmt = conn.execute(sql, &params(binds))?;
    Ok(stmt.row_count()?)
}

/// Array DML: all rows in one round trip. Returns the rows changed.
fn exec_many(conn: &Connection, sql: &str, rows: &[Binds]) -> SinkResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut builder = conn.batch(sql, rows.len());
    builder.with_row_counts();
    let mut batch = builder.build()?;
    for (i, ty) in column_types(rows).iter().enumerate() {
        batch.set_type(i + 1, ty)?;
    }
    for row in rows {
        // The last row fills the batch, which sends it.
        batch.append_row(&params(row))?;
    }
    batch.execute()?;
    Ok(batch.row_counts()?.iter().sum())
}

/// Runs a query and maps every row.
fn query<T>(
    conn: &Connection,
    sql: &str,
    binds: &[&dyn ToSql],
    mut f: impl FnMut(&oracle::Row) -> oracle::Result<T>,
) -> SinkResult<Vec<T>> {
    let mut stmt = conn.statement(sql).fetch_array_size(FETCH_ROWS).build()?;
    let mut out = Vec::new();
    for row in stmt.query(binds)? {
        out.push(f(&row?)?);
    }
    Ok(out)
}

/// Runs a query that takes the id list, in chunks the collection can hold.
fn query_ids<T>(
    conn: &Connection,
    sql: &str,
    ids: &[String],
    mut f: impl FnMut(&oracle::Row) -> oracle::Result<T>,
) -> SinkResult<Vec<T>> {
    let mut out = Vec::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let ty = conn.object_type(ID_LIST_TYPE)?;
    for chunk in ids.chunks(ID_CHUNK) {
        let mut list: Collection = ty.new_collection()?;
        for id in chunk {
            list.push(id)?;
        }
        out.extend(query(conn, sql, &[&list], &mut f)?);
    }
    Ok(out)
}

fn utc(t: Option<NaiveDateTime>) -> Option<DateTime<Utc>> {
    t.map(|t| t.and_utc())
}

/// A row of `ROW_SELECT`.
fn row_from(r: &oracle::Row) -> oracle::Result<(String, Row)> {
    Ok((
        r.get(0)?,
        Row {
            address: r.get(1)?,
            geo_lat: r.get(2)?,
            geo_lon: r.get(3)?,
            geo_accuracy: r.get(4)?,
            id_card: r.get(5)?,
            phone: r.get(6)?,
            carrier_info: r.get(7)?,
            quality_score: r.get(8)?,
            validation_status: r.get(9)?,
            review_flag: r.get::<_, Option<i64>>(10)?.map(|v| v != 0),
            review_priority: r.get(11)?,
            last_governance_time: utc(r.get(12)?),
            last_update: utc(r.get(13)?),
            version: r.get::<_, Option<i64>>(14)?.unwrap_or(0),
        },
    ))
}

fn read_watermark(conn: &Connection, sql: &str, key: &PartitionKey) -> SinkResult<Option<i64>> {
    let binds = key_binds(key);
    Ok(query(conn, sql, &params(&binds), |r| r.get::<_, i64>(0))?
        .into_iter()
        .next())
}

// ---------------------------------------------------------------------------
// Sessions and transactions.

/// What every checked-out session gets (client-side attributes: no round
/// trip of their own).
#[derive(Debug, Clone)]
struct SessionSetup {
    /// `database.schema`, upper-cased as Oracle does for an unquoted name.
    schema: Option<String>,
    /// `database.statement_timeout`, as the call timeout of each round trip.
    call_timeout: Duration,
}

impl SessionSetup {
    fn apply(&self, conn: &Connection) -> SinkResult<()> {
        if let Some(schema) = &self.schema {
            // ALTER SESSION SET CURRENT_SCHEMA, sent with the next call.
            conn.set_current_schema(schema)?;
        }
        conn.set_call_timeout(Some(self.call_timeout))?;
        conn.set_module("govsync")?;
        Ok(())
    }
}

/// A session checked out for one transaction.
struct Session {
    conn: Connection,
    /// A transaction may be open: roll it back before the session returns.
    open: bool,
    /// Released after the session went back to the pool (fields drop in
    /// order).
    _slot: OwnedSemaphorePermit,
}

impl Drop for Session {
    /// Runs on a blocking thread (see [`OracleTx`]'s `Drop`).
    fn drop(&mut self) {
        if self.open
            && let Err(e) = self.conn.rollback()
        {
            tracing::warn!(error = %e, "rolling back an abandoned Oracle transaction failed");
        }
    }
}

pub struct OracleTx {
    /// `None` once committed. Shared with the blocking job in flight, if
    /// any, so the session outlives a cancelled call; its mutex keeps one
    /// call at a time on the session.
    session: Option<Arc<Mutex<Session>>>,
    sql: Arc<Sql>,
}

impl OracleTx {
    /// Runs `f` on this transaction's session, on a blocking thread.
    async fn call<T, F>(&self, f: F) -> SinkResult<T>
    where
        F: FnOnce(&Connection, &Sql) -> SinkResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let session = self
            .session
            .clone()
            .ok_or_else(|| SinkError::Fatal("the Oracle transaction is already finished".into()))?;
        let sql = self.sql.clone();
        blocking(move || {
            let s = session.lock().map_err(|_| {
                SinkError::Fatal("an earlier call on this Oracle session panicked".into())
            })?;
            f(&s.conn, &sql)
        })
        .await
    }
}

impl Drop for OracleTx {
    /// An uncommitted transaction is rolled back; the rollback is a round
    /// trip, so it runs on a blocking thread, never here.
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(move || drop(session));
                }
                Err(_) => drop(session),
            }
        }
    }
}

#[async_trait]
impl Tx for OracleTx {
    async fn lock_watermark(&mut self, key: &PartitionKey) -> SinkResult<i64> {
        let key = key.clone();
        self.call(move |conn, sql| {
            if let Some(w) = read_watermark(conn, &sql.watermark_lock, &key)? {
                return Ok(w);
            }
            match exec(conn, WATERMARK_CREATE, &key_binds(&key)) {
                Ok(_) => {}
                // Another session created it first (and committed): fine.
                Err(SinkError::Record { code, .. }) if code.as_deref() == Some("ORA-00001") => {}
                Err(e) => return Err(e),
            }
            read_watermark(conn, &sql.watermark_lock, &key)?.ok_or_else(|| {
                SinkError::Fatal("the govsync_watermark row vanished after its MERGE".into())
            })
        })
        .await
    }

    async fn read_outbox(
        &mut self,
        key: &PartitionKey,
        from: i64,
        to: i64,
    ) -> SinkResult<Vec<OutMessage>> {
        let binds = outbox_read_binds(key, from, to);
        let rows = self
            .call(move |conn, _| {
                query(conn, OUTBOX_READ, &params(&binds), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<Vec<u8>>>(1)?,
                        r.get::<_, Option<Vec<u8>>>(2)?,
                        r.get::<_, Option<Vec<u8>>>(3)?,
                    ))
                })
            })
            .await?;
        rows.into_iter()
            .map(|(topic, key, payload, headers)| {
                Ok(OutMessage {
                    topic,
                    key,
                    payload,
                    headers: decode_headers(&headers.unwrap_or_default()).ok_or_else(|| {
                        SinkError::Fatal("corrupt headers in govsync_outbox".into())
                    })?,
                })
            })
            .collect()
    }

    async fn lock_rows(&mut self, ids: &[String]) -> SinkResult<HashMap<String, Row>> {
        let ids = ids.to_vec();
        let rows = self
            .call(move |conn, sql| query_ids(conn, &sql.lock_rows, &ids, row_from))
            .await?;
        Ok(rows.into_iter().collect())
    }

    async fn read_rows(&mut self, ids: &[String]) -> SinkResult<HashMap<String, Row>> {
        let ids = ids.to_vec();
        let rows = self
            .call(move |conn, sql| query_ids(conn, &sql.read_rows, &ids, row_from))
            .await?;
        Ok(rows.into_iter().collect())
    }

    async fn seen_events(&mut self, ids: &[String]) -> SinkResult<HashSet<String>> {
        let ids = ids.to_vec();
        let found = self
            .call(move |conn, sql| {
                query_ids(conn, &sql.seen_events, &ids, |r| r.get::<_, String>(0))
            })
            .await?;
        Ok(found.into_iter().collect())
    }

    async fn last_governed(
        &mut self,
        ids: &[String],
    ) -> SinkResult<HashMap<(String, DataType), DateTime<Utc>>> {
        let ids = ids.to_vec();
        let rows = self
            .call(move |conn, sql| {
                query_ids(conn, &sql.last_governed, &ids, |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, NaiveDateTime>(2)?,
                    ))
                })
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(c, dt, t)| DataType::parse(&dt).map(|dt| ((c, dt), t.and_utc())))
            .collect())
    }

    async fn savepoint(&mut self) -> SinkResult<()> {
        self.call(|conn, _| exec(conn, SAVEPOINT, &[]).map(drop))
            .await
    }

    async fn rollback_to_savepoint(&mut self) -> SinkResult<()> {
        self.call(|conn, _| exec(conn, ROLLBACK_TO_SAVEPOINT, &[]).map(drop))
            .await
    }

    /// Oracle has no RELEASE SAVEPOINT: the next SAVEPOINT of the same name
    /// moves it, and commit ends it.
    async fn release_savepoint(&mut self) -> SinkResult<()> {
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
        check_storable(updates)?;
        check_storable(inserts)?;
        let log = change_log_binds(batch_id, log);
        let n_updates = updates.len() as u64;
        let updates = update_binds(updates);
        let inserts = insert_binds(inserts);
        let deletes = delete_binds(deletes);
        self.call(move |conn, sql| {
            exec_many(conn, CHANGE_LOG_INSERT, &log)?;
            let updated = exec_many(conn, &sql.update_rows, &updates)?;
            if updated != n_updates {
                return Err(SinkError::Verification(format!(
                    "updated {updated} rows, expected {n_updates}"
                )));
            }
            exec_many(conn, &sql.insert_rows, &inserts)?;
            exec_many(conn, &sql.delete_rows, &deletes)?;
            Ok(())
        })
        .await
    }

    async fn write_outbox(
        &mut self,
        batch_id: &str,
        key: &PartitionKey,
        next_offset: i64,
        msgs: &[OutMessage],
    ) -> SinkResult<()> {
        let rows = outbox_binds(batch_id, key, next_offset, msgs);
        self.call(move |conn, _| exec_many(conn, OUTBOX_INSERT, &rows).map(drop))
            .await
    }

    async fn prune_outbox(&mut self, key: &PartitionKey, upto: i64) -> SinkResult<()> {
        let binds = prune_binds(key, upto);
        self.call(move |conn, _| exec(conn, OUTBOX_PRUNE, &binds).map(drop))
            .await
    }

    async fn write_ledger(&mut self, e: &LedgerEntry) -> SinkResult<()> {
        let binds = ledger_binds(e);
        self.call(move |conn, _| exec(conn, LEDGER_INSERT, &binds).map(drop))
            .await
    }

    async fn advance_watermark(
        &mut self,
        key: &PartitionKey,
        next: i64,
        batch_id: &str,
    ) -> SinkResult<()> {
        let binds = advance_binds(key, next, batch_id);
        self.call(move |conn, _| exec(conn, WATERMARK_ADVANCE, &binds).map(drop))
            .await
    }

    async fn read_batch_log(&mut self, batch_id: &str) -> SinkResult<Vec<LoggedChange>> {
        let binds: Binds = vec![("p_batch_id", s(batch_id))];
        let parse = |s: Option<String>| {
            s.and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(serde_json::Value::Null)
        };
        self.call(move |conn, _| {
            query(conn, BATCH_LOG_READ, &params(&binds), |r| {
                Ok(LoggedChange {
                    event_id: r.get(0)?,
                    customer_id: r.get(1)?,
                    data_type: r.get(2)?,
                    operation: r.get(3)?,
                    before: parse(r.get(4)?),
                    after: parse(r.get(5)?),
                })
            })
        })
        .await
    }

    async fn set_batch_status(
        &mut self,
        batch_id: &str,
        status: &str,
    ) -> SinkResult<Option<String>> {
        let lock: Binds = vec![("p_batch_id", s(batch_id))];
        let set: Binds = vec![("p_status", s(status)), ("p_batch_id", s(batch_id))];
        self.call(move |conn, sql| {
            let prev = query(conn, &sql.batch_status_lock, &params(&lock), |r| {
                r.get::<_, String>(0)
            })?
            .into_iter()
            .next();
            exec(conn, BATCH_STATUS_SET, &set)?;
            Ok(prev)
        })
        .await
    }

    async fn commit(mut self: Box<Self>) -> SinkResult<()> {
        let session = self
            .session
            .take()
            .ok_or_else(|| SinkError::Fatal("the Oracle transaction is already finished".into()))?;
        blocking(move || {
            let mut s = session.lock().map_err(|_| {
                SinkError::Fatal("an earlier call on this Oracle session panicked".into())
            })?;
            s.conn.commit()?;
            s.open = false;
            Ok(())
        })
        .await
    }
}

// ---------------------------------------------------------------------------
// The database.

pub struct OracleDatabase {
    pool: Pool,
    blocking: BlockingPool,
    setup: SessionSetup,
    sql: Arc<Sql>,
}

/// Loads the Oracle Client library (once per process). Its absence
/// (DPI-1047) becomes a startup error that says what to install.
pub fn init_client() -> SinkResult<()> {
    oracle::InitParams::new()
        .load_error_url(ORACLE_CLIENT_URL)?
        .init()?;
    Ok(())
}

/// Splits `oracle://user@host:port/service` into the user and the Easy
/// Connect string `host:port/service`.
pub fn easy_connect(url: &str) -> SinkResult<(String, String)> {
    let bad = |why: &str| SinkError::Fatal(format!("database.url `{url}`: {why}"));
    let rest = url
        .strip_prefix("oracle://")
        .ok_or_else(|| bad("is not oracle://user@host:port/service"))?;
    let (user, target) = rest
        .rsplit_once('@')
        .ok_or_else(|| bad("names no user; write oracle://user@host:1521/service"))?;
    if user.is_empty() || user.contains(':') {
        return Err(bad(
            "needs a user and no password (the password comes from database.password_env or database.password_file)",
        ));
    }
    if !target.contains('/') || target.starts_with('/') || target.ends_with('/') {
        return Err(bad("needs host[:port]/service, e.g. db:1521/FREEPDB1"));
    }
    Ok((user.to_string(), target.to_string()))
}

impl OracleDatabase {
    pub async fn connect(cfg: &DatabaseConfig) -> SinkResult<Self> {
        let (user, target) = easy_connect(&cfg.url)?;
        let blocking = BlockingPool::new(cfg.pool_size as usize, cfg.connect_timeout);
        // The client library comes first: without it nothing else matters.
        blocking.run(init_client).await?;
        let password = cfg.password.clone().ok_or_else(|| {
            SinkError::Fatal(
                "no Oracle password: set the environment variable named by database.password_env \
                 (GOVSYNC_DB_PASSWORD by default) or point database.password_file at a file holding it"
                    .into(),
            )
        })?;
        let (pool_size, wait) = (cfg.pool_size, cfg.connect_timeout);
        let pool = blocking
            .run(move || {
                let pool = PoolBuilder::new(user, password, target)
                    .min_connections(0)
                    .max_connections(pool_size)
                    .connection_increment(1)
                    .stmt_cache_size(STMT_CACHE)
                    .get_mode(GetMode::TimedWait(wait))
                    .build()?;
                Ok(pool)
            })
            .await?;
        Ok(OracleDatabase {
            pool,
            blocking,
            setup: SessionSetup {
                schema: cfg.schema.as_ref().map(|s| s.to_uppercase()),
                call_timeout: cfg.statement_timeout,
            },
            sql: Arc::new(Sql::new(&cfg.target_table, cfg.lock_timeout)),
        })
    }

    /// Runs `f` on a session of its own, outside any batch transaction.
    async fn one_off<T, F>(&self, f: F) -> SinkResult<T>
    where
        F: FnOnce(&Connection) -> SinkResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let setup = self.setup.clone();
        self.blocking
            .run(move || {
                let conn = pool.get()?;
                setup.apply(&conn)?;
                f(&conn)
            })
            .await
    }
}

#[async_trait]
impl Database for OracleDatabase {
    fn kind(&self) -> &'static str {
        "oracle"
    }

    async fn begin(&self) -> SinkResult<Box<dyn Tx>> {
        let slot = self.blocking.slot().await?;
        let pool = self.pool.clone();
        let setup = self.setup.clone();
        let session = blocking(move || {
            let conn = pool.get()?;
            setup.apply(&conn)?;
            Ok(Session {
                conn,
                open: true,
                _slot: slot,
            })
        })
        .await?;
        Ok(Box::new(OracleTx {
            session: Some(Arc::new(Mutex::new(session))),
            sql: self.sql.clone(),
        }))
    }

    async fn watermark(&self, key: &PartitionKey) -> SinkResult<Option<i64>> {
        let key = key.clone();
        self.one_off(move |conn| read_watermark(conn, WATERMARK_READ, &key))
            .await
    }

    async fn ping(&self) -> SinkResult<()> {
        self.one_off(|conn| Ok(conn.ping()?)).await
    }

    async fn migrate(&self, with_target_table: bool) -> SinkResult<Vec<String>> {
        self.one_off(move |conn| {
            let mut done = Vec::new();
            apply_migrations(conn, "govsync", MIGRATIONS)?;
            done.push("govsync tables".to_string());
            if with_target_table {
                apply_migrations(conn, "dev", DEV_MIGRATIONS)?;
                done.push("customer_profile (dev)".to_string());
            }
            Ok(done)
        })
        .await
    }

    async fn batches(&self, f: &BatchFilter) -> SinkResult<Vec<LedgerEntry>> {
        let binds = batches_binds(f);
        self.one_off(move |conn| {
            query(conn, BATCHES_LIST, &params(&binds), |r| {
                let counts: String = r.get(8)?;
                Ok(LedgerEntry {
                    batch_id: r.get(0)?,
                    kind: r.get(1)?,
                    // An empty string is NULL in Oracle (rollback batches
                    // have no source partition).
                    group: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    topic: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    partition: r.get(4)?,
                    first_offset: r.get(5)?,
                    last_offset: r.get(6)?,
                    records: r.get(7)?,
                    counts: serde_json::from_str(&counts).unwrap_or_default(),
                    started_at: r.get::<_, NaiveDateTime>(9)?.and_utc(),
                    duration_ms: r.get(10)?,
                    attempts: r.get(11)?,
                    status: r.get(12)?,
                })
            })
        })
        .await
    }

    async fn close(&self) {
        self.blocking.close();
        let pool = self.pool.clone();
        // Sessions still out are closed when their transactions end.
        let _ = blocking(move || Ok(pool.close(&CloseMode::Default)?)).await;
    }
}

// ---------------------------------------------------------------------------
// Migrations.

pub const MIGRATIONS: &[migrate::Embedded] = &[(
    1,
    "govsync tables",
    include_str!("../../migrations/oracle/0001_govsync_tables.sql"),
)];
pub const DEV_MIGRATIONS: &[migrate::Embedded] = &[(
    1,
    "customer_profile (dev)",
    include_str!("../../migrations/oracle/dev_0001_customer_profile.sql"),
)];

pub const MIGRATIONS_TABLE: &str = "CREATE TABLE govsync_migrations (\
    set_name VARCHAR2(16 CHAR) NOT NULL, version NUMBER(10) NOT NULL, description VARCHAR2(200 CHAR) NOT NULL, \
    checksum VARCHAR2(16 CHAR) NOT NULL, applied_at TIMESTAMP(6) WITH TIME ZONE DEFAULT SYSTIMESTAMP NOT NULL, \
    CONSTRAINT govsync_migrations_pk PRIMARY KEY (set_name, version))";
pub const MIGRATION_READ: &str =
    "SELECT checksum FROM govsync_migrations WHERE set_name = :p_set AND version = :p_version";
pub const MIGRATION_RECORD: &str = "INSERT INTO govsync_migrations (set_name, version, description, checksum) \
    VALUES (:p_set, :p_version, :p_description, :p_checksum)";

/// Whether an ORA number says a DDL statement's object exists already (name
/// used, index on those columns, primary key, unique key, column): a re-run
/// after a partial migration skips such statements.
pub fn already_exists(ora: i32) -> bool {
    matches!(ora, 955 | 1408 | 2260 | 2261 | 1430)
}

/// Runs one DDL statement; an object that exists already is not an error.
fn exec_ddl(conn: &Connection, sql: &str) -> SinkResult<()> {
    match conn.execute(sql, &[]) {
        Ok(_) => Ok(()),
        Err(e) if e.db_error().is_some_and(|d| already_exists(d.code())) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// 64-bit FNV-1a of the migration text, hex: detects a migration file that
/// changed after it was applied.
pub fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Splits a migration file into statements for one call each: a statement
/// ends with `;` (outside quotes and comments); a PL/SQL block (BEGIN,
/// DECLARE, CREATE [OR REPLACE] PROCEDURE/FUNCTION/PACKAGE/TRIGGER/TYPE)
/// ends with a line holding only `/` and keeps its semicolons. Comments are
/// dropped; empty statements are skipped.
pub fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let mut at_line_start = true;
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        cur.push('\n');
                        break;
                    }
                }
                at_line_start = true;
                continue;
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                cur.push(' ');
                continue;
            }
            '\'' | '"' => {
                cur.push(c);
                for q in chars.by_ref() {
                    cur.push(q);
                    // A doubled quote ('') reopens the literal at once.
                    if q == c {
                        break;
                    }
                }
            }
            ';' if !is_plsql(&cur) => {
                push_statement(&mut out, &cur);
                cur.clear();
            }
            '/' if at_line_start
                && cur.trim_end().ends_with(';')
                && is_plsql(&cur)
                && chars.peek().is_none_or(|n| *n == '\n' || *n == '\r') =>
            {
                push_statement(&mut out, &cur);
                cur.clear();
            }
            _ => cur.push(c),
        }
        at_line_start = c == '\n' || (at_line_start && (c == ' ' || c == '\t'));
    }
    push_statement(&mut out, &cur);
    out
}

fn push_statement(out: &mut Vec<String>, s: &str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
}

fn is_plsql(stmt: &str) -> bool {
    let words: Vec<String> = stmt
        .split_whitespace()
        .take(5)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["BEGIN", ..] | ["DECLARE", ..] => true,
        ["CREATE", "OR", "REPLACE", kind, ..] | ["CREATE", kind, ..] => matches!(
            *kind,
            "PROCEDURE" | "FUNCTION" | "PACKAGE" | "TRIGGER" | "TYPE"
        ),
        _ => false,
    }
}

/// Applies the migrations of one set that are not recorded yet, statement
/// by statement, and records each (DDL commits by itself in Oracle; the
/// record is committed right after).
fn apply_migrations(conn: &Connection, set: &str, ms: &[migrate::Embedded]) -> SinkResult<()> {
    exec_ddl(conn, MIGRATIONS_TABLE)
        .map_err(|e| migration_error("creating govsync_migrations", e))?;
    for &(version, description, text) in ms {
        let sum = checksum(text);
        let key: Binds = vec![("p_set", s(set)), ("p_version", int(version))];
        let applied: Option<String> = query(conn, MIGRATION_READ, &params(&key), |r| r.get(0))?
            .into_iter()
            .next();
        if let Some(applied) = applied {
            if applied != sum {
                return Err(SinkError::Fatal(format!(
                    "Oracle migration {set} {version} ({description}) changed after it was applied \
                     (checksum {applied} in govsync_migrations, {sum} in this build)"
                )));
            }
            continue;
        }
        for (i, stmt) in split_statements(text).iter().enumerate() {
            exec_ddl(conn, stmt).map_err(|e| {
                migration_error(
                    &format!(
                        "migration {set} {version} ({description}), statement {}",
                        i + 1
                    ),
                    e,
                )
            })?;
        }
        let record: Binds = vec![
            ("p_set", s(set)),
            ("p_version", int(version)),
            ("p_description", s(description)),
            ("p_checksum", s(&sum)),
        ];
        match exec(conn, MIGRATION_RECORD, &record) {
            Ok(_) => {}
            // Another instance migrated at the same time.
            Err(SinkError::Record { code, .. }) if code.as_deref() == Some("ORA-00001") => {}
            Err(e) => return Err(e),
        }
        conn.commit()?;
    }
    Ok(())
}

fn migration_error(what: &str, e: SinkError) -> SinkError {
    SinkError::Fatal(format!("Oracle migration failed at {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The placeholders of a SQL text, in order of appearance.
    fn placeholders(sql: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut in_quote = false;
        let b = sql.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'\'' => in_quote = !in_quote,
                b':' if !in_quote => {
                    let start = i + 1;
                    let mut end = start;
                    while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                        end += 1;
                    }
                    out.push(sql[start..end].to_string());
                    i = end;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        out
    }

    /// Binding by position: every placeholder once, in the binds' order.
    fn assert_binds(sql: &str, binds: &Binds) {
        let names: Vec<&str> = binds.iter().map(|(n, _)| *n).collect();
        let found = placeholders(sql);
        assert_eq!(found, names, "placeholders of {sql}");
        let unique: HashSet<&String> = found.iter().collect();
        assert_eq!(unique.len(), found.len(), "a placeholder repeats in {sql}");
    }

    fn key() -> PartitionKey {
        PartitionKey {
            group: "g".into(),
            topic: "governance.results".into(),
            partition: 3,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn write(id: &str) -> RowWrite {
        RowWrite {
            customer_id: id.into(),
            name: Some("张三".into()),
            row: Row {
                address: Some("江苏省南京市玄武区中山路123号".into()),
                geo_lat: Some(32.0581),
                geo_lon: Some(118.7969),
                geo_accuracy: Some("building_level".into()),
                id_card: None,
                phone: Some("13812345678".into()),
                carrier_info: Some(r#"{"carrier":"China Mobile"}"#.into()),
                quality_score: Some(0.92),
                validation_status: Some("verified".into()),
                review_flag: Some(true),
                review_priority: None,
                last_governance_time: Some(t("2024-01-15T02:20:00.123456Z")),
                last_update: Some(t("2024-01-10T06:30:00Z")),
                version: 4,
            },
        }
    }

    fn sql() -> Sql {
        Sql::new("customer_profile", Duration::from_millis(2500))
    }

    #[test]
    fn statement_texts() {
        let sql = sql();
        assert_eq!(
            sql.watermark_lock,
            "SELECT next_offset FROM govsync_watermark WHERE consumer_group = :p_group AND topic = :p_topic \
             AND partition_id = :p_partition FOR UPDATE WAIT 3"
        );
        assert!(sql.lock_rows.starts_with(
            "SELECT customer_id, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, \
             quality_score, validation_status, review_flag, review_priority, SYS_EXTRACT_UTC(last_governance_time), \
             SYS_EXTRACT_UTC(last_update), version FROM customer_profile WHERE customer_id IN (SELECT"
        ));
        assert!(sql.lock_rows.contains("TABLE(:p_ids)"));
        assert!(
            sql.lock_rows
                .ends_with("ORDER BY customer_id FOR UPDATE WAIT 3"),
            "{}",
            sql.lock_rows
        );
        assert!(!sql.read_rows.contains("FOR UPDATE"));
        assert!(sql.update_rows.starts_with("UPDATE customer_profile SET "));
        assert!(
            sql.update_rows
                .ends_with("carrier_info = :p_carrier_info WHERE customer_id = :p_customer_id")
        );
        assert!(
            sql.insert_rows
                .starts_with("INSERT INTO customer_profile (")
        );
        assert_eq!(
            sql.delete_rows,
            "DELETE FROM customer_profile WHERE customer_id = :p_customer_id"
        );
        assert!(WATERMARK_CREATE.starts_with("MERGE INTO govsync_watermark w USING (SELECT"));
        assert!(WATERMARK_CREATE.contains("WHEN NOT MATCHED THEN INSERT"));
        assert!(!WATERMARK_CREATE.contains("WHEN MATCHED"));
        assert!(sql.batch_status_lock.ends_with("FOR UPDATE WAIT 3"));
        assert!(BATCHES_LIST.ends_with("FETCH FIRST :p_limit ROWS ONLY"));
        assert_eq!(SAVEPOINT, "SAVEPOINT govsync_write");
        assert_eq!(ROLLBACK_TO_SAVEPOINT, "ROLLBACK TO SAVEPOINT govsync_write");
        // Statements run through OCI carry no terminator.
        for text in [
            &sql.watermark_lock,
            &sql.lock_rows,
            &sql.read_rows,
            &sql.update_rows,
            &sql.insert_rows,
            &sql.delete_rows,
            &sql.seen_events,
            &sql.last_governed,
            &sql.batch_status_lock,
        ] {
            assert!(!text.trim_end().ends_with(';'), "{text}");
        }
    }

    #[test]
    fn the_target_table_is_the_only_identifier_from_config() {
        let sql = Sql::new("crm.customer_master", Duration::from_secs(10));
        for text in [
            &sql.lock_rows,
            &sql.read_rows,
            &sql.update_rows,
            &sql.insert_rows,
            &sql.delete_rows,
        ] {
            assert!(text.contains("crm.customer_master"), "{text}");
            assert!(!text.contains("customer_profile"), "{text}");
        }
        assert!(sql.lock_rows.ends_with("WAIT 10"));
    }

    #[test]
    fn lock_wait_rounds_up_to_whole_seconds() {
        assert_eq!(lock_wait_secs(Duration::from_millis(1)), 1);
        assert_eq!(lock_wait_secs(Duration::from_millis(1000)), 1);
        assert_eq!(lock_wait_secs(Duration::from_millis(1001)), 2);
        assert_eq!(lock_wait_secs(Duration::from_secs(10)), 10);
    }

    #[test]
    fn id_list_queries_bind_one_collection() {
        let sql = sql();
        for text in [
            &sql.lock_rows,
            &sql.read_rows,
            &sql.seen_events,
            &sql.last_governed,
        ] {
            assert_eq!(placeholders(text), ["p_ids"], "{text}");
        }
        assert!(
            sql.last_governed
                .contains("outcome IN ('applied', 'flagged')")
        );
        assert!(
            sql.last_governed
                .contains("GROUP BY customer_id, data_type")
        );
    }

    #[test]
    fn bind_order_of_every_statement() {
        let sql = sql();
        let k = key();
        assert_binds(WATERMARK_READ, &key_binds(&k));
        assert_binds(&sql.watermark_lock, &key_binds(&k));
        assert_binds(WATERMARK_CREATE, &key_binds(&k));
        assert_binds(WATERMARK_ADVANCE, &advance_binds(&k, 42, "b1"));
        assert_binds(OUTBOX_READ, &outbox_read_binds(&k, 10, 20));
        assert_binds(OUTBOX_PRUNE, &prune_binds(&k, 7));
        let log = vec![LogEntry {
            event_id: "e1".into(),
            customer_id: "C1".into(),
            data_type: DataType::Address,
            operation: "update".into(),
            outcome: "applied",
            governed_at: t("2024-01-15T02:20:00Z"),
            before: Some(serde_json::json!({"address": "old"}).to_string()),
            after: Some(serde_json::json!({"address": "new"}).to_string()),
            partition: 3,
            offset: 99,
        }];
        assert_binds(CHANGE_LOG_INSERT, &change_log_binds("b1", &log)[0]);
        assert_binds(&sql.update_rows, &update_binds(&[write("C1")])[0]);
        assert_binds(&sql.insert_rows, &insert_binds(&[write("C1")])[0]);
        assert_binds(&sql.delete_rows, &delete_binds(&["C1".into()])[0]);
        let msg = OutMessage {
            topic: "review".into(),
            key: Some(b"3201".to_vec()),
            payload: Some(b"{}".to_vec()),
            headers: vec![("h".into(), b"v".to_vec())],
        };
        assert_binds(OUTBOX_INSERT, &outbox_binds("b1", &k, 21, &[msg])[0]);
        let ledger = LedgerEntry {
            batch_id: "b1".into(),
            kind: "apply".into(),
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            first_offset: 10,
            last_offset: 20,
            records: 11,
            counts: BTreeMap::from([("applied".to_string(), 11)]),
            started_at: t("2024-01-15T02:20:00Z"),
            duration_ms: 12,
            attempts: 1,
            status: "committed".into(),
        };
        assert_binds(LEDGER_INSERT, &ledger_binds(&ledger));
        assert_binds(BATCHES_LIST, &batches_binds(&BatchFilter::default()));
        assert_binds(
            BATCH_LOG_READ,
            &vec![("p_batch_id", Bind::Str(Some("b1".into())))],
        );
        assert_eq!(placeholders(BATCH_STATUS_SET), ["p_status", "p_batch_id"]);
        assert_eq!(placeholders(&sql.batch_status_lock), ["p_batch_id"]);
        assert_eq!(
            placeholders(MIGRATION_RECORD),
            ["p_set", "p_version", "p_description", "p_checksum"]
        );
    }

    #[test]
    fn bind_values_carry_the_row() {
        let w = write("C1");
        let u = &update_binds(std::slice::from_ref(&w))[0];
        let get = |b: &Binds, name: &str| b.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(get(u, "p_customer_id"), Bind::Str(Some("C1".into())));
        assert_eq!(get(u, "p_geo_lat"), Bind::Double(Some(32.0581)));
        assert_eq!(get(u, "p_review_flag"), Bind::Int(Some(1)));
        assert_eq!(get(u, "p_review_priority"), Bind::Str(None));
        assert_eq!(get(u, "p_version"), Bind::Int(Some(4)));
        assert_eq!(
            get(u, "p_last_governance_time"),
            Bind::Time(Some(t("2024-01-15T02:20:00.123456Z")))
        );
        // last_update belongs to the business side: never written.
        assert!(u.iter().all(|(n, _)| !n.contains("last_update")));
        let i = &insert_binds(&[w])[0];
        assert_eq!(get(i, "p_name"), Bind::Str(Some("张三".into())));
        // The CLOB column binds last in both statements.
        assert_eq!(u[u.len() - 2].0, "p_carrier_info");
        assert_eq!(i[i.len() - 1].0, "p_carrier_info");

        let f = BatchFilter {
            limit: 0,
            partition: Some(2),
            ..Default::default()
        };
        let b = batches_binds(&f);
        assert_eq!(get(&b, "p_limit"), Bind::Int(Some(50)));
        assert_eq!(get(&b, "p_partition_eq"), Bind::Int(Some(2)));
        assert_eq!(get(&b, "p_topic"), Bind::Str(None));
        let adv = advance_binds(&key(), 42, "b1");
        assert_eq!(get(&adv, "p_next_offset"), get(&adv, "p_upto"));
    }

    #[test]
    fn column_types_follow_the_longest_value() {
        let long_text = "x".repeat(MAX_INLINE_TEXT + 1);
        let rows: Vec<Binds> = vec![
            vec![
                ("a", Bind::Str(Some("abc".into()))),
                ("b", Bind::Text(Some("short".into()))),
                ("c", Bind::Bytes(None)),
                ("d", Bind::Int(None)),
                ("e", Bind::Double(Some(0.5))),
                ("f", Bind::Time(None)),
            ],
            vec![
                ("a", Bind::Str(Some("江苏".into()))),
                ("b", Bind::Text(Some(long_text))),
                ("c", Bind::Bytes(Some(vec![0; MAX_INLINE_RAW]))),
                ("d", Bind::Int(Some(1))),
                ("e", Bind::Double(None)),
                ("f", Bind::Time(None)),
            ],
        ];
        assert_eq!(
            column_types(&rows),
            vec![
                OracleType::Varchar2(6),
                OracleType::Long,
                OracleType::Raw(MAX_INLINE_RAW as u32),
                OracleType::Int64,
                OracleType::BinaryDouble,
                OracleType::TimestampTZ(6),
            ]
        );
        let all_null: Vec<Binds> = vec![vec![("a", Bind::Str(None)), ("b", Bind::Bytes(None))]];
        assert_eq!(
            column_types(&all_null),
            vec![OracleType::Varchar2(1), OracleType::Raw(1)]
        );
        let big_raw: Vec<Binds> = vec![vec![("c", Bind::Bytes(Some(vec![1; 3000])))]];
        assert_eq!(column_types(&big_raw), vec![OracleType::LongRaw]);
        assert!(column_types(&[]).is_empty());
    }

    /// Oracle takes a LONG bind only after every other bind that may be
    /// long (ORA-24816): the CLOB/BLOB columns close their statements (the
    /// update's WHERE key is short).
    #[test]
    fn lob_column_binds_come_last() {
        let is_lob = |b: &Bind| matches!(b, Bind::Text(_) | Bind::Bytes(_));
        let log = change_log_binds(
            "b1",
            &[LogEntry {
                event_id: "e".into(),
                customer_id: "C".into(),
                data_type: DataType::Phone,
                operation: "update".into(),
                outcome: "applied",
                governed_at: t("2024-01-15T02:20:00Z"),
                before: None,
                after: None,
                partition: 0,
                offset: 0,
            }],
        );
        let msg = OutMessage {
            topic: "t".into(),
            key: None,
            payload: None,
            headers: vec![],
        };
        let mut update = update_binds(&[write("C1")]).remove(0);
        assert_eq!(update.pop().unwrap().0, "p_customer_id");
        for binds in [
            log[0].clone(),
            outbox_binds("b1", &key(), 1, &[msg])[0].clone(),
            insert_binds(&[write("C1")])[0].clone(),
            update,
        ] {
            let first = binds.iter().position(|(_, b)| is_lob(b)).unwrap();
            assert!(
                binds[first..].iter().all(|(_, b)| is_lob(b)),
                "{:?}",
                binds.iter().map(|(n, _)| *n).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn rows_oracle_cannot_store_are_record_errors() {
        assert!(check_storable(&[write("C1")]).is_ok());
        let mut empty = write("C2");
        empty.row.validation_status = Some(String::new());
        match check_storable(&[write("C1"), empty]) {
            Err(SinkError::Record {
                constraint,
                message,
                ..
            }) => {
                assert_eq!(constraint.as_deref(), Some("validation_status"));
                assert!(message.contains("C2"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let mut long = write("C3");
        long.row.address = Some("x".repeat(MAX_VARCHAR2_BIND + 1));
        assert_eq!(check_storable(&[long]).unwrap_err().class(), "record");
        // A long CLOB value is fine: it is a LONG bind.
        let mut clob = write("C4");
        clob.row.carrier_info = Some("x".repeat(MAX_VARCHAR2_BIND + 1));
        assert!(check_storable(&[clob]).is_ok());
    }

    #[test]
    fn easy_connect_strings() {
        assert_eq!(
            easy_connect("oracle://govsync@localhost:1521/FREEPDB1").unwrap(),
            ("govsync".to_string(), "localhost:1521/FREEPDB1".to_string())
        );
        assert_eq!(
            easy_connect("oracle://app@db.example.com/ORCLPDB1")
                .unwrap()
                .1,
            "db.example.com/ORCLPDB1"
        );
        assert!(easy_connect("oracle://localhost:1521/FREEPDB1").is_err());
        assert!(easy_connect("oracle://u:pw@localhost:1521/FREEPDB1").is_err());
        assert!(easy_connect("oracle://u@localhost:1521").is_err());
        assert!(easy_connect("postgres://u@h/db").is_err());
    }

    #[test]
    fn migration_files_split_into_statements() {
        let stmts = split_statements(MIGRATIONS[0].2);
        assert_eq!(stmts.len(), 8, "{stmts:#?}");
        assert!(stmts[0].starts_with("CREATE TABLE govsync_change_log ("));
        assert!(stmts.iter().all(|s| !s.ends_with(';') && !s.contains("--")));
        let creates = |what: &str| stmts.iter().filter(|s| s.starts_with(what)).count();
        assert_eq!(creates("CREATE TABLE"), 4);
        assert_eq!(creates("CREATE INDEX"), 4);
        let dev = split_statements(DEV_MIGRATIONS[0].2);
        assert_eq!(dev.len(), 1);
        assert!(dev[0].contains("geo_lat              BINARY_DOUBLE"));
        assert!(dev[0].ends_with(')'));
    }

    #[test]
    fn splitter_keeps_quotes_and_plsql_blocks() {
        let text = "-- a comment; with a semicolon\n\
                    INSERT INTO t VALUES ('a;b', 'it''s');\n\
                    /* block; comment */ CREATE INDEX i ON t (x);\n\
                    BEGIN\n  EXECUTE IMMEDIATE 'x';\n  NULL;\nEND;\n/\n\
                    CREATE OR REPLACE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW\nBEGIN\n  NULL;\nEND;\n/\n\
                    SELECT 1 FROM dual";
        let s = split_statements(text);
        assert_eq!(s.len(), 5, "{s:#?}");
        assert_eq!(s[0], "INSERT INTO t VALUES ('a;b', 'it''s')");
        assert_eq!(s[1], "CREATE INDEX i ON t (x)");
        assert_eq!(s[2], "BEGIN\n  EXECUTE IMMEDIATE 'x';\n  NULL;\nEND;");
        assert!(s[3].starts_with("CREATE OR REPLACE TRIGGER") && s[3].ends_with("END;"));
        assert_eq!(s[4], "SELECT 1 FROM dual");
        // A division is not a block terminator.
        assert_eq!(
            split_statements("SELECT 4\n/ 2 FROM dual;"),
            ["SELECT 4\n/ 2 FROM dual"]
        );
    }

    #[test]
    fn migration_checksums() {
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_ne!(checksum(MIGRATIONS[0].2), checksum(DEV_MIGRATIONS[0].2));
        assert_eq!(checksum(MIGRATIONS[0].2).len(), 16);
        assert!(already_exists(955) && already_exists(1408));
        assert!(!already_exists(942) && !already_exists(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_blocking_pool_never_runs_more_than_its_size() {
        const SIZE: usize = 3;
        const JOBS: usize = SIZE + 5;
        let pool = BlockingPool::new(SIZE, Duration::from_secs(30));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..JOBS)
            .map(|i| {
                let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(40));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(i)
                    })
                    .await
                })
            })
            .collect();
        let mut done = Vec::new();
        for j in jobs {
            done.push(j.await.unwrap().unwrap());
        }
        done.sort();
        assert_eq!(done, (0..JOBS).collect::<Vec<_>>());
        assert_eq!(
            peak.load(Ordering::SeqCst),
            SIZE,
            "jobs ran beyond the bound"
        );
    }

    #[tokio::test]
    async fn a_held_slot_blocks_jobs_until_the_wait_runs_out() {
        let pool = BlockingPool::new(1, Duration::from_millis(50));
        let held = pool.slot().await.unwrap();
        let err = pool.run(|| Ok(())).await.unwrap_err();
        assert_eq!(err.class(), "timeout");
        drop(held);
        pool.run(|| Ok(())).await.unwrap();
        pool.close();
        assert_eq!(pool.run(|| Ok(())).await.unwrap_err().class(), "fatal");
    }

    #[tokio::test]
    async fn without_an_oracle_client_connect_fails_with_install_advice() {
        // This machine has no Oracle Client library; where one is installed
        // the error is about the unreachable database instead.
        let cfg = crate::config::check({
            let mut r = crate::config::RawConfig::default();
            r.database.url = "oracle://govsync@127.0.0.1:1/FREEPDB1".into();
            r.database.password_env = "GOVSYNC_TEST_NO_SUCH_VARIABLE".into();
            r.database.connect_timeout = "2s".into();
            r
        })
        .unwrap();
        let err = match OracleDatabase::connect(&cfg.database).await {
            Ok(_) => panic!("connected to nothing"),
            Err(e) => e.to_string(),
        };
        if err.contains("DPI-1047") {
            assert!(err.contains("Instant Client"), "{err}");
            assert!(err.contains("LD_LIBRARY_PATH"), "{err}");
        } else {
            assert!(err.contains("password") || err.contains("ORA-"), "{err}");
        }
    }
}
