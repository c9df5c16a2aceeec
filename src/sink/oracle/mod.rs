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
//! - the change log, the row updates, inserts and deletes, the row states,
//!   the review items and their supersession and the outbox are array DML
//!   (`Batch`): one round trip per statement kind;
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
//! - the target table is the business's own (`database.mapping`, checked
//!   against ALL_TAB_COLUMNS once, [`catalog`]): binds carry govsync's
//!   logical values and the SQL stores them in the column's encoding (a
//!   boolean 1/0 in a NUMBER or 'Y'/'N' in a CHAR(1), a score in a
//!   NUMBER(p,s), a time as local time in a DATE or TIMESTAMP) and reads
//!   them back the same way; a table without a version column has govsync's
//!   write count in `govsync_row_state.version`;
//! - identifiers come only from the config and the catalog: the table's and
//!   its columns' names as the dictionary spells them (matched against the
//!   config's), quoted, and `database.schema` as the session's current
//!   schema.
//!
//! Oracle stores an empty string as NULL. A record that would write `""` to
//! a mapped column could not be verified after the write, so it is rejected
//! as a record-level error (dead-lettered alone) before any SQL runs.
//!
//! Migrations: sqlx has no Oracle driver, so the DDL files of
//! `migrations/oracle/` are embedded and applied here, statement by
//! statement, tracked in `GOVSYNC_MIGRATIONS` (version + checksum).
//!
//! # Files
//!
//! - this file: [`OracleDatabase`] (the [`Database`]), connecting, loading
//!   the client library;
//! - [`blocking`]: the bounded pool of blocking threads every call runs on;
//! - [`catalog`]: the target table as the data dictionary describes it;
//! - [`sql`]: every SQL text the sink sends;
//! - [`binds`]: the bind values of those texts, and the rows Oracle cannot
//!   store;
//! - [`exec`]: statement helpers (execute, array DML, queries, id lists);
//! - [`tx`]: sessions and the batch transaction ([`OracleTx`]);
//! - [`migrate`]: the runner of the embedded migrations.

pub mod binds;
pub mod blocking;
pub mod catalog;
pub mod exec;
#[cfg(test)]
mod fixtures;
pub mod migrate;
pub mod review;
pub mod sql;
pub mod statements;
pub mod tx;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{NaiveDateTime, Utc};
use oracle::Connection;
use oracle::pool::{CloseMode, GetMode, Pool, PoolBuilder};

pub use blocking::BlockingPool;
pub use tx::OracleTx;

use super::error::ORACLE_CLIENT_URL;
use super::table::{self, TableMap};
use super::{
    BatchFilter, Database, LedgerEntry, PartitionKey, SinkError, SinkResult, StoredReviewItem, Tx,
};
use crate::config::{DatabaseConfig, TableMapping};
use binds::{Bind, batches_binds, review_items_binds};
use blocking::blocking;
use exec::{exec, params, query, read_watermark};
use migrate::apply_migrations;
use sql::{BATCHES_LIST, CHANGE_LOG_PRUNE, DEV_MIGRATIONS, MIGRATIONS, Sql, WATERMARK_READ};
use tx::{Session, SessionSetup};

/// Statements cached per session (the sink runs about 30 distinct texts).
const STMT_CACHE: u32 = 64;

pub struct OracleDatabase {
    pool: Pool,
    blocking: BlockingPool,
    setup: SessionSetup,
    /// `database.target_table`, `database.mapping`, `database.schema`
    /// as configured and `database.lock_timeout`: what [`Sql`] is built
    /// from once the catalog has been read.
    target: Target,
    /// The target table's statements, built on first use
    /// ([`Database::check_table`], else the first [`Database::begin`]).
    table: tokio::sync::OnceCell<Arc<Sql>>,
}

