//! PostgreSQL: set-based SQL over `UNNEST` of bound arrays.
//!
//! A batch is four round trips besides BEGIN and COMMIT: the watermark
//! (`SELECT … FOR UPDATE`), the snapshot (the rows `FOR UPDATE` joined with
//! their `govsync_row_state`), the results already logged, and ONE write:
//! a statement of data-modifying CTEs (change log, row updates and inserts
//! `RETURNING` the rows as stored, row states, outbox, ledger, watermark).
//! Its text depends only on which parts a batch has, so each shape is
//! prepared once per connection.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Arguments as _, AssertSqlSafe, Encode, Postgres, Row as _, Transaction, Type};

use super::plan::RowWrite;
use super::sqlx_common::{Arg, Dialect, SqlxDatabase, SqlxTx};
use super::{
    EventKey, LedgerEntry, LogEntry, PartitionKey, RowState, SinkError, SinkResult, Snapshot,
    Stored, Writes, migrate,
};
use crate::config::DatabaseConfig;
use crate::event::Row;
use crate::message::{OutMessage, encode_headers};

const ROW_COLUMNS: &str = "customer_id, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, \
    quality_score, validation_status, review_flag, review_priority, last_governance_time, last_update, version";

/// Daily change-log partitions created ahead of time.
const PARTITIONS_AHEAD: i32 = 7;

/// SQL texts that name the (configurable) target table, built once.
#[derive(Debug)]
pub struct Sql {
    table: String,
    lock_rows: String,
    read_rows: String,
    snapshot: String,
    /// `ROW_COLUMNS` qualified by the update's alias.
    returning: String,
}

