//! The scenarios of the sink suite, each on its own customers and
//! partition, through nothing but [`Suite`]: the same code for every
//! database.

use std::collections::HashMap;

use chrono::Utc;
use govsync::demo::generate::{self, Customer};
use govsync::event::{ConflictPolicy, DataType, Row};
use govsync::output;
use govsync::sink::protocol::{self, BatchReport};
use govsync::sink::rollback;
use govsync::sink::{Outcome, SinkError};
use serde_json::{Value, json};

use super::{Suite, opts};

fn ev(c: &Customer, dt: DataType, id: &str, i: usize) -> Value {
    generate::event(c, dt, id, generate::governed_at(i), false)
}

fn outcomes(r: &BatchReport) -> Vec<Outcome> {
    r.outcomes.clone()
}

pub async fn applies_writes_log_ledger_and_watermark(s: &Suite) {
    let cs = generate::customers(30, 2, 101);
    s.biz.seed(&cs).await;
    let events: Vec<Value> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| ev(c, DataType::ALL[i % 3], &format!("basic-{i}"), i))
        .collect();
    let b = s.batch(0, 0, 0, &events);
    let r = s.apply(&b, ConflictPolicy::Review).await.unwrap();
    assert!(
        outcomes(&r).iter().all(|o| *o == Outcome::Applied),
        "{:?}",
        r.outcomes
    );
    assert_eq!((r.watermark_before, r.watermark_after), (0, 30));
    for (i, c) in cs.iter().enumerate() {
        let row = s.biz.row(&c.id).await.unwrap();
        assert_eq!(row.version, 1, "{}", c.id);
        match DataType::ALL[i % 3] {
            DataType::Address => assert_eq!(row.address.as_deref(), Some(c.std_address.as_str())),
            DataType::IdCard => assert_eq!(row.validation_status.as_deref(), Some("valid")),
            DataType::Phone => assert!(row.carrier_info.is_some()),
        }
    }
    assert_eq!(s.db.watermark(&s.key(0)).await.unwrap(), Some(30));
    let ledger =
        s.db.batches(&govsync::sink::BatchFilter {
            batch_id: Some(b.batch_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].counts.get("applied"), Some(&30));
}

pub async fn duplicates_are_skipped_within_and_across_batches(s: &Suite) {
    let cs = generate::customers(5, 1, 102);
    let cs: Vec<Customer> = cs
        .into_iter()
        .map(|mut c| {
            c.id = format!("DUP_{}", c.id);
            c
        })
        .collect();
    s.biz.seed(&cs).await;
    let e0 = ev(&cs[0], DataType::Address, "dup-a", 0);
    let e1 = ev(&cs[1], DataType::Phone, "dup-b", 1);
    let b1 = s.batch(1, 0, 0, &[e0.clone(), e1.clone(), e0.clone()]);
    let r1 = s.apply(&b1, ConflictPolicy::Review).await.unwrap();
    assert_eq!(
        outcomes(&r1),
        [Outcome::Applied, Outcome::Applied, Outcome::Duplicate]
    );
    // The same events again, later in the partition (a producer retry),
    // beside a new one. The first attempt reads nothing of the change log:
    // its unique key rejects the write, and the second attempt (the one
    // with a savepoint) plans the two as duplicates.
    let opts = opts(ConflictPolicy::Review);
    let e2 = ev(&cs[2], DataType::Address, "dup-c", 2);
    let b2 = s.batch(1, 3, 3, &[e1.clone(), e2.clone(), e0.clone()]);
    let r2 = protocol::apply(s.db.as_ref(), &b2, &opts).await.unwrap();
    assert_eq!(
        outcomes(&r2),
        [Outcome::Duplicate, Outcome::Applied, Outcome::Duplicate]
    );
    let bisected = |r: &BatchReport| r.timings.steps.iter().any(|(step, _)| *step == "savepoint");
    assert!(bisected(&r2), "{:?}", r2.timings.steps);
    // Within a minute of that, first attempts read the change log: the
    // next replay is planned right away.
    let b3 = s.batch(1, 6, 6, &[e2, e0]);
    let r3 = protocol::apply(s.db.as_ref(), &b3, &opts).await.unwrap();
    assert_eq!(outcomes(&r3), [Outcome::Duplicate, Outcome::Duplicate]);
    assert!(!bisected(&r3), "{:?}", r3.timings.steps);
    assert!(r3.poison.is_empty() && r2.poison.is_empty());
    for c in &cs[..3] {
        assert_eq!(
            s.biz.row(&c.id).await.unwrap().version,
            1,
            "applied once: {}",
            c.id
        );
    }
}

