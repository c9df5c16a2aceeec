//! Exactly-once under crashes and rebalances, through real processes, the
//! real broker and PostgreSQL: after every SIGKILL and restart the table
//! equals the model of applying each event once in order, and the review
//! and dead-letter topics (read_committed) hold each expected message once.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use rand::Rng;

use crate::common::cust_base;
use crate::common::harness::{Env, Proc, RawOut, wait_until};
use crate::common::workload::{
    Expect, Workload, assert_exactly_once, assert_exactly_once_in, caught_up,
};

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
    let raw = crash_config(&env);
    let offsets = crash_rounds(&env, &w, &raw, 15).await;
    assert_exactly_once(&env, &w, &offsets).await;
}

/// The same crash schedule on the business's own table (issue 14): other
/// names, no version column, CHAR(1) Y/N, NUMERIC(3,2), zone-less times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_crash_point_on_a_mapped_business_table() {
    let env = Env::new("crashmapped", 4).await;
    env.migrate().await;
    let w = Workload::mixed(1600, 200, 33);
    env.seed(&w.customers).await;
    sqlx::query(cust_base::PG_DDL)
        .execute(&env.pg)
        .await
        .unwrap();
    cust_base::copy_from_dev(&env.pg).await;
    let raw = cust_base::mapping(crash_config(&env));
    let offsets = crash_rounds(&env, &w, &raw, 10).await;
    assert_exactly_once_in(&env, &w, &offsets, cust_base::PG_MODEL_ROWS).await;
    assert_eq!(
        env.count("SELECT count(*) FROM customer_profile WHERE version > 0")
            .await,
        0,
        "the dev table was not written"
    );
}

/// Publishes the workload in `rounds` chunks, each processed by a run that
/// ends in SIGKILL (at each crash point in turn, or at a random moment),
/// then lets a last run catch up and stop cleanly. Returns the offsets of
/// the published messages.
async fn crash_rounds(
    env: &Env,
    w: &Workload,
    raw: &govsync::config::RawConfig,
    rounds: usize,
) -> Vec<(i32, i64)> {
    let mut raw = raw.clone();
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
        offsets.extend(env.publish_raw(&raw_msgs(w, round * chunk..end)).await);
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

    let starts = |text: &str| text.matches("govsync starting").count();
    let before = starts(&std::fs::read_to_string(&log).unwrap_or_default());
    let child = env.spawn_binary(&raw, &[], &log);
    let total = offsets.len() as i64;
    // The last crash round may have applied everything already: wait for
    // this run to be up before judging that it caught up and stopping it.
    wait_until(Duration::from_secs(60), "the final run starts", || {
        let log = log.clone();
        async move { starts(&std::fs::read_to_string(&log).unwrap_or_default()) > before }
    })
    .await;
    wait_until(Duration::from_secs(180), "the final run catches up", || {
        caught_up(env, total)
    })
    .await;
    child.signal(libc::SIGTERM);
    let status = child.wait(Duration::from_secs(60)).await;
    assert!(status.success(), "clean stop: {status:?}");
    eprintln!("workload: {:?}; crash rounds: {hit:?}", w.counts());
    offsets
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
    // The kill and the restart moved partitions: more assignments than the
    // four of the start. (With cooperative rebalancing only the partitions
    // that move are assigned again, and the restarted A may take its own
    // back without B ever holding them, so count both logs.)
    let assigned = |log: &std::path::Path| {
        std::fs::read_to_string(log)
            .unwrap()
            .matches("partition assigned")
            .count()
    };
    let (a_lines, b_lines) = (assigned(&log_a), assigned(&log_b));
    assert!(
        a_lines + b_lines > 4 && a_lines > 0 && b_lines > 0,
        "partitions moved during the run: {a_lines} assignments in A's log, {b_lines} in B's"
    );
    assert_exactly_once(&env, &w, &offsets).await;
    assert!(
        w.msgs.iter().any(|m| m.expect == Expect::Duplicate)
            && w.msgs.iter().any(|m| m.expect == Expect::Stale)
    );
}
