//! PostgreSQL: set-based SQL over `UNNEST` of bound arrays.
//!
//! A batch is three round trips besides BEGIN and COMMIT: the watermark
//! (`SELECT … FOR UPDATE`), the snapshot (the rows `FOR UPDATE` joined with
//! their `govsync_row_state`), and ONE write: a statement of data-modifying
//! CTEs (change log, row updates and inserts `RETURNING` the rows as stored,
//! row states, outbox, ledger, watermark). A fourth, the results already
//! logged, only when a batch is bisected or a duplicate was met in the last
//! minute (the change log's unique key catches the others, see
//! `sink::protocol`).
//! Its text depends only on which parts a batch has, so each shape is
//! prepared once per connection.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row as _, Transaction};

use super::plan::RowWrite;
use super::sqlx_common::{Arg, Dialect, SqlxDatabase, SqlxTx};
use super::table::{Adapter, Catalog, TableMap, quote};
use super::{
    EventKey, LogEntry, PartitionKey, ReviewItem, RowState, SinkError, SinkResult, Snapshot,
    Stored, Supersede, Writes, migrate,
};
use crate::config::DatabaseConfig;
use crate::event::{Column, Row};
use crate::message::OutMessage;

mod catalog;
mod write;

use write::{Statement, outbox_part, review_parts, state_part, write_all};

/// Daily change-log partitions created ahead of time.
const PARTITIONS_AHEAD: i32 = 7;

/// SQL texts that name the target table, built once from its mapping
/// ([`TableMap`]). Every read returns govsync's logical fields in the
/// order of [`row_at`], whatever the table calls and encodes them; every
/// write turns the logical values back into the table's encoding
/// ([`read_expr`], [`write_expr`]).
#[derive(Debug)]
pub struct Sql {
    map: Arc<TableMap>,
    table: String,
    lock_rows: String,
    read_rows: String,
    snapshot: String,
    /// `UPDATE … SET` list from `u` (the unnested logical values).
    set_list: String,
    /// `INSERT` columns and the matching `SELECT` list from `u`.
    insert_columns: String,
    insert_values: String,
    /// The written row as stored, in logical fields, from alias `c`.
    returning: String,
    /// The logical fields compared between what was written and what is
    /// stored (the key first).
    compared: Vec<&'static str>,
}

/// The logical fields of a row read back, after the id (see [`row_at`]).
const FIELDS: [&str; 12] = [
    "address",
    "geo_lat",
    "geo_lon",
    "geo_accuracy",
    "id_card",
    "phone",
    "carrier_info",
    "quality_score",
    "validation_status",
    "review_flag",
    "review_priority",
    "last_governance_time",
];

/// SQL type of a logical field's value.
fn logical_type(c: Column) -> &'static str {
    match c {
        Column::GeoLat | Column::GeoLon | Column::QualityScore => "float8",
        Column::ReviewFlag => "bool",
        Column::LastGovernanceTime => "timestamptz",
        _ => "text",
    }
}

/// The column `col` (already qualified) read as its logical value.
fn read_expr(col: &str, adapter: Adapter, zone: &str) -> String {
    match adapter {
        Adapter::Text => format!("{col}::text"),
        Adapter::Float | Adapter::Decimal { .. } => format!("{col}::float8"),
        Adapter::Bool | Adapter::TimeTz { .. } => col.to_string(),
        Adapter::BoolNumber => format!("({col} <> 0)"),
        Adapter::BoolYn => format!("CASE {col} WHEN 'Y' THEN true WHEN 'N' THEN false END"),
        Adapter::TimeLocal { .. } => format!("({col} AT TIME ZONE INTERVAL '{zone}')"),
        Adapter::TimeText => format!("{col}::timestamptz"),
        Adapter::Integer => format!("{col}::int8"),
    }
}