pub async fn stale_results_do_not_overwrite_newer_ones(s: &Suite) {
    let mut c = generate::customers(1, 1, 103).remove(0);
    c.id = "STALE_1".into();
    s.biz.seed(std::slice::from_ref(&c)).await;
    let newer = ev(&c, DataType::Address, "stale-new", 100);
    let mut older = ev(&c, DataType::Address, "stale-old", 50);
    older["governance_result"]["standardized_address"] = json!("江苏省南京市玄武区旧的路1号");
    // A phone result governed earlier never makes an address result stale.
    let phone_old = ev(&c, DataType::Phone, "stale-phone", 10);
    let b = s.batch(2, 0, 0, &[newer, older, phone_old]);
    let r = s.apply(&b, ConflictPolicy::Review).await.unwrap();
    assert_eq!(
        outcomes(&r),
        [Outcome::Applied, Outcome::Stale, Outcome::Applied]
    );
    // Across batches too.
    let mut older2 = ev(&c, DataType::Address, "stale-old-2", 60);
    older2["governance_result"]["standardized_address"] = json!("江苏省南京市玄武区旧的路2号");
    let r = s
        .apply(&s.batch(2, 3, 3, &[older2]), ConflictPolicy::Review)
        .await
        .unwrap();
    assert_eq!(outcomes(&r), [Outcome::Stale]);
    let row = s.biz.row(&c.id).await.unwrap();
    assert_eq!(row.address.as_deref(), Some(c.std_address.as_str()));
    assert_eq!(row.version, 2);
}

/// The seed's example: customer service wrote "…123号A座" at 10:25, after
/// the engine read the row (14:30 on the 10th) and governed "…123号".
pub async fn seed_concurrent_update_under_each_policy(s: &Suite) {
    let seed_event: Value = serde_json::from_str(include_str!(
        "../../../schemas/examples/01-address-update.json"
    ))
    .unwrap();
    let concurrent = "江苏省南京市玄武区中山路123号A座";
    let at =
        govsync::event::rules::parse_loose_time("2024-01-15 10:25:00", generate::local()).unwrap();
    for (n, (policy, want_outcome, want_address)) in [
        (ConflictPolicy::Review, Outcome::Conflict, concurrent),
        (
            ConflictPolicy::Overwrite,
            Outcome::Applied,
            "江苏省南京市玄武区中山路123号",
        ),
        (ConflictPolicy::Merge, Outcome::Applied, concurrent),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = generate::customers(1, 1, 104).remove(0);
        c.id = format!("CONFLICT_{n}");
        c.raw_address = "江苏南京玄武区中山路123".into();
        s.biz.seed(std::slice::from_ref(&c)).await;
        s.biz.business_update(&c.id, concurrent, at).await;
        let mut e = seed_event.clone();
        e["customer_id"] = json!(c.id);
        e["event_id"] = json!(format!("conflict-{n}"));
        let r = s
            .apply(&s.batch(3, n as i64, n as i64, &[e]), policy)
            .await
            .unwrap();
        assert_eq!(outcomes(&r), [want_outcome], "{policy:?}");
        let row = s.biz.row(&c.id).await.unwrap();
        assert_eq!(row.address.as_deref(), Some(want_address), "{policy:?}");
        match policy {
            ConflictPolicy::Review => {
                assert_eq!(row.version, 0, "untouched");
                assert_eq!(r.outputs.len(), 1, "on the review topic");
                let doc: Value =
                    serde_json::from_slice(r.outputs[0].payload.as_ref().unwrap()).unwrap();
                assert_eq!(doc["reason"], "conflict");
                assert_eq!(doc["current"]["address"], concurrent);
            }
            _ => {
                assert_eq!(row.version, 1);
                assert_eq!(
                    row.quality_score,
                    Some(0.92),
                    "the other fields are applied"
                );
                assert!(r.outputs.is_empty());
            }
        }
        assert_eq!(row.last_update, Some(at), "govsync never moves last_update");
    }
}

