//! PostgreSQL: set-based SQL over `UNNEST` of bound arrays, `SELECT … FOR
//! UPDATE` row locks, savepoints for bisection.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row as _, Transaction};

use super::plan::RowWrite;
use super::sqlx_common::{Arg, Dialect, SqlxDatabase};
use super::{LogEntry, PartitionKey, SinkError, SinkResult, migrate};
use crate::config::DatabaseConfig;
use crate::event::{DataType, Row};
use crate::message::{OutMessage, encode_headers};

/// SQL texts that name the (configurable) target table, built once.
#[derive(Debug)]
pub struct Sql {
    lock_rows: String,
    read_rows: String,
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
                "SELECT {ROW_COLUMNS} FROM {table} WHERE customer_id = ANY($1) ORDER BY customer_id FOR UPDATE"
            ),
            read_rows: format!("SELECT {ROW_COLUMNS} FROM {table} WHERE customer_id = ANY($1)"),
            update: format!(
                "UPDATE {table} AS c SET address = u.address, geo_lat = u.geo_lat, geo_lon = u.geo_lon, \
                 geo_accuracy = u.geo_accuracy, id_card = u.id_card, phone = u.phone, carrier_info = u.carrier_info, \
                 quality_score = u.quality_score, validation_status = u.validation_status, review_flag = u.review_flag, \
                 review_priority = u.review_priority, last_governance_time = u.last_governance_time, version = u.version \
                 FROM UNNEST($1::text[], $2::text[], $3::float8[], $4::float8[], $5::text[], $6::text[], $7::text[], \
                 $8::text[], $9::float8[], $10::text[], $11::bool[], $12::text[], $13::timestamptz[], $14::int8[]) \
                 AS u(customer_id, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, quality_score, \
                 validation_status, review_flag, review_priority, last_governance_time, version) \
                 WHERE c.customer_id = u.customer_id"
            ),
            insert: format!(
                "INSERT INTO {table} (customer_id, address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, \
                 quality_score, validation_status, review_flag, review_priority, last_governance_time, version, name) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::float8[], $4::float8[], $5::text[], $6::text[], \
                 $7::text[], $8::text[], $9::float8[], $10::text[], $11::bool[], $12::text[], $13::timestamptz[], \
                 $14::int8[], $15::text[])"
            ),
            delete: format!("DELETE FROM {table} WHERE customer_id = ANY($1)"),
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
            review_flag: r.try_get(10)?,
            review_priority: r.try_get(11)?,
            last_governance_time: r.try_get(12)?,
            last_update: r.try_get(13)?,
            version: r.try_get(14)?,
        },
    ))
}

/// Column arrays of row writes, in the order of `Sql::update`/`insert`.
#[derive(Default)]
struct RowArrays {
    id: Vec<String>,
    address: Vec<Option<String>>,
    lat: Vec<Option<f64>>,
    lon: Vec<Option<f64>>,
    accuracy: Vec<Option<String>>,
    id_card: Vec<Option<String>>,
    phone: Vec<Option<String>>,
    carrier: Vec<Option<String>>,
    score: Vec<Option<f64>>,
    status: Vec<Option<String>>,
    flag: Vec<Option<bool>>,
    priority: Vec<Option<String>>,
    gov_time: Vec<Option<DateTime<Utc>>>,
    version: Vec<i64>,
    name: Vec<Option<String>>,
}

impl RowArrays {
    fn of(writes: &[RowWrite]) -> Self {
        let mut a = RowArrays::default();
        for w in writes {
            let r = &w.row;
            a.id.push(w.customer_id.clone());
            a.address.push(r.address.clone());
            a.lat.push(r.geo_lat);
            a.lon.push(r.geo_lon);
            a.accuracy.push(r.geo_accuracy.clone());
            a.id_card.push(r.id_card.clone());
            a.phone.push(r.phone.clone());
            a.carrier.push(r.carrier_info.clone());
            a.score.push(r.quality_score);
            a.status.push(r.validation_status.clone());
            a.flag.push(r.review_flag);
            a.priority.push(r.review_priority.clone());
            a.gov_time.push(r.last_governance_time);
            a.version.push(r.version);
            a.name.push(w.name.clone());
        }
        a
    }

    fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        q.bind(self.id)
            .bind(self.address)
            .bind(self.lat)
            .bind(self.lon)
            .bind(self.accuracy)
            .bind(self.id_card)
            .bind(self.phone)
            .bind(self.carrier)
            .bind(self.score)
            .bind(self.status)
            .bind(self.flag)
            .bind(self.priority)
            .bind(self.gov_time)
            .bind(self.version)
    }
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

    async fn lock_rows(
        tx: &mut Transaction<'static, Self>,
        sql: &Sql,
        ids: &[String],
    ) -> SinkResult<HashMap<String, Row>> {
        let rows = sqlx::query(AssertSqlSafe(sql.lock_rows.clone()))
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?;
        Ok(rows.iter().map(row_from).collect::<Result<_, _>>()?)
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
        Ok(rows.iter().map(row_from).collect::<Result<_, _>>()?)
    }

    async fn seen_events(
        tx: &mut Transaction<'static, Self>,
        ids: &[String],
    ) -> SinkResult<HashSet<String>> {
        let found: Vec<String> =
            sqlx::query_scalar("SELECT event_id FROM govsync_change_log WHERE event_id = ANY($1)")
                .bind(ids)
                .fetch_all(&mut **tx)
                .await?;
        Ok(found.into_iter().collect())
    }

    async fn last_governed(
        tx: &mut Transaction<'static, Self>,
        ids: &[String],
    ) -> SinkResult<HashMap<(String, DataType), DateTime<Utc>>> {
        let rows = sqlx::query(
            "SELECT customer_id, data_type, max(governed_at) FROM govsync_change_log \
             WHERE customer_id = ANY($1) AND outcome IN ('applied', 'flagged') GROUP BY customer_id, data_type",
        )
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
        let mut out = HashMap::new();
        for r in rows {
            let dt: String = r.try_get(1)?;
            if let Some(dt) = DataType::parse(&dt) {
                out.insert((r.try_get(0)?, dt), r.try_get(2)?);
            }
        }
        Ok(out)
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
            sqlx::query(
                "INSERT INTO govsync_change_log (batch_id, event_id, customer_id, data_type, operation, outcome, \
                 governed_at, before_image, after_image, source_partition, source_offset) \
                 SELECT $1, u.* FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::timestamptz[], $8::text[], $9::text[], $10::int4[], $11::int8[]) AS u",
            )
            .bind(batch_id)
            .bind(log.iter().map(|l| l.event_id.as_str()).collect::<Vec<_>>())
            .bind(log.iter().map(|l| l.customer_id.as_str()).collect::<Vec<_>>())
            .bind(log.iter().map(|l| l.data_type.as_str()).collect::<Vec<_>>())
            .bind(log.iter().map(|l| l.operation.as_str()).collect::<Vec<_>>())
            .bind(log.iter().map(|l| l.outcome).collect::<Vec<_>>())
            .bind(log.iter().map(|l| l.governed_at).collect::<Vec<_>>())
            .bind(log.iter().map(|l| l.before.as_deref()).collect::<Vec<_>>())
            .bind(log.iter().map(|l| l.after.as_deref()).collect::<Vec<_>>())
            .bind(log.iter().map(|l| l.partition).collect::<Vec<_>>())
            .bind(log.iter().map(|l| l.offset).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
        }
        if !updates.is_empty() {
            let q = sqlx::query(AssertSqlSafe(sql.update.clone()));
            let done = RowArrays::of(updates).bind(q).execute(&mut **tx).await?;
            if done.rows_affected() != updates.len() as u64 {
                return Err(SinkError::Verification(format!(
                    "updated {} rows, expected {}",
                    done.rows_affected(),
                    updates.len()
                )));
            }
        }
        if !inserts.is_empty() {
            let arrays = RowArrays::of(inserts);
            let names = arrays.name.clone();
            let q = sqlx::query(AssertSqlSafe(sql.insert.clone()));
            arrays.bind(q).bind(names).execute(&mut **tx).await?;
        }
        if !deletes.is_empty() {
            sqlx::query(AssertSqlSafe(sql.delete.clone()))
                .bind(deletes)
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
        sqlx::query(
            "INSERT INTO govsync_outbox (batch_id, seq, consumer_group, topic, partition_id, next_offset, dest_topic, \
             msg_key, msg_value, headers) \
             SELECT $1, u.seq, $2, $3, $4, $5, u.dest, u.k, u.v, u.h \
             FROM UNNEST($6::int4[], $7::text[], $8::bytea[], $9::bytea[], $10::bytea[]) AS u(seq, dest, k, v, h)",
        )
        .bind(batch_id)
        .bind(&key.group)
        .bind(&key.topic)
        .bind(key.partition)
        .bind(next_offset)
        .bind((0..msgs.len() as i32).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.topic.as_str()).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.key.as_deref()).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.payload.as_deref()).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| encode_headers(&m.headers)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
