//! Database faults while events flow: terminated sessions, a restarted and
//! a stopped PostgreSQL, a refused and a silent connection (through a
//! proxy), and a rebalance while partitions are paused. Nothing is lost,
//! nothing is applied twice, nothing is dead-lettered for an
//! infrastructure fault, and processing resumes without a restart.

use std::time::{Duration, Instant};

use super::support::{
    self, Mode, Proxy, Templates, free_port, publish_fast, scrape, serial, speed_up,
};
use crate::common::harness::{Env, wait_until};
use crate::common::workload::{Workload, assert_exactly_once, caught_up};

const STALLED: &str = "govsync_partition_stalled";
const PAUSED: &str = "govsync_partition_paused";
const RETRIES: &str = "govsync_retries_total";

/// Small batches (many transactions to interrupt), quick retries.
fn fault_config(env: &Env) -> govsync::config::RawConfig {
    let mut raw = env.raw.clone();
    raw.batch.max_wait = "50ms".into();
    raw.batch.min_size = 20;
    raw.batch.max_size = 200;
    raw.batch.address = [50, 200];
    raw.batch.id_card = [50, 200];
    raw.batch.phone = [50, 200];
    raw.flow.max_buffered_per_partition = 2000;
    raw.retry.connection_base = "100ms".into();
    raw.retry.connection_attempts = 3;
    raw.retry.timeout_step = "200ms".into();
    raw.retry.stalled_backoff_max = "2s".into();
    raw.database.connect_timeout = "2s".into();
    raw.metrics.listen = format!("127.0.0.1:{}", free_port());
    raw
}

fn metrics_port(raw: &govsync::config::RawConfig) -> u16 {
    raw.metrics
        .listen
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap()
}

