//! The sink test suite, written once: every scenario runs against each
//! database through the same `Database` trait (PostgreSQL and SQLite here;
//! Oracle when GOVSYNC_ORACLE_URL is set, see oracle.rs). Batches are built
//! directly, without Kafka: this is the database half of exactly-once.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use govsync::demo::generate::{self, Customer};
use govsync::event::{self, ConflictPolicy, DataType, Row, RuleSet};
use govsync::message::RawMessage;
use govsync::output::{self, Failure};
use govsync::sink::protocol::{self, ApplyOptions, BatchReport};
use govsync::sink::{Database, Outcome, PartitionKey, SinkBatch, SinkError, SinkRecord};
use serde_json::{Value, json};

/// What the suite needs besides the `Database` trait: the business side's
/// own writes and reads, in each dialect.
#[async_trait]
pub trait Business: Send + Sync {
    /// Inserts customer rows as the business side holds them
    /// (last_update = generate::seen_last_update() in +08:00, version 0).
    async fn seed(&self, customers: &[Customer]);
    /// A concurrent business update: address and last_update.
    async fn business_update(&self, customer: &str, address: &str, last_update: DateTime<Utc>);
    async fn row(&self, customer: &str) -> Option<Row>;
    async fn count(&self, table: &str) -> i64;
    /// Makes the database rewrite `address` on every update (a trigger), or
    /// returns false when the dialect does not support it here.
    async fn install_tampering_trigger(&self) -> bool;
}

pub struct Suite {
    pub db: Arc<dyn Database>,
    pub biz: Box<dyn Business>,
    pub topic: String,
}

pub fn opts(policy: ConflictPolicy) -> ApplyOptions {
    ApplyOptions {
        review_topic: "suite.review".into(),
        dlq_topic: "suite.dlq".into(),
        policies: DataType::ALL.into_iter().map(|d| (d, policy)).collect(),
        max_poison_fraction: 0.1,
    }
}

impl Suite {
    pub fn key(&self, partition: i32) -> PartitionKey {
        PartitionKey {
            group: "suite".into(),
            topic: self.topic.clone(),
            partition,
        }
    }

    /// A batch of `events` at offsets `first..`, expecting the watermark at
    /// `expected`.
    pub fn batch(&self, partition: i32, first: i64, expected: i64, events: &[Value]) -> SinkBatch {
        let rules = RuleSet::default();
        let key = self.key(partition);
        let last = first + events.len() as i64 - 1;
        let batch_id = format!("suite:{}:{partition}:{first}-{last}", self.topic);
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let value = serde_json::to_vec(e).unwrap();
            let raw = Arc::new(RawMessage {
                topic: self.topic.clone(),
                partition,
                offset: first + i as i64,
                key: govsync::kafka::region_key(&value),
                value: Some(value.clone()),
                headers: vec![],
                timestamp_ms: None,
            });
            match event::decode_and_check(&value, 1 << 20, &rules) {
                Ok(checked) => records.push(SinkRecord { raw, checked }),
                Err(r) => {
                    let f = Failure {
                        class: r.rejection.class().into(),
                        message: r.rejection.to_string(),
                        batch_id: batch_id.clone(),
                        ..Default::default()
                    };
                    rejected.push((raw.offset, output::dead_letter(&raw, &f, "suite.dlq")));
                }
            }
        }
        SinkBatch {
            batch_id,
            key,
            expected_watermark: expected,
            first_offset: first,
            last_offset: last,
            records,
            rejected,
            prune_outbox_upto: None,
            attempt: 1,
        }
    }

    pub async fn apply(
        &self,
        b: &SinkBatch,
        policy: ConflictPolicy,
    ) -> Result<BatchReport, SinkError> {
        protocol::apply(self.db.as_ref(), b, &opts(policy)).await
    }
}

fn ev(c: &Customer, dt: DataType, id: &str, i: usize) -> Value {
    generate::event(c, dt, id, generate::governed_at(i), false)
}

fn outcomes(r: &BatchReport) -> Vec<Outcome> {
    r.outcomes.clone()
}

