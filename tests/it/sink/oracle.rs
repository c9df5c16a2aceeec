//! The sink test suite ([`super`]) against Oracle. Oracle does
//! not run on the build machines: these tests run when GOVSYNC_ORACLE_URL
//! (and GOVSYNC_ORACLE_PASSWORD) name a database, e.g. the Oracle Free of
//! docker-compose.yml, and print why they were skipped otherwise:
//!
//! ```text
//! docker compose up -d oracle
//! GOVSYNC_ORACLE_URL=oracle://govsync_test@localhost:1521/FREEPDB1 \
//! GOVSYNC_ORACLE_PASSWORD=govsync_test cargo test --test it sink::oracle -- --nocapture
//! ```
//!
//! The tests DROP and recreate govsync's tables and CUSTOMER_PROFILE in the
//! user's schema, so they refuse a user whose name does not contain `test`
//! unless GOVSYNC_ORACLE_DROP_OK=1.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use govsync::demo::generate::{self, Customer};
use govsync::event::Row;
use govsync::sink::Database;
use govsync::sink::oracle::easy_connect;

use super::{Business, Suite, run, scenario_tests};

const SKIP: &str = "skipped: set GOVSYNC_ORACLE_URL=oracle://govsync_test@localhost:1521/FREEPDB1 and \
    GOVSYNC_ORACLE_PASSWORD=govsync_test (`docker compose up -d oracle` starts that database; see README, \
    \"Oracle and the production stack\")";

/// The tests share the test user's schema and reset it: one at a time.
static SCHEMA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Tables the tests drop before they start (the schema is the test's own).
const TABLES: [&str; 6] = [
    "GOVSYNC_CHANGE_LOG",
    "GOVSYNC_BATCH",
    "GOVSYNC_WATERMARK",
    "GOVSYNC_OUTBOX",
    "GOVSYNC_MIGRATIONS",
    "CUSTOMER_PROFILE",
];

/// The URL and password of the test database, or `None` (skip).
fn target() -> Option<(String, String)> {
    let url = std::env::var("GOVSYNC_ORACLE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let password = std::env::var("GOVSYNC_ORACLE_PASSWORD")
        .expect("GOVSYNC_ORACLE_URL is set: set GOVSYNC_ORACLE_PASSWORD too");
    Some((url, password))
}

/// A plain session of the test user (autocommit): the business side.
fn business_session(url: &str, password: &str) -> ::oracle::Connection {
    let (user, target) = easy_connect(url).unwrap();
    assert!(
        user.to_lowercase().contains("test")
            || std::env::var("GOVSYNC_ORACLE_DROP_OK").as_deref() == Ok("1"),
        "the Oracle tests drop govsync's tables in the schema of `{user}`: use a test user \
         (docker-compose creates govsync_test) or set GOVSYNC_ORACLE_DROP_OK=1"
    );
    let mut conn = ::oracle::Connection::connect(&user, password, &target).unwrap_or_else(|e| {
        panic!("cannot connect to {url} ({e}); is it up? `docker compose up -d oracle`, see README")
    });
    conn.set_autocommit(true);
    conn
}

fn reset(conn: &::oracle::Connection) {
    for t in TABLES {
        if let Err(e) = conn.execute(&format!("DROP TABLE {t} CASCADE CONSTRAINTS PURGE"), &[])
            && e.db_error().map(|d| d.code()) != Some(942)
        {
            panic!("dropping {t}: {e}");
        }
    }
}

/// The sink under test, through the same path as `govsync run`.
async fn sink(url: &str) -> Arc<dyn Database> {
    let mut raw = govsync::config::RawConfig::default();
    raw.database.url = url.to_string();
    raw.database.password_env = "GOVSYNC_ORACLE_PASSWORD".into();
    raw.database.pool_size = 4;
    raw.database.lock_timeout = "5s".into();
    let cfg = govsync::config::check(raw).expect("the Oracle test config is valid");
    govsync::sink::connect(&cfg.database)
        .await
        .unwrap_or_else(|e| panic!("connecting the Oracle sink to {url}: {e}"))
}

struct OracleBusiness {
    conn: Arc<::oracle::Connection>,
}

impl OracleBusiness {
    /// Runs `f` on the session, off the async workers.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&::oracle::Connection) -> T + Send + 'static,
    ) -> T {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&conn)).await.unwrap()
    }
}

fn seeded_last_update() -> DateTime<Utc> {
    govsync::event::rules::parse_loose_time(generate::seen_last_update(), generate::local())
        .unwrap()
}

#[async_trait]
impl Business for OracleBusiness {
    async fn seed(&self, customers: &[Customer]) {
        use ::oracle::sql_type::OracleType;
        let customers = customers.to_vec();
        self.with(move |conn| {
            let mut b = conn
                .batch(
                    "INSERT INTO customer_profile (customer_id, name, address, id_card, phone, quality_score, \
                     last_update, version) VALUES (:1, :2, :3, :4, :5, :6, :7, 0)",
                    customers.len().max(1),
                )
                .build()
                .unwrap();
            let at = seeded_last_update();
            for c in &customers {
                b.append_row(&[
                    &(&c.id, &OracleType::Varchar2(64)),
                    &(&c.name, &OracleType::Varchar2(400)),
                    &(&c.raw_address, &OracleType::Varchar2(800)),
                    &(&c.id_card, &OracleType::Varchar2(72)),
                    &(&c.phone, &OracleType::Varchar2(80)),
                    // BINARY_DOUBLE: the exact value, as govsync binds it.
                    &(&c.quality_score, &OracleType::BinaryDouble),
                    &at,
                ])
                .unwrap();
            }
            b.execute().unwrap();
        })
        .await
    }

