//! The sink suite against the business's own table (issue 14): every
//! scenario again, on a table shaped like a bank's CRM table instead of the
//! dev `customer_profile`: other names (the config spells them in upper
//! case, the catalog in lower case), no version column (govsync counts its
//! writes in `govsync_row_state`), the review flag as CHAR(1) 'Y'/'N', the
//! score as NUMERIC(3,2), the times as TIMESTAMP without a zone in +08:00.
//! The rows are read back here with SQL of this file's own, and the
//! encodings undone here, not by govsync's adapters.

use chrono::{DateTime, NaiveDateTime, Utc};
use govsync::config::RawConfig;
use govsync::demo::generate::{self, Customer};
use govsync::event::Row;

use super::{Suite, run, scenario_tests};

use crate::common::cust_base::mapping;

const SELECT: &str = "SELECT addr_line, geo_y, geo_x, geo_prec, id_no, mobile_no, carrier_json, data_qlty, \
     chk_status, review_ind, review_lvl, gov_ts, upd_ts, \
     (SELECT version FROM govsync_row_state s WHERE s.customer_id = c.cust_no) \
     FROM cust_base c WHERE cust_no = ";

/// +08:00 wall-clock time as UTC.
fn from_local(t: NaiveDateTime) -> DateTime<Utc> {
    (t - chrono::Duration::hours(8)).and_utc()
}

fn to_local(t: DateTime<Utc>) -> NaiveDateTime {
    (t + chrono::Duration::hours(8)).naive_utc()
}

fn flag(v: Option<String>) -> Option<bool> {
    v.map(|v| match v.as_str() {
        "Y" => true,
        "N" => false,
        other => panic!("review_ind holds {other:?}, not Y or N"),
    })
}

mod postgres {
    use async_trait::async_trait;
    use chrono::{DateTime, NaiveDateTime, Utc};
    use sqlx::Row as _;

    use super::super::Business;
    use super::*;
    use crate::common::harness::Env;

    struct PgCustBase {
        pg: sqlx::PgPool,
    }

    #[async_trait]
    impl Business for PgCustBase {
        async fn seed(&self, customers: &[Customer]) {
            for c in customers {
                sqlx::query(
                    "INSERT INTO cust_base (cust_no, cust_nm, addr_line, id_no, mobile_no, data_qlty, upd_ts) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&c.id)
                .bind(&c.name)
                .bind(&c.raw_address)
                .bind(&c.id_card)
                .bind(&c.phone)
                .bind(c.quality_score)
                .bind(to_local(generate::seen_last_update_time()))
                .execute(&self.pg)
                .await
                .unwrap();
            }
        }

        async fn business_update(&self, customer: &str, address: &str, at: DateTime<Utc>) {
            sqlx::query("UPDATE cust_base SET addr_line = $2, upd_ts = $3 WHERE cust_no = $1")
                .bind(customer)
                .bind(address)
                .bind(to_local(at))
                .execute(&self.pg)
                .await
                .unwrap();
        }

        async fn row(&self, customer: &str) -> Option<Row> {
            let r = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT}$1")))
                .bind(customer)
                .fetch_optional(&self.pg)
                .await
                .unwrap()?;
            // NUMERIC as its decimal text, parsed here.
            let qlty: Option<String> =
                sqlx::query_scalar("SELECT data_qlty::text FROM cust_base WHERE cust_no = $1")
                    .bind(customer)
                    .fetch_one(&self.pg)
                    .await
                    .unwrap();
            Some(Row {
                address: r.get(0),
                geo_lat: r.get(1),
                geo_lon: r.get(2),
                geo_accuracy: r.get(3),
                id_card: r.get(4),
                phone: r.get(5),
                carrier_info: r.get(6),
                quality_score: qlty.map(|s| s.parse().unwrap()),
                validation_status: r.get(8),
                review_flag: flag(r.get(9)),
                review_priority: r.get(10),
                last_governance_time: r.get::<Option<NaiveDateTime>, _>(11).map(from_local),
                last_update: r.get::<Option<NaiveDateTime>, _>(12).map(from_local),
                version: r.get::<Option<i64>, _>(13).unwrap_or(0),
            })
        }

        async fn count(&self, table: &str) -> i64 {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&self.pg)
                .await
                .unwrap()
        }

        async fn install_tampering_trigger(&self) -> bool {
            sqlx::query(
                "CREATE FUNCTION tamper() RETURNS trigger AS $$ BEGIN NEW.addr_line := NEW.addr_line || '!'; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .execute(&self.pg)
            .await
            .unwrap();
            sqlx::query(
                "CREATE TRIGGER tamper BEFORE UPDATE ON cust_base FOR EACH ROW EXECUTE FUNCTION tamper()",
            )
            .execute(&self.pg)
            .await
            .unwrap();
            true
        }
    }