/// Runs every scenario against `suite` (each on its own customers and
/// partition, so they share one schema).
pub async fn run_all(suite: &Suite) {
    suite.db.migrate(true).await.unwrap();
    applies_writes_log_ledger_and_watermark(suite).await;
    duplicates_are_skipped_within_and_across_batches(suite).await;
    stale_results_do_not_overwrite_newer_ones(suite).await;
    seed_concurrent_update_under_each_policy(suite).await;
    same_customer_several_times_in_one_batch(suite).await;
    one_rejected_record_among_a_thousand(suite).await;
    records_below_the_watermark_are_skipped_and_foreign_outbox_returned(suite).await;
    rollback_restores_exactly_the_before_images(suite).await;
    verification_failure_rolls_back(suite).await;
}

async fn applies_writes_log_ledger_and_watermark(s: &Suite) {
    let cs = generate::customers(30, 2, 101);
    s.biz.seed(&cs).await;
    let events: Vec<Value> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| ev(c, DataType::ALL[i % 3], &format!("basic-{i}"), i))
        .collect();
    let b = s.batch(0, 0, 0, &events);
    let r = s.apply(&b, ConflictPolicy::Review).await.unwrap();
    assert!(
        outcomes(&r).iter().all(|o| *o == Outcome::Applied),
        "{:?}",
        r.outcomes
    );
    assert_eq!((r.watermark_before, r.watermark_after), (0, 30));
    for (i, c) in cs.iter().enumerate() {
        let row = s.biz.row(&c.id).await.unwrap();
        assert_eq!(row.version, 1, "{}", c.id);
        match DataType::ALL[i % 3] {
            DataType::Address => assert_eq!(row.address.as_deref(), Some(c.std_address.as_str())),
            DataType::IdCard => assert_eq!(row.validation_status.as_deref(), Some("valid")),
            DataType::Phone => assert!(row.carrier_info.is_some()),
        }
    }
    assert_eq!(s.db.watermark(&s.key(0)).await.unwrap(), Some(30));
    let ledger =
        s.db.batches(&govsync::sink::BatchFilter {
            batch_id: Some(b.batch_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].counts.get("applied"), Some(&30));
}

async fn duplicates_are_skipped_within_and_across_batches(s: &Suite) {
    let cs = generate::customers(5, 1, 102);
    let cs: Vec<Customer> = cs
        .into_iter()
        .map(|mut c| {
            c.id = format!("DUP_{}", c.id);
            c
        })
        .collect();
    s.biz.seed(&cs).await;
    let e0 = ev(&cs[0], DataType::Address, "dup-a", 0);
    let e1 = ev(&cs[1], DataType::Phone, "dup-b", 1);
    let b1 = s.batch(1, 0, 0, &[e0.clone(), e1.clone(), e0.clone()]);
    let r1 = s.apply(&b1, ConflictPolicy::Review).await.unwrap();
    assert_eq!(
        outcomes(&r1),
        [Outcome::Applied, Outcome::Applied, Outcome::Duplicate]
    );
    // The same events again, later in the partition (a producer retry).
    let b2 = s.batch(1, 3, 3, &[e1, e0]);
    let r2 = s.apply(&b2, ConflictPolicy::Review).await.unwrap();
    assert_eq!(outcomes(&r2), [Outcome::Duplicate, Outcome::Duplicate]);
    assert_eq!(
        s.biz.row(&cs[0].id).await.unwrap().version,
        1,
        "applied once"
    );
}

async fn stale_results_do_not_overwrite_newer_ones(s: &Suite) {
    let mut c = generate::customers(1, 1, 103).remove(0);
    c.id = "STALE_1".into();
    s.biz.seed(std::slice::from_ref(&c)).await;
    let newer = ev(&c, DataType::Address, "stale-new", 100);
    let mut older = ev(&c, DataType::Address, "stale-old", 50);
    older["governance_result"]["standardized_address"] = json!("江苏省南京市玄武区旧的路1号");
    // A phone result governed earlier never makes an address result stale.
    let phone_old = ev(&c, DataType::Phone, "stale-phone", 10);
    let b = s.batch(2, 0, 0, &[newer, older, phone_old]);
    let r = s.apply(&b, ConflictPolicy::Review).await.unwrap();
    assert_eq!(
        outcomes(&r),
        [Outcome::Applied, Outcome::Stale, Outcome::Applied]
    );
    // Across batches too.
    let mut older2 = ev(&c, DataType::Address, "stale-old-2", 60);
    older2["governance_result"]["standardized_address"] = json!("江苏省南京市玄武区旧的路2号");
    let r = s
        .apply(&s.batch(2, 3, 3, &[older2]), ConflictPolicy::Review)
        .await
        .unwrap();
    assert_eq!(outcomes(&r), [Outcome::Stale]);
    let row = s.biz.row(&c.id).await.unwrap();
    assert_eq!(row.address.as_deref(), Some(c.std_address.as_str()));
    assert_eq!(row.version, 2);
}

