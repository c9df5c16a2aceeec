//! A replay of 1000 dead letters after a config fix, through the real
//! binary: inspect, a replay killed halfway (SIGKILL), one stopped
//! (SIGTERM), one run to the end; the fixed events applied once, the others
//! back on the dead-letter topic once; then refused at the replay limit.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use govsync::config::RawConfig;
use govsync::demo::generate::{self, Customer};
use govsync::event::DataType;
use govsync::message::RawMessage;
use govsync::output::headers;
use serde_json::{Value, json};
use sqlx::Row;

use super::{committed_sum, count_uncommitted, end_sum, event_id, govsync, spawn};
use crate::common::harness::{Env, RawOut, header, wait_until};

const TOTAL: usize = 1000;
const FIXABLE: usize = 600;

/// The phone allow-list without `carrier_info`: the "before" config.
fn narrowed(raw: &RawConfig) -> RawConfig {
    let mut r = raw.clone();
    r.rules.allow.insert(
        "phone".into(),
        vec![
            "phone".into(),
            "quality_score".into(),
            "validation_status".into(),
            "last_governance_time".into(),
        ],
    );
    r
}

/// Phone events for `customers`: the first `fixable` write carrier_info
/// (invalid under the narrowed allow-list, valid under the default one),
/// the rest also target `address` (invalid under both).
fn phone_events(customers: &[Customer], fixable: usize) -> Vec<RawOut> {
    customers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut e = generate::event(
                c,
                DataType::Phone,
                &format!("replay-{i:04}"),
                generate::governed_at(i),
                false,
            );
            if i >= fixable {
                e["sync_operation"]["target_fields"] = json!(["phone", "address"]);
            }
            (
                Some(c.region.as_bytes().to_vec()),
                serde_json::to_vec(&e).unwrap(),
                vec![("trace-id".to_string(), format!("trace-{i}").into_bytes())],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_a_config_fix_applies_the_fixed_and_resumes_after_sigkill_without_duplicates()
{
    let r = Replay::publish().await;
    let dlq_end = r.dead_letter_everything_under_the_narrowed_config().await;
    let cfg_path = r.env.write_config(&r.raw);
    let cfg = cfg_path.to_str().unwrap();
    r.inspect_counts_and_masked_samples(cfg);

    // 3. Fix the config (the default allow-list), run the processor, and
    //    replay: slowly, killed halfway, then again to the end.
    let running = r
        .env
        .start_with(govsync::config::check(r.raw.clone()).unwrap());
    let group = format!("replay_{}", r.env.name);
    let at_kill = r.replay_killed_halfway(cfg, &group).await;
    r.replay_stopped_by_sigterm(cfg, &group, at_kill, dlq_end)
        .await;
    r.replay_resumed_to_the_end(cfg, &group, dlq_end);

    // The processor applies the fixed 600 and dead-letters the other 400
    // again.
    wait_until(
        Duration::from_secs(120),
        "the processor handles the replayed messages",
        // (Not all_committed: the replay's transaction markers end the
        // source partitions, past the last message the processor commits.)
        || async {
            r.env.count("SELECT count(*) FROM govsync_change_log").await >= FIXABLE as i64
                && r.env.read_topic(&r.dlq).len() >= TOTAL + (TOTAL - FIXABLE)
        },
    )
    .await;
    running.stop().await;

    r.each_dead_letter_replayed_once_as_it_was();
    r.the_fixed_applied_once_the_others_untouched().await;
    r.the_others_dead_lettered_again_once();
    r.refused_at_the_replay_limit(&group);
}

/// The test's events, published; the processor not yet run.
struct Replay {
    env: Env,
    /// The fixed config: the default allow-list, and a dead-letter topic
    /// with 3 partitions.
    raw: RawConfig,
    dlq: String,
    customers: Vec<Customer>,
    msgs: Vec<RawOut>,
    /// (partition, offset) of each of `msgs`.
    published: Vec<(i32, i64)>,
}

impl Replay {
    async fn publish() -> Replay {
        let env = Env::new("dlq_replay", 3).await;
        // A dead-letter topic with 3 partitions: resuming is per partition.
        let mut raw = env.raw.clone();
        raw.kafka.dlq_topic = format!("{}.dlq3", env.name);
        let dlq = raw.kafka.dlq_topic.clone();
        govsync::kafka::ensure_topics(&env.client_config(), &[(dlq.as_str(), 3)], 1)
            .await
            .unwrap();
        env.migrate().await;
        let customers = generate::customers(TOTAL, 4, 4242);
        env.seed(&customers).await;
        let msgs = phone_events(&customers, FIXABLE);
        let published = env.publish_raw(&msgs).await;
        Replay {
            env,
            raw,
            dlq,
            customers,
            msgs,
            published,
        }
    }

    /// 1. Under the narrowed allow-list every event is dead-lettered.
    ///
    /// Returns the end offsets of the dead-letter topic.
    async fn dead_letter_everything_under_the_narrowed_config(&self) -> i64 {
        let Replay { env, raw, dlq, .. } = self;
        let before = narrowed(raw);
        let running = env.start_with(govsync::config::check(before.clone()).unwrap());
        wait_until(
            Duration::from_secs(120),
            "the processor dead-letters all 1000",
            || async { env.all_committed() && env.read_topic(dlq).len() >= TOTAL },
        )
        .await;
        running.stop().await;
        let first = env.read_topic(dlq);
        assert_eq!(first.len(), TOTAL);
        let dlq_end = end_sum(env, dlq, 3);
        assert!(
            first
                .iter()
                .all(|m| header(m, headers::ERROR_CLASS) == Some("rule") && m.replay_count() == 0)
        );
        dlq_end
    }

    /// 2. Inspect: counts, and samples without personal data.
    fn inspect_counts_and_masked_samples(&self, cfg: &str) {
        let Replay {
            env,
            dlq,
            customers,
            ..
        } = self;
        let t = Instant::now();
        let (code, text, err) = govsync(&["dlq", "inspect", "--config", cfg, "--samples", "2"]);
        assert_eq!(code, 0, "{text}{err}");
        assert!(text.contains(&format!("{TOTAL} messages")), "{text}");
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(prefix))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
        };
        assert_eq!(line("rule").unwrap()[1], TOTAL.to_string(), "{text}");
        assert_eq!(line("phone").unwrap()[1], TOTAL.to_string(), "{text}");
        assert!(
            text.contains("replay counts (times replayed: messages): 0: 1000"),
            "{text}"
        );
        assert_eq!(text.matches("[rule] partition").count(), 2, "{text}");
        assert!(text.contains("CUST_"), "the customer id is shown: {text}");
        for c in customers {
            assert!(
                !text.contains(&c.phone),
                "unmasked phone number in:\n{text}"
            );
            assert!(!text.contains(&c.id_card));
        }
        let (code, json_text, _) = govsync(&["dlq", "inspect", "--config", cfg, "--json"]);
        assert_eq!(code, 0);
        let report: Value = serde_json::from_str(&json_text).unwrap();
        assert_eq!(report["by_class"]["rule"], TOTAL);
        assert_eq!(report["by_region"].as_object().unwrap().len(), 4);
        assert_eq!(report["samples"]["rule"].as_array().unwrap().len(), 3);
        println!("inspect of 1000 dead letters: {:?} (twice)", t.elapsed());
        // Inspect committed nothing and joined no group.
        assert_eq!(env.read_topic(dlq).len(), TOTAL);
    }

    /// 3. With the fixed config, replay slowly and kill it halfway.
    ///
    /// Returns the offsets committed when it was killed.
    async fn replay_killed_halfway(&self, cfg: &str, group: &str) -> i64 {
        let Replay { env, dlq, .. } = self;
        let log1 = env.log_path("replay1");
        let t = Instant::now();
        let replay1 = spawn(
            &[
                "dlq", "replay", "--config", cfg, "--group", group, "--rate", "150",
            ],
            &log1,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let at_kill = loop {
            let n = committed_sum(env, group, dlq, 3, false);
            if n >= 300 {
                break n;
            }
            assert!(
                Instant::now() < deadline,
                "the first replay commits nothing"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Mid-chunk: the open transaction holds replayed messages.
        tokio::time::sleep(Duration::from_millis(500)).await;
        replay1.signal(libc::SIGKILL);
        let status = replay1.wait(Duration::from_secs(10)).await;
        assert!(
            !status.success() && at_kill < TOTAL as i64,
            "the replay was killed halfway (committed {at_kill}): {}",
            std::fs::read_to_string(&log1).unwrap()
        );
        println!(
            "replay killed after {:?} at {at_kill} committed",
            t.elapsed()
        );
        let log1_text = std::fs::read_to_string(&log1).unwrap();
        assert!(log1_text.contains("progress: "), "{log1_text}");
        assert!(log1_text.contains("ETA"), "{log1_text}");
        at_kill
    }

    /// A second run, stopped gracefully (SIGTERM): it commits what it did.
    async fn replay_stopped_by_sigterm(&self, cfg: &str, group: &str, at_kill: i64, dlq_end: i64) {
        let Replay { env, dlq, .. } = self;
        let log2 = env.log_path("replay2");
        let replay2 = spawn(
            &[
                "dlq", "replay", "--config", cfg, "--group", group, "--rate", "150",
            ],
            &log2,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while committed_sum(env, group, dlq, 3, false) < at_kill + 150 {
            assert!(
                Instant::now() < deadline,
                "the second replay commits nothing"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        replay2.signal(libc::SIGTERM);
        let status = replay2.wait(Duration::from_secs(30)).await;
        let log2_text = std::fs::read_to_string(&log2).unwrap();
        assert_eq!(status.code(), Some(130), "{log2_text}");
        assert!(
            log2_text.contains("resuming an interrupted replay"),
            "{log2_text}"
        );
        assert!(
            log2_text.contains("interrupted: what is counted below is committed"),
            "{log2_text}"
        );
        assert!(log2_text.contains("replay stopped: read "), "{log2_text}");
        let at_term = committed_sum(env, group, dlq, 3, true);
        assert!(at_term < dlq_end, "stopped halfway: {at_term}");
    }

    /// A third run resumes and stops at the end offsets it started with.
    fn replay_resumed_to_the_end(&self, cfg: &str, group: &str, dlq_end: i64) {
        let Replay { env, dlq, .. } = self;
        let t = Instant::now();
        let (code, text2, err2) = govsync(&["dlq", "replay", "--config", cfg, "--group", group]);
        println!("resumed replay: {:?}", t.elapsed());
        assert_eq!(code, 0, "{text2}{err2}");
        assert!(
            text2.contains("resuming an interrupted replay: group"),
            "{text2}"
        );
        assert!(text2.contains("replay done"), "{text2}");
        assert_eq!(
            committed_sum(env, group, dlq, 3, true),
            dlq_end,
            "the replay stopped at the end offsets it started with"
        );
    }

    /// Source topic (read_committed): the originals, plus each dead letter
    /// replayed exactly once, with its original bytes and headers.
    fn each_dead_letter_replayed_once_as_it_was(&self) {
        let Replay {
            env,
            msgs,
            published,
            ..
        } = self;
        let source = env.read_topic(env.source());
        let replayed: Vec<&RawMessage> = source
            .iter()
            .filter(|m| m.header(govsync::ops::dlq::REPLAYED_FROM).is_some())
            .collect();
        let mut from: HashMap<&str, usize> = HashMap::new();
        for m in &replayed {
            *from
                .entry(header(m, govsync::ops::dlq::REPLAYED_FROM).unwrap())
                .or_default() += 1;
        }
        let twice: Vec<_> = from.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "replayed more than once: {twice:?}");
        assert_eq!(replayed.len(), TOTAL, "each dead letter replayed");
        assert_eq!(source.len(), 2 * TOTAL, "nothing else on the source topic");
        println!(
            "messages of aborted replay transactions on the source topic (invisible to read_committed): {}",
            count_uncommitted(env, env.source(), 3) - source.len()
        );
        let by_id: HashMap<String, &RawOut> = msgs
            .iter()
            .map(|m| {
                let v: Value = serde_json::from_slice(&m.1).unwrap();
                (v["event_id"].as_str().unwrap().to_string(), m)
            })
            .collect();
        for m in &replayed {
            let original = by_id[&event_id(m)];
            assert_eq!(m.value.as_deref(), Some(original.1.as_slice()));
            assert_eq!(m.key, original.0);
            assert_eq!(header(m, headers::REPLAY_COUNT), Some("1"));
            assert!(m.headers.contains(&original.2[0]), "trace-id kept");
            assert!(m.header(headers::ERROR_CLASS).is_none());
            assert!(m.header(headers::SOURCE_OFFSET).is_none());
            let i: usize = event_id(m)["replay-".len()..].parse().unwrap();
            assert_eq!(
                m.partition, published[i].0,
                "back to its original partition"
            );
        }
    }

    /// The database: the 600 applied once, the 400 untouched.
    async fn the_fixed_applied_once_the_others_untouched(&self) {
        let Replay { env, customers, .. } = self;
        let rows = sqlx::query("SELECT customer_id, version, carrier_info FROM customer_profile")
            .fetch_all(&env.pg)
            .await
            .unwrap();
        let versions: HashMap<String, (i64, Option<String>)> = rows
            .iter()
            .map(|r| {
                (
                    r.get("customer_id"),
                    (r.get("version"), r.get("carrier_info")),
                )
            })
            .collect();
        for (i, c) in customers.iter().enumerate() {
            let (v, carrier) = &versions[&c.id];
            if i < FIXABLE {
                assert_eq!(*v, 1, "{} applied once", c.id);
                assert!(carrier.as_deref().unwrap_or("").contains("中国移动"));
            } else {
                assert_eq!(*v, 0, "{} untouched", c.id);
            }
        }
        assert_eq!(
            env.count("SELECT count(*) FROM govsync_change_log").await,
            FIXABLE as i64
        );
    }

    /// The dead-letter topic: the 400 back once each, with replay count 1.
    fn the_others_dead_lettered_again_once(&self) {
        let Replay { env, dlq, .. } = self;
        let all = env.read_topic(dlq);
        let again: Vec<&RawMessage> = all.iter().filter(|m| m.replay_count() == 1).collect();
        assert_eq!(all.len(), TOTAL + (TOTAL - FIXABLE));
        assert_eq!(again.len(), TOTAL - FIXABLE);
        let mut ids: BTreeMap<String, usize> = BTreeMap::new();
        for m in &again {
            assert_eq!(header(m, headers::ERROR_CLASS), Some("rule"));
            assert!(
                header(m, headers::ERROR_MESSAGE)
                    .unwrap()
                    .contains("address")
            );
            assert!(m.header(govsync::ops::dlq::REPLAYED_FROM).is_some());
            *ids.entry(event_id(m)).or_default() += 1;
        }
        assert!(ids.values().all(|n| *n == 1));
        assert!(
            ids.keys()
                .all(|id| id.as_str() >= format!("replay-{FIXABLE:04}").as_str())
        );
    }

    /// 4. With dlq.max_replays = 1 the 400 are refused, clearly.
    fn refused_at_the_replay_limit(&self, group: &str) {
        let Replay { env, raw, .. } = self;
        let mut limited = raw.clone();
        limited.dlq.max_replays = 1;
        limited.kafka.instance_id = "limited".into();
        let limited_path = env.write_config(&limited);
        let (code, text3, err3) = govsync(&[
            "dlq",
            "replay",
            "--config",
            limited_path.to_str().unwrap(),
            "--group",
            group,
        ]);
        assert_eq!(code, 0, "{text3}{err3}");
        assert!(
            text3.contains("replayed 1 time already, dlq.max_replays is 1"),
            "{text3}"
        );
        assert!(text3.contains("refused at max replays: 400"), "{text3}");
        assert!(text3.contains("replayed 0"), "{text3}");
        assert_eq!(
            env.read_topic(env.source()).len(),
            2 * TOTAL,
            "nothing sent"
        );
    }
}
