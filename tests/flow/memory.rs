//! Memory is bounded by configuration, not by the backlog: the real binary
//! works through a backlog of a million events against a slowed database,
//! and its peak RSS (VmHWM) stays under a bound computed from its config.

use std::time::{Duration, Instant};

use govsync::config::RawConfig;

use super::support::{self, Templates, free_port, publish_fast, rss_mib, scrape, serial};
use crate::common::harness::Env;

const MIB: f64 = 1024.0 * 1024.0;

/// The memory bound of a processor, from its configuration (README,
/// "Memory"):
///
/// ```text
/// bound = fixed                           40 MiB: code, runtime, clients, pool (idle: ~33 MiB)
///       + librdkafka's queues             P × (queued.max.messages.kbytes + max.partition.fetch.bytes)
///       + held records × (2S + 512 B)     held = P × max_buffered_per_partition (the credit)
///       + batch work   × 6S               work = min(P, max_in_flight, pool_size) × batch.max_size
/// ```
///
/// S is the largest message, P the partitions the instance holds. A
/// partition's in-flight records count towards `max_buffered_per_partition`
/// (it is not read while buffered plus in-flight records reach it), so the held
/// term covers every record in memory; the last term is what a batch needs
/// in its transaction on top (snapshot, plan, before/after images, bind
/// arrays, the verification re-read). Both per-record costs are measured by
/// the two tests below.
pub struct Bound {
    pub fixed: f64,
    pub prefetch: f64,
    pub held: f64,
    pub work: f64,
}

impl Bound {
    pub fn of(cfg: &govsync::config::Config, partitions: usize, message_bytes: usize) -> Bound {
        let kafka = govsync::kafka::consumer_config(&cfg.kafka);
        let num = |k: &str| kafka.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap();
        // The channel's messages count against the partitions' credit.
        let held = partitions * cfg.flow.max_buffered_per_partition;
        let concurrent = partitions
            .min(cfg.flow.max_in_flight)
            .min(cfg.database.pool_size as usize);
        Bound {
            // The idle process: ~33 MiB released, 39-41 MiB for the debug
            // binary the tests run (more code paged in).
            fixed: 45.0 * MIB,
            // Per partition: each has its own queue.
            prefetch: partitions as f64
                * (num("queued.max.messages.kbytes") * 1024.0 + num("max.partition.fetch.bytes")),
            held: held as f64 * per_record(message_bytes),
            work: (concurrent * cfg.batch.max_size) as f64 * per_record_work(message_bytes),
        }
    }

    pub fn total(&self) -> f64 {
        self.fixed + self.prefetch + self.held + self.work
    }

    fn print(&self) {
        eprintln!("  fixed              {:>7.1} MiB", self.fixed / MIB);
        eprintln!("  librdkafka queue   {:>7.1} MiB", self.prefetch / MIB);
        eprintln!("  held records       {:>7.1} MiB", self.held / MIB);
        eprintln!("  batch work         {:>7.1} MiB", self.work / MIB);
        eprintln!("  bound              {:>7.1} MiB", self.total() / MIB);
    }
}

/// Memory of one held record of `message_bytes`: raw bytes and decoded
/// form.
fn per_record(message_bytes: usize) -> f64 {
    (2 * message_bytes + 512) as f64
}

/// Memory a record needs while its batch is in its transaction, on top of
/// [`per_record`].
fn per_record_work(message_bytes: usize) -> f64 {
    (6 * message_bytes) as f64
}