/// The seed's example: customer service wrote "…123号A座" at 10:25, after
/// the engine read the row (14:30 on the 10th) and governed "…123号".
async fn seed_concurrent_update_under_each_policy(s: &Suite) {
    let seed_event: Value = serde_json::from_str(include_str!(
        "../../schemas/examples/01-address-update.json"
    ))
    .unwrap();
    let concurrent = "江苏省南京市玄武区中山路123号A座";
    let at =
        govsync::event::rules::parse_loose_time("2024-01-15 10:25:00", generate::local()).unwrap();
    for (n, (policy, want_outcome, want_address)) in [
        (ConflictPolicy::Review, Outcome::Conflict, concurrent),
        (
            ConflictPolicy::Overwrite,
            Outcome::Applied,
            "江苏省南京市玄武区中山路123号",
        ),
        (ConflictPolicy::Merge, Outcome::Applied, concurrent),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = generate::customers(1, 1, 104).remove(0);
        c.id = format!("CONFLICT_{n}");
        c.raw_address = "江苏南京玄武区中山路123".into();
        s.biz.seed(std::slice::from_ref(&c)).await;
        s.biz.business_update(&c.id, concurrent, at).await;
        let mut e = seed_event.clone();
        e["customer_id"] = json!(c.id);
        e["event_id"] = json!(format!("conflict-{n}"));
        let r = s
            .apply(&s.batch(3, n as i64, n as i64, &[e]), policy)
            .await
            .unwrap();
        assert_eq!(outcomes(&r), [want_outcome], "{policy:?}");
        let row = s.biz.row(&c.id).await.unwrap();
        assert_eq!(row.address.as_deref(), Some(want_address), "{policy:?}");
        match policy {
            ConflictPolicy::Review => {
                assert_eq!(row.version, 0, "untouched");
                assert_eq!(r.outputs.len(), 1, "on the review topic");
                let doc: Value =
                    serde_json::from_slice(r.outputs[0].payload.as_ref().unwrap()).unwrap();
                assert_eq!(doc["reason"], "conflict");
                assert_eq!(doc["current"]["address"], concurrent);
            }
            _ => {
                assert_eq!(row.version, 1);
                assert_eq!(
                    row.quality_score,
                    Some(0.92),
                    "the other fields are applied"
                );
                assert!(r.outputs.is_empty());
            }
        }
        assert_eq!(row.last_update, Some(at), "govsync never moves last_update");
    }
}

async fn same_customer_several_times_in_one_batch(s: &Suite) {
    let mut c = generate::customers(1, 1, 105).remove(0);
    c.id = "MULTI_1".into();
    s.biz.seed(std::slice::from_ref(&c)).await;
    let mut a1 = ev(&c, DataType::Address, "multi-a1", 1);
    a1["governance_result"]["standardized_address"] = json!("江苏省南京市玄武区第一路1号");
    let p = ev(&c, DataType::Phone, "multi-p", 2);
    let a2 = ev(&c, DataType::Address, "multi-a2", 3);
    let id = ev(&c, DataType::IdCard, "multi-id", 4);
    let r = s
        .apply(&s.batch(4, 0, 0, &[a1, p, a2, id]), ConflictPolicy::Review)
        .await
        .unwrap();
    assert_eq!(outcomes(&r), [Outcome::Applied; 4]);
    let row = s.biz.row(&c.id).await.unwrap();
    assert_eq!(row.version, 4, "each record logged and counted on its own");
    assert_eq!(
        row.address.as_deref(),
        Some(c.std_address.as_str()),
        "offset order: the later address wins"
    );
    assert_eq!(row.phone.as_deref(), Some(c.phone.as_str()));
    assert_eq!(row.validation_status.as_deref(), Some("valid"));
}