/// What the target table's statements are built from.
#[derive(Debug, Clone)]
struct Target {
    table: String,
    mapping: TableMapping,
    schema: Option<String>,
    lock_wait: Duration,
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
                let pool = PoolBuilder::new(user, password.expose(), target)
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
            target: Target {
                table: cfg.target_table.clone(),
                mapping: cfg.mapping.clone(),
                schema: cfg.schema.clone(),
                lock_wait: cfg.lock_timeout,
            },
            table: tokio::sync::OnceCell::new(),
        })
    }

    /// The target table's statements: its catalog read and checked against
    /// `database.mapping` once (every problem reported at once, a fatal
    /// error), then shared by every transaction.
    async fn table(&self) -> SinkResult<Arc<Sql>> {
        self.table
            .get_or_try_init(|| async {
                let t = self.target.clone();
                let (name, schema) = (t.table.clone(), t.schema.clone());
                let found = self
                    .one_off(move |conn| catalog::read_catalog(conn, &name, schema.as_deref()))
                    .await?;
                let map = table::resolve_found(&t.mapping, &t.table, found)?;
                if let Some(e) = sql::unsupported(&map, &t.table) {
                    return Err(SinkError::Fatal(e.to_string()));
                }
                Ok(Arc::new(Sql::new(Arc::new(map), t.lock_wait)))
            })
            .await
            .cloned()
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
    async fn check_table(&self) -> SinkResult<Arc<TableMap>> {
        Ok(self.table().await?.map.clone())
    }

    fn kind(&self) -> &'static str {
        "oracle"
    }

    async fn begin(&self) -> SinkResult<Box<dyn Tx>> {
        // Before the slot: reading the catalog takes one of its own.
        let sql = self.table().await?;
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
            sql,
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

    /// Deletes what was logged before `now - retention` (committed in
    /// its own transaction).
    async fn maintain(&self, retention: Duration) -> SinkResult<String> {
        let Some(horizon) = super::retention_horizon(Utc::now(), retention) else {
            return Ok("retention reaches before year 1: nothing to delete".into());
        };
        self.one_off(move |conn| {
            let n = exec(
                conn,
                CHANGE_LOG_PRUNE,
                &[("p_horizon", Bind::Time(Some(horizon)))],
            )?;
            let horizon = Bind::Time(Some(horizon));
            let items = exec(
                conn,
                review::REVIEW_PRUNE,
                &[("p_horizon", horizon.clone())],
            )?;
            let decisions = exec(conn, review::DECISIONS_PRUNE, &[("p_horizon", horizon)])?;
            conn.commit()?;
            Ok(format!(
                "{n} change-log rows deleted; {items} closed review items and {decisions} \
                 decisions deleted"
            ))
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

    async fn review_items(&self, status: Option<&str>) -> SinkResult<Vec<StoredReviewItem>> {
        let binds = review_items_binds(status);
        self.one_off(move |conn| {
            query(
                conn,
                review::REVIEW_ITEMS_LIST,
                &params(&binds),
                review::stored_item,
            )
        })
        .await
    }

    async fn review_item(&self, event_id: &str) -> SinkResult<Option<StoredReviewItem>> {
        let binds: binds::Binds = vec![("p_event_id", binds::s(event_id))];
        self.one_off(move |conn| {
            query(
                conn,
                review::REVIEW_ITEM_ONE,
                &params(&binds),
                review::stored_item,
            )
        })
        .await
        .map(|v| v.into_iter().next())
    }

    async fn review_decisions(
        &self,
        event_id: &str,
    ) -> SinkResult<Vec<crate::sink::StoredDecision>> {
        let binds: binds::Binds = vec![("p_event_id", binds::s(event_id))];
        self.one_off(move |conn| {
            query(
                conn,
                review::DECISIONS_READ,
                &params(&binds),
                review::stored_decision,
            )
        })
        .await
    }

    async fn open_reviews(&self) -> SinkResult<Vec<crate::sink::OpenReviews>> {
        self.one_off(move |conn| {
            query(conn, sql::OPEN_REVIEWS, &[], |r| {
                Ok(crate::sink::OpenReviews {
                    priority: r.get(0)?,
                    region_code: r.get(1)?,
                    count: r.get(2)?,
                    oldest: r
                        .get::<_, Option<chrono::NaiveDateTime>>(3)?
                        .map(|t| t.and_utc()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