/// The per-record cost of the bound, measured: records decoded and held as
/// the consumer holds them (raw message and verdict), RSS before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoded_record_costs_at_most_twice_its_size_plus_512_bytes() {
    let _serial = serial().await;
    let customers = govsync::demo::generate::customers(20_000, 4, 81);
    let t = Templates::new(&customers, "backlog", false);
    let rules = govsync::event::RuleSet::default();
    let n = 40_000;
    let pid = std::process::id();
    let before = rss_mib(pid).unwrap().0;
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let (key, value) = t.message(i);
        let raw = std::sync::Arc::new(govsync::message::RawMessage {
            topic: "backlog_1234567_12345678_0.results".into(),
            partition: 0,
            offset: i as i64,
            key: Some(key.to_vec()),
            value: Some(value),
            headers: vec![],
            timestamp_ms: Some(0),
        });
        let verdict =
            govsync::event::decode_and_check(raw.value.as_deref().unwrap(), 1 << 20, &rules);
        assert!(verdict.is_ok());
        held.push((raw, verdict));
    }
    let after = rss_mib(pid).unwrap().0;
    let each = (after - before) * MIB / n as f64;
    eprintln!(
        "{n} decoded records of at most {} B (mean {:.0} B): {:.0} B each; the bound counts {:.0} B",
        t.max_bytes,
        t.mean_bytes,
        each,
        per_record(t.max_bytes)
    );
    assert!(each <= per_record(t.max_bytes));
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_event_backlog_against_a_slow_database_stays_within_the_memory_bound() {
    let _serial = serial().await;
    let started = Instant::now();
    let partitions = 4;
    let env = Env::new("backlog", partitions as i32).await;
    env.migrate().await;
    let customers = support::seed(&env, 20_000, 4, 81).await;
    // Every row update sleeps 1 ms: the database takes about a thousand
    // records per second per connection, the backlog stays a backlog.
    support::slow_down(&env, 1.0).await;
    let t = Templates::new(&customers, "backlog", false);

    let port = free_port();
    let raw = backlog_config(&env, port);
    let cfg = govsync::config::check(raw.clone()).unwrap();
    let bound = Bound::of(&cfg, partitions, t.max_bytes);
    let log = env.log_path("backlog");
    let child = env.spawn_binary(&raw, &[], &log);
    let pid = child.id();
    crate::common::harness::wait_until(Duration::from_secs(60), "partitions assigned", || async {
        scrape(port)
            .await
            .and_then(|s| s.get("govsync_partitions_assigned", ""))
            .is_some_and(|n| n == partitions as f64)
    })
    .await;
    let (idle, _) = rss_mib(pid).unwrap();

    let n = 1_000_000;
    let env2 = &env;
    let t2 = &t;
    let took = tokio::task::block_in_place(|| publish_fast(env2, t2, 0..n, |_| None));
    eprintln!(
        "published {n} events ({:.0} MiB, mean {:.0} B, max {} B) in {took:?}",
        t.mean_bytes * n as f64 / MIB,
        t.mean_bytes,
        t.max_bytes
    );

    // Work through the backlog for a while, sampling memory.
    let window = Duration::from_secs(25);
    let from = Instant::now();
    let applied_before = support::applied_upto(&env).await;
    let Sampled {
        peak_rss,
        mut hwm,
        max_paused,
        max_buffered,
    } = sample_during(from, window, pid, port).await;
    let (_, h) = rss_mib(pid).unwrap();
    hwm = hwm.max(h);
    let applied = support::applied_upto(&env).await;
    let lag = n as i64 - applied;

    eprintln!(
        "memory bound for {partitions} partitions, max_buffered_per_partition {}, batch.max_size {}, \
         max_in_flight {}, pool_size {}, messages of at most {} B:",
        cfg.flow.max_buffered_per_partition,
        cfg.batch.max_size,
        cfg.flow.max_in_flight,
        cfg.database.pool_size,
        t.max_bytes
    );
    bound.print();
    eprintln!(
        "measured: idle RSS {idle:.1} MiB; over {window:?} of backlog: peak RSS {peak_rss:.1} MiB, \
         VmHWM {hwm:.1} MiB; up to {max_paused} partitions paused, up to {max_buffered:.0} records \
         buffered; {} records applied in the window, {lag} still in the backlog",
        applied - applied_before
    );
    assert!(
        idle * MIB < bound.fixed,
        "the fixed part covers the idle process"
    );
    assert!(
        max_paused == partitions,
        "every partition was paused at some point (the backlog outran the database)"
    );
    assert!(
        applied - applied_before > 1000,
        "the backlog was being worked through"
    );
    assert!(lag > 500_000, "still a backlog at the end");
    assert!(
        hwm * MIB < bound.total(),
        "peak RSS {hwm:.1} MiB exceeds the bound {:.1} MiB",
        bound.total() / MIB
    );

    child.signal(libc::SIGTERM);
    let status = child.wait(Duration::from_secs(60)).await;
    assert!(status.success(), "clean stop: {status:?}");
    support::delete_topics(&env).await;
    support::drop_schema(&env).await;
    eprintln!("test took {:?}", started.elapsed());
}

/// The defaults, except what the harness must set (names, 100 ms flush,
/// pool of 4) and the metrics port.
fn backlog_config(env: &Env, port: u16) -> RawConfig {
    let mut raw = env.raw.clone();
    raw.metrics.listen = format!("127.0.0.1:{port}");
    if let Ok(v) = std::env::var("EXP_MAXBUF") {
        raw.flow.max_buffered_per_partition = v.parse().unwrap();
    }
    if let Ok(v) = std::env::var("EXP_MAXSIZE") {
        let v: usize = v.parse().unwrap();
        raw.batch.max_size = v;
        raw.batch.address = [1000, v];
        raw.batch.id_card = [1000, v];
        raw.batch.phone = [1000, v];
    }
    raw
}