async fn one_rejected_record_among_a_thousand(s: &Suite) {
    let cs: Vec<Customer> = generate::customers(1000, 2, 106)
        .into_iter()
        .map(|mut c| {
            c.id = format!("P{}", c.id);
            c
        })
        .collect();
    s.biz.seed(&cs).await;
    let mut events: Vec<Value> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| ev(c, DataType::Address, &format!("poison-{i}"), i))
        .collect();
    // 260 characters: valid for the contract (≤ 500), too long for the column (200).
    let long = format!("江苏省南京市玄武区{}号", "长".repeat(250));
    events[617]["governance_result"]["standardized_address"] = json!(long);
    let r = s
        .apply(&s.batch(5, 0, 0, &events), ConflictPolicy::Review)
        .await
        .unwrap();
    let applied = r
        .outcomes
        .iter()
        .filter(|o| **o == Outcome::Applied)
        .count();
    assert_eq!(applied, 999);
    assert_eq!(r.outcomes[617], Outcome::Poison);
    assert_eq!(r.poison.len(), 1);
    let dlq: Vec<_> = r
        .outputs
        .iter()
        .filter(|m| m.topic == "suite.dlq")
        .collect();
    assert_eq!(dlq.len(), 1);
    let h = |k: &str| {
        dlq[0]
            .headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
    };
    assert_eq!(
        h(output::headers::ERROR_CLASS).as_deref(),
        Some("db_rejected")
    );
    assert_eq!(h(output::headers::SOURCE_OFFSET).as_deref(), Some("617"));
    assert!(
        h(output::headers::DB_CODE).is_some(),
        "SQLSTATE / ORA number in the headers"
    );
    assert_eq!(
        dlq[0].payload.as_deref(),
        Some(serde_json::to_vec(&events[617]).unwrap().as_slice()),
        "original bytes"
    );
    assert_eq!(s.biz.row(&cs[617].id).await.unwrap().version, 0);
    assert_eq!(s.biz.row(&cs[616].id).await.unwrap().version, 1);
    assert_eq!(
        s.db.watermark(&s.key(5)).await.unwrap(),
        Some(1000),
        "the rest committed in the same transaction"
    );
}

async fn records_below_the_watermark_are_skipped_and_foreign_outbox_returned(s: &Suite) {
    let cs: Vec<Customer> = generate::customers(6, 1, 107)
        .into_iter()
        .map(|mut c| {
            c.id = format!("W{}", c.id);
            c
        })
        .collect();
    s.biz.seed(&cs).await;
    // Instance A applies offsets 0..2, including one record for review.
    let mut flag = generate::bad_check_digit_event(&cs[2], "wm-2", generate::governed_at(2));
    flag["customer_id"] = json!(cs[2].id);
    let a = s.batch(
        6,
        0,
        0,
        &[
            ev(&cs[0], DataType::Address, "wm-0", 0),
            ev(&cs[1], DataType::Phone, "wm-1", 1),
            flag.clone(),
        ],
    );
    let ra = s.apply(&a, ConflictPolicy::Review).await.unwrap();
    assert_eq!(
        outcomes(&ra),
        [Outcome::Applied, Outcome::Applied, Outcome::Flagged]
    );
    assert_eq!(ra.outputs.len(), 1);
    // Instance B (a zombie, or the new owner with stale Kafka offsets)
    // still believes the watermark is 0 and sends 0..4.
    let b = s.batch(
        6,
        0,
        0,
        &[
            ev(&cs[0], DataType::Address, "wm-0", 0),
            ev(&cs[1], DataType::Phone, "wm-1", 1),
            flag,
            ev(&cs[3], DataType::Address, "wm-3", 3),
            ev(&cs[4], DataType::Address, "wm-4", 4),
        ],
    );
    let rb = s.apply(&b, ConflictPolicy::Review).await.unwrap();
    assert_eq!(
        outcomes(&rb),
        [
            Outcome::Skipped,
            Outcome::Skipped,
            Outcome::Skipped,
            Outcome::Applied,
            Outcome::Applied
        ]
    );
    assert_eq!(rb.watermark_before, 3);
    assert_eq!(rb.watermark_after, 5);
    assert_eq!(
        rb.foreign_outputs, ra.outputs,
        "A's review message is handed to B for publishing"
    );
    assert_eq!(
        s.biz.row(&cs[0].id).await.unwrap().version,
        1,
        "not applied twice"
    );
    // A batch entirely below the watermark applies nothing and writes no ledger row.
    let again = s.batch(6, 3, 5, &[ev(&cs[3], DataType::Address, "wm-3", 3)]);
    let r = s.apply(&again, ConflictPolicy::Review).await.unwrap();
    assert_eq!(outcomes(&r), [Outcome::Skipped]);
    assert_eq!(r.watermark_after, 5, "never backwards");
    assert_eq!(s.db.watermark(&s.key(6)).await.unwrap(), Some(5));
}

