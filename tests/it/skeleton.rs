//! The walking skeleton: events travel from a real Kafka topic into real
//! PostgreSQL, offsets are committed after the database commit, and a crash
//! between the two applies nothing twice.

use std::collections::HashMap;
use std::time::Duration;

use govsync::demo::generate::{self, Customer};
use govsync::event::DataType;
use serde_json::Value;
use sqlx::Row;

use crate::common::harness::{Env, wait_until};

/// 1000 events over `customers[..900]`: every customer once, the first 100
/// twice (same data type: the later result wins, both are applied).
/// Events of each customer: (data type, index of the event).
pub type ByCustomer = HashMap<String, Vec<(DataType, usize)>>;

pub fn workload(customers: &[Customer]) -> (Vec<Value>, ByCustomer) {
    let mut events = Vec::new();
    let mut by_customer: HashMap<String, Vec<(DataType, usize)>> = HashMap::new();
    for i in 0..1000 {
        let c = &customers[i % 900];
        let dt = DataType::ALL[i % 3];
        events.push(generate::event(
            c,
            dt,
            &format!("ev-{i:05}"),
            generate::governed_at(i),
            i % 10 == 0,
        ));
        by_customer.entry(c.id.clone()).or_default().push((dt, i));
    }
    (events, by_customer)
}

/// Every row named by an event holds the governed values and a version
/// equal to its number of events; every other row is untouched.
pub async fn assert_final_state(env: &Env, customers: &[Customer], by_customer: &ByCustomer) {
    let rows = sqlx::query(
        "SELECT customer_id, address, geo_lat, id_card, phone, carrier_info, quality_score, validation_status, \
         last_governance_time, version FROM customer_profile",
    )
    .fetch_all(&env.pg)
    .await
    .unwrap();
    assert_eq!(rows.len(), customers.len());
    let by_id: HashMap<&str, &Customer> = customers.iter().map(|c| (c.id.as_str(), c)).collect();
    for r in rows {
        let id: String = r.get("customer_id");
        let c = by_id[id.as_str()];
        let version: i64 = r.get("version");
        let address: Option<String> = r.get("address");
        match by_customer.get(&id) {
            None => {
                assert_eq!(
                    version, 0,
                    "{id} was not named by any event but was written"
                );
                assert_eq!(
                    address.as_deref(),
                    Some(c.raw_address.as_str()),
                    "{id} untouched"
                );
                let t: Option<chrono::DateTime<chrono::Utc>> = r.get("last_governance_time");
                assert!(t.is_none(), "{id} untouched");
            }
            Some(evs) => {
                assert_eq!(
                    version,
                    evs.len() as i64,
                    "{id}: one version per applied event, never twice"
                );
                let last_i = evs.iter().map(|(_, i)| *i).max().unwrap();
                let t: chrono::DateTime<chrono::Utc> = r.get("last_governance_time");
                assert_eq!(
                    t,
                    generate::governed_at(last_i),
                    "{id} last_governance_time"
                );
                for (dt, _) in evs {
                    match dt {
                        DataType::Address => {
                            assert_eq!(
                                address.as_deref(),
                                Some(c.std_address.as_str()),
                                "{id} address"
                            );
                            let lat: Option<f64> = r.get("geo_lat");
                            assert_eq!(lat, Some(c.lat), "{id} geo_lat");
                        }
                        DataType::IdCard => {
                            let s: Option<String> = r.get("validation_status");
                            assert_eq!(s.as_deref(), Some("valid"), "{id} validation_status");
                            let id_card: Option<String> = r.get("id_card");
                            assert_eq!(
                                id_card.as_deref(),
                                Some(c.id_card.as_str()),
                                "{id} id_card unchanged"
                            );
                        }
                        DataType::Phone => {
                            let phone: Option<String> = r.get("phone");
                            assert_eq!(phone.as_deref(), Some(c.phone.as_str()), "{id} phone");
                            let carrier: Option<String> = r.get("carrier_info");
                            let carrier: Value =
                                serde_json::from_str(&carrier.expect("carrier_info written"))
                                    .unwrap();
                            assert_eq!(carrier["carrier"], "中国移动");
                        }
                    }
                }
            }
        }
    }
}

