//! The sink suite against SQLite: each scenario in a database file of its
//! own.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use govsync::demo::generate::{self, Customer};
use govsync::event::Row;

use super::{Business, ROW_SQL, Suite, run, scenario_tests};

fn seeded_last_update() -> DateTime<Utc> {
    generate::seen_last_update_time()
}

struct SqliteBusiness {
    pool: sqlx::SqlitePool,
}

fn text_time(t: DateTime<Utc>) -> String {
    govsync::sink::sqlite::time_text(t)
}

#[async_trait]
impl Business for SqliteBusiness {
    async fn seed(&self, customers: &[Customer]) {
        for c in customers {
            sqlx::query(
                "INSERT INTO customer_profile (customer_id, name, address, id_card, phone, quality_score, last_update, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
            )
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.raw_address)
            .bind(&c.id_card)
            .bind(&c.phone)
            .bind(c.quality_score)
            .bind(text_time(seeded_last_update()))
            .execute(&self.pool)
            .await
            .unwrap();
        }
    }

    async fn business_update(&self, customer: &str, address: &str, last_update: DateTime<Utc>) {
        sqlx::query(
            "UPDATE customer_profile SET address = ?2, last_update = ?3 WHERE customer_id = ?1",
        )
        .bind(customer)
        .bind(address)
        .bind(text_time(last_update))
        .execute(&self.pool)
        .await
        .unwrap();
    }

    async fn row(&self, customer: &str) -> Option<Row> {
        use sqlx::Row as _;
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("{ROW_SQL}?1")))
            .bind(customer)
            .fetch_optional(&self.pool)
            .await
            .unwrap()?;
        let t = |v: Option<String>| {
            v.map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .unwrap()
                    .with_timezone(&Utc)
            })
        };
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
            review_flag: r.get::<Option<i64>, _>(9).map(|v| v != 0),
            review_priority: r.get(10),
            last_governance_time: t(r.get(11)),
            last_update: t(r.get(12)),
            version: r.get(13),
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
            "CREATE TRIGGER tamper AFTER UPDATE OF address ON customer_profile FOR EACH ROW \
             WHEN NEW.address NOT LIKE '%!' BEGIN UPDATE customer_profile SET address = NEW.address || '!' \
             WHERE customer_id = NEW.customer_id; END",
        )
        .execute(&self.pool)
        .await
        .unwrap();
        true
    }
}

async fn with_suite(_test: &str, scenario: impl AsyncFnOnce(&Suite)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("suite.db");
    let mut raw = govsync::config::RawConfig::default();
    raw.database.url = format!("sqlite://{}", path.display());
    let cfg = govsync::config::check(raw).unwrap();
    let db = govsync::sink::connect(&cfg.database).await.unwrap();
    db.migrate(true).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let suite = Suite {
        db,
        biz: Box::new(SqliteBusiness { pool }),
        topic: "sqlite.results".into(),
    };
    run(&suite, scenario).await;
}

scenario_tests!(with_suite);
