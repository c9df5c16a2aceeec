//! Routing through the real broker: valid events applied, invalid ones
//! dead-lettered exactly once with their class and original bytes, review
//! ones on the review topic, offsets committed past all of them, no row
//! touched by an invalid event; `govsync validate` gives the processor's
//! verdict on every message; no log line carries an unmasked ID or phone.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use govsync::config::RawConfig;
use govsync::demo::generate::{self, Customer};
use govsync::event::DataType;
use govsync::message::RawMessage;
use serde_json::{Value, json};
use sqlx::Row;

use crate::common::harness::{Env, RawOut, header, wait_until};

/// Inserts the seed document's customers as the business side holds them
/// (06 with the concurrent customer-service update).
pub async fn seed_sample_customers(env: &Env) {
    let rows = [
        (
            "CUST_320102_001",
            "江苏南京玄武区中山路123",
            None,
            None,
            "2024-01-10 14:30:00",
        ),
        (
            "CUST_320102_002",
            "南京市建邺区江东中路",
            None,
            None,
            "2024-01-08 09:15:00",
        ),
        (
            "CUST_320102_003",
            "江苏省南京市玄武区北京东路1号",
            Some("32010219900101123X"),
            None,
            "2024-01-05 16:20:00",
        ),
        (
            "CUST_320102_004",
            "江苏省南京市玄武区北京东路2号",
            Some("320102199001011234"),
            None,
            "2024-01-03 11:45:00",
        ),
        (
            "CUST_320102_005",
            "江苏省南京市玄武区北京东路3号",
            None,
            Some("13812345678"),
            "2024-01-12 10:30:00",
        ),
        (
            "CUST_320102_006",
            "江苏省南京市玄武区中山路123号A座",
            None,
            None,
            "2024-01-15 10:25:00",
        ),
    ];
    for (id, address, id_card, phone, last_update) in rows {
        let t = govsync::event::rules::parse_loose_time(last_update, generate::local()).unwrap();
        sqlx::query("INSERT INTO customer_profile (customer_id, address, id_card, phone, last_update, version) VALUES ($1, $2, $3, $4, $5, 0)")
            .bind(id)
            .bind(address)
            .bind(id_card)
            .bind(phone)
            .bind(t)
            .execute(&env.pg)
            .await
            .unwrap();
    }
}