pub async fn committed_equals_end(env: &Env) -> bool {
    env.all_committed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_events_over_four_partitions_reach_the_database_then_offsets_commit() {
    let env = Env::new("skeleton", 4).await;
    env.migrate().await;
    let customers = generate::customers(1200, 4, 11);
    env.seed(&customers).await;
    let (events, by_customer) = workload(&customers);
    env.publish(&events).await;

    let running = env.start();
    wait_until(
        Duration::from_secs(120),
        "all 1000 events applied",
        || async {
            env.count("SELECT COALESCE(SUM(version), 0)::int8 FROM customer_profile")
                .await
                == 1000
        },
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "committed offsets = end offsets",
        || async { committed_equals_end(&env).await },
    )
    .await;
    running.stop().await;

    assert_final_state(&env, &customers, &by_customer).await;
    let ends = env.end_offsets();
    assert_eq!(
        ends.values().sum::<i64>(),
        1000,
        "all events were on the topic"
    );
    assert!(
        ends.values().all(|e| *e > 0),
        "all four partitions carried events: {ends:?}"
    );
    // The watermark agrees with Kafka.
    let marks: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition_id, next_offset FROM govsync_watermark ORDER BY 1")
            .fetch_all(&env.pg)
            .await
            .unwrap();
    for (p, w) in marks {
        assert_eq!(w, ends[&p], "watermark of partition {p}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM govsync_change_log").await,
        1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_database_commit_and_offset_commit_applies_nothing_twice() {
    let env = Env::new("crashgap", 4).await;
    env.migrate().await;
    let customers = generate::customers(1200, 4, 12);
    env.seed(&customers).await;
    let (events, by_customer) = workload(&customers);
    env.publish(&events).await;

    let mut raw = env.raw.clone();
    // Small batches so that several commit before the crash point.
    raw.batch.min_size = 50;
    raw.batch.address = [50, 100];
    raw.batch.id_card = [50, 100];
    raw.batch.phone = [50, 100];
    raw.flow.max_buffered_per_partition = 5000;
    let child = env.spawn_binary(
        &raw,
        &[("GOVSYNC_CRASH_AT", "db_after_commit:3".into())],
        &env.log_path("crash"),
    );
    let status = child.wait(Duration::from_secs(120)).await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the processor killed itself at the crash point: {status:?}"
    );

    // The gap exists: the database is ahead of Kafka for some partition.
    let marks: HashMap<i32, i64> =
        sqlx::query_as::<_, (i32, i64)>("SELECT partition_id, next_offset FROM govsync_watermark")
            .fetch_all(&env.pg)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let committed = env.committed();
    let ahead = marks
        .iter()
        .filter(|(p, w)| committed.get(p).copied().flatten().unwrap_or(0) < **w)
        .count();
    assert!(
        ahead >= 1,
        "the crash left the database ahead of Kafka: watermarks {marks:?}, committed {committed:?}"
    );
    let applied_before: i64 = env
        .count("SELECT COALESCE(SUM(version), 0)::int8 FROM customer_profile")
        .await;
    assert!(
        applied_before > 0 && applied_before < 1000,
        "crashed mid-way ({applied_before} applied)"
    );

    // Restart without the crash point: it resumes at the watermark.
    let child = env.spawn_binary(&raw, &[], &env.log_path("restart"));
    wait_until(
        Duration::from_secs(120),
        "all events applied after the restart",
        || async {
            env.count("SELECT COALESCE(SUM(version), 0)::int8 FROM customer_profile")
                .await
                >= 1000
        },
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "committed offsets = end offsets",
        || async { committed_equals_end(&env).await },
    )
    .await;
    // SIGTERM: a clean stop.
    child.signal(libc::SIGTERM);
    let status = child.wait(Duration::from_secs(60)).await;
    assert!(status.success(), "clean shutdown on SIGTERM: {status:?}");

    assert_eq!(
        env.count("SELECT COALESCE(SUM(version), 0)::int8 FROM customer_profile")
            .await,
        1000,
        "nothing applied twice"
    );
    assert_final_state(&env, &customers, &by_customer).await;
    assert_eq!(
        env.count("SELECT count(*) FROM govsync_change_log").await,
        1000
    );
}