    async fn business_update(&self, customer: &str, address: &str, last_update: DateTime<Utc>) {
        let (customer, address) = (customer.to_string(), address.to_string());
        self.with(move |conn| {
            conn.execute(
                "UPDATE customer_profile SET address = :1, last_update = :2 WHERE customer_id = :3",
                &[&address, &last_update, &customer],
            )
            .unwrap();
        })
        .await
    }

    async fn row(&self, customer: &str) -> Option<Row> {
        let customer = customer.to_string();
        self.with(move |conn| {
            let rows = conn
                .query(
                    "SELECT address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, quality_score, \
                     validation_status, review_flag, review_priority, SYS_EXTRACT_UTC(last_governance_time), \
                     SYS_EXTRACT_UTC(last_update), version FROM customer_profile WHERE customer_id = :1",
                    &[&customer],
                )
                .unwrap();
            let utc = |t: Option<NaiveDateTime>| t.map(|t| t.and_utc());
            rows.map(|r| {
                let r = r.unwrap();
                Row {
                    address: r.get(0).unwrap(),
                    geo_lat: r.get(1).unwrap(),
                    geo_lon: r.get(2).unwrap(),
                    geo_accuracy: r.get(3).unwrap(),
                    id_card: r.get(4).unwrap(),
                    phone: r.get(5).unwrap(),
                    carrier_info: r.get(6).unwrap(),
                    quality_score: r.get(7).unwrap(),
                    validation_status: r.get(8).unwrap(),
                    review_flag: r.get::<_, Option<i64>>(9).unwrap().map(|v| v != 0),
                    review_priority: r.get(10).unwrap(),
                    last_governance_time: utc(r.get(11).unwrap()),
                    last_update: utc(r.get(12).unwrap()),
                    version: r.get(13).unwrap(),
                }
            })
            .next()
        })
        .await
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        self.with(move |conn| conn.query_row_as::<i64>(&sql, &[]).unwrap())
            .await
    }

    async fn install_tampering_trigger(&self) -> bool {
        self.with(|conn| {
            conn.execute(
                "CREATE OR REPLACE TRIGGER tamper BEFORE UPDATE ON customer_profile FOR EACH ROW \
                 BEGIN :NEW.address := :NEW.address || '!'; END;",
                &[],
            )
            .unwrap();
        })
        .await;
        true
    }
}

/// The suite on freshly reset tables, or `None` (skipped, saying why)
/// when GOVSYNC_ORACLE_URL is not set.
async fn fresh_suite(test: &str) -> Option<Suite> {
    let Some((url, password)) = target() else {
        println!("sink::oracle::{test} {SKIP}");
        return None;
    };
    // The sink first: a missing Oracle client is reported with install advice.
    let db = sink(&url).await;
    let conn = tokio::task::spawn_blocking(move || {
        let conn = business_session(&url, &password);
        reset(&conn);
        conn
    })
    .await
    .unwrap();
    // Migrating twice: the second run finds everything recorded.
    db.migrate(true).await.unwrap();
    let again = db.migrate(true).await.unwrap();
    assert_eq!(again, ["govsync tables", "customer_profile (dev)"]);
    Some(Suite {
        db,
        biz: Box::new(OracleBusiness {
            conn: Arc::new(conn),
        }),
        topic: "oracle.results".into(),
    })
}

async fn with_suite(test: &str, scenario: impl AsyncFnOnce(&Suite)) {
    let _one_at_a_time = SCHEMA.lock().await;
    let Some(suite) = fresh_suite(test).await else {
        return;
    };
    run(&suite, scenario).await;
    suite.db.close().await;
}

scenario_tests!(with_suite);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_queue_for_the_pool_and_a_dropped_transaction_rolls_back() {
    let _one_at_a_time = SCHEMA.lock().await;
    let Some(suite) =
        fresh_suite("sessions_queue_for_the_pool_and_a_dropped_transaction_rolls_back").await
    else {
        return;
    };
    session_basics(suite.db.as_ref()).await;
    suite.db.close().await;
}

/// What the suite does not reach: more transactions at once than the pool
/// holds, and the rollback of a transaction dropped uncommitted.
async fn session_basics(db: &dyn Database) {
    db.ping().await.unwrap();
    // Ten transactions on a pool of four: they queue for a session instead
    // of failing or blocking the runtime.
    let started = std::time::Instant::now();
    futures::future::join_all((0..10).map(|_| async {
        let tx = db.begin().await.unwrap();
        tx.commit().await.unwrap();
    }))
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // An uncommitted transaction is rolled back when dropped: its watermark
    // row (created by the MERGE) never becomes visible.
    let key = govsync::sink::PartitionKey {
        group: "basics".into(),
        topic: "oracle.basics".into(),
        partition: 0,
    };
    {
        let mut tx = db.begin().await.unwrap();
        assert_eq!(tx.lock_watermark(&key).await.unwrap(), 0);
    }
    // The rollback runs on a blocking thread; the next lock waits for it.
    let mut tx = db.begin().await.unwrap();
    assert_eq!(tx.lock_watermark(&key).await.unwrap(), 0);
    drop(tx);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(db.watermark(&key).await.unwrap(), None);
}
