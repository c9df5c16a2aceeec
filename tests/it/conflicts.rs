//! Conflict, stale and duplicate handling through the real broker and
//! PostgreSQL: the seed's concurrent-update example under each policy, the
//! same customer several times in one batch, and one record the database
//! rejects among a thousand.

use std::time::Duration;

use govsync::demo::generate::{self, Customer};
use govsync::event::DataType;
use serde_json::{Value, json};
use sqlx::Row;

use crate::common::harness::{Env, header, wait_until};

async fn run_until_committed(env: &Env, raw: &govsync::config::RawConfig) {
    let running = env.start_with(govsync::config::check(raw.clone()).unwrap());
    wait_until(Duration::from_secs(90), "all offsets committed", || async {
        env.all_committed()
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_concurrent_update_under_each_policy() {
    for (policy, expect_address, expect_version, expect_review) in [
        ("review", "江苏省南京市玄武区中山路123号A座", 0, 1),
        ("overwrite", "江苏省南京市玄武区中山路123号", 1, 0),
        ("merge", "江苏省南京市玄武区中山路123号A座", 1, 0),
    ] {
        let env = Env::new(&format!("policy_{policy}"), 1).await;
        env.migrate().await;
        super::routing::seed_sample_customers(&env).await;
        // The seed's event for a customer whose row customer service changed
        // to "…123号A座" at 10:25, after the engine read it.
        let mut e: Value = serde_json::from_str(include_str!(
            "../../schemas/examples/06-address-concurrent-update.json"
        ))
        .unwrap();
        e["event_id"] = json!(format!("policy-{policy}"));
        env.publish(&[e]).await;
        let mut raw = env.raw.clone();
        raw.rules.conflict.insert("address".into(), policy.into());
        run_until_committed(&env, &raw).await;
        let r = sqlx::query("SELECT address, quality_score, version FROM customer_profile WHERE customer_id = 'CUST_320102_006'")
            .fetch_one(&env.pg)
            .await
            .unwrap();
        assert_eq!(r.get::<String, _>("address"), expect_address, "{policy}");
        assert_eq!(r.get::<i64, _>("version"), expect_version, "{policy}");
        if expect_version == 1 {
            assert_eq!(
                r.get::<Option<f64>, _>("quality_score"),
                Some(0.92),
                "{policy}: the other fields applied"
            );
        }
        let review = env.read_topic(&env.raw.kafka.review_topic);
        assert_eq!(review.len(), expect_review, "{policy}");
        if let Some(m) = review.first() {
            let doc: Value = serde_json::from_slice(m.value.as_ref().unwrap()).unwrap();
            assert_eq!(doc["reason"], "conflict");
            assert_eq!(
                doc["current"]["address"], "江苏省南京市玄武区中山路123号A座",
                "the reviewer sees the concurrent value"
            );
            assert_eq!(doc["proposed"]["address"], "江苏省南京市玄武区中山路123号");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_customer_many_times_one_rejected_record_duplicates_and_stale() {
    let env = Env::new("broker_sink", 1).await;
    env.migrate().await;
    let customers = generate::customers(1000, 1, 41);
    env.seed(&customers).await;
    let events = one_batch_of_events(&customers);
    env.publish(&events).await;

    let mut raw = env.raw.clone();
    raw.batch.min_size = 100;
    raw.batch.address = [2000, 2000];
    raw.batch.max_wait = "1s".into();
    run_until_committed(&env, &raw).await;
    the_rejected_row_untouched_the_others_applied_once_in_order(&env, &customers).await;
    only_the_rejected_record_dead_lettered_in_one_transaction(&env).await;
}

/// A thousand address results (one too long for its column), then three
/// more results of customer 0, a duplicate and a stale result.
fn one_batch_of_events(customers: &[Customer]) -> Vec<Value> {
    let mut events: Vec<Value> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            generate::event(
                c,
                DataType::Address,
                &format!("bs-{i}"),
                generate::governed_at(100 + i),
                false,
            )
        })
        .collect();
    // One value too long for the column (valid for the contract).
    events[500]["governance_result"]["standardized_address"] =
        json!(format!("江苏省南京市玄武区{}号", "长".repeat(250)));
    // The same customer three more times in the same batch: phone, id card,
    // and a newer address.
    let c0 = &customers[0];
    events.push(generate::event(
        c0,
        DataType::Phone,
        "bs-c0-phone",
        generate::governed_at(2000),
        false,
    ));
    events.push(generate::event(
        c0,
        DataType::IdCard,
        "bs-c0-id",
        generate::governed_at(2001),
        false,
    ));
    let mut newer = generate::event(
        c0,
        DataType::Address,
        "bs-c0-addr2",
        generate::governed_at(2002),
        false,
    );
    newer["governance_result"]["standardized_address"] = json!("江苏省南京市玄武区新地址路1号");
    events.push(newer);
    // A duplicate (same event id) and a stale result (governed earlier).
    events.push(events[1].clone());
    events.push(generate::event(
        &customers[2],
        DataType::Address,
        "bs-stale",
        generate::governed_at(1),
        false,
    ));
    events
}

async fn the_rejected_row_untouched_the_others_applied_once_in_order(
    env: &Env,
    customers: &[Customer],
) {
    let applied: i64 = env
        .count("SELECT count(*) FROM govsync_change_log WHERE outcome = 'applied'")
        .await;
    assert_eq!(
        applied,
        999 + 3,
        "999 of the first 1000 and the three extra results of customer 0"
    );
    let v = |id: &str| {
        let id = id.to_string();
        let pg = env.pg.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT version FROM customer_profile WHERE customer_id = $1",
            )
            .bind(id)
            .fetch_one(&pg)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        v(&customers[500].id).await,
        0,
        "the rejected record's row is untouched"
    );
    assert_eq!(
        v(&customers[0].id).await,
        4,
        "customer 0: four results, each applied once in order"
    );
    assert_eq!(
        v(&customers[1].id).await,
        1,
        "the duplicate is not applied twice"
    );
    assert_eq!(
        v(&customers[2].id).await,
        1,
        "the stale result is not applied"
    );
    let addr: String =
        sqlx::query_scalar("SELECT address FROM customer_profile WHERE customer_id = $1")
            .bind(&customers[0].id)
            .fetch_one(&env.pg)
            .await
            .unwrap();
    assert_eq!(
        addr, "江苏省南京市玄武区新地址路1号",
        "offset order: the newer address wins"
    );
    let stale: i64 = env
        .count("SELECT count(*) FROM govsync_change_log WHERE outcome = 'stale'")
        .await;
    assert_eq!(stale, 1);
}

async fn only_the_rejected_record_dead_lettered_in_one_transaction(env: &Env) {
    let dlq = env.read_topic(&env.raw.kafka.dlq_topic);
    assert_eq!(dlq.len(), 1, "only the rejected record is dead-lettered");
    assert_eq!(header(&dlq[0], "govsync.error.class"), Some("db_rejected"));
    assert_eq!(
        header(&dlq[0], "govsync.db.code"),
        Some("22001"),
        "SQLSTATE of value too long"
    );
    assert_eq!(header(&dlq[0], "govsync.source.offset"), Some("500"));
    // The rest committed in the same transaction as the rejected one's neighbours.
    let batches: i64 = env.count("SELECT count(*) FROM govsync_batch").await;
    assert!(
        batches <= 2,
        "the big batch was not split into separate transactions ({batches} batches)"
    );
}
