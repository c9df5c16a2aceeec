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
//! The tests DROP and recreate govsync's tables, CUSTOMER_PROFILE and
//! CUST_BASE in the user's schema, so they refuse a user whose name does
//! not contain `test` unless GOVSYNC_ORACLE_DROP_OK=1.
//!
//! Besides the dev table, the suite runs on CUST_BASE ([`cust_base`]): a
//! bank's table with its own names, no version column, the review flag as
//! CHAR(1) 'Y'/'N', the score as NUMBER(3,2) and the times as DATE in
//! +08:00, through `database.mapping` (tests/common/cust_base.rs).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use govsync::config::RawConfig;
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
const TABLES: [&str; 8] = [
    "GOVSYNC_CHANGE_LOG",
    "GOVSYNC_BATCH",
    "GOVSYNC_WATERMARK",
    "GOVSYNC_OUTBOX",
    "GOVSYNC_ROW_STATE",
    "GOVSYNC_MIGRATIONS",
    "CUSTOMER_PROFILE",
    "CUST_BASE",
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
    sink_with(url, |_| {}).await
}

/// The sink under test with `config` applied to the test's settings.
async fn sink_with(url: &str, config: impl FnOnce(&mut RawConfig)) -> Arc<dyn Database> {
    let mut raw = RawConfig::default();
    raw.database.url = url.to_string();
    raw.database.password_env = "GOVSYNC_ORACLE_PASSWORD".into();
    raw.database.pool_size = 4;
    raw.database.lock_timeout = "5s".into();
    config(&mut raw);
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

/// The suite and a test of its own on CUST_BASE: a bank's table mapped
/// through `database.mapping`, the rows read back and decoded by this
/// module's own SQL, not by govsync's adapters.
mod cust_base {
    use chrono::Duration;
    use govsync::event::{ConflictPolicy, DataType};
    use govsync::sink::Outcome;
    use serde_json::json;

    use super::*;
    use crate::common::cust_base::mapping;

    /// CRM.CUST_BASE in Oracle's types, with the columns of the shared
    /// mapping (tests/common/cust_base.rs). CUST_NO is wider than a bank's
    /// VARCHAR2(20) for the suite's prefixed ids.
    const DDL: &str = "CREATE TABLE cust_base (
        cust_no      VARCHAR2(32 CHAR) PRIMARY KEY,
        cust_nm      VARCHAR2(100 CHAR),
        addr_line    VARCHAR2(200 CHAR),
        geo_y        BINARY_DOUBLE,
        geo_x        BINARY_DOUBLE,
        geo_prec     VARCHAR2(32 CHAR),
        id_no        VARCHAR2(18 CHAR),
        mobile_no    VARCHAR2(20 CHAR),
        carrier_json CLOB,
        data_qlty    NUMBER(3,2),
        chk_status   VARCHAR2(32 CHAR),
        review_ind   CHAR(1) CHECK (review_ind IN ('Y', 'N')),
        review_lvl   VARCHAR2(16 CHAR),
        gov_ts       DATE,
        upd_ts       DATE
    )";

    /// A row under govsync's logical names; the score as its decimal text,
    /// the times as +08:00 wall-clock time, the version govsync's count.
    const SELECT: &str = "SELECT addr_line, geo_y, geo_x, geo_prec, id_no, mobile_no, carrier_json, \
        TO_CHAR(data_qlty, 'TM9'), chk_status, review_ind, review_lvl, gov_ts, upd_ts, \
        (SELECT version FROM govsync_row_state s WHERE s.customer_id = c.cust_no) \
        FROM cust_base c WHERE cust_no = :1";

    fn from_local(t: NaiveDateTime) -> DateTime<Utc> {
        (t - Duration::hours(8)).and_utc()
    }

    fn to_local(t: DateTime<Utc>) -> NaiveDateTime {
        (t + Duration::hours(8)).naive_utc()
    }

    fn flag(v: Option<String>) -> Option<bool> {
        v.map(|v| match v.as_str() {
            "Y" => true,
            "N" => false,
            other => panic!("REVIEW_IND holds {other:?}, not Y or N"),
        })
    }

    struct OracleCustBase(OracleBusiness);

    #[async_trait]
    impl Business for OracleCustBase {
        async fn seed(&self, customers: &[Customer]) {
            use ::oracle::sql_type::OracleType;
            let customers = customers.to_vec();
            self.0
                .with(move |conn| {
                    let mut b = conn
                        .batch(
                            "INSERT INTO cust_base (cust_no, cust_nm, addr_line, id_no, mobile_no, \
                             data_qlty, upd_ts) VALUES (:1, :2, :3, :4, :5, :6, :7)",
                            customers.len().max(1),
                        )
                        .build()
                        .unwrap();
                    let at = to_local(generate::seen_last_update_time());
                    for c in &customers {
                        b.append_row(&[
                            &(&c.id, &OracleType::Varchar2(128)),
                            &(&c.name, &OracleType::Varchar2(400)),
                            &(&c.raw_address, &OracleType::Varchar2(800)),
                            &(&c.id_card, &OracleType::Varchar2(72)),
                            &(&c.phone, &OracleType::Varchar2(80)),
                            &(&c.quality_score, &OracleType::BinaryDouble),
                            &at,
                        ])
                        .unwrap();
                    }
                    b.execute().unwrap();
                })
                .await
        }

        async fn business_update(&self, customer: &str, address: &str, at: DateTime<Utc>) {
            let (customer, address) = (customer.to_string(), address.to_string());
            self.0
                .with(move |conn| {
                    conn.execute(
                        "UPDATE cust_base SET addr_line = :1, upd_ts = :2 WHERE cust_no = :3",
                        &[&address, &to_local(at), &customer],
                    )
                    .unwrap();
                })
                .await
        }

        async fn row(&self, customer: &str) -> Option<Row> {
            let customer = customer.to_string();
            self.0
                .with(move |conn| {
                    let mut rows = conn.query(SELECT, &[&customer]).unwrap();
                    let r = rows.next()?.unwrap();
                    let local = |i: usize| {
                        r.get::<_, Option<NaiveDateTime>>(i)
                            .unwrap()
                            .map(from_local)
                    };
                    Some(Row {
                        address: r.get(0).unwrap(),
                        geo_lat: r.get(1).unwrap(),
                        geo_lon: r.get(2).unwrap(),
                        geo_accuracy: r.get(3).unwrap(),
                        id_card: r.get(4).unwrap(),
                        phone: r.get(5).unwrap(),
                        carrier_info: r.get(6).unwrap(),
                        quality_score: r
                            .get::<_, Option<String>>(7)
                            .unwrap()
                            .map(|s| s.parse().unwrap()),
                        validation_status: r.get(8).unwrap(),
                        review_flag: flag(r.get(9).unwrap()),
                        review_priority: r.get(10).unwrap(),
                        last_governance_time: local(11),
                        last_update: local(12),
                        version: r.get::<_, Option<i64>>(13).unwrap().unwrap_or(0),
                    })
                })
                .await
        }

        async fn count(&self, table: &str) -> i64 {
            self.0.count(table).await
        }

        async fn install_tampering_trigger(&self) -> bool {
            self.0
                .with(|conn| {
                    conn.execute(
                        "CREATE OR REPLACE TRIGGER tamper BEFORE UPDATE ON cust_base FOR EACH ROW \
                         BEGIN :NEW.addr_line := :NEW.addr_line || '!'; END;",
                        &[],
                    )
                    .unwrap();
                })
                .await;
            true
        }
    }

    /// govsync's tables reset and CUST_BASE created, before the sink reads
    /// its catalog (at its first transaction).
    async fn fresh_table(url: String, password: String) -> Arc<::oracle::Connection> {
        let conn = tokio::task::spawn_blocking(move || {
            let conn = business_session(&url, &password);
            reset(&conn);
            conn.execute(DDL, &[]).unwrap();
            conn
        })
        .await
        .unwrap();
        Arc::new(conn)
    }

    async fn with_suite(test: &str, scenario: impl AsyncFnOnce(&Suite)) {
        let _one_at_a_time = SCHEMA.lock().await;
        let Some((url, password)) = target() else {
            println!("sink::oracle::cust_base::{test} {SKIP}");
            return;
        };
        let db = sink_with(&url, |raw| *raw = mapping(raw.clone())).await;
        let conn = fresh_table(url, password).await;
        let suite = Suite {
            db,
            biz: Box::new(OracleCustBase(OracleBusiness { conn })),
            topic: "oracle.cust_base".into(),
        };
        run(&suite, scenario).await;
        suite.db.close().await;
    }

    scenario_tests!(with_suite);

    /// What CUST_BASE holds after a few batches, read by the business's
    /// own SQL: 'Y'/'N', the score rounded to NUMBER(3,2), the governance
    /// time as +08:00 wall-clock time in a DATE, govsync's write count in
    /// its own table; the DATE UPD_TS read as +08:00 for conflict
    /// detection. A mapping naming a missing column is refused before any
    /// transaction.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bank_table_keeps_its_own_encodings_and_a_missing_column_is_refused() {
        let _one_at_a_time = SCHEMA.lock().await;
        let Some((url, password)) = target() else {
            println!(
                "sink::oracle::cust_base::a_bank_table_keeps_its_own_encodings_and_a_missing_column_is_refused {SKIP}"
            );
            return;
        };
        let (user, _) = easy_connect(&url).unwrap();
        // Qualified with its owner, in lower case as an operator may write it.
        let table = format!("{user}.cust_base");
        let configure = |raw: &mut RawConfig| {
            *raw = mapping(raw.clone());
            raw.database.target_table = table.clone();
        };
        let db = sink_with(&url, configure).await;
        let conn = fresh_table(url.clone(), password).await;
        db.migrate(false).await.unwrap();
        let map = db.check_table().await.unwrap();
        assert_eq!(
            map.table,
            format!("\"{}\".\"CUST_BASE\"", user.to_uppercase())
        );
        assert_eq!(
            (map.key.as_str(), map.version.as_deref()),
            ("CUST_NO", None)
        );

        let suite = Suite {
            db,
            biz: Box::new(OracleCustBase(OracleBusiness { conn: conn.clone() })),
            topic: "oracle.bank".into(),
        };
        let cs: Vec<Customer> = generate::customers(3, 1, 121)
            .into_iter()
            .map(|mut c| {
                c.id = format!("BANK_{}", c.id);
                c
            })
            .collect();
        suite.biz.seed(&cs).await;
        let at = generate::governed_at;
        let address = generate::event(&cs[0], DataType::Address, "bank-0", at(0), false);
        let flagged = generate::bad_check_digit_event(&cs[1], "bank-1", at(1));
        let mut valid = generate::event(&cs[2], DataType::IdCard, "bank-2", at(2), false);
        valid["governance_result"]["quality_score"] = json!(0.956);
        valid["sync_operation"]["target_fields"] = json!([
            "quality_score",
            "validation_status",
            "review_flag",
            "last_governance_time"
        ]);
        let r = suite
            .apply(
                &suite.batch(0, 0, 0, &[address, flagged, valid]),
                ConflictPolicy::Review,
            )
            .await
            .unwrap();
        // Applied: UPD_TS (2024-01-10 14:30:00 in a DATE) is the +08:00
        // time the engine saw, not a later UTC one.
        assert_eq!(
            r.outcomes,
            [Outcome::Applied, Outcome::Flagged, Outcome::Applied]
        );

        /// REVIEW_IND, DATA_QLTY, GOV_TS and ADDR_LINE as stored, and
        /// govsync's count.
        type Stored = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
        );
        let stored = |id: &str| {
            let (conn, id) = (conn.clone(), id.to_string());
            async move {
                tokio::task::spawn_blocking(move || -> Stored {
                    conn.query_row_as(
                        "SELECT review_ind, TO_CHAR(data_qlty, 'TM9'), \
                         TO_CHAR(gov_ts, 'YYYY-MM-DD HH24:MI:SS'), addr_line, \
                         (SELECT version FROM govsync_row_state s WHERE s.customer_id = c.cust_no) \
                         FROM cust_base c WHERE cust_no = :1",
                        &[&id],
                    )
                    .unwrap()
                })
                .await
                .unwrap()
            }
        };
        let s = |v: &str| Some(v.to_string());
        let (ind, qlty, gov, addr, version) = stored(&cs[0].id).await;
        assert_eq!((ind, version), (None, Some(1)));
        assert_eq!(addr.as_deref(), Some(cs[0].std_address.as_str()));
        assert_eq!(qlty, s(".9"));
        assert_eq!(gov, s("2024-01-15 10:00:00"), "+08:00 wall-clock time");
        let (ind, qlty, gov, _, version) = stored(&cs[1].id).await;
        assert_eq!((ind, qlty, gov, version), (s("Y"), s(".25"), None, Some(1)));
        let (ind, qlty, gov, _, version) = stored(&cs[2].id).await;
        assert_eq!(
            (ind, qlty, gov, version),
            (s("N"), s(".96"), s("2024-01-15 10:00:02"), Some(1)),
            "0.956 rounded as NUMBER(3,2) rounds"
        );
        // What govsync reads back is what it planned (and verified).
        let row = suite.biz.row(&cs[2].id).await.unwrap();
        assert_eq!(row.quality_score, Some(0.96));
        assert_eq!(row.review_flag, Some(false));

        // The business side touches customer 0 one second after the engine
        // read it: a conflict. Customer 2's next result counts a second
        // write in govsync_row_state.
        conn.execute(
            "UPDATE cust_base SET upd_ts = upd_ts + 1/86400 WHERE cust_no = :1",
            &[&cs[0].id],
        )
        .unwrap();
        let again = generate::event(&cs[0], DataType::Address, "bank-3", at(10), false);
        let next = generate::event(&cs[2], DataType::Phone, "bank-4", at(11), false);
        let r = suite
            .apply(
                &suite.batch(0, 3, 3, &[again, next]),
                ConflictPolicy::Review,
            )
            .await
            .unwrap();
        assert_eq!(r.outcomes, [Outcome::Conflict, Outcome::Applied]);
        assert_eq!(stored(&cs[0].id).await.4, Some(1));
        let (_, _, gov, _, version) = stored(&cs[2].id).await;
        assert_eq!((gov, version), (s("2024-01-15 10:00:11"), Some(2)));
        assert_eq!(suite.db.watermark(&suite.key(0)).await.unwrap(), Some(5));
        suite.db.close().await;

        // A mapping to a column the table lacks: refused with the key and
        // the fix, by check_table and by a batch's transaction alike.
        let bad = sink_with(&url, |raw| {
            configure(raw);
            raw.database
                .mapping
                .columns
                .insert("address".into(), "NO_SUCH_COL".into());
        })
        .await;
        let e = bad.check_table().await.unwrap_err().to_string();
        assert!(
            e.contains("database.mapping.columns.address = \"NO_SUCH_COL\""),
            "{e}"
        );
        assert!(e.contains("has no column NO_SUCH_COL"), "{e}");
        match bad.begin().await {
            Ok(_) => panic!("a transaction began on a mapping the table does not fit"),
            Err(e) => assert!(e.to_string().contains("NO_SUCH_COL"), "{e}"),
        }
        bad.close().await;
    }
}