pub async fn same_customer_several_times_in_one_batch(s: &Suite) {
    let mut c = generate::customers(1, 1, 105).remove(0);
    c.id = "MULTI_1".into();
    s.biz.seed(std::slice::from_ref(&c)).await;
    let mut a1 = ev(&c, DataType::Address, "multi-a1", 1);
    a1["governance_result"]["standardized_address"] = json!("江苏省南京市玄武区第一路1号");
    let p = ev(&c, DataType::Phone, "multi-p", 2);
    let a2 = ev(&c, DataType::Address, "multi-a2", 3);
    let id = ev(&c, DataType::IdCard, "multi-id", 4);
    let r = s
        .apply(&s.batch(4, 0, 0, &[a1, p, a2, id]), ConflictPolicy::Review)
        .await
        .unwrap();
    assert_eq!(outcomes(&r), [Outcome::Applied; 4]);
    let row = s.biz.row(&c.id).await.unwrap();
    assert_eq!(row.version, 4, "each record logged and counted on its own");
    assert_eq!(
        row.address.as_deref(),
        Some(c.std_address.as_str()),
        "offset order: the later address wins"
    );
    assert_eq!(row.phone.as_deref(), Some(c.phone.as_str()));
    assert_eq!(row.validation_status.as_deref(), Some("valid"));
}

pub async fn one_rejected_record_among_a_thousand(s: &Suite) {
    let cs: Vec<Customer> = generate::customers(1000, 2, 106)
        .into_iter()
        .map(|mut c| {
            c.id = format!("P{}", c.id);
            c
        })
        .collect();
    s.biz.seed(&cs).await;
    let mut events: Vec<Value> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| ev(c, DataType::Address, &format!("poison-{i}"), i))
        .collect();
    // 260 characters: valid for the contract (≤ 500), too long for the column (200).
    let long = format!("江苏省南京市玄武区{}号", "长".repeat(250));
    events[617]["governance_result"]["standardized_address"] = json!(long);
    let r = s
        .apply(&s.batch(5, 0, 0, &events), ConflictPolicy::Review)
        .await
        .unwrap();
    let applied = r
        .outcomes
        .iter()
        .filter(|o| **o == Outcome::Applied)
        .count();
    assert_eq!(applied, 999);
    assert_eq!(r.outcomes[617], Outcome::Poison);
    assert_eq!(r.poison.len(), 1);
    let dlq: Vec<_> = r
        .outputs
        .iter()
        .filter(|m| m.topic == "suite.dlq")
        .collect();
    assert_eq!(dlq.len(), 1);
    let h = |k: &str| {
        dlq[0]
            .headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
    };
    assert_eq!(
        h(output::headers::ERROR_CLASS).as_deref(),
        Some("db_rejected")
    );
    assert_eq!(h(output::headers::SOURCE_OFFSET).as_deref(), Some("617"));
    assert!(
        h(output::headers::DB_CODE).is_some(),
        "SQLSTATE / ORA number in the headers"
    );
    assert_eq!(
        dlq[0].payload.as_deref(),
        Some(serde_json::to_vec(&events[617]).unwrap().as_slice()),
        "original bytes"
    );
    assert_eq!(s.biz.row(&cs[617].id).await.unwrap().version, 0);
    assert_eq!(s.biz.row(&cs[616].id).await.unwrap().version, 1);
    assert_eq!(
        s.db.watermark(&s.key(5)).await.unwrap(),
        Some(1000),
        "the rest committed in the same transaction"
    );
}

