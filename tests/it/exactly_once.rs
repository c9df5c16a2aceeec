//! Exactly-once under crashes and rebalances, through real processes, the
//! real broker and PostgreSQL: after every SIGKILL and restart the table
//! equals the model of applying each event once in order, and the review
//! and dead-letter topics (read_committed) hold each expected message once.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use sqlx::Row;

use crate::harness::{Env, Proc, RawOut, header, wait_until};
use crate::workload::{Expect, Workload};

/// Small batches and quick flushes, so that crashes land mid-stream.
fn crash_config(env: &Env) -> govsync::config::RawConfig {
    let mut raw = env.raw.clone();
    raw.batch.max_wait = "50ms".into();
    raw.batch.min_size = 20;
    raw.batch.address = [20, 60];
    raw.batch.id_card = [20, 60];
    raw.batch.phone = [20, 60];
    raw.flow.max_buffered_per_partition = 5000;
    raw
}

async fn caught_up(env: &Env, total: i64) -> bool {
    let marks: i64 = env
        .count("SELECT COALESCE(SUM(next_offset), 0)::int8 FROM govsync_watermark")
        .await;
    if marks < total {
        return false;
    }
    env.all_committed()
}

/// The invariant: table = model; review and DLQ topics hold each expected
/// message exactly once.
async fn assert_exactly_once(env: &Env, w: &Workload, offsets: &[(i32, i64)]) {
    let model = w.model();
    let rows = sqlx::query("SELECT customer_id, version, address, phone, validation_status, quality_score, review_flag FROM customer_profile")
        .fetch_all(&env.pg)
        .await
        .unwrap();
    assert_eq!(rows.len(), model.len());
    let mut mismatches = Vec::new();
    for r in rows {
        let id: String = r.get("customer_id");
        let m = &model[&id];
        let got = crate::workload::ModelRow {
            version: r.get("version"),
            address: r.get("address"),
            phone: r.get("phone"),
            validation_status: r.get("validation_status"),
            quality_score: r.get("quality_score"),
            review_flag: r.get("review_flag"),
        };
        if got != *m {
            mismatches.push(format!("{id}: got {got:?}, model {m:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} rows differ from the model:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(10)].join("\n")
    );

    // Review topic: every expected event id exactly once, nothing else.
    let review = env.read_topic(&env.raw.kafka.review_topic);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for m in &review {
        let doc: Value = serde_json::from_slice(m.value.as_ref().unwrap()).unwrap();
        *seen
            .entry(doc["event_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let expected = w.expected_review();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "review messages published more than once: {twice:?}"
    );
    let got: std::collections::BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(
        got, expected,
        "review topic holds exactly the expected events"
    );

    // Dead-letter topic: every expected source offset exactly once, with
    // its class and its original bytes.
    let dlq = env.read_topic(&env.raw.kafka.dlq_topic);
    let mut by_offset: HashMap<(i32, i64), Vec<&govsync::output::RawMessage>> = HashMap::new();
    for m in &dlq {
        let p: i32 = header(m, "govsync.source.partition")
            .unwrap()
            .parse()
            .unwrap();
        let o: i64 = header(m, "govsync.source.offset").unwrap().parse().unwrap();
        by_offset.entry((p, o)).or_default().push(m);
    }
    let expected = w.expected_dlq();
    assert_eq!(
        dlq.len(),
        expected.len(),
        "one dead-letter message per invalid event"
    );
    for (i, class) in expected {
        let at = offsets[i];
        let got = by_offset
            .get(&at)
            .unwrap_or_else(|| panic!("message {i} at {at:?} not dead-lettered"));
        assert_eq!(got.len(), 1, "message {i} dead-lettered exactly once");
        assert_eq!(header(got[0], "govsync.error.class"), Some(class));
        assert_eq!(
            got[0].value.as_deref(),
            Some(w.msgs[i].value.as_slice()),
            "original bytes"
        );
        assert_eq!(got[0].key, w.msgs[i].key, "original key");
    }
}

fn raw_msgs(w: &Workload, range: std::ops::Range<usize>) -> Vec<RawOut> {
    w.msgs[range]
        .iter()
        .map(|m| (m.key.clone(), m.value.clone(), vec![]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_crash_point_many_times_loses_and_duplicates_nothing() {
    let env = Env::new("crashpoints", 4).await;
    env.migrate().await;
    let w = Workload::mixed(2400, 300, 31);
    env.seed(&w.customers).await;
    let mut raw = crash_config(&env);
    // A restart reclaims its partitions at once (same group.instance.id)
    // and fences its previous transactional producer (same transactional.id).
    raw.kafka.static_membership = true;

    let points = [
        "db_before_commit",
        "db_after_commit",
        "kafka_mid_txn",
        "kafka_after_commit",
        "random",
    ];
    let rounds = 15;
    let chunk = w.msgs.len() / rounds;
    let mut offsets = Vec::new();
    let mut rng = govsync::demo::generate::rng(7);
    let mut hit: BTreeMap<&str, usize> = BTreeMap::new();
    let log = env.log_path("crash");
    for round in 0..rounds {
        let end = if round == rounds - 1 {
            w.msgs.len()
        } else {
            (round + 1) * chunk
        };
        offsets.extend(env.publish_raw(&raw_msgs(&w, round * chunk..end)).await);
        let point = points[round % points.len()];
        let status = if point == "random" {
            let child = env.spawn_binary(&raw, &[], &log);
            tokio::time::sleep(Duration::from_millis(rng.random_range(300..2500))).await;
            child.signal(libc::SIGKILL);
            child.wait(Duration::from_secs(10)).await
        } else {
            let n = rng.random_range(1..=3);
            let child =
                env.spawn_binary(&raw, &[("GOVSYNC_CRASH_AT", format!("{point}:{n}"))], &log);
            child.wait(Duration::from_secs(30)).await
        };
        assert_eq!(
            status.signal(),
            Some(9),
            "round {round} ({point}) ended by SIGKILL: {status:?}"
        );
        *hit.entry(point).or_default() += 1;
    }
    let text = std::fs::read_to_string(&log).unwrap();
    for p in &points[..4] {
        assert!(
            text.contains(&format!("crash point {p} reached")),
            "crash point {p} was reached at least once"
        );
    }

    let child = env.spawn_binary(&raw, &[], &log);
    let total = offsets.len() as i64;
    wait_until(Duration::from_secs(180), "the final run catches up", || {
        caught_up(&env, total)
    })
    .await;
    child.signal(libc::SIGTERM);
    let status = child.wait(Duration::from_secs(60)).await;
    assert!(status.success(), "clean stop: {status:?}");

    eprintln!("workload: {:?}; crash rounds: {hit:?}", w.counts());
    assert_exactly_once(&env, &w, &offsets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_one_killed_and_restarted_while_events_flow() {
    let env = Env::new("rebalance", 4).await;
    env.migrate().await;
    let w = Workload::mixed(3000, 400, 32);
    env.seed(&w.customers).await;
    let mut a = crash_config(&env);
    a.kafka.instance_id = format!("{}-a", env.name);
    let mut b = a.clone();
    b.kafka.instance_id = format!("{}-b", env.name);
    let (log_a, log_b) = (env.log_path("a"), env.log_path("b"));

    let chunks = 10;
    let chunk = w.msgs.len() / chunks;
    let mut offsets = Vec::new();
    let pa = env.spawn_binary(&a, &[], &log_a);
    let pb = env.spawn_binary(&b, &[], &log_b);
    let mut pa: Option<Proc> = Some(pa);
    for i in 0..chunks {
        let end = if i == chunks - 1 {
            w.msgs.len()
        } else {
            (i + 1) * chunk
        };
        offsets.extend(env.publish_raw(&raw_msgs(&w, i * chunk..end)).await);
        tokio::time::sleep(Duration::from_millis(700)).await;
        if i == 3 {
            // Kill A mid-stream: B takes its partitions after the session
            // timeout (a rebalance), then A comes back (another one).
            let child = pa.take().unwrap();
            child.signal(libc::SIGKILL);
            child.wait(Duration::from_secs(10)).await;
        }
        if i == 7 {
            pa = Some(env.spawn_binary(&a, &[], &log_a));
        }
    }
    let total = offsets.len() as i64;
    wait_until(Duration::from_secs(180), "both processes catch up", || {
        caught_up(&env, total)
    })
    .await;
    let pa = pa.unwrap();
    pa.signal(libc::SIGTERM);
    pb.signal(libc::SIGTERM);
    assert!(pa.wait(Duration::from_secs(60)).await.success());
    assert!(pb.wait(Duration::from_secs(60)).await.success());
    let text_b = std::fs::read_to_string(&log_b).unwrap();
    assert!(
        text_b.matches("partition assigned").count() > 2,
        "B was reassigned partitions during the run"
    );
    assert_exactly_once(&env, &w, &offsets).await;
    assert!(
        w.msgs.iter().any(|m| m.expect == Expect::Duplicate)
            && w.msgs.iter().any(|m| m.expect == Expect::Stale)
    );
}
