//! The peer benchmark: govsync next to Kafka Connect with the Debezium JDBC
//! sink, fed the same backlog against the same broker and database.
//!
//! Per run, on a fresh schema and fresh topics: N customers seeded into a
//! `customer_profile` table (the dev table of `govsync migrate
//! --with-target-table`), N address updates for them published to a topic
//! of four partitions (govsync: governance events; Debezium: JSON with a
//! schema envelope carrying the same new values), then the system started
//! and timed until all N rows have changed. Runs alternate: govsync, then
//! each Debezium writer, PEER_PAIRS times.
//!
//! Per run it prints steady-state events/s = N / (last row changed − first
//! row changed), the wall time from starting the process to the last
//! change, and the process's peak RSS (VmHWM of `govsync run`, of the
//! Connect JVM); at the end the best and median per system and the ratios.
//! How a change is timed: `table.rs`.
//!
//! Run it with scripts/bench-peer, which starts the services, builds
//! govsync, fetches Connect and the Debezium plugin, and runs
//! `cargo bench --bench peer` (env: PEER_EVENTS, PEER_PAIRS, PEER_DEBEZIUM
//! = jdbc-batch | unnest | both, PEER_CONNECT_HEAP, PEER_STALL_SECS, PEER_RUN_TIMEOUT_SECS).

mod common;

/// The benchmark's own files, in benches/peer/ (an inline module, so that
/// the crate root can sit beside benches/common/).
mod peer {
    pub mod backlog;
    pub mod child;
    pub mod debezium;
    pub mod govsync_side;
    pub mod setup;
    pub mod table;
}

use peer::{backlog, child, debezium, govsync_side, setup, table};

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use govsync::demo::generate::{self, Customer};
use rdkafka::ClientConfig;
use sqlx::PgPool;

use self::child::Child;
use self::setup::{Setup, System};

fn main() {
    common::main_with(run());
}

/// One measured run.
struct Run {
    system: System,
    /// Events per second from the first row changed to the last.
    rate: f64,
    /// First to last change, seconds.
    steady: f64,
    /// Process start to last change, seconds.
    wall: f64,
    peak_rss_mib: f64,
}

async fn run() {
    let setup = Setup::from_env();
    setup.check_installed();
    let _ = std::fs::remove_dir_all(&setup.work);
    std::fs::create_dir_all(&setup.work).unwrap();
    let customers = generate::customers(setup.events, 4, 5);
    println!(
        "peer benchmark: {} address updates for {} distinct customers, a backlog on {} partitions; \
         {} round(s) of: {}",
        setup.events,
        setup.events,
        backlog::PARTITIONS,
        setup.pairs,
        setup
            .systems
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:>5}  {:<22} {:>9} {:>13} {:>8} {:>13}",
        "round", "system", "events/s", "first→last s", "wall s", "peak RSS MiB"
    );
    let mut runs = Vec::new();
    for round in 1..=setup.pairs {
        for &system in &setup.systems {
            let r = one_run(&setup, &customers, system, round).await;
            println!(
                "{round:>5}  {:<22} {:>9.0} {:>13.1} {:>8.1} {:>13.0}",
                system.label(),
                r.rate,
                r.steady,
                r.wall,
                r.peak_rss_mib
            );
            runs.push(r);
        }
    }
    summary(&setup, &runs);
}

/// Names of one run's schema, topics, consumer group and files.
struct RunNames {
    tag: String,
    source: String,
    review: String,
    dlq: String,
}