impl Sql {
    fn new(table: &str) -> Self {
        let returning = ROW_COLUMNS
            .split(", ")
            .map(|c| format!("c.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        Sql {
            table: table.to_string(),
            lock_rows: format!(
                "SELECT {ROW_COLUMNS} FROM {table} WHERE customer_id = ANY($1) ORDER BY customer_id FOR UPDATE"
            ),
            read_rows: format!("SELECT {ROW_COLUMNS} FROM {table} WHERE customer_id = ANY($1)"),
            // The rows (locked, in customer-id order) and their states, one
            // line per id whether the row exists or not.
            snapshot: format!(
                "WITH locked AS (SELECT {ROW_COLUMNS} FROM {table} WHERE customer_id = ANY($1) \
                 ORDER BY customer_id FOR UPDATE) \
                 SELECT ids.id, l.address, l.geo_lat, l.geo_lon, l.geo_accuracy, l.id_card, l.phone, \
                 l.carrier_info, l.quality_score, l.validation_status, l.review_flag, l.review_priority, \
                 l.last_governance_time, l.last_update, l.version, l.customer_id IS NOT NULL, \
                 s.customer_id IS NOT NULL, s.address_governed_at, s.id_card_governed_at, s.phone_governed_at \
                 FROM unnest($1::text[]) AS ids(id) \
                 LEFT JOIN locked l ON l.customer_id = ids.id \
                 LEFT JOIN govsync_row_state s ON s.customer_id = ids.id"
            ),
            returning,
        }
    }
}

/// The PostgreSQL sink.
pub type PgDatabase = SqlxDatabase<Postgres>;

impl PgDatabase {
    pub async fn connect(cfg: &DatabaseConfig) -> SinkResult<Self> {
        let mut opts = PgConnectOptions::from_str(&cfg.url)
            .map_err(|e| SinkError::Fatal(format!("database.url: {e}")))?;
        // `govsync` unless the URL (`?application_name=`) or PGAPPNAME
        // names the instance: operators find and terminate one instance's
        // sessions by it.
        if opts.get_application_name().is_none() {
            opts = opts.application_name("govsync");
        }
        opts = opts.options([
            (
                "statement_timeout",
                format!("{}", cfg.statement_timeout.as_millis()),
            ),
            ("lock_timeout", format!("{}", cfg.lock_timeout.as_millis())),
        ]);
        if let Some(schema) = &cfg.schema {
            opts = opts.options([("search_path", schema.clone())]);
        }
        if let Some(pw) = &cfg.password {
            opts = opts.password(pw);
        }
        let port = opts.get_port();
        let pool = PgPoolOptions::new()
            .max_connections(cfg.pool_size)
            .min_connections(0)
            .acquire_timeout(cfg.connect_timeout)
            // A connection the server terminated is detected here, not
            // mid-batch.
            .test_before_acquire(true)
            .after_connect(move |_conn, _meta| {
                Box::pin(async move {
                    // sqlx 0.9.0 leaves Nagle on: 40 ms per statement (nodelay.rs).
                    if let Err(e) = super::nodelay::set_on_sockets_to_port(port) {
                        tracing::warn!(error = %e, "could not set TCP_NODELAY on the database connection");
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(opts);
        Ok(SqlxDatabase::new(pool, Sql::new(&cfg.target_table)))
    }
}

fn row_from(r: &PgRow) -> Result<(String, Row), sqlx::Error> {
    Ok((r.try_get(0)?, row_at(r)?))
}

/// The row's columns at 1..=14 (after its id). The types are the
/// statement's own (govsync wrote the SELECT list), so sqlx's per-value
/// type check is skipped: a thousand rows of fifteen columns a batch.
fn row_at(r: &PgRow) -> Result<Row, sqlx::Error> {
    Ok(Row {
        address: r.try_get_unchecked(1)?,
        geo_lat: r.try_get_unchecked(2)?,
        geo_lon: r.try_get_unchecked(3)?,
        geo_accuracy: r.try_get_unchecked(4)?,
        id_card: r.try_get_unchecked(5)?,
        phone: r.try_get_unchecked(6)?,
        carrier_info: r.try_get_unchecked(7)?,
        quality_score: r.try_get_unchecked(8)?,
        validation_status: r.try_get_unchecked(9)?,
        review_flag: r.try_get_unchecked(10)?,
        review_priority: r.try_get_unchecked(11)?,
        last_governance_time: r.try_get_unchecked(12)?,
        last_update: r.try_get_unchecked(13)?,
        version: r.try_get_unchecked(14)?,
    })
}

fn rows_by_id(rows: &[PgRow]) -> SinkResult<HashMap<String, Row>> {
    Ok(rows.iter().map(row_from).collect::<Result<_, _>>()?)
}

/// A statement whose placeholders are numbered as values are bound.
#[derive(Default)]
struct Statement {
    sql: String,
    args: PgArguments,
    n: usize,
}

impl Statement {
    /// Binds `v` and returns its placeholder with `cast` (`::text[]` …).
    fn bind<'t, T: Encode<'t, Postgres> + Type<Postgres>>(
        &mut self,
        v: T,
        cast: &str,
    ) -> SinkResult<String> {
        self.args
            .add(v)
            .map_err(|e| SinkError::Fatal(format!("binding a statement value: {e}")))?;
        self.n += 1;
        Ok(format!("${}{cast}", self.n))
    }
}

/// Column arrays of row writes, in the order of the update and insert
/// parts of [`write_statement`], borrowing the plan's values.
#[derive(Default)]
struct RowArrays<'a> {
    id: Vec<&'a str>,
    address: Vec<Option<&'a str>>,
    lat: Vec<Option<f64>>,
    lon: Vec<Option<f64>>,
    accuracy: Vec<Option<&'a str>>,
    id_card: Vec<Option<&'a str>>,
    phone: Vec<Option<&'a str>>,
    carrier: Vec<Option<&'a str>>,
    score: Vec<Option<f64>>,
    status: Vec<Option<&'a str>>,
    flag: Vec<Option<bool>>,
    priority: Vec<Option<&'a str>>,
    gov_time: Vec<Option<DateTime<Utc>>>,
    version: Vec<i64>,
    name: Vec<Option<&'a str>>,
}

impl<'a> RowArrays<'a> {
    fn of(writes: &'a [RowWrite]) -> Self {
        let mut a = RowArrays::default();
        for w in writes {
            let r = &w.row;
            a.id.push(&w.customer_id);
            a.address.push(r.address.as_deref());
            a.lat.push(r.geo_lat);
            a.lon.push(r.geo_lon);
            a.accuracy.push(r.geo_accuracy.as_deref());
            a.id_card.push(r.id_card.as_deref());
            a.phone.push(r.phone.as_deref());
            a.carrier.push(r.carrier_info.as_deref());
            a.score.push(r.quality_score);
            a.status.push(r.validation_status.as_deref());
            a.flag.push(r.review_flag);
            a.priority.push(r.review_priority.as_deref());
            a.gov_time.push(r.last_governance_time);
            a.version.push(r.version);
            a.name.push(w.name.as_deref());
        }
        a
    }

    /// Binds the arrays and returns their `UNNEST(…)` list.
    fn bind(self, st: &mut Statement, with_name: bool) -> SinkResult<String> {
        let mut p = vec![
            st.bind(self.id, "::text[]")?,
            st.bind(self.address, "::text[]")?,
            st.bind(self.lat, "::float8[]")?,
            st.bind(self.lon, "::float8[]")?,
            st.bind(self.accuracy, "::text[]")?,
            st.bind(self.id_card, "::text[]")?,
            st.bind(self.phone, "::text[]")?,
            st.bind(self.carrier, "::text[]")?,
            st.bind(self.score, "::float8[]")?,
            st.bind(self.status, "::text[]")?,
            st.bind(self.flag, "::bool[]")?,
            st.bind(self.priority, "::text[]")?,
            st.bind(self.gov_time, "::timestamptz[]")?,
            st.bind(self.version, "::int8[]")?,
        ];
        if with_name {
            p.push(st.bind(self.name, "::text[]")?);
        }
        Ok(p.join(", "))
    }
}

const ROW_FIELDS: &str = "customer_id, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, \
    quality_score, validation_status, review_flag, review_priority, last_governance_time, version";

/// The change-log part of [`write_statement`].
fn log_part(st: &mut Statement, batch_id: &str, log: &[LogEntry]) -> SinkResult<String> {
    let batch = st.bind(batch_id, "::text")?;
    let cols = [
        st.bind(
            log.iter().map(|l| l.event_id.as_str()).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter()
                .map(|l| l.customer_id.as_str())
                .collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter().map(|l| l.data_type.as_str()).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter().map(|l| l.operation.as_str()).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter().map(|l| l.outcome).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter().map(|l| l.governed_at).collect::<Vec<_>>(),
            "::timestamptz[]",
        )?,
        st.bind(
            log.iter().map(|l| l.before.as_deref()).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter().map(|l| l.after.as_deref()).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            log.iter().map(|l| l.partition).collect::<Vec<_>>(),
            "::int4[]",
        )?,
        st.bind(log.iter().map(|l| l.offset).collect::<Vec<_>>(), "::int8[]")?,
    ];
    Ok(format!(
        "log AS (INSERT INTO govsync_change_log (batch_id, event_id, customer_id, data_type, operation, \
         outcome, governed_at, before_image, after_image, source_partition, source_offset) \
         SELECT {batch}, u.* FROM UNNEST({}) AS u)",
        cols.join(", ")
    ))
}

/// The row-state part of [`write_statement`].
fn state_part(st: &mut Statement, state: &[RowState]) -> SinkResult<String> {
    let at = |i: usize| state.iter().map(|s| s.governed_at[i]).collect::<Vec<_>>();
    let cols = [
        st.bind(
            state
                .iter()
                .map(|s| s.customer_id.as_str())
                .collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(at(0), "::timestamptz[]")?,
        st.bind(at(1), "::timestamptz[]")?,
        st.bind(at(2), "::timestamptz[]")?,
    ];
    Ok(format!(
        "st AS (INSERT INTO govsync_row_state (customer_id, address_governed_at, id_card_governed_at, \
         phone_governed_at) SELECT * FROM UNNEST({}) \
         ON CONFLICT (customer_id) DO UPDATE SET address_governed_at = EXCLUDED.address_governed_at, \
         id_card_governed_at = EXCLUDED.id_card_governed_at, phone_governed_at = EXCLUDED.phone_governed_at)",
        cols.join(", ")
    ))
}

/// The outbox part of [`write_statement`].
fn outbox_part(
    st: &mut Statement,
    batch_id: &str,
    key: &PartitionKey,
    next: i64,
    msgs: &[OutMessage],
) -> SinkResult<String> {
    let fixed = [
        st.bind(batch_id, "::text")?,
        st.bind(key.group.as_str(), "::text")?,
        st.bind(key.topic.as_str(), "::text")?,
        st.bind(key.partition, "::int4")?,
        st.bind(next, "::int8")?,
    ];
    let cols = [
        st.bind((0..msgs.len() as i32).collect::<Vec<_>>(), "::int4[]")?,
        st.bind(
            msgs.iter().map(|m| m.topic.as_str()).collect::<Vec<_>>(),
            "::text[]",
        )?,
        st.bind(
            msgs.iter().map(|m| m.key.as_deref()).collect::<Vec<_>>(),
            "::bytea[]",
        )?,
        st.bind(
            msgs.iter()
                .map(|m| m.payload.as_deref())
                .collect::<Vec<_>>(),
            "::bytea[]",
        )?,
        st.bind(
            msgs.iter()
                .map(|m| encode_headers(&m.headers))
                .collect::<Vec<_>>(),
            "::bytea[]",
        )?,
    ];
    Ok(format!(
        "ob AS (INSERT INTO govsync_outbox (batch_id, seq, consumer_group, topic, partition_id, next_offset, \
         dest_topic, msg_key, msg_value, headers) \
         SELECT {}, u.seq, {}, {}, {}, {}, u.dest, u.k, u.v, u.h \
         FROM UNNEST({}) AS u(seq, dest, k, v, h))",
        fixed[0],
        fixed[1],
        fixed[2],
        fixed[3],
        fixed[4],
        cols.join(", ")
    ))
}

/// The ledger part of [`write_statement`].
fn ledger_part(st: &mut Statement, e: &LedgerEntry) -> SinkResult<String> {
    let v = [
        st.bind(e.batch_id.as_str(), "::text")?,
        st.bind(e.kind.as_str(), "::text")?,
        st.bind(e.group.as_str(), "::text")?,
        st.bind(e.topic.as_str(), "::text")?,
        st.bind(e.partition, "::int4")?,
        st.bind(e.first_offset, "::int8")?,
        st.bind(e.last_offset, "::int8")?,
        st.bind(e.records as i32, "::int4")?,
        st.bind(
            serde_json::to_string(&e.counts).unwrap_or_default(),
            "::text",
        )?,
        st.bind(e.started_at, "::timestamptz")?,
        st.bind(e.duration_ms, "::int8")?,
        st.bind(e.attempts, "::int4")?,
        st.bind(e.status.as_str(), "::text")?,
    ];
    Ok(format!(
        "led AS (INSERT INTO govsync_batch (batch_id, kind, consumer_group, topic, partition_id, first_offset, \
         last_offset, records, counts, started_at, duration_ms, attempts, status) VALUES ({}))",
        v.join(", ")
    ))
}

/// The whole of a batch's writes as one statement of data-modifying CTEs;
/// it returns the updated and inserted rows as stored. `None` when there is
/// nothing to write.
fn write_statement(sql: &Sql, w: &Writes<'_>) -> SinkResult<Option<Statement>> {
    let table = &sql.table;
    let mut st = Statement::default();
    let mut parts: Vec<String> = Vec::new();
    // (written rows as stored, the values given) per kind of row write.
    let mut compared: Vec<(&str, &str)> = Vec::new();
    if !w.log.is_empty() {
        parts.push(log_part(&mut st, w.batch_id, w.log)?);
    }
    // Each written row, as stored (RETURNING, after the table's triggers),
    // is compared with the values it was given: the statement returns only
    // the customers whose row differs (none, unless something rewrote it).
    if !w.updates.is_empty() {
        let arrays = RowArrays::of(w.updates).bind(&mut st, false)?;
        parts.push(format!(
            "u_upd AS (SELECT * FROM UNNEST({arrays}) AS u({ROW_FIELDS})),\n\
             upd AS (UPDATE {table} AS c SET address = u.address, geo_lat = u.geo_lat, geo_lon = u.geo_lon, \
             geo_accuracy = u.geo_accuracy, id_card = u.id_card, phone = u.phone, carrier_info = u.carrier_info, \
             quality_score = u.quality_score, validation_status = u.validation_status, review_flag = u.review_flag, \
             review_priority = u.review_priority, last_governance_time = u.last_governance_time, version = u.version \
             FROM u_upd AS u WHERE c.customer_id = u.customer_id RETURNING {})",
            sql.returning
        ));
        compared.push(("upd", "u_upd"));
    }
    if !w.inserts.is_empty() {
        let arrays = RowArrays::of(w.inserts).bind(&mut st, true)?;
        parts.push(format!(
            "u_ins AS (SELECT * FROM UNNEST({arrays}) AS u({ROW_FIELDS}, name)),\n\
             ins AS (INSERT INTO {table} ({ROW_FIELDS}, name) SELECT * FROM u_ins RETURNING {ROW_COLUMNS})"
        ));
        compared.push(("ins", "u_ins"));
    }
    if !w.deletes.is_empty() {
        let ids = st.bind(w.deletes, "::text[]")?;
        parts.push(format!(
            "del AS (DELETE FROM {table} WHERE customer_id = ANY({ids}))"
        ));
    }
    if !w.state.is_empty() {
        parts.push(state_part(&mut st, w.state)?);
    }
    if let Some((key, next, msgs)) = w.outbox
        && !msgs.is_empty()
    {
        parts.push(outbox_part(&mut st, w.batch_id, key, next, msgs)?);
    }
    if let Some((key, upto)) = w.prune_outbox {
        let k = key_placeholders(&mut st, key)?;
        let upto = st.bind(upto, "::int8")?;
        parts.push(format!(
            "pr AS (DELETE FROM govsync_outbox WHERE consumer_group = {} AND topic = {} \
             AND partition_id = {} AND next_offset <= {upto})",
            k[0], k[1], k[2]
        ));
    }
    if let Some(e) = w.ledger {
        parts.push(ledger_part(&mut st, e)?);
    }
    if let Some((key, next)) = w.watermark {
        let k = key_placeholders(&mut st, key)?;
        let next = st.bind(next, "::int8")?;
        let batch = st.bind(w.batch_id, "::text")?;
        parts.push(format!(
            "wm AS (UPDATE govsync_watermark SET next_offset = {next}, batch_id = {batch}, updated_at = now() \
             WHERE consumer_group = {} AND topic = {} AND partition_id = {} AND next_offset <= {next})",
            k[0], k[1], k[2]
        ));
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let mut text = String::from("WITH ");
    text.push_str(&parts.join(",\n"));
    // One line with the count of rows written, then one per differing row.
    let written = if compared.is_empty() {
        "0".to_string()
    } else {
        let counts: Vec<String> = compared
            .iter()
            .map(|(stored, _)| format!("(SELECT count(*) FROM {stored})"))
            .collect();
        counts.join(" + ")
    };
    let _ = write!(text, "\nSELECT ({written})::int8, NULL::text");
    let fields: Vec<&str> = ROW_FIELDS.split(", ").map(str::trim).collect();
    for (stored, given) in &compared {
        let s_cols: Vec<String> = fields.iter().map(|f| format!("s.{f}")).collect();
        let g_cols: Vec<String> = fields.iter().map(|f| format!("g.{f}")).collect();
        let _ = write!(
            text,
            "\nUNION ALL SELECT NULL, s.customer_id FROM {stored} AS s JOIN {given} AS g \
             ON g.customer_id = s.customer_id WHERE ({}) IS DISTINCT FROM ({})",
            s_cols.join(", "),
            g_cols.join(", ")
        );
    }
    st.sql = text;
    Ok(Some(st))
}

fn key_placeholders(st: &mut Statement, key: &PartitionKey) -> SinkResult<[String; 3]> {
    Ok([
        st.bind(key.group.as_str(), "::text")?,
        st.bind(key.topic.as_str(), "::text")?,
        st.bind(key.partition, "::int4")?,
    ])
}

/// Runs the batch's write statement; returns what it compared.
async fn write_all(
    tx: &mut Transaction<'static, Postgres>,
    sql: &Sql,
    w: &Writes<'_>,
) -> SinkResult<Stored> {
    let Some(st) = write_statement(sql, w)? else {
        return Ok(Stored::Compared {
            written: 0,
            differ: vec![],
        });
    };
    let lines = sqlx::query_with(AssertSqlSafe(st.sql), st.args)
        .fetch_all(&mut **tx)
        .await?;
    let mut written = 0;
    let mut differ = Vec::new();
    for r in &lines {
        match r.try_get::<Option<i64>, _>(0)? {
            Some(n) => written = n as usize,
            None => differ.extend(r.try_get::<Option<String>, _>(1)?),
        }
    }
    Ok(Stored::Compared { written, differ })
}

#[async_trait]
impl Dialect for Postgres {
    const KIND: &'static str = "postgres";
    const LOCK: &'static str = " FOR UPDATE";
    const NOW: &'static str = "now()";
    const BEGIN: Option<&'static str> = None;
    const BATCHES: &'static str = "SELECT batch_id, kind, consumer_group, topic, partition_id, first_offset, \
        last_offset, records, counts, started_at, duration_ms, attempts, status FROM govsync_batch \
        WHERE ($1::text IS NULL OR topic = $1) AND ($2::int4 IS NULL OR partition_id = $2) \
        AND ($3::text IS NULL OR status = $3) AND ($4::timestamptz IS NULL OR started_at >= $4) \
        AND ($5::text IS NULL OR batch_id = $5) \
        ORDER BY started_at DESC, batch_id LIMIT $6";
    /// The batch's rows were logged in its transaction: their logged_at is
    /// the ledger's committed_at, which the BRIN index finds.
    const BATCH_LOG: &'static str = "SELECT event_id, customer_id, data_type, operation, before_image, \
        after_image FROM govsync_change_log WHERE batch_id = $1 \
        AND logged_at = (SELECT committed_at FROM govsync_batch WHERE batch_id = $1) \
        AND outcome IN ('applied', 'flagged') ORDER BY source_partition, source_offset";
    type TableSql = Sql;

    fn bind<'q>(
        q: sqlx::query::Query<'q, Self, sqlx::postgres::PgArguments>,
        a: Arg<'_>,
    ) -> sqlx::query::Query<'q, Self, sqlx::postgres::PgArguments> {
        match a {
            Arg::Str(v) => q.bind(v.to_string()),
            Arg::OptStr(v) => q.bind(v.map(str::to_string)),
            Arg::I32(v) => q.bind(v),
            Arg::OptI32(v) => q.bind(v),
            Arg::I64(v) => q.bind(v),
            Arg::Time(v) => q.bind(v),
            Arg::OptTime(v) => q.bind(v),
        }
    }

    fn get_text(row: &PgRow, i: usize) -> Result<Option<String>, sqlx::Error> {
        row.try_get(i)
    }

    /// BIGINT or INTEGER.
    fn get_i64(row: &PgRow, i: usize) -> Result<i64, sqlx::Error> {
        row.try_get::<i64, _>(i)
            .or_else(|_| row.try_get::<i32, _>(i).map(i64::from))
    }

    fn get_bytes(row: &PgRow, i: usize) -> Result<Option<Vec<u8>>, sqlx::Error> {
        row.try_get(i)
    }

    fn get_time(row: &PgRow, i: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        row.try_get(i)
    }

    async fn migrate(pool: &sqlx::Pool<Self>, with_target_table: bool) -> SinkResult<Vec<String>> {
        migrate::run_sqlx(
            pool,
            migrate::POSTGRES,
            migrate::POSTGRES_DEV,
            with_target_table,
        )
        .await
    }

    /// Creates the coming days' partitions, drops those past retention
    /// (`govsync_change_log_maintain`, migrations/postgres/0002); waits at
    /// most 2 s for the change log's lock, so a long batch postpones it
    /// rather than batches queueing behind it.
    async fn maintain(
        pool: &sqlx::Pool<Self>,
        retention: std::time::Duration,
    ) -> SinkResult<String> {
        let mut tx = pool.begin().await?;
        sqlx::query("SET LOCAL lock_timeout = '2s'")
            .execute(&mut *tx)
            .await?;
        let done: String =
            sqlx::query_scalar("SELECT govsync_change_log_maintain(make_interval(secs => $1), $2)")
                .bind(retention.as_secs_f64())
                .bind(PARTITIONS_AHEAD)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn lock_rows(
        tx: &mut Transaction<'static, Self>,
        sql: &Sql,
        ids: &[String],
    ) -> SinkResult<HashMap<String, Row>> {
        let rows = sqlx::query(AssertSqlSafe(sql.lock_rows.clone()))
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?;
        rows_by_id(&rows)
    }

    async fn read_rows(
        tx: &mut Transaction<'static, Self>,
        sql: &Sql,
        ids: &[String],
    ) -> SinkResult<HashMap<String, Row>> {
        let rows = sqlx::query(AssertSqlSafe(sql.read_rows.clone()))
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?;
        rows_by_id(&rows)
    }

    /// One probe per result, into the one partition its governed_at
    /// selects.
    async fn seen_events(
        tx: &mut Transaction<'static, Self>,
        events: &[EventKey],
    ) -> SinkResult<HashSet<String>> {
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT c.event_id FROM UNNEST($1::text[], $2::timestamptz[]) AS u(event_id, governed_at) \
             JOIN govsync_change_log c ON c.event_id = u.event_id AND c.governed_at = u.governed_at",
        )
        .bind(events.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, t)| *t).collect::<Vec<_>>())
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
             FROM govsync_row_state WHERE customer_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RowState {
                    customer_id: r.try_get(0)?,
                    governed_at: [r.try_get(1)?, r.try_get(2)?, r.try_get(3)?],
                })
            })
            .collect()
    }