pub fn seed_sample_events() -> Vec<Vec<u8>> {
    include_str!("../../schemas/examples/seed-events.jsonl")
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

/// A message to publish and a label of what it is.
type Labelled = (RawOut, &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_invalid_malformed_and_review_events_are_routed() {
    let env = Env::new("routing", 3).await;
    env.migrate().await;
    seed_sample_customers(&env).await;
    let customers = generate::customers(60, 3, 21);
    env.seed(&customers).await;
    let msgs = labelled_messages(&customers);

    let raws: Vec<RawOut> = msgs.iter().map(|(m, _)| m.clone()).collect();
    let offsets = env.publish_raw(&raws).await;

    let mut raw = env.raw.clone();
    raw.kafka.max_message_bytes = 100_000;
    let log = env.log_path("routing");
    let child = env.spawn_binary(
        &raw,
        &[("RUST_LOG", "govsync=debug,info".to_string())],
        &log,
    );
    wait_until(
        Duration::from_secs(90),
        "every message has an outcome",
        || async { env.all_committed() },
    )
    .await;
    child.signal(libc::SIGTERM);
    assert!(child.wait(Duration::from_secs(60)).await.success());

    let dlq = env.read_topic(&env.raw.kafka.dlq_topic);
    let dlq_at = by_source(&dlq);
    each_invalid_message_dead_lettered_once(&dlq_at, dlq.len(), &msgs, &offsets);
    review_topic_holds_the_held_flagged_and_conflicting(&env);
    valid_applied_and_nothing_touched_by_an_invalid_event(&env, &customers).await;
    validate_agrees_with_the_processor(&env, &raw, &msgs, &offsets, &dlq_at);
    no_unmasked_id_or_phone_in_the_log(&log, &customers);
}

/// The seed's six events, valid ones, invalid ones of every class, and
/// flagged ones.
fn labelled_messages(customers: &[Customer]) -> Vec<Labelled> {
    // (key, value, headers) and a label of what it is.
    let mut msgs: Vec<Labelled> = Vec::new();
    for v in seed_sample_events() {
        msgs.push(((Some(b"3201".to_vec()), v, vec![]), "seed"));
    }
    for (i, c) in customers.iter().enumerate().take(30) {
        let e = generate::event(
            c,
            DataType::ALL[i % 3],
            &format!("r-ok-{i}"),
            generate::governed_at(i),
            false,
        );
        msgs.push((
            (
                Some(c.region.as_bytes().to_vec()),
                serde_json::to_vec(&e).unwrap(),
                vec![("trace-id".into(), format!("t{i}").into_bytes())],
            ),
            "valid",
        ));
    }
    invalid_by_a_rule(&mut msgs, customers);
    invalid_by_the_schema(&mut msgs, customers);
    malformed(&mut msgs, customers);
    for_review(&mut msgs, customers);
    msgs
}

/// Invalid by a business rule: a column outside the allow-list.
fn invalid_by_a_rule(msgs: &mut Vec<Labelled>, customers: &[Customer]) {
    for (i, c) in customers[30..40].iter().enumerate() {
        let mut e = generate::event(
            c,
            DataType::Phone,
            &format!("r-rule-{i}"),
            generate::governed_at(100 + i),
            false,
        );
        e["sync_operation"]["target_fields"] = json!(["phone", "address"]);
        msgs.push((
            (
                Some(c.region.as_bytes().to_vec()),
                serde_json::to_vec(&e).unwrap(),
                vec![("trace-id".into(), vec![0, 159, 146, 150])],
            ),
            "rule",
        ));
    }
}

/// Invalid by the schema: wrong types, a missing field, NUL in a string.
fn invalid_by_the_schema(msgs: &mut Vec<Labelled>, customers: &[Customer]) {
    let c = &customers[40];
    let mut wrong_type = generate::event(
        c,
        DataType::Address,
        "r-schema-1",
        generate::governed_at(200),
        false,
    );
    wrong_type["governance_result"]["confidence_score"] = json!("high");
    let mut missing = generate::event(
        c,
        DataType::Address,
        "r-schema-2",
        generate::governed_at(201),
        false,
    );
    missing.as_object_mut().unwrap().remove("customer_id");
    let mut nul = generate::event(
        c,
        DataType::Address,
        "r-schema-3",
        generate::governed_at(202),
        false,
    );
    nul["original_data"]["address"] = json!("江苏省\u{0}南京市");
    for e in [wrong_type, missing, nul] {
        msgs.push((
            (
                Some(c.region.as_bytes().to_vec()),
                serde_json::to_vec(&e).unwrap(),
                vec![],
            ),
            "schema",
        ));
    }
}

/// Malformed: not UTF-8, not JSON, too large, an unknown version.
fn malformed(msgs: &mut Vec<Labelled>, customers: &[Customer]) {
    let key = Some(customers[41].region.as_bytes().to_vec());
    msgs.push((
        (key.clone(), vec![0xff, 0xfe, b'{', 0x80], vec![]),
        "malformed",
    ));
    msgs.push((
        (key.clone(), b"{\"event_id\": \"x\", ".to_vec(), vec![]),
        "malformed",
    ));
    msgs.push(((key.clone(), vec![b'x'; 200_000], vec![]), "too_large"));
    let mut v2 = generate::event(
        &customers[41],
        DataType::Phone,
        "r-v2",
        generate::governed_at(300),
        false,
    );
    v2["schema_version"] = json!(2);
    msgs.push((
        (key.clone(), serde_json::to_vec(&v2).unwrap(), vec![]),
        "unsupported_version",
    ));
}

/// Review: the engine flagged it, or govsync's check contradicts it.
fn for_review(msgs: &mut Vec<Labelled>, customers: &[Customer]) {
    for (i, c) in customers[42..50].iter().enumerate() {
        let e = generate::bad_check_digit_event(
            c,
            &format!("r-flag-{i}"),
            generate::governed_at(400 + i),
        );
        msgs.push((
            (
                Some(c.region.as_bytes().to_vec()),
                serde_json::to_vec(&e).unwrap(),
                vec![],
            ),
            "flagged",
        ));
    }
}

/// Dead letters by their source (partition, offset).
fn by_source(dlq: &[RawMessage]) -> HashMap<(i32, i64), Vec<&RawMessage>> {
    let mut dlq_at: HashMap<(i32, i64), Vec<&RawMessage>> = HashMap::new();
    for m in dlq {
        let at = (
            header(m, "govsync.source.partition")
                .unwrap()
                .parse()
                .unwrap(),
            header(m, "govsync.source.offset").unwrap().parse().unwrap(),
        );
        dlq_at.entry(at).or_default().push(m);
    }
    dlq_at
}

/// Dead letters: each invalid message exactly once, class and bytes kept.
fn each_invalid_message_dead_lettered_once(
    dlq_at: &HashMap<(i32, i64), Vec<&RawMessage>>,
    dead_letters: usize,
    msgs: &[Labelled],
    offsets: &[(i32, i64)],
) {
    let mut expected_dlq = 0;
    for (i, ((key, value, headers), label)) in msgs.iter().enumerate() {
        let class = match *label {
            "rule" | "schema" | "malformed" | "too_large" | "unsupported_version" => *label,
            _ => continue,
        };
        expected_dlq += 1;
        let got = dlq_at
            .get(&offsets[i])
            .unwrap_or_else(|| panic!("message {i} ({label}) not dead-lettered"));
        assert_eq!(got.len(), 1, "message {i} dead-lettered once");
        let m = got[0];
        assert_eq!(header(m, "govsync.error.class"), Some(class), "message {i}");
        assert!(
            !header(m, "govsync.error.message")
                .unwrap_or_default()
                .is_empty()
        );
        assert_eq!(
            m.value.as_deref(),
            Some(value.as_slice()),
            "original bytes of {i}"
        );
        assert_eq!(&m.key, key, "original key of {i}");
        for h in headers {
            assert!(m.headers.contains(h), "original header kept byte for byte");
        }
        for name in [
            "govsync.source.topic",
            "govsync.batch.id",
            "govsync.attempts",
            "govsync.first.failed.at",
            "govsync.version",
            "govsync.replay.count",
        ] {
            assert!(m.header(name).is_some(), "{name} on message {i}");
        }
        if class == "schema" || class == "rule" {
            // The message names the field.
            let msg = header(m, "govsync.error.message").unwrap();
            assert!(
                msg.contains("sync_operation")
                    || msg.contains("governance_result")
                    || msg.contains("customer_id")
                    || msg.contains("original_data"),
                "{msg}"
            );
        }
    }
    assert_eq!(dead_letters, expected_dlq, "nothing else in the DLQ");
}

/// Review topic: seed 03 (held), 04 (flagged), 06 (conflict) and the
/// flagged ones.
fn review_topic_holds_the_held_flagged_and_conflicting(env: &Env) {
    let review = env.read_topic(&env.raw.kafka.review_topic);
    let docs: HashMap<String, Value> = review
        .iter()
        .map(|m| {
            let d: Value = serde_json::from_slice(m.value.as_ref().unwrap()).unwrap();
            (d["event_id"].as_str().unwrap().to_string(), d)
        })
        .collect();
    assert_eq!(review.len(), docs.len(), "no review message twice");
    assert_eq!(docs.len(), 3 + 8);
    let d3 = &docs["7c1d2e3f-0003-4a1b-8c2d-3201IDCD0003"];
    assert_eq!(d3["reason"], "check_contradiction");
    assert!(
        d3["details"].to_string().contains("expected 2, found X"),
        "{d3}"
    );
    let d4 = &docs["7c1d2e3f-0004-4a1b-8c2d-3201IDCD0004"];
    assert_eq!(d4["reason"], "flagged");
    assert!(
        d4["details"].to_string().contains("expected 2, found 4"),
        "{d4}"
    );
    assert!(
        d4["details"].to_string().contains("expected 2, found 1"),
        "the suggested correction fails too: {d4}"
    );
    assert_eq!(
        docs["7c1d2e3f-0006-4a1b-8c2d-3201ADDR0006"]["reason"],
        "conflict"
    );
}

/// The database: valid applied, seed outcomes as the standard says, nothing
/// touched by an invalid event.
async fn valid_applied_and_nothing_touched_by_an_invalid_event(env: &Env, customers: &[Customer]) {
    let version = |id: String| {
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
    for c in &customers[..30] {
        assert_eq!(version(c.id.clone()).await, 1, "{} applied", c.id);
    }
    for c in &customers[30..42] {
        assert_eq!(
            version(c.id.clone()).await,
            0,
            "{} touched by an invalid event",
            c.id
        );
    }
    let seed = sqlx::query("SELECT customer_id, address, quality_score, validation_status, review_flag, carrier_info, version FROM customer_profile WHERE customer_id IN ('CUST_320102_001', 'CUST_320102_002', 'CUST_320102_003', 'CUST_320102_004', 'CUST_320102_005', 'CUST_320102_006') ORDER BY 1")
        .fetch_all(&env.pg)
        .await
        .unwrap();
    let get = |i: usize| &seed[i];
    assert_eq!(
        get(0).get::<String, _>("address"),
        "江苏省南京市玄武区中山路123号"
    );
    assert_eq!(
        get(1).get::<String, _>("address"),
        "江苏省南京市建邺区江东中路368号"
    );
    assert_eq!(get(2).get::<i64, _>("version"), 0, "03 not applied");
    assert_eq!(
        get(3).get::<Option<bool>, _>("review_flag"),
        Some(true),
        "04 flagged"
    );
    assert_eq!(
        get(3)
            .get::<Option<String>, _>("validation_status")
            .as_deref(),
        Some("invalid")
    );
    let carrier: Value = serde_json::from_str(&get(4).get::<String, _>("carrier_info")).unwrap();
    assert_eq!(
        carrier["carrier"], "中国移动",
        "05 applied with its carrier"
    );
    assert_eq!(get(5).get::<i64, _>("version"), 0, "06 conflict: untouched");
}

/// `govsync validate` agrees with the processor on every message.
fn validate_agrees_with_the_processor(
    env: &Env,
    raw: &RawConfig,
    msgs: &[Labelled],
    offsets: &[(i32, i64)],
    dlq_at: &HashMap<(i32, i64), Vec<&RawMessage>>,
) {
    let mut file = Vec::new();
    for ((_, v, _), _) in msgs {
        file.extend_from_slice(v);
        file.push(b'\n');
    }
    let path = std::env::temp_dir().join(format!("{}.jsonl", env.name));
    std::fs::write(&path, &file).unwrap();
    let cfg_path = env.write_config(raw);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
        .args(["validate", "--config"])
        .arg(&cfg_path)
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "exit 1: some lines are invalid");
    let text = String::from_utf8(out.stdout).unwrap();
    let verdicts: Vec<&str> = text.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(verdicts.len(), msgs.len());
    for (i, ((_, _, _), label)) in msgs.iter().enumerate() {
        let v = verdicts[i].split_once(": ").unwrap().1;
        let processor = match dlq_at.get(&offsets[i]) {
            Some(m) => format!("invalid {}", header(m[0], "govsync.error.class").unwrap()),
            None => "ok".to_string(),
        };
        assert!(
            v.starts_with(&processor),
            "message {i} ({label}): validate says {v:?}, the processor {processor:?}"
        );
    }
}

/// No unmasked ID-card or phone number of the test data in the logs.
fn no_unmasked_id_or_phone_in_the_log(log: &Path, customers: &[Customer]) {
    let logs = std::fs::read_to_string(log).unwrap();
    assert!(logs.contains("batch"), "the log is not empty");
    let mut secrets: Vec<String> = customers
        .iter()
        .flat_map(|c| [c.id_card.clone(), c.phone.clone()])
        .collect();
    secrets.extend(
        [
            "32010219900101123X",
            "320102199001011234",
            "320102199001011231",
            "13812345678",
        ]
        .map(String::from),
    );
    for s in secrets {
        assert!(
            !logs.contains(&s),
            "log contains an unmasked value ({})",
            govsync::telemetry::mask::id_card(&s)
        );
    }
}