    async fn with_suite(_test: &str, scenario: impl AsyncFnOnce(&Suite)) {
        let env = Env::new("sinkmap", 1).await;
        sqlx::query(crate::common::cust_base::PG_DDL)
            .execute(&env.pg)
            .await
            .unwrap();
        let cfg = govsync::config::check(mapping(env.raw.clone())).unwrap();
        let suite = Suite {
            db: govsync::sink::connect(&cfg.database).await.unwrap(),
            biz: Box::new(PgCustBase { pg: env.pg.clone() }),
            topic: env.source().to_string(),
        };
        run(&suite, scenario).await;
    }

    scenario_tests!(with_suite);
}

mod sqlite {
    use async_trait::async_trait;
    use chrono::{DateTime, NaiveDateTime, Utc};
    use sqlx::Row as _;

    use super::super::Business;
    use super::*;

    struct SqliteCustBase {
        pool: sqlx::SqlitePool,
    }

    fn text(t: DateTime<Utc>) -> String {
        to_local(t).format("%Y-%m-%d %H:%M:%S%.6f").to_string()
    }

    fn parse(s: Option<String>) -> Option<DateTime<Utc>> {
        s.map(|s| from_local(NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f").unwrap()))
    }

    #[async_trait]
    impl Business for SqliteCustBase {
        async fn seed(&self, customers: &[Customer]) {
            for c in customers {
                sqlx::query(
                    "INSERT INTO cust_base (cust_no, cust_nm, addr_line, id_no, mobile_no, data_qlty, upd_ts) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .bind(&c.id)
                .bind(&c.name)
                .bind(&c.raw_address)
                .bind(&c.id_card)
                .bind(&c.phone)
                .bind(c.quality_score)
                .bind(text(generate::seen_last_update_time()))
                .execute(&self.pool)
                .await
                .unwrap();
            }
        }

        async fn business_update(&self, customer: &str, address: &str, at: DateTime<Utc>) {
            sqlx::query("UPDATE cust_base SET addr_line = ?2, upd_ts = ?3 WHERE cust_no = ?1")
                .bind(customer)
                .bind(address)
                .bind(text(at))
                .execute(&self.pool)
                .await
                .unwrap();
        }

        async fn row(&self, customer: &str) -> Option<Row> {
            let r = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT}?1")))
                .bind(customer)
                .fetch_optional(&self.pool)
                .await
                .unwrap()?;
            Some(Row {
                address: r.get(0),
                geo_lat: r.get(1),
                geo_lon: r.get(2),
                geo_accuracy: r.get(3),
                id_card: r.get(4),
                phone: r.get(5),
                carrier_info: r.get(6),
                quality_score: r.get(7),
                validation_status: r.get(8),
                review_flag: flag(r.get(9)),
                review_priority: r.get(10),
                last_governance_time: parse(r.get(11)),
                last_update: parse(r.get(12)),
                version: r.get::<Option<i64>, _>(13).unwrap_or(0),
            })
        }

        async fn count(&self, table: &str) -> i64 {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&self.pool)
                .await
                .unwrap()
        }

        async fn install_tampering_trigger(&self) -> bool {
            sqlx::query(
                "CREATE TRIGGER tamper AFTER UPDATE OF addr_line ON cust_base FOR EACH ROW \
                 WHEN NEW.addr_line NOT LIKE '%!' BEGIN UPDATE cust_base SET addr_line = NEW.addr_line || '!' \
                 WHERE cust_no = NEW.cust_no; END",
            )
            .execute(&self.pool)
            .await
            .unwrap();
            true
        }
    }

    /// CRM.CUST_BASE as SQLite would hold it; lengths as CHECKs, since
    /// SQLite does not enforce VARCHAR(n) (as in the dev table).
    const DDL: &str = "CREATE TABLE cust_base (
        cust_no      VARCHAR(32) PRIMARY KEY,
        cust_nm      VARCHAR(100),
        addr_line    VARCHAR(200) CHECK (length(addr_line) <= 200),
        geo_y        DOUBLE,
        geo_x        DOUBLE,
        geo_prec     VARCHAR(32) CHECK (length(geo_prec) <= 32),
        id_no        VARCHAR(18) CHECK (length(id_no) <= 18),
        mobile_no    VARCHAR(20) CHECK (length(mobile_no) <= 20),
        carrier_json TEXT,
        data_qlty    NUMERIC(3,2),
        chk_status   VARCHAR(32) CHECK (length(chk_status) <= 32),
        review_ind   CHAR(1) CHECK (review_ind IN ('Y', 'N')),
        review_lvl   VARCHAR(16) CHECK (length(review_lvl) <= 16),
        gov_ts       TIMESTAMP,
        upd_ts       DATETIME
    )";

    async fn with_suite(_test: &str, scenario: impl AsyncFnOnce(&Suite)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("suite.db");
        let mut raw = RawConfig::default();
        raw.database.url = format!("sqlite://{}", path.display());
        let cfg = govsync::config::check(mapping(raw)).unwrap();
        let db = govsync::sink::connect(&cfg.database).await.unwrap();
        db.migrate(true).await.unwrap();
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query(DDL).execute(&pool).await.unwrap();
        let suite = Suite {
            db,
            biz: Box::new(SqliteCustBase { pool }),
            topic: "sqlite.results".into(),
        };
        run(&suite, scenario).await;
    }

    scenario_tests!(with_suite);
}