    async fn write_state(
        tx: &mut Transaction<'static, Self>,
        state: &[RowState],
    ) -> SinkResult<()> {
        let mut st = Statement::default();
        let part = state_part(&mut st, state)?;
        sqlx::query_with(AssertSqlSafe(format!("WITH {part} SELECT 1")), st.args)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The rows and their states in one statement, then the logged results.
    async fn read_snapshot(
        tx: &mut SqlxTx<Self>,
        ids: &[String],
        events: &[EventKey],
    ) -> SinkResult<Snapshot> {
        let lines = sqlx::query(AssertSqlSafe(tx.table.snapshot.clone()))
            .bind(ids)
            .fetch_all(&mut *tx.tx)
            .await?;
        let mut rows = HashMap::with_capacity(lines.len());
        let mut states = Vec::new();
        for r in &lines {
            let id: String = r.try_get(0)?;
            if r.try_get::<bool, _>(16)? {
                states.push(RowState {
                    customer_id: id.clone(),
                    governed_at: [r.try_get(17)?, r.try_get(18)?, r.try_get(19)?],
                });
            }
            if r.try_get::<bool, _>(15)? {
                rows.insert(id, row_at(r)?);
            }
        }
        let seen = Self::seen_events(&mut tx.tx, events).await?;
        Ok(Snapshot::new(rows, seen, states))
    }

    /// Everything in one statement, which also compares the rows as
    /// stored with what it wrote.
    async fn write(tx: &mut SqlxTx<Self>, w: &Writes<'_>) -> SinkResult<Stored> {
        let table = tx.table.clone();
        write_all(&mut tx.tx, &table, w).await
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
        let w = Writes {
            deletes,
            ..Writes::changes(batch_id, log, updates, inserts)
        };
        write_all(tx, sql, &w).await?;
        Ok(())
    }

    async fn write_outbox(
        tx: &mut Transaction<'static, Self>,
        batch_id: &str,
        key: &PartitionKey,
        next_offset: i64,
        msgs: &[OutMessage],
    ) -> SinkResult<()> {
        let mut st = Statement::default();
        let part = outbox_part(&mut st, batch_id, key, next_offset, msgs)?;
        sqlx::query_with(AssertSqlSafe(format!("WITH {part} SELECT 1")), st.args)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
