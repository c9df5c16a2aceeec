//! PostgreSQL: set-based SQL over `UNNEST` of bound arrays, `SELECT … FOR
//! UPDATE` row locks, savepoints for bisection.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row as _, Transaction};

use super::plan::RowWrite;
use super::{
    BatchFilter, Database, LedgerEntry, LogEntry, LoggedChange, PartitionKey, SinkError,
    SinkResult, Tx, migrate,
};
use crate::config::DatabaseConfig;
use crate::event::{DataType, Row};
use crate::message::{OutMessage, decode_headers, encode_headers};

/// SQL texts that name the (configurable) target table, built once.
#[derive(Debug)]
struct Sql {
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

/// Upper bound for closing the pool.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

pub struct PgDatabase {
    pool: PgPool,
    sql: std::sync::Arc<Sql>,
}

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
        Ok(PgDatabase {
            pool,
            sql: std::sync::Arc::new(Sql::new(&cfg.target_table)),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
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

pub struct PgTx {
    tx: Transaction<'static, Postgres>,
    sql: std::sync::Arc<Sql>,
}

#[async_trait]
impl Tx for PgTx {
    async fn lock_watermark(&mut self, key: &PartitionKey) -> SinkResult<i64> {
        let select = "SELECT next_offset FROM govsync_watermark \
                      WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3 FOR UPDATE";
        let found: Option<i64> = sqlx::query_scalar(select)
            .bind(&key.group)
            .bind(&key.topic)
            .bind(key.partition)
            .fetch_optional(&mut *self.tx)
            .await?;
        if let Some(w) = found {
            return Ok(w);
        }
        sqlx::query(
            "INSERT INTO govsync_watermark (consumer_group, topic, partition_id, next_offset) \
             VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
        )
        .bind(&key.group)
        .bind(&key.topic)
        .bind(key.partition)
        .execute(&mut *self.tx)
        .await?;
        Ok(sqlx::query_scalar(select)
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
             WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3 AND next_offset > $4 AND next_offset <= $5 \
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
            .bind(ids)
            .fetch_all(&mut *self.tx)
            .await?;
        Ok(rows.iter().map(row_from).collect::<Result<_, _>>()?)
    }

    async fn read_rows(&mut self, ids: &[String]) -> SinkResult<HashMap<String, Row>> {
        let rows = sqlx::query(AssertSqlSafe(self.sql.read_rows.clone()))
            .bind(ids)
            .fetch_all(&mut *self.tx)
            .await?;
        Ok(rows.iter().map(row_from).collect::<Result<_, _>>()?)
    }

    async fn seen_events(&mut self, ids: &[String]) -> SinkResult<HashSet<String>> {
        let found: Vec<String> =
            sqlx::query_scalar("SELECT event_id FROM govsync_change_log WHERE event_id = ANY($1)")
                .bind(ids)
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
             WHERE customer_id = ANY($1) AND outcome IN ('applied', 'flagged') GROUP BY customer_id, data_type",
        )
        .bind(ids)
        .fetch_all(&mut *self.tx)
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

    async fn savepoint(&mut self) -> SinkResult<()> {
        sqlx::query("SAVEPOINT govsync_write")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn rollback_to_savepoint(&mut self) -> SinkResult<()> {
        sqlx::query("ROLLBACK TO SAVEPOINT govsync_write")
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
            .execute(&mut *self.tx)
            .await?;
        }
        if !updates.is_empty() {
            let q = sqlx::query(AssertSqlSafe(self.sql.update.clone()));
            let done = RowArrays::of(updates)
                .bind(q)
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
            let arrays = RowArrays::of(inserts);
            let names = arrays.name.clone();
            let q = sqlx::query(AssertSqlSafe(self.sql.insert.clone()));
            arrays.bind(q).bind(names).execute(&mut *self.tx).await?;
        }
        if !deletes.is_empty() {
            sqlx::query(AssertSqlSafe(self.sql.delete.clone()))
                .bind(deletes)
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
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn prune_outbox(&mut self, key: &PartitionKey, upto: i64) -> SinkResult<()> {
        sqlx::query(
            "DELETE FROM govsync_outbox WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3 AND next_offset <= $4",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&e.batch_id)
        .bind(&e.kind)
        .bind(&e.group)
        .bind(&e.topic)
        .bind(e.partition)
        .bind(e.first_offset)
        .bind(e.last_offset)
        .bind(e.records as i32)
        .bind(serde_json::to_string(&e.counts).unwrap_or_default())
        .bind(e.started_at)
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
            "UPDATE govsync_watermark SET next_offset = $4, batch_id = $5, updated_at = now() \
             WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3 AND next_offset <= $4",
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
             WHERE batch_id = $1 AND outcome IN ('applied', 'flagged') ORDER BY id",
        )
        .bind(batch_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(logged_change).collect()
    }

    async fn set_batch_status(
        &mut self,
        batch_id: &str,
        status: &str,
    ) -> SinkResult<Option<String>> {
        let prev: Option<String> =
            sqlx::query_scalar("SELECT status FROM govsync_batch WHERE batch_id = $1 FOR UPDATE")
                .bind(batch_id)
                .fetch_optional(&mut *self.tx)
                .await?;
        sqlx::query("UPDATE govsync_batch SET status = $2 WHERE batch_id = $1")
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

fn logged_change(r: &PgRow) -> SinkResult<LoggedChange> {
    let parse = |s: Option<String>| {
        s.and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    Ok(LoggedChange {
        event_id: r.try_get(0)?,
        customer_id: r.try_get(1)?,
        data_type: r.try_get(2)?,
        operation: r.try_get(3)?,
        before: parse(r.try_get(4)?),
        after: parse(r.try_get(5)?),
    })
}

fn ledger_from(r: &PgRow) -> SinkResult<LedgerEntry> {
    let counts: String = r.try_get(8)?;
    Ok(LedgerEntry {
        batch_id: r.try_get(0)?,
        kind: r.try_get(1)?,
        group: r.try_get(2)?,
        topic: r.try_get(3)?,
        partition: r.try_get(4)?,
        first_offset: r.try_get(5)?,
        last_offset: r.try_get(6)?,
        records: r.try_get::<i32, _>(7)? as i64,
        counts: serde_json::from_str(&counts).unwrap_or_default(),
        started_at: r.try_get(9)?,
        duration_ms: r.try_get(10)?,
        attempts: r.try_get(11)?,
        status: r.try_get(12)?,
    })
}

#[async_trait]
impl Database for PgDatabase {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn begin(&self) -> SinkResult<Box<dyn Tx>> {
        let tx = self.pool.begin().await?;
        Ok(Box::new(PgTx {
            tx,
            sql: self.sql.clone(),
        }))
    }

    async fn watermark(&self, key: &PartitionKey) -> SinkResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT next_offset FROM govsync_watermark WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3",
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
            migrate::POSTGRES,
            migrate::POSTGRES_DEV,
            with_target_table,
        )
        .await
    }

    async fn batches(&self, f: &BatchFilter) -> SinkResult<Vec<LedgerEntry>> {
        let rows = sqlx::query(
            "SELECT batch_id, kind, consumer_group, topic, partition_id, first_offset, last_offset, records, counts, \
             started_at, duration_ms, attempts, status FROM govsync_batch \
             WHERE ($1::text IS NULL OR topic = $1) AND ($2::int4 IS NULL OR partition_id = $2) \
             AND ($3::text IS NULL OR status = $3) AND ($4::timestamptz IS NULL OR started_at >= $4) \
             AND ($5::text IS NULL OR batch_id = $5) \
             ORDER BY started_at DESC, batch_id LIMIT $6",
        )
        .bind(&f.topic)
        .bind(f.partition)
        .bind(&f.status)
        .bind(f.since)
        .bind(&f.batch_id)
        .bind(if f.limit > 0 { f.limit } else { 50 })
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ledger_from).collect()
    }

    /// Closes the pool, waiting at most [`CLOSE_TIMEOUT`]: a connection
    /// whose server went silent (a cut network) would hold the close, and
    /// with it a shutdown, for ever.
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