pub async fn records_below_the_watermark_are_skipped_and_foreign_outbox_returned(s: &Suite) {
    let cs: Vec<Customer> = generate::customers(6, 1, 107)
        .into_iter()
        .map(|mut c| {
            c.id = format!("W{}", c.id);
            c
        })
        .collect();
    s.biz.seed(&cs).await;
    // Instance A applies offsets 0..2, including one record for review.
    let mut flag = generate::bad_check_digit_event(&cs[2], "wm-2", generate::governed_at(2));
    flag["customer_id"] = json!(cs[2].id);
    let a = s.batch(
        6,
        0,
        0,
        &[
            ev(&cs[0], DataType::Address, "wm-0", 0),
            ev(&cs[1], DataType::Phone, "wm-1", 1),
            flag.clone(),
        ],
    );
    let ra = s.apply(&a, ConflictPolicy::Review).await.unwrap();
    assert_eq!(
        outcomes(&ra),
        [Outcome::Applied, Outcome::Applied, Outcome::Flagged]
    );
    assert_eq!(ra.outputs.len(), 1);
    // Instance B (a zombie, or the new owner with stale Kafka offsets)
    // still believes the watermark is 0 and sends 0..4.
    let b = s.batch(
        6,
        0,
        0,
        &[
            ev(&cs[0], DataType::Address, "wm-0", 0),
            ev(&cs[1], DataType::Phone, "wm-1", 1),
            flag,
            ev(&cs[3], DataType::Address, "wm-3", 3),
            ev(&cs[4], DataType::Address, "wm-4", 4),
        ],
    );
    let rb = s.apply(&b, ConflictPolicy::Review).await.unwrap();
    assert_eq!(
        outcomes(&rb),
        [
            Outcome::Skipped,
            Outcome::Skipped,
            Outcome::Skipped,
            Outcome::Applied,
            Outcome::Applied
        ]
    );
    assert_eq!(rb.watermark_before, 3);
    assert_eq!(rb.watermark_after, 5);
    assert_eq!(
        rb.foreign_outputs, ra.outputs,
        "A's review message is handed to B for publishing"
    );
    assert_eq!(
        s.biz.row(&cs[0].id).await.unwrap().version,
        1,
        "not applied twice"
    );
    // A batch entirely below the watermark applies nothing and writes no ledger row.
    let again = s.batch(6, 3, 5, &[ev(&cs[3], DataType::Address, "wm-3", 3)]);
    let r = s.apply(&again, ConflictPolicy::Review).await.unwrap();
    assert_eq!(outcomes(&r), [Outcome::Skipped]);
    assert_eq!(r.watermark_after, 5, "never backwards");
    assert_eq!(s.db.watermark(&s.key(6)).await.unwrap(), Some(5));
}