async fn rollback_restores_exactly_the_before_images(s: &Suite) {
    let cs: Vec<Customer> = generate::customers(3, 1, 108)
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            c.id = format!("RB_{i}");
            c
        })
        .collect();
    s.biz.seed(&cs).await;
    let before: HashMap<String, Row> = {
        let mut m = HashMap::new();
        for c in &cs {
            m.insert(c.id.clone(), s.biz.row(&c.id).await.unwrap());
        }
        m
    };
    let events: Vec<Value> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| ev(c, DataType::Address, &format!("rb-{i}"), i))
        .collect();
    let b = s.batch(7, 0, 0, &events);
    s.apply(&b, ConflictPolicy::Review).await.unwrap();
    // Someone changes RB_1 after the batch.
    let later = Utc::now();
    s.biz
        .business_update("RB_1", "江苏省南京市玄武区后来改的路9号", later)
        .await;

    let dry = protocol::rollback(s.db.as_ref(), &b.batch_id, true)
        .await
        .unwrap();
    assert_eq!(dry.restored, ["RB_0", "RB_2"]);
    assert_eq!(
        s.biz.row("RB_0").await.unwrap().address.as_deref(),
        Some(cs[0].std_address.as_str()),
        "dry run changes nothing"
    );

    let rep = protocol::rollback(s.db.as_ref(), &b.batch_id, false)
        .await
        .unwrap();
    assert_eq!(rep.restored, ["RB_0", "RB_2"]);
    assert_eq!(rep.changed_since.len(), 1);
    assert_eq!(rep.changed_since[0].0, "RB_1");
    assert!(rep.changed_since[0].1.contains(&"address".to_string()));
    for id in ["RB_0", "RB_2"] {
        let now = s.biz.row(id).await.unwrap();
        let was = &before[id];
        assert_eq!(now.address, was.address, "{id} address restored");
        assert_eq!(now.geo_lat, was.geo_lat, "{id} geo restored");
        assert_eq!(now.quality_score, was.quality_score, "{id} score restored");
        assert_eq!(now.last_governance_time, was.last_governance_time);
        assert_eq!(now.version, 2, "the rollback is a write too");
    }
    assert_eq!(
        s.biz.row("RB_1").await.unwrap().address.as_deref(),
        Some("江苏省南京市玄武区后来改的路9号"),
        "left alone"
    );
    let ledger =
        s.db.batches(&govsync::sink::BatchFilter {
            batch_id: Some(rep.rollback_batch_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1, "the rollback is logged as a batch");
    assert_eq!(ledger[0].kind, "rollback");
    let orig =
        s.db.batches(&govsync::sink::BatchFilter {
            batch_id: Some(b.batch_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(orig[0].status, "rolled_back");
    let again = protocol::rollback(s.db.as_ref(), &b.batch_id, false).await;
    assert!(again.is_err(), "a batch is rolled back once");
}

async fn verification_failure_rolls_back(s: &Suite) {
    // Last: the trigger stays installed.
    if !s.biz.install_tampering_trigger().await {
        return;
    }
    let mut c = generate::customers(1, 1, 109).remove(0);
    c.id = "VERIFY_1".into();
    s.biz.seed(std::slice::from_ref(&c)).await;
    let b = s.batch(8, 0, 0, &[ev(&c, DataType::Address, "verify-0", 0)]);
    let err = s.apply(&b, ConflictPolicy::Review).await.unwrap_err();
    assert!(matches!(err, SinkError::Verification(_)), "{err}");
    assert_eq!(
        s.db.watermark(&s.key(8)).await.unwrap(),
        None,
        "rolled back: not even the watermark row"
    );
    assert_eq!(s.biz.row(&c.id).await.unwrap().version, 0);
}

// --- the two databases that run here --------------------------------------

fn seeded_last_update() -> DateTime<Utc> {
    generate::seen_last_update_time()
}

const ROW_SQL: &str = "SELECT address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, quality_score, \
     validation_status, review_flag, review_priority, last_governance_time, last_update, version \
     FROM customer_profile WHERE customer_id = ";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_suite_postgres() {
    let env = crate::common::harness::Env::new("sinkpg", 1).await;
    let suite = Suite {
        db: env.db().await,
        biz: Box::new(PgBusiness { pg: env.pg.clone() }),
        topic: env.source().to_string(),
    };
    run_all(&suite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_suite_sqlite() {
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
    run_all(&suite).await;
}
