//! `govsync dlq inspect` and `govsync dlq replay` through the real binary,
//! the real broker and PostgreSQL: dead letters that a config change made
//! valid are applied after a replay, the others come back with replay
//! count 1; a replay killed halfway (SIGKILL), run again and stopped
//! (SIGTERM), then run to the end sends each message exactly once; a message at the replay limit is refused with a
//! clear message; inspect shows counts and masked samples only.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use govsync::config::RawConfig;
use govsync::demo::generate::{self, Customer};
use govsync::event::DataType;
use govsync::message::RawMessage;
use govsync::output::{self, Failure, headers};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use sqlx::Row;

use crate::common::harness::{Env, Proc, RawOut, header, wait_until};

/// Runs `govsync <args>` to completion: (exit code, stdout, stderr).
fn govsync(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the govsync binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `govsync <args>` with stdout and stderr into `log`.
fn spawn(args: &[&str], log: &Path) -> Proc {
    let file = std::fs::File::create(log).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("start the govsync binary");
    Proc(Some(child))
}

/// Sum of a group's committed offsets on a topic. `stable`: wait for
/// pending transactional offsets (read_committed); otherwise the offsets
/// committed so far, at once.
fn committed_sum(env: &Env, group: &str, topic: &str, partitions: i32, stable: bool) -> i64 {
    let c: BaseConsumer = env
        .client_config()
        .set("group.id", group)
        .set(
            "isolation.level",
            if stable {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// Sum of a topic's end offsets (messages plus transaction markers).
fn end_sum(env: &Env, topic: &str, partitions: i32) -> i64 {
    let c: BaseConsumer = env.client_config().create().unwrap();
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// Messages on a topic including those of aborted transactions
/// (read_uncommitted).
fn count_uncommitted(env: &Env, topic: &str, partitions: i32) -> usize {
    let c: BaseConsumer = env
        .client_config()
        .set("group.id", "unused")
        .set("isolation.level", "read_uncommitted")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let ends: Vec<i64> = (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(_)) => n += 1,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {
                let pos = c.position().unwrap();
                let done = (0..partitions).all(|p| {
                    matches!(pos.find_partition(topic, p).map(|e| e.offset()),
                        Some(Offset::Offset(o)) if o >= ends[p as usize])
                        || ends[p as usize] == 0
                });
                if done {
                    break;
                }
            }
        }
    }
    n
}

async fn publish_to(env: &Env, topic: &str, msgs: &[RawOut]) {
    let producer: FutureProducer = env
        .client_config()
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (k, v, h) in msgs {
        let mut rec = FutureRecord::<Vec<u8>, Vec<u8>>::to(topic)
            .payload(v)
            .headers(govsync::kafka::owned_headers(h));
        if let Some(k) = k {
            rec = rec.key(k);
        }
        producer
            .send(rec, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

fn event_id(m: &RawMessage) -> String {
    let v: Value = serde_json::from_slice(m.value.as_deref().unwrap()).unwrap();
    v["event_id"].as_str().unwrap().to_string()
}

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
    const TOTAL: usize = 1000;
    const FIXABLE: usize = 600;
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

    // 1. Under the narrowed allow-list every event is dead-lettered.
    let before = narrowed(&raw);
    let running = env.start_with(govsync::config::check(before.clone()).unwrap());
    wait_until(
        Duration::from_secs(120),
        "the processor dead-letters all 1000",
        || async { env.all_committed() && env.read_topic(&dlq).len() >= TOTAL },
    )
    .await;
    running.stop().await;
    let first = env.read_topic(&dlq);
    assert_eq!(first.len(), TOTAL);
    let dlq_end = end_sum(&env, &dlq, 3);
    assert!(
        first
            .iter()
            .all(|m| header(m, headers::ERROR_CLASS) == Some("rule") && m.replay_count() == 0)
    );

    // 2. Inspect: counts, and samples without personal data.
    let cfg_path = env.write_config(&raw);
    let cfg = cfg_path.to_str().unwrap();
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
    for c in &customers {
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
    assert_eq!(env.read_topic(&dlq).len(), TOTAL);

    // 3. Fix the config (the default allow-list), run the processor, and
    //    replay: slowly, killed halfway, then again to the end.
    let running = env.start_with(govsync::config::check(raw.clone()).unwrap());
    let group = format!("replay_{}", env.name);
    let log1 = env.log_path("replay1");
    let t = Instant::now();
    let replay1 = spawn(
        &[
            "dlq", "replay", "--config", cfg, "--group", &group, "--rate", "150",
        ],
        &log1,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let n = committed_sum(&env, &group, &dlq, 3, false);
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

    // A second run, stopped gracefully (SIGTERM): it commits what it did.
    let log2 = env.log_path("replay2");
    let replay2 = spawn(
        &[
            "dlq", "replay", "--config", cfg, "--group", &group, "--rate", "150",
        ],
        &log2,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed_sum(&env, &group, &dlq, 3, false) < at_kill + 150 {
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
    let at_term = committed_sum(&env, &group, &dlq, 3, true);
    assert!(at_term < dlq_end, "stopped halfway: {at_term}");

    let t = Instant::now();
    let (code, text2, err2) = govsync(&["dlq", "replay", "--config", cfg, "--group", &group]);
    println!("resumed replay: {:?}", t.elapsed());
    assert_eq!(code, 0, "{text2}{err2}");
    assert!(
        text2.contains("resuming an interrupted replay: group"),
        "{text2}"
    );
    assert!(text2.contains("replay done"), "{text2}");
    assert_eq!(
        committed_sum(&env, &group, &dlq, 3, true),
        dlq_end,
        "the replay stopped at the end offsets it started with"
    );

    // The processor applies the fixed 600 and dead-letters the other 400
    // again.
    wait_until(
        Duration::from_secs(120),
        "the processor handles the replayed messages",
        // (Not all_committed: the replay's transaction markers end the
        // source partitions, past the last message the processor commits.)
        || async {
            env.count("SELECT count(*) FROM govsync_change_log").await >= FIXABLE as i64
                && env.read_topic(&dlq).len() >= TOTAL + (TOTAL - FIXABLE)
        },
    )
    .await;
    running.stop().await;

    // Source topic (read_committed): the originals, plus each dead letter
    // replayed exactly once, with its original bytes and headers.
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
        count_uncommitted(&env, env.source(), 3) - source.len()
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

    // The database: the 600 applied once, the 400 untouched.
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

    // The dead-letter topic: the 400 back once each, with replay count 1.
    let all = env.read_topic(&dlq);
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

    // 4. With dlq.max_replays = 1 the 400 are refused, clearly.
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
        &group,
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

/// Dead letters written straight to the DLQ: filters, `--dry-run`, the
/// replay limit, `--to`, and a second run that finds nothing left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_filters_dry_run_and_the_replay_limit() {
    let env = Env::new("dlq_filters", 1).await;
    let dlq = env.raw.kafka.dlq_topic.clone();
    let dead = |class: &str, dt: &str, region: &str, batch: &str, count: Option<&str>| {
        let raw = RawMessage {
            topic: env.source().to_string(),
            partition: 0,
            offset: 7,
            key: Some(region.as_bytes().to_vec()),
            value: Some(
                format!("{{\"class\": \"{class}\", \"phone\": \"13812345678\"}}").into_bytes(),
            ),
            headers: match count {
                Some(c) => vec![
                    ("trace".into(), b"t".to_vec()),
                    (headers::REPLAY_COUNT.into(), c.as_bytes().to_vec()),
                ],
                None => vec![("trace".into(), b"t".to_vec())],
            },
            timestamp_ms: None,
        };
        let f = Failure {
            class: class.into(),
            message: "test".into(),
            batch_id: batch.into(),
            data_type: Some(dt.into()),
            region: Some(region.into()),
            ..Default::default()
        };
        let m = output::dead_letter(&raw, &f, &dlq);
        (m.key, m.payload.unwrap(), m.headers)
    };
    let msgs = vec![
        dead("rule", "phone", "3201", "b1", None),      // replayed
        dead("rule", "phone", "3202", "b1", None),      // other region
        dead("schema", "phone", "3201", "b1", None),    // other class
        dead("rule", "phone", "3201", "b1", Some("3")), // at the limit
        dead("rule", "address", "3201", "b1", None),    // other type
        dead("rule", "phone", "3201", "b2", None),      // other batch
        dead("rule", "phone", "3201", "b1", Some("2")), // replayed (3rd time)
    ];
    publish_to(&env, &dlq, &msgs).await;
    let cfg_path = env.write_config(&env.raw);
    let cfg = cfg_path.to_str().unwrap();
    let group = format!("g_{}", env.name);
    let filters = [
        "--error-class",
        "rule",
        "--data-type",
        "phone",
        "--region",
        "3201",
        "--batch",
        "b1",
        "--since",
        "2020-01-01T00:00:00Z",
    ];
    let args = |extra: &[&str]| {
        let mut a = vec!["dlq", "replay", "--config", cfg, "--group", group.as_str()];
        a.extend_from_slice(&filters);
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        govsync(&a)
    };

    // Dry run: says what it would do, sends and commits nothing.
    let (code, text, err) = run(args(&["--dry-run"]));
    assert_eq!(code, 0, "{text}{err}");
    assert_eq!(
        text.matches("would replay: partition 0").count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("would replay: partition 0 offset 6"),
        "{text}"
    );
    assert!(text.contains("replay count 2 → 3"), "{text}");
    assert!(
        text.contains("refused: partition 0 offset 3 (rule, phone, region 3201): replayed 3 times already, dlq.max_replays is 3"),
        "{text}"
    );
    assert!(
        text.contains("read 7, would be replayed 2, skipped by filter 4, refused 1"),
        "{text}"
    );
    assert!(
        env.read_topic(env.source()).is_empty(),
        "a dry run sends nothing"
    );
    assert_eq!(
        committed_sum(&env, &group, &dlq, 1, true),
        0,
        "and commits nothing"
    );

    // The replay, to another topic.
    let other = format!("{}.replayed", env.name);
    govsync::kafka::ensure_topics(&env.client_config(), &[(other.as_str(), 1)], 1)
        .await
        .unwrap();
    let (code, text, err) = run(args(&["--to", &other]));
    assert_eq!(code, 0, "{text}{err}");
    assert!(
        text.contains("replay done: read 7, replayed 2, skipped by filter 4, refused 1"),
        "{text}"
    );
    assert!(
        text.contains("refused at max replays: 1 (replayed 3 times or more already"),
        "{text}"
    );
    assert!(
        text.contains("replayed 3 times already, dlq.max_replays is 3"),
        "{text}"
    );
    let out = env.read_topic(&other);
    assert_eq!(out.len(), 2);
    assert!(env.read_topic(env.source()).is_empty());
    assert_eq!(header(&out[0], headers::REPLAY_COUNT), Some("1"));
    assert_eq!(header(&out[1], headers::REPLAY_COUNT), Some("3"));
    assert_eq!(
        header(&out[0], govsync::ops::dlq::REPLAYED_FROM),
        Some(format!("{dlq}/0/0").as_str())
    );
    assert_eq!(
        out[0].headers,
        vec![
            ("trace".to_string(), b"t".to_vec()),
            (headers::REPLAY_COUNT.to_string(), b"1".to_vec()),
            (
                govsync::ops::dlq::REPLAYED_FROM.to_string(),
                format!("{dlq}/0/0").into_bytes()
            ),
        ],
        "the original headers, the count and the origin; no dead-letter headers"
    );
    assert_eq!(out[0].value.as_deref(), Some(msgs[0].1.as_slice()));
    assert_eq!(committed_sum(&env, &group, &dlq, 1, true), 7);

    // Again: the group is at the end; nothing is sent twice.
    let (code, text, _) = run(args(&["--to", &other]));
    assert_eq!(code, 0);
    assert!(text.contains("nothing to replay"), "{text}");
    assert!(text.contains("read 0, replayed 0"), "{text}");
    assert_eq!(env.read_topic(&other).len(), 2);

    // Clear errors for bad arguments.
    let (code, _, err) = govsync(&["dlq", "replay", "--config", cfg, "--since", "yesterday"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--since yesterday: expected an RFC 3339 time"),
        "{err}"
    );
    let (code, _, err) = govsync(&["dlq", "replay", "--config", cfg, "--to", &dlq]);
    assert_eq!(code, 1);
    assert!(err.contains("is the dead-letter topic itself"), "{err}");

    // Inspect: counts and the masked payload of a non-event value.
    let (code, text, err) = govsync(&["dlq", "inspect", "--config", cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("at the replay limit (dlq.max_replays = 3): 1"),
        "{text}"
    );
    assert!(!text.contains("13812345678"), "{text}");
    assert!(text.contains("138****5678"), "{text}");
}