pub async fn rollback_restores_exactly_the_before_images(s: &Suite) {
    let cs: Vec<Customer> = generate::customers(3, 1, 108)
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            c.id = format!("RB_{i}");
            c
        })
        .collect();
    s.biz.seed(&cs).await;
    let before: HashMap<String, Row> = {
        let mut m = HashMap::new();
        for c in &cs {
            m.insert(c.id.clone(), s.biz.row(&c.id).await.unwrap());
        }
        m
    };
    let events: Vec<Value> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| ev(c, DataType::Address, &format!("rb-{i}"), i))
        .collect();
    let b = s.batch(7, 0, 0, &events);
    s.apply(&b, ConflictPolicy::Review).await.unwrap();
    // Someone changes RB_1 after the batch.
    let later = Utc::now();
    s.biz
        .business_update("RB_1", "江苏省南京市玄武区后来改的路9号", later)
        .await;

    let dry = rollback::rollback(s.db.as_ref(), &b.batch_id, true)
        .await
        .unwrap();
    assert_eq!(dry.restored, ["RB_0", "RB_2"]);
    assert_eq!(
        s.biz.row("RB_0").await.unwrap().address.as_deref(),
        Some(cs[0].std_address.as_str()),
        "dry run changes nothing"
    );

    let rep = rollback::rollback(s.db.as_ref(), &b.batch_id, false)
        .await
        .unwrap();
    assert_eq!(rep.restored, ["RB_0", "RB_2"]);
    assert_eq!(rep.changed_since.len(), 1);
    assert_eq!(rep.changed_since[0].0, "RB_1");
    assert!(rep.changed_since[0].1.contains(&"address".to_string()));
    for id in ["RB_0", "RB_2"] {
        let now = s.biz.row(id).await.unwrap();
        let was = &before[id];
        assert_eq!(now.address, was.address, "{id} address restored");
        assert_eq!(now.geo_lat, was.geo_lat, "{id} geo restored");
        assert_eq!(now.quality_score, was.quality_score, "{id} score restored");
        assert_eq!(now.last_governance_time, was.last_governance_time);
        assert_eq!(now.version, 2, "the rollback is a write too");
    }
    assert_eq!(
        s.biz.row("RB_1").await.unwrap().address.as_deref(),
        Some("江苏省南京市玄武区后来改的路9号"),
        "left alone"
    );
    let ledger =
        s.db.batches(&govsync::sink::BatchFilter {
            batch_id: Some(rep.rollback_batch_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1, "the rollback is logged as a batch");
    assert_eq!(ledger[0].kind, "rollback");
    let orig =
        s.db.batches(&govsync::sink::BatchFilter {
            batch_id: Some(b.batch_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(orig[0].status, "rolled_back");
    let again = rollback::rollback(s.db.as_ref(), &b.batch_id, false).await;
    assert!(again.is_err(), "a batch is rolled back once");
}

pub async fn verification_failure_rolls_back(s: &Suite) {
    // The trigger stays installed: the tables are this scenario's own.
    if !s.biz.install_tampering_trigger().await {
        return;
    }
    let mut c = generate::customers(1, 1, 109).remove(0);
    c.id = "VERIFY_1".into();
    s.biz.seed(std::slice::from_ref(&c)).await;
    let b = s.batch(8, 0, 0, &[ev(&c, DataType::Address, "verify-0", 0)]);
    let err = s.apply(&b, ConflictPolicy::Review).await.unwrap_err();
    assert!(matches!(err, SinkError::Verification(_)), "{err}");
    assert_eq!(
        s.db.watermark(&s.key(8)).await.unwrap(),
        None,
        "rolled back: not even the watermark row"
    );
    assert_eq!(s.biz.row(&c.id).await.unwrap().version, 0);
}

/// Review items (issue 15): one per review message, written with the
/// batch; an applied result supersedes the open items of its customer and
/// data type (later in the same batch, or in a later batch), and leaves
/// other data types' items open.
pub async fn review_items_follow_the_review_topic_and_newer_results_supersede_them(s: &Suite) {
    let mut cs = generate::customers(3, 1, 111);
    for (i, c) in cs.iter_mut().enumerate() {
        c.id = format!("REVIEW_{i}");
    }
    s.biz.seed(&cs).await;
    let local = generate::local();
    let at = govsync::event::rules::parse_loose_time("2024-01-15 10:25:00", local).unwrap();
    s.biz
        .business_update(&cs[0].id, "江苏省南京市玄武区中山路1号A座", at)
        .await;
    let flag = |mut e: Value| {
        e["sync_operation"]["requires_manual_review"] = json!(true);
        e
    };
    let events = [
        // A conflict: the row changed after the engine read it.
        ev(&cs[0], DataType::Address, "rev-conflict", 0),
        // Flagged, then applied for the same data type: superseded at once.
        flag(ev(&cs[1], DataType::Address, "rev-flag-1", 1)),
        ev(&cs[1], DataType::Address, "rev-apply-1", 2),
        // Flagged, then another data type applied: stays open.
        flag(ev(&cs[2], DataType::Address, "rev-flag-2", 3)),
        ev(&cs[2], DataType::Phone, "rev-phone-2", 4),
    ];
    let r = s
        .apply(&s.batch(9, 0, 0, &events), ConflictPolicy::Review)
        .await
        .unwrap();
    assert_eq!(
        outcomes(&r),
        [
            Outcome::Conflict,
            Outcome::Flagged,
            Outcome::Applied,
            Outcome::Flagged,
            Outcome::Applied
        ]
    );
    let on_topic: Vec<String> = r
        .outputs
        .iter()
        .map(|m| {
            let doc: Value = serde_json::from_slice(m.payload.as_ref().unwrap()).unwrap();
            doc["event_id"].as_str().unwrap().to_string()
        })
        .collect();
    let items =
        |all: Vec<govsync::sink::StoredReviewItem>| -> HashMap<String, (String, Option<String>)> {
            all.into_iter()
                .filter(|i| i.event_id.starts_with("rev-"))
                .map(|i| (i.event_id, (i.status, i.superseded_by)))
                .collect()
        };
    let stored = s.db.review_items(None).await.unwrap();
    let mut ids: Vec<String> = items(stored.clone()).into_keys().collect();
    ids.sort();
    let mut topic_ids = on_topic.clone();
    topic_ids.sort();
    assert_eq!(ids, topic_ids, "one item per review message");
    let conflict = stored
        .iter()
        .find(|i| i.event_id == "rev-conflict")
        .unwrap();
    assert_eq!(
        (
            conflict.reason.as_str(),
            conflict.priority.as_str(),
            conflict.row_version
        ),
        ("conflict", "high", Some(0)),
        "raised against the row as it was"
    );
    let proposed: Value = serde_json::from_str(&conflict.proposed).unwrap();
    assert_eq!(
        proposed["address"],
        json!(cs[0].std_address),
        "what approving writes"
    );
    let now = items(stored);
    assert_eq!(now["rev-conflict"], ("open".into(), None));
    assert_eq!(
        now["rev-flag-1"],
        ("superseded".into(), Some("rev-apply-1".into()))
    );
    assert_eq!(
        now["rev-flag-2"],
        ("open".into(), None),
        "another data type"
    );

    // A newer address result for customer 0, governed after the engine saw
    // the concurrent update: applied, and the conflict's item superseded.
    let mut newer = ev(&cs[0], DataType::Address, "rev-newer", 5);
    newer["original_data"]["last_update"] = json!("2024-01-15 10:25:00");
    // And for customer 1 an ID number applied, then a contradiction
    // governed before it (the engine says valid, the check digit is
    // wrong): held, sent to review, but its item is superseded at once.
    let id_ok = ev(&cs[1], DataType::IdCard, "rev-id-ok", 6);
    let mut held =
        generate::bad_check_digit_event(&cs[1], "rev-held-stale", generate::governed_at(1));
    held["governance_result"] = json!({"validation_status": "valid", "format_check": "passed", "checksum_validation": "passed", "quality_score": 0.95});
    held["sync_operation"] = json!({"operation_type": "update", "target_fields": ["quality_score", "validation_status"]});
    let r = s
        .apply(
            &s.batch(9, 5, 5, &[newer, id_ok, held]),
            ConflictPolicy::Review,
        )
        .await
        .unwrap();
    assert_eq!(
        outcomes(&r),
        [Outcome::Applied, Outcome::Applied, Outcome::Review]
    );
    assert_eq!(
        r.outputs.len(),
        1,
        "the stale contradiction is on the review topic"
    );
    let now = items(s.db.review_items(None).await.unwrap());
    assert_eq!(
        now["rev-conflict"],
        ("superseded".into(), Some("rev-newer".into()))
    );
    assert_eq!(now["rev-flag-2"], ("open".into(), None));
    assert_eq!(
        now["rev-held-stale"],
        ("superseded".into(), None),
        "raised superseded: a newer result was applied already"
    );
    let open = s.db.review_items(Some("open")).await.unwrap();
    assert_eq!(
        open.iter()
            .filter(|i| i.event_id.starts_with("rev-"))
            .count(),
        1,
        "open + superseded = raised: 1 + 3 = 4"
    );
    assert_eq!(now.len(), 4);
}

/// Reviewers' decisions through the database alone (no Kafka): approve a
/// conflict's proposal, correct a flagged address (a correction outside
/// China refused first), refuse a second decision on a closed item and a
/// message that is not a decision, skip a re-sent decision id; the batch
/// again changes nothing, under its watermark or under another group's.
pub async fn decisions_apply_once_with_reasons_for_refusals(s: &Suite) {
    use govsync::review::{ReviewDecision, Verdict};
    use govsync::sink::decisions::{
        self, DecisionBatch, DecisionMessage, DecisionOutcome, Refusal,
    };

    let mut cs = generate::customers(2, 1, 121);
    for (i, c) in cs.iter_mut().enumerate() {
        c.id = format!("DECIDE_{i}");
    }
    s.biz.seed(&cs).await;
    let at =
        govsync::event::rules::parse_loose_time("2024-01-15 10:25:00", generate::local()).unwrap();
    s.biz
        .business_update(&cs[0].id, "江苏省南京市玄武区中山路1号A座", at)
        .await;
    let mut flagged = ev(&cs[1], DataType::Address, "dec-flag", 1);
    flagged["sync_operation"]["requires_manual_review"] = json!(true);
    let r = s
        .apply(
            &s.batch(
                4,
                0,
                0,
                &[ev(&cs[0], DataType::Address, "dec-conflict", 0), flagged],
            ),
            ConflictPolicy::Review,
        )
        .await
        .unwrap();
    assert_eq!(outcomes(&r), [Outcome::Conflict, Outcome::Flagged]);
    let flagged_version = s.biz.row(&cs[1].id).await.unwrap().version;

    let approve = ReviewDecision::new("dec-conflict", Verdict::Approve, None, "wang.li", None);
    let correct = |addr: Value, lat: f64| {
        ReviewDecision::new(
            "dec-flag",
            Verdict::Correct,
            json!({"address": addr, "geo_lat": lat, "geo_lon": 118.79})
                .as_object()
                .cloned(),
            "wang.li",
            Some("checked with the customer".into()),
        )
    };
    let outside = correct(json!("江苏省南京市玄武区中山路9号"), -33.9);
    let fixed = correct(json!("江苏省南京市玄武区中山路9号"), 32.05);
    let again = ReviewDecision::new("dec-conflict", Verdict::Reject, None, "li.na", None);
    let messages: Vec<DecisionMessage> = [
        Ok(approve.clone()),
        Ok(outside),
        Ok(fixed.clone()),
        Ok(again),
        Ok(approve.clone()),
        Err("not a review decision (schema v1): EOF".to_string()),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, decision)| DecisionMessage {
        offset: i as i64,
        decision,
    })
    .collect();
    let key = |group: &str| govsync::sink::PartitionKey {
        group: group.into(),
        topic: format!("{}.decisions", s.topic),
        partition: 0,
    };
    let batch = |group: &str| DecisionBatch {
        batch_id: format!("{}:{group}:decisions", s.topic),
        key: key(group),
        messages: messages.clone(),
        attempt: 1,
    };
    let rules = govsync::event::RuleSet::default();
    let r = decisions::apply(s.db.as_ref(), &batch("reviewers"), &rules)
        .await
        .unwrap();
    let classes: Vec<String> = r
        .outcomes
        .iter()
        .map(|o| match o {
            DecisionOutcome::Applied(v) => v.status().to_string(),
            DecisionOutcome::Refused(c, _) => c.as_str().to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        classes,
        [
            "approved",
            Refusal::Correction.as_str(),
            "corrected",
            Refusal::NotOpen.as_str(),
            "Duplicate",
            Refusal::Invalid.as_str()
        ]
    );
    let row0 = s.biz.row(&cs[0].id).await.unwrap();
    assert_eq!(
        row0.get(govsync::event::Column::Address),
        govsync::event::Value::Text(cs[0].std_address.clone()),
        "approve wrote the engine's proposal over the concurrent update"
    );
    assert_eq!(row0.version, 1);
    let row1 = s.biz.row(&cs[1].id).await.unwrap();
    assert_eq!(
        row1.get(govsync::event::Column::Address),
        govsync::event::Value::Text("江苏省南京市玄武区中山路9号".into())
    );
    assert_eq!(row1.version, flagged_version + 1);
    let item = |id: &'static str| {
        let db = s.db.clone();
        async move { db.review_item(id).await.unwrap().unwrap() }
    };
    let conflict = item("dec-conflict").await;
    assert_eq!(
        (conflict.status.as_str(), conflict.decided_by.as_deref()),
        ("approved", Some("wang.li"))
    );
    assert_eq!(conflict.decision_id, Some(approve.decision_id.clone()));
    let flag = item("dec-flag").await;
    assert_eq!(flag.status, "corrected");
    assert_eq!(flag.comment.as_deref(), Some("checked with the customer"));
    let history = s.db.review_decisions("dec-flag").await.unwrap();
    let seen: Vec<(&str, &str)> = history
        .iter()
        .map(|d| (d.decision_id.as_str(), d.outcome.as_str()))
        .collect();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1], (fixed.decision_id.as_str(), "applied"));
    assert!(
        history[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("outside China")),
        "{history:?}"
    );

    // The same batch again: below the watermark. Under another group: every
    // decision id known, nothing written twice.
    let r = decisions::apply(s.db.as_ref(), &batch("reviewers"), &rules)
        .await
        .unwrap();
    assert!(r.outcomes.iter().all(|o| *o == DecisionOutcome::Skipped));
    let r = decisions::apply(s.db.as_ref(), &batch("others"), &rules)
        .await
        .unwrap();
    assert!(
        r.outcomes.iter().all(|o| *o == DecisionOutcome::Duplicate),
        "{:?}",
        r.outcomes
    );
    assert_eq!(s.biz.row(&cs[0].id).await.unwrap().version, 1);
    assert_eq!(
        s.biz.row(&cs[1].id).await.unwrap().version,
        flagged_version + 1
    );
}