/// The logical value `v` as the column stores it.
fn write_expr(v: &str, adapter: Adapter, zone: &str) -> String {
    match adapter {
        Adapter::BoolNumber => format!("CASE WHEN {v} THEN 1 WHEN NOT {v} THEN 0 END"),
        Adapter::BoolYn => format!("CASE WHEN {v} THEN 'Y' WHEN NOT {v} THEN 'N' END"),
        Adapter::TimeLocal { .. } => format!("({v} AT TIME ZONE INTERVAL '{zone}')"),
        Adapter::TimeText => {
            format!("to_char({v} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        }
        _ => v.to_string(),
    }
}

impl Sql {
    pub fn new(map: Arc<TableMap>) -> Self {
        let table = map.table.clone();
        let key = map.key_quoted();
        let zone = map.zone.to_string();
        // The logical row from the table aliased `c` (and its state `s`
        // where the version is govsync's own).
        let row_from_c = |with_key: bool| {
            let mut cols: Vec<String> = Vec::new();
            if with_key {
                cols.push(format!("c.{key}::text AS customer_id"));
            }
            for (c, f) in Column::ALL.into_iter().zip(FIELDS) {
                cols.push(match map.field(c) {
                    Some(m) => format!(
                        "{} AS {f}",
                        read_expr(&format!("c.{}", m.quoted()), m.adapter, &zone)
                    ),
                    None => format!("NULL::{} AS {f}", logical_type(c)),
                });
            }
            cols.push(match &map.last_update {
                Some(m) => format!(
                    "{} AS last_update",
                    read_expr(&format!("c.{}", m.quoted()), m.adapter, &zone)
                ),
                None => "NULL::timestamptz AS last_update".into(),
            });
            cols
        };
        let version_of_c = match &map.version {
            Some(v) => format!("c.{}::int8", quote(v)),
            None => "coalesce(s.version, 0)::int8".into(),
        };
        let state_join = if map.version.is_some() {
            String::new()
        } else {
            format!(" LEFT JOIN govsync_row_state s ON s.customer_id = c.{key} COLLATE \"C\"")
        };
        let select_rows = format!(
            "SELECT {}, {version_of_c} AS version FROM {table} AS c{state_join} WHERE c.{key} = ANY($1)",
            row_from_c(true).join(", ")
        );
        // The snapshot: the rows (locked, in key order) and their states,
        // one line per id whether the row exists or not.
        let version_in_snapshot = if map.version.is_some() {
            "l.version"
        } else {
            "coalesce(s.version, 0)::int8"
        };
        let mut locked = row_from_c(true);
        if let Some(v) = &map.version {
            locked.push(format!("c.{}::int8 AS version", quote(v)));
        }
        let snapshot = format!(
            "WITH locked AS (SELECT {} FROM {table} AS c WHERE c.{key} = ANY($1) ORDER BY c.{key} FOR UPDATE) \
             SELECT ids.id, l.address, l.geo_lat, l.geo_lon, l.geo_accuracy, l.id_card, l.phone, \
             l.carrier_info, l.quality_score, l.validation_status, l.review_flag, l.review_priority, \
             l.last_governance_time, l.last_update, {version_in_snapshot}, l.customer_id IS NOT NULL, \
             s.customer_id IS NOT NULL, s.address_governed_at, s.id_card_governed_at, s.phone_governed_at \
             FROM unnest($1::text[]) AS ids(id) \
             LEFT JOIN locked l ON l.customer_id = ids.id \
             LEFT JOIN govsync_row_state s ON s.customer_id = ids.id",
            locked.join(", ")
        );
        // Writes: each mapped field from the unnested logical values `u`.
        let mut set = Vec::new();
        let mut ins_cols = vec![key.clone()];
        let mut ins_vals = vec!["u.customer_id".to_string()];
        let mut compared = vec!["customer_id"];
        for (c, f) in Column::ALL.into_iter().zip(FIELDS) {
            if let Some(m) = map.field(c) {
                let v = write_expr(&format!("u.{f}"), m.adapter, &zone);
                set.push(format!("{} = {v}", m.quoted()));
                ins_cols.push(m.quoted());
                ins_vals.push(v);
                compared.push(f);
            }
        }
        if let Some(v) = &map.version {
            set.push(format!("{} = u.version", quote(v)));
            ins_cols.push(quote(v));
            ins_vals.push("u.version".into());
            compared.push("version");
        }
        if let Some(n) = &map.name {
            ins_cols.push(quote(n));
            ins_vals.push("u.name".into());
        }
        let mut returning = row_from_c(true);
        if let Some(v) = &map.version {
            returning.push(format!("c.{}::int8 AS version", quote(v)));
        }
        Sql {
            table: table.clone(),
            lock_rows: format!("{select_rows} ORDER BY c.{key} FOR UPDATE OF c"),
            read_rows: select_rows,
            snapshot,
            set_list: set.join(", "),
            insert_columns: ins_cols.join(", "),
            insert_values: ins_vals.join(", "),
            returning: returning.join(", "),
            compared,
            map,
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
            opts = opts.password(pw.expose());
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
        Ok(SqlxDatabase::new(pool, cfg))
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
    const REVIEW_STATUS_FILTER: &'static str = "$1::text IS NULL OR status = $1";
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

    fn get_opt_i64(row: &PgRow, i: usize) -> Result<Option<i64>, sqlx::Error> {
        row.try_get(i)
    }

    fn get_bytes(row: &PgRow, i: usize) -> Result<Option<Vec<u8>>, sqlx::Error> {
        row.try_get(i)
    }

    fn rows_affected(r: &Self::QueryResult) -> u64 {
        r.rows_affected()
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

    /// One probe per result, into the unique index of the one partition its
    /// governed_at selects (run-time pruning). The `LATERAL … LIMIT 1`
    /// keeps it that way whatever the statistics say: as a plain join,
    /// the planner read today's partition, whose statistics lag its
    /// growth, with a sequential scan and a sort (17 ms of a 60 ms batch
    /// at 8,000 rows, and growing with the day's volume).
    async fn seen_events(
        tx: &mut Transaction<'static, Self>,
        events: &[EventKey],
    ) -> SinkResult<HashSet<String>> {
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT u.event_id FROM UNNEST($1::text[], $2::timestamptz[]) AS u(event_id, governed_at) \
             CROSS JOIN LATERAL (SELECT 1 FROM govsync_change_log c \
             WHERE c.event_id = u.event_id AND c.governed_at = u.governed_at LIMIT 1) AS hit",
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
                    version: None,
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
                    version: None,
                });
            }
            if r.try_get::<bool, _>(15)? {
                rows.insert(id, row_at(r)?);
            }
        }
        let seen = if events.is_empty() {
            HashSet::new()
        } else {
            Self::seen_events(&mut tx.tx, events).await?
        };
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

    async fn write_review(
        tx: &mut Transaction<'static, Self>,
        items: &[ReviewItem],
        supersede: &[Supersede],
    ) -> SinkResult<()> {
        let mut st = Statement::default();
        let parts = review_parts(&mut st, items, supersede)?;
        if parts.is_empty() {
            return Ok(());
        }
        sqlx::query_with(
            AssertSqlSafe(format!("WITH {} SELECT 1", parts.join(",\n"))),
            st.args,
        )
        .execute(&mut **tx)
        .await?;
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
