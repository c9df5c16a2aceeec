//! The sink suite against PostgreSQL: each scenario in a schema of its own
//! ([`Env`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use govsync::demo::generate::{self, Customer};
use govsync::event::Row;

use super::{Business, ROW_SQL, Suite, run, scenario_tests};
use crate::common::harness::Env;

struct PgBusiness {
    pg: sqlx::PgPool,
}

#[async_trait]
impl Business for PgBusiness {
    async fn seed(&self, customers: &[Customer]) {
        generate::seed_postgres(&self.pg, customers).await.unwrap();
    }

    async fn business_update(&self, customer: &str, address: &str, last_update: DateTime<Utc>) {
        sqlx::query(
            "UPDATE customer_profile SET address = $2, last_update = $3 WHERE customer_id = $1",
        )
        .bind(customer)
        .bind(address)
        .bind(last_update)
        .execute(&self.pg)
        .await
        .unwrap();
    }

    async fn row(&self, customer: &str) -> Option<Row> {
        use sqlx::Row as _;
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("{ROW_SQL}$1")))
            .bind(customer)
            .fetch_optional(&self.pg)
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
            review_flag: r.get(9),
            review_priority: r.get(10),
            last_governance_time: r.get(11),
            last_update: r.get(12),
            version: r.get(13),
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
            "CREATE FUNCTION tamper() RETURNS trigger AS $$ BEGIN NEW.address := NEW.address || '!'; RETURN NEW; END $$ LANGUAGE plpgsql",
        )
        .execute(&self.pg)
        .await
        .unwrap();
        sqlx::query("CREATE TRIGGER tamper BEFORE UPDATE ON customer_profile FOR EACH ROW EXECUTE FUNCTION tamper()")
            .execute(&self.pg)
            .await
            .unwrap();
        true
    }
}

async fn with_suite(_test: &str, scenario: impl AsyncFnOnce(&Suite)) {
    let env = Env::new("sinkpg", 1).await;
    let suite = Suite {
        db: env.db().await,
        biz: Box::new(PgBusiness { pg: env.pg.clone() }),
        topic: env.source().to_string(),
    };
    run(&suite, scenario).await;
}

scenario_tests!(with_suite);