/// Waits until the processor reports a partition both stalled and paused;
/// returns it.
async fn a_partition_stalled_and_paused(port: u16, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = scrape(port).await {
            let paused = s.by_label(PAUSED);
            if let Some((p, _)) = s
                .by_label(STALLED)
                .into_iter()
                .find(|(p, v)| *v == 1.0 && paused.get(p) == Some(&1.0))
            {
                return p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no partition was reported stalled and paused within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After recovery: nothing stalled, nothing paused.
async fn assert_all_flowing(port: u16) {
    let s = scrape(port).await.expect("metrics endpoint answers");
    let stalled = s.by_label(STALLED);
    let paused = s.by_label(PAUSED);
    assert!(
        stalled.values().all(|v| *v == 0.0),
        "no partition stalled: {stalled:?}"
    );
    assert!(
        paused.values().all(|v| *v == 0.0),
        "no partition paused: {paused:?}"
    );
}

/// Issue 16: the outage is logged as one: a line when it starts and one
/// when it ends, a summary a minute in between, not a line per attempt and
/// partition; WARN and ERROR lines stay a handful per minute.
fn assert_outage_reads_well(text: &str, took: Duration) {
    assert_outage_of("the database", text, took);
}

fn assert_outage_of(service: &str, text: &str, took: Duration) {
    assert!(
        text.contains(&format!("{service} is failing")),
        "the outage's start is logged"
    );
    assert!(
        text.contains(&format!("{service} works again after")),
        "the outage's end is logged"
    );
    let loud: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    let minutes = (took.as_secs_f64() / 60.0).max(1.0);
    eprintln!(
        "{} WARN/ERROR lines in {:.1} minutes:\n{}",
        loud.len(),
        took.as_secs_f64() / 60.0,
        loud.join("\n")
    );
    assert!(
        loud.len() as f64 <= 6.0 * minutes,
        "at most a handful of WARN/ERROR lines per minute: {} in {minutes:.1} min",
        loud.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_sessions_and_a_restarted_postgres_lose_nothing_and_apply_nothing_twice() {
    let _serial = serial().await;
    let started = Instant::now();
    let env = Env::new("pgrestart", 4).await;
    env.migrate().await;
    let w = Workload::mixed(6000, 600, 61);
    env.seed(&w.customers).await;
    let mut raw = fault_config(&env);
    // Named sessions: only this processor's are terminated (PostgreSQL
    // keeps 63 bytes of a name).
    let app = format!("govsync-t{}", std::process::id());
    raw.database.url = format!("{}?application_name={app}", env.raw.database.url);
    let port = metrics_port(&raw);
    let log = env.log_path("pgrestart");
    let child = env.spawn_binary(&raw, &[], &log);

    let chunks = 10;
    let chunk = w.msgs.len() / chunks;
    let mut offsets = Vec::new();
    let mut terminated = 0;
    let mut stopped = None;
    for i in 0..chunks {
        let end = if i == chunks - 1 {
            w.msgs.len()
        } else {
            (i + 1) * chunk
        };
        if i == 7 {
            // A longer outage: retries run out and the partitions stall.
            eprintln!("stopping PostgreSQL");
            stopped = Some(support::pg_stop());
        }
        offsets.extend(env.publish_raw(&w.raw(i * chunk..end)).await);
        match i {
            1 | 3 => {
                // Kill the processor's sessions mid-stream (twice: whatever
                // was in flight, and the reconnected pool).
                terminated += support::terminate_sessions(&env, &app).await;
            }
            5 => {
                eprintln!("restarting PostgreSQL");
                support::pg_ctl("restart");
                support::wait_for_pg(Duration::from_secs(60)).await;
            }
            7 => {
                let stalled = a_partition_stalled_and_paused(port, Duration::from_secs(30)).await;
                eprintln!("partition {stalled} reported stalled and paused; starting PostgreSQL");
                stopped.take().expect("stopped above").start();
                support::wait_for_pg(Duration::from_secs(60)).await;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert!(
        terminated >= 1,
        "the processor's sessions were found and terminated"
    );
    let total = offsets.len() as i64;
    wait_until(
        Duration::from_secs(120),
        "the processor catches up by itself",
        || caught_up(&env, total),
    )
    .await;
    assert_all_flowing(port).await;
    let s = scrape(port).await.unwrap();
    // A batch in flight when its session is terminated or PostgreSQL
    // restarts fails as `connection`; while PostgreSQL is stopped, taking
    // a connection fails as `timeout` (the pool's acquire timeout).
    // Whether a batch is in flight at a termination is timing: CI saw runs
    // with 0 connection retries and the stall's timeouts only.
    let connection_retries = s.get(RETRIES, "class=\"connection\"").unwrap_or(0.0);
    let timeout_retries = s.get(RETRIES, "class=\"timeout\"").unwrap_or(0.0);
    assert!(
        connection_retries + timeout_retries > 0.0,
        "the outage's failures were retried"
    );
    child.signal(libc::SIGTERM);
    let status = child.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "clean stop: {status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_outage_reads_well(&text, started.elapsed());

    // Nothing dead-lettered for the faults (only the workload's invalid
    // events), nothing lost, nothing applied twice.
    assert_exactly_once(&env, &w, &offsets).await;
    eprintln!(
        "terminated {terminated} sessions, restarted and stopped PostgreSQL; {} connection and {} \
         timeout retries; workload {:?}; test took {:?}",
        connection_retries,
        timeout_retries,
        w.counts(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_database_stalls_and_pauses_partitions_which_resume_and_sigterm_stops_promptly() {
    let _serial = serial().await;
    let started = Instant::now();
    let env = Env::new("outage", 2).await;
    env.migrate().await;
    let w = Workload::mixed(3000, 300, 62);
    env.seed(&w.customers).await;
    let proxy = Proxy::start().await;
    let mut raw = fault_config(&env);
    let app = format!("govsync-t{}", std::process::id());
    raw.database.url = format!("{}?application_name={app}", proxy.url());
    raw.database.statement_timeout = "5s".into();
    let port = metrics_port(&raw);
    let log = env.log_path("outage");
    let child = env.spawn_binary(&raw, &[], &log);
    let mut offsets = Vec::new();

    offsets.extend(env.publish_raw(&w.raw(0..1000)).await);
    wait_until(
        Duration::from_secs(60),
        "the first third is applied",
        || caught_up(&env, 1000),
    )
    .await;

    // The database goes away (connections closed, new ones refused).
    proxy.set(Mode::Refuse);
    offsets.extend(env.publish_raw(&w.raw(1000..2000)).await);
    let p = a_partition_stalled_and_paused(port, Duration::from_secs(30)).await;
    let during = support::applied_upto(&env).await;
    assert_eq!(
        during, 1000,
        "nothing is applied while the database is away"
    );
    eprintln!("partition {p} stalled and paused in the consumer; bringing the database back");
    proxy.set(Mode::Pass);
    wait_until(
        Duration::from_secs(60),
        "the processor resumes by itself",
        || caught_up(&env, 2000),
    )
    .await;
    assert_all_flowing(port).await;

    // The network to the database goes silent in the middle of a
    // transaction (slowed so that one is surely running): nothing is
    // refused, nothing answers, no server-side timeout can fire. The
    // transaction deadline turns it into a timeout, the partition stalls...
    support::slow_down(&env, 50.0).await;
    offsets.extend(env.publish_raw(&w.raw(2000..3000)).await);
    wait_until(Duration::from_secs(30), "a transaction in the slowed UPDATE", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'PgSleep'",
        )
        .bind(&app)
        .fetch_one(&env.pg)
        .await
        .is_ok_and(|n| n >= 1)
    })
    .await;
    proxy.set(Mode::Blackhole);
    let silent = Instant::now();
    let p = a_partition_stalled_and_paused(port, Duration::from_secs(60)).await;
    eprintln!(
        "silent database: partition {p} stalled after {:?}",
        silent.elapsed()
    );
    // ... and SIGTERM still stops the processor promptly.
    let sigterm = Instant::now();
    child.signal(libc::SIGTERM);
    let status = child.wait(Duration::from_secs(60)).await;
    let stop = sigterm.elapsed();
    eprintln!("SIGTERM during a silent database outage: stopped in {stop:?} ({status:?})");
    assert!(status.success(), "clean stop: {status:?}");
    assert!(stop < Duration::from_secs(15), "stopped promptly: {stop:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_outage_reads_well(&text, started.elapsed());
    assert!(
        text.contains("did not finish within"),
        "the silent transaction ran into its deadline"
    );

    // (Passing again drops the silent connections; the server then rolls
    // back their transactions and releases their locks.)
    proxy.set(Mode::Pass);
    speed_up(&env).await;
    let child = env.spawn_binary(&raw, &[], &log);
    wait_until(Duration::from_secs(60), "a new run catches up", || {
        caught_up(&env, 3000)
    })
    .await;
    child.signal(libc::SIGTERM);
    assert!(child.wait(Duration::from_secs(30)).await.success());
    assert_exactly_once(&env, &w, &offsets).await;
    eprintln!("test took {:?}", started.elapsed());
}

/// Partitions paused for backpressure when a rebalance takes them away
/// come back readable: the pipeline starts every assignment unpaused, so
/// the consumer must too (no pause left on the partition, no stale pause
/// command applied to the new assignment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_paused_when_a_rebalance_takes_it_is_read_again_after() {
    let _serial = serial().await;
    let started = Instant::now();
    let env = Env::new("pausedrebalance", 4).await;
    env.migrate().await;
    let customers = support::seed(&env, 400, 4, 63).await;
    let t = Templates::new(&customers, "pausedrebalance", false);
    let n = 4000;
    // Customer i is in region i % 4: one region per partition.
    publish_fast(&env, &t, 0..n, |i| Some((i % customers.len() % 4) as i32));

    let mut raw = env.raw.clone();
    raw.batch.min_size = 20;
    raw.batch.max_size = 50;
    raw.batch.address = [20, 50];
    raw.batch.id_card = [20, 50];
    raw.batch.phone = [20, 50];
    raw.flow.max_buffered_per_partition = 100;
    let mut a = raw.clone();
    a.kafka.instance_id = format!("{}-a", env.name);
    a.metrics.listen = format!("127.0.0.1:{}", free_port());
    let mut b = raw.clone();
    b.kafka.instance_id = format!("{}-b", env.name);
    // Slow enough that A's buffers fill and every partition pauses.
    support::slow_down(&env, 20.0).await;
    let pa = env.spawn_binary(&a, &[], &env.log_path("a"));
    let port = metrics_port(&a);
    wait_until(
        Duration::from_secs(60),
        "A pauses all four partitions",
        || async {
            scrape(port)
                .await
                .is_some_and(|s| s.by_label(PAUSED).values().filter(|v| **v == 1.0).count() == 4)
        },
    )
    .await;
    // B joins: the group rebalances while A's partitions are paused.
    let pb = env.spawn_binary(&b, &[], &env.log_path("b"));
    wait_until(Duration::from_secs(60), "B gets partitions", || async {
        std::fs::read_to_string(env.log_path("b")).is_ok_and(|t| t.contains("partition assigned"))
    })
    .await;
    speed_up(&env).await;
    wait_until(
        Duration::from_secs(90),
        "both instances read all their partitions to the end",
        || caught_up(&env, n as i64),
    )
    .await;
    pa.signal(libc::SIGTERM);
    pb.signal(libc::SIGTERM);
    assert!(pa.wait(Duration::from_secs(30)).await.success());
    assert!(pb.wait(Duration::from_secs(30)).await.success());
    support::delete_topics(&env).await;
    support::drop_schema(&env).await;
    eprintln!("test took {:?}", started.elapsed());
}

/// Issue 16: the broker stopped for ~15 s under load and started again: a
/// handful of log lines, nothing lost, nothing applied twice, nothing
/// dead-lettered for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_logs_a_handful_of_lines_and_loses_nothing() {
    let _serial = serial().await;
    let started = Instant::now();
    let env = Env::new("brokerrestart", 4).await;
    env.migrate().await;
    let w = Workload::mixed(6000, 600, 63);
    env.seed(&w.customers).await;
    let mut raw = fault_config(&env);
    raw.kafka.static_membership = true;
    let log = env.log_path("brokerrestart");
    let child = env.spawn_binary(&raw, &[], &log);
    let chunks = 6;
    let chunk = w.msgs.len() / chunks;
    let mut offsets = Vec::new();
    for i in 0..chunks {
        let end = if i == chunks - 1 {
            w.msgs.len()
        } else {
            (i + 1) * chunk
        };
        offsets.extend(env.publish_raw(&w.raw(i * chunk..end)).await);
        if i == 2 {
            // Under load: the chunk just published is being processed.
            tokio::time::sleep(Duration::from_millis(300)).await;
            eprintln!("stopping the broker");
            let stopped = support::kafka_stop();
            tokio::time::sleep(Duration::from_secs(15)).await;
            eprintln!("starting the broker");
            stopped.start();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let total = offsets.len() as i64;
    wait_until(
        Duration::from_secs(180),
        "the processor catches up after the broker restart",
        || caught_up(&env, total),
    )
    .await;
    // Its end is logged once a transaction committed after it.
    wait_until(
        Duration::from_secs(30),
        "the outage's end is logged",
        || {
            let log = log.clone();
            async move {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("Kafka works again after")
            }
        },
    )
    .await;
    child.signal(libc::SIGTERM);
    let status = child.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "clean stop: {status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_outage_of("Kafka", &text, started.elapsed());
    assert_exactly_once(&env, &w, &offsets).await;
    eprintln!("broker restart test took {:?}", started.elapsed());
}

/// A static member fenced by a consumer with the same `group.instance.id`
/// (what a broker restart can make it do to itself: librdkafka then
/// declares the consumer dead, and it never rejoins) gives up its
/// partitions, joins again with a new consumer by itself and carries on:
/// nothing lost, nothing applied twice, no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_static_member_joins_again_with_a_new_consumer() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let _serial = serial().await;
    let env = Env::new("fenced", 4).await;
    env.migrate().await;
    let w = Workload::mixed(3000, 300, 64);
    env.seed(&w.customers).await;
    let mut raw = fault_config(&env);
    raw.kafka.static_membership = true;
    let log = env.log_path("fenced");
    let child = env.spawn_binary(&raw, &[], &log);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let half = w.msgs.len() / 2;
    let mut offsets = env.publish_raw(&w.raw(0..half)).await;
    wait_until(
        Duration::from_secs(60),
        "govsync holds its four partitions",
        || {
            let n = read_log().matches("partition assigned").count();
            async move { n >= 4 }
        },
    )
    .await;
    {
        // Impostors: the same groups and instance ids (the source topic's
        // consumer, the decision applier's), never committing.
        let cfg = govsync::config::check(raw.clone()).unwrap();
        let impostor = |group: &str, instance: &str, topic: &str| {
            let c: BaseConsumer = env
                .client_config()
                .set("group.id", group)
                .set("group.instance.id", instance)
                .set("enable.auto.commit", "false")
                .set("session.timeout.ms", "6000")
                .create()
                .unwrap();
            c.subscribe(&[topic]).unwrap();
            c
        };
        let source = impostor(&cfg.kafka.group_id, &cfg.kafka.instance_id, env.source());
        let decisions = impostor(
            &cfg.review.decision_group,
            &format!("{}-decisions", cfg.kafka.instance_id),
            &cfg.kafka.decision_topic,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(read_log().contains("the Kafka consumer failed fatally")
            && read_log().contains("the decision consumer failed fatally"))
        {
            assert!(
                Instant::now() < deadline,
                "govsync's consumers were not fenced within 60 s:\n{}",
                read_log()
            );
            let _ = source.poll(Duration::from_millis(50));
            let _ = decisions.poll(Duration::from_millis(50));
        }
    }
    offsets.extend(env.publish_raw(&w.raw(half..w.msgs.len())).await);
    let total = offsets.len() as i64;
    wait_until(
        Duration::from_secs(120),
        "the processor catches up with a new consumer",
        || caught_up(&env, total),
    )
    .await;
    child.signal(libc::SIGTERM);
    let status = child.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "clean stop: {status:?}");
    let text = read_log();
    assert_eq!(
        text.matches("failed fatally").count(),
        2,
        "one fatal error each, one new consumer each:\n{text}"
    );
    assert_eq!(
        text.matches("review decision applier started").count(),
        2,
        "the decision applier joined again:\n{text}"
    );
    assert_exactly_once(&env, &w, &offsets).await;
}