async fn one_run(setup: &Setup, customers: &[Customer], system: System, round: usize) -> Run {
    let tag = format!("peer_{}_{round}_{}", std::process::id(), system.tag());
    let names = RunNames {
        source: format!("{tag}.results"),
        review: format!("{tag}.review"),
        dlq: format!("{tag}.dlq"),
        tag,
    };
    let dir = setup.work.join(&names.tag);
    std::fs::create_dir_all(&dir).unwrap();
    let (schema, pool) = common::fresh_schema(&format!("peer_{}{round}", system.tag()), 2).await;
    let kafka = backlog::client(&setup.kafka);
    let (mut child, started, group) = match system {
        System::Govsync => {
            start_govsync(setup, customers, &names, &schema, &pool, &kafka, &dir).await
        }
        System::Debezium(writer) => {
            table::create(&pool).await;
            debezium::write_config(setup, writer, &names.tag, &names.source, &schema, &dir);
            prepare(
                &pool,
                customers,
                &kafka,
                &names.source,
                &[],
                debezium::records(customers),
            )
            .await;
            let started = Utc::now();
            let child = debezium::start(setup, &dir);
            (child, started, format!("connect-{}", names.tag))
        }
    };
    let stall = Duration::from_secs(setup.stall_secs);
    let timeout = Duration::from_secs(setup.timeout_secs);
    let waited = table::wait_changed(&pool, customers.len(), &mut child, stall, timeout).await;
    let peak_rss_mib = child.peak_rss_mib();
    child.stop(Duration::from_secs(20));
    let verified = match waited {
        Ok(_) => table::verified(&pool, customers).await,
        Err(_) => 0,
    };
    pool.close().await;
    common::drop_schema(&schema).await;
    let topics = [
        names.source.as_str(),
        names.review.as_str(),
        names.dlq.as_str(),
    ];
    backlog::remove(&kafka, &topics, &group).await;
    let changes = waited.unwrap_or_else(|e| panic!("{}: {e}", system.label()));
    assert_eq!(
        verified,
        customers.len() as i64,
        "{}: rows holding the new values",
        system.label()
    );
    let (first, last) = (changes.first.unwrap(), changes.last.unwrap());
    let steady = seconds(last - first);
    Run {
        system,
        rate: customers.len() as f64 / steady,
        steady,
        wall: seconds(last - started),
        peak_rss_mib,
    }
}

/// govsync's config and tables, the backlog, then `govsync run`; returns the
/// process, when it started and its consumer group.
async fn start_govsync(
    setup: &Setup,
    customers: &[Customer],
    names: &RunNames,
    schema: &str,
    pool: &PgPool,
    kafka: &ClientConfig,
    dir: &Path,
) -> (Child, DateTime<Utc>, String) {
    let gs = govsync_side::Names {
        tag: &names.tag,
        schema,
        source: &names.source,
        review: &names.review,
        dlq: &names.dlq,
    };
    let config = govsync_side::write_config(setup, &gs, dir);
    govsync_side::migrate(setup, &config);
    let others = [names.review.as_str(), names.dlq.as_str()];
    prepare(pool, customers, kafka, &names.source, &others, |i| {
        govsync_side::message(customers, i)
    })
    .await;
    let started = Utc::now();
    let child = govsync_side::start(setup, &config, dir);
    (child, started, names.tag.clone())
}

/// The same for both systems: stamped and seeded table, topics, backlog.
async fn prepare(
    pool: &PgPool,
    customers: &[Customer],
    kafka: &ClientConfig,
    source: &str,
    others: &[&str],
    message: impl Fn(usize) -> (Vec<u8>, Vec<u8>),
) {
    table::stamp_and_seed(pool, customers).await;
    backlog::create_topics(kafka, source, others).await;
    backlog::publish(kafka, source, customers.len(), message);
}

fn seconds(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Best and median per system, and govsync against Debezium's best writer.
fn summary(setup: &Setup, runs: &[Run]) {
    let of = |s: System, f: fn(&Run) -> f64| -> Vec<f64> {
        runs.iter().filter(|r| r.system == s).map(f).collect()
    };
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!();
    println!(
        "{:<22} {:>10} {:>12} {:>14} {:>14}",
        "system", "best ev/s", "median ev/s", "median wall s", "max RSS MiB"
    );
    for &s in &setup.systems {
        let rates = of(s, |r| r.rate);
        println!(
            "{:<22} {:>10.0} {:>12.0} {:>14.1} {:>14.0}",
            s.label(),
            best(&rates),
            median(rates.clone()),
            median(of(s, |r| r.wall)),
            best(&of(s, |r| r.peak_rss_mib))
        );
    }
    let g = of(System::Govsync, |r| r.rate);
    let debezium: Vec<System> = setup
        .systems
        .iter()
        .copied()
        .filter(|s| *s != System::Govsync)
        .collect();
    let Some(&top) = debezium
        .iter()
        .max_by(|a, b| best(&of(**a, |r| r.rate)).total_cmp(&best(&of(**b, |r| r.rate))))
    else {
        return;
    };
    let d = of(top, |r| r.rate);
    println!(
        "events/s govsync / {} (Debezium's best writer): best {:.2}, median {:.2}",
        top.label(),
        best(&g) / best(&d),
        median(g.clone()) / median(d)
    );
    let g_rss = best(&of(System::Govsync, |r| r.peak_rss_mib));
    let connect_rss = runs
        .iter()
        .filter(|r| r.system != System::Govsync)
        .map(|r| r.peak_rss_mib)
        .fold(f64::INFINITY, f64::min);
    println!(
        "peak RSS govsync / Connect: {:.2} (govsync's highest {g_rss:.0} MiB over Connect's lowest {connect_rss:.0} MiB)",
        g_rss / connect_rss
    );
}