/// What the processor's memory and /metrics showed over a window.
struct Sampled {
    peak_rss: f64,
    hwm: f64,
    max_paused: usize,
    max_buffered: f64,
}

/// Samples the processor's RSS and /metrics every 250 ms for `window`
/// from `from`.
async fn sample_during(from: Instant, window: Duration, pid: u32, port: u16) -> Sampled {
    let mut peak_rss: f64 = 0.0;
    let mut hwm: f64 = 0.0;
    let mut max_paused = 0usize;
    let mut max_buffered = 0.0f64;
    while from.elapsed() < window {
        let (rss, h) = rss_mib(pid).expect("the processor is running");
        peak_rss = peak_rss.max(rss);
        hwm = hwm.max(h);
        if let Some(s) = scrape(port).await {
            max_paused = max_paused.max(
                s.by_label("govsync_partition_paused")
                    .values()
                    .filter(|v| **v == 1.0)
                    .count(),
            );
            max_buffered = max_buffered.max(s.sum("govsync_buffered_records"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Sampled {
        peak_rss,
        hwm,
        max_paused,
        max_buffered,
    }
}

/// The per-record cost of a batch in its transaction, measured: the peak
/// RSS during `protocol::apply` of 5000-record batches over the baseline
/// (the peak is reset through /proc/self/clear_refs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_in_its_transaction_needs_at_most_six_times_its_message_size_per_record() {
    use govsync::sink::{PartitionKey, SinkBatch, SinkRecord};
    let _serial = serial().await;
    let env = Env::new("workingset", 1).await;
    env.migrate().await;
    let customers = support::seed(&env, 20_000, 4, 82).await;
    let t = Templates::new(&customers, "workingset", false);
    let rules = govsync::event::RuleSet::default();
    let cfg = env.config();
    let db = govsync::sink::connect(&cfg.database).await.unwrap();
    let opts = govsync::sink::protocol::ApplyOptions {
        review_topic: env.raw.kafka.review_topic.clone(),
        dlq_topic: env.raw.kafka.dlq_topic.clone(),
        policies: cfg.conflict.clone(),
        max_poison_fraction: cfg.max_poison_fraction,
        duplicates_met: Default::default(),
    };
    let pid = std::process::id();
    let n = 5000usize;
    let mut worst: f64 = 0.0;
    for round in 0..3 {
        let offset = (round * n) as i64;
        let records: Vec<SinkRecord> = (0..n)
            .map(|i| {
                let (key, value) = t.message(offset as usize + i);
                let checked = govsync::event::decode_and_check(&value, 1 << 20, &rules).unwrap();
                SinkRecord {
                    raw: std::sync::Arc::new(govsync::message::RawMessage {
                        topic: env.source().to_string(),
                        partition: 0,
                        offset: offset + i as i64,
                        key: Some(key.to_vec()),
                        value: Some(value),
                        headers: vec![],
                        timestamp_ms: None,
                    }),
                    checked,
                }
            })
            .collect();
        let batch = SinkBatch {
            batch_id: format!("workingset:{round}"),
            key: PartitionKey {
                group: env.raw.kafka.group_id.clone(),
                topic: env.source().to_string(),
                partition: 0,
            },
            expected_watermark: offset,
            first_offset: offset,
            last_offset: offset + n as i64 - 1,
            records,
            rejected: vec![],
            prune_outbox_upto: None,
            attempt: 1,
        };
        govsync::pipeline::memory::Trimmer::trim_now();
        std::fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM");
        let (base, _) = rss_mib(pid).unwrap();
        let report = govsync::sink::protocol::apply(db.as_ref(), &batch, &opts)
            .await
            .unwrap();
        let (_, peak) = rss_mib(pid).unwrap();
        assert_eq!(report.watermark_after, offset + n as i64);
        let each = (peak - base) * MIB / n as f64;
        eprintln!(
            "batch of {n}: {:.1} MiB over the baseline, {each:.0} B per record",
            peak - base
        );
        worst = worst.max(each);
    }
    eprintln!(
        "messages of at most {} B: at most {worst:.0} B per record in a transaction; the bound counts {:.0} B",
        t.max_bytes,
        per_record_work(t.max_bytes)
    );
    assert!(worst <= per_record_work(t.max_bytes));
    db.close().await;
    support::drop_schema(&env).await;
}
