//! Reviewers' decisions through the real broker and PostgreSQL: the seed's
//! three review items decided (approve, correct, reject), refusals with
//! their reasons (a moved row, a closed item, a correction failing GB
//! 11643, a message that is not a decision), a re-sent decision id applied
//! once, and the change log naming the reviewer.

use std::collections::BTreeMap;
use std::time::Duration;

use govsync::review::{ReviewDecision, Verdict};
use serde_json::{Value, json};
use sqlx::Row;

use crate::common::harness::{Env, RawOut, wait_until};

const CONTRADICTION: &str = "7c1d2e3f-0003-4a1b-8c2d-3201IDCD0003";
const FLAGGED: &str = "7c1d2e3f-0004-4a1b-8c2d-3201IDCD0004";
const CONFLICT: &str = "7c1d2e3f-0006-4a1b-8c2d-3201ADDR0006";

/// The seed's six events applied: three review items open.
async fn seed_items(env: &Env) {
    env.migrate().await;
    super::routing::seed_sample_customers(env).await;
    let events: Vec<Value> = super::routing::seed_sample_events()
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    env.publish(&events).await;
    run_pipeline(env).await;
    let open = env.db().await.review_items(Some("open")).await.unwrap();
    let mut ids: Vec<&str> = open.iter().map(|i| i.event_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [CONTRADICTION, FLAGGED, CONFLICT]);
}

async fn run_pipeline(env: &Env) {
    let running = env.start();
    wait_until(Duration::from_secs(90), "all offsets committed", || async {
        env.all_committed()
    })
    .await;
    running.stop().await;
}

fn msg(customer: &str, d: &ReviewDecision) -> RawOut {
    let (k, v) = d.to_message(customer);
    (Some(k), v, vec![])
}

/// A valid 18-digit ID number of Xuanwu district (320102).
fn valid_id() -> String {
    let first17 = "32010219900101123";
    format!(
        "{first17}{}",
        govsync::event::idcard::check_char(first17).unwrap()
    )
}

async fn version(env: &Env, customer: &str) -> i64 {
    sqlx::query("SELECT version FROM customer_profile WHERE customer_id = $1")
        .bind(customer)
        .fetch_one(&env.pg)
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_apply_once_and_refusals_say_why() {
    let env = Env::new("decisions", 1).await;
    seed_items(&env).await;
    // Customer 003's row moves after its item was raised: a phone result
    // (another data type, so the id_card item stays open).
    let mut phone: Value =
        serde_json::from_str(include_str!("../../schemas/examples/05-phone-update.json")).unwrap();
    phone["event_id"] = json!("phone-for-003");
    phone["customer_id"] = json!("CUST_320102_003");
    env.publish(&[phone]).await;
    run_pipeline(&env).await;
    assert_eq!(version(&env, "CUST_320102_003").await, 1);
    let flagged_version = version(&env, "CUST_320102_004").await;

    let who = "wang.li";
    let approve_conflict = ReviewDecision::new(CONFLICT, Verdict::Approve, None, who, None);
    let approve_moved = ReviewDecision::new(CONTRADICTION, Verdict::Approve, None, who, None);
    let reject_moved = ReviewDecision::new(
        CONTRADICTION,
        Verdict::Reject,
        None,
        who,
        Some("the engine's reading is wrong".into()),
    );
    let corrected = |id: &str| {
        json!({"id_card": id, "validation_status": "valid"})
            .as_object()
            .cloned()
    };
    let bad_correction = ReviewDecision::new(
        FLAGGED,
        Verdict::Correct,
        corrected("320102199001011234"),
        who,
        None,
    );
    let good_correction =
        ReviewDecision::new(FLAGGED, Verdict::Correct, corrected(&valid_id()), who, None);
    let second_on_conflict = ReviewDecision::new(CONFLICT, Verdict::Reject, None, "li.na", None);
    let msgs = vec![
        msg("CUST_320102_006", &approve_conflict),
        msg("CUST_320102_003", &approve_moved),
        msg("CUST_320102_003", &reject_moved),
        msg("CUST_320102_004", &bad_correction),
        msg("CUST_320102_004", &good_correction),
        msg("CUST_320102_006", &second_on_conflict),
        // The same decision again (a console retry): applied once.
        msg("CUST_320102_006", &approve_conflict),
        (
            Some(b"x".to_vec()),
            b"{\"decision\": \"approve\"".to_vec(),
            vec![],
        ),
    ];
    let topic = env.raw.kafka.decision_topic.clone();
    env.publish_raw_to(&topic, &msgs).await;

    let applier = env.start_applier(env.config());
    wait_until(Duration::from_secs(60), "7 decisions recorded", || async {
        env.count("SELECT count(*) FROM govsync_review_decision")
            .await
            == 7
    })
    .await;
    applier.stop().await;

    // The items as decided.
    let db = env.db().await;
    let status: BTreeMap<String, (String, Option<String>)> = db
        .review_items(None)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.event_id, (i.status, i.decided_by)))
        .collect();
    assert_eq!(status[CONFLICT], ("approved".into(), Some(who.into())));
    assert_eq!(status[CONTRADICTION], ("rejected".into(), Some(who.into())));
    assert_eq!(status[FLAGGED], ("corrected".into(), Some(who.into())));

    // Each decision's record: applied, or refused with its reason.
    let outcome = |id: &str| {
        let id = id.to_string();
        let pg = env.pg.clone();
        async move {
            let r = sqlx::query(
                "SELECT outcome, reason FROM govsync_review_decision WHERE decision_id = $1",
            )
            .bind(&id)
            .fetch_one(&pg)
            .await
            .unwrap();
            (
                r.get::<String, _>(0),
                r.get::<Option<String>, _>(1).unwrap_or_default(),
            )
        }
    };
    assert_eq!(outcome(&approve_conflict.decision_id).await.0, "applied");
    assert_eq!(outcome(&reject_moved.decision_id).await.0, "applied");
    assert_eq!(outcome(&good_correction.decision_id).await.0, "applied");
    let (o, why) = outcome(&approve_moved.decision_id).await;
    assert_eq!(o, "refused");
    assert!(
        why.contains("the row changed since the item was raised (version 0 then, 1 now)"),
        "{why}"
    );
    let (o, why) = outcome(&bad_correction.decision_id).await;
    assert_eq!(o, "refused");
    assert!(why.contains("GB 11643"), "{why}");
    let (o, why) = outcome(&second_on_conflict.decision_id).await;
    assert_eq!(o, "refused");
    assert!(why.contains("the item is approved"), "{why}");
    let refused_invalid = env
        .count("SELECT count(*) FROM govsync_review_decision WHERE decision_id LIKE 'invalid:%' AND outcome = 'refused' AND reason LIKE 'not a review decision%'")
        .await;
    assert_eq!(refused_invalid, 1, "the broken message is kept, refused");
    let history = db.review_decisions(CONFLICT).await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1].outcome, "refused");

    // The table: approve wrote the proposal, correct the reviewer's value,
    // reject and the refusals nothing; each write one version.
    let row = sqlx::query(
        "SELECT address, version FROM customer_profile WHERE customer_id = 'CUST_320102_006'",
    )
    .fetch_one(&env.pg)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>(0), "江苏省南京市玄武区中山路123号");
    assert_eq!(row.get::<i64, _>(1), 1);
    let row = sqlx::query(
        "SELECT id_card, validation_status, version FROM customer_profile WHERE customer_id = 'CUST_320102_004'",
    )
    .fetch_one(&env.pg)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>(0), valid_id());
    assert_eq!(row.get::<String, _>(1), "valid");
    assert_eq!(row.get::<i64, _>(2), flagged_version + 1);
    assert_eq!(version(&env, "CUST_320102_003").await, 1);

    // The change log: the two writes, the reviewer as their source.
    let logged = sqlx::query(
        "SELECT event_id, operation, source, before_image, after_image FROM govsync_change_log \
         WHERE source IS NOT NULL ORDER BY event_id",
    )
    .fetch_all(&env.pg)
    .await
    .unwrap();
    let mut want = [
        (approve_conflict.decision_id.clone(), "review_approve"),
        (good_correction.decision_id.clone(), "review_correct"),
    ];
    want.sort();
    assert_eq!(logged.len(), 2);
    for (r, (id, op)) in logged.iter().zip(&want) {
        assert_eq!(&r.get::<String, _>(0), id);
        assert_eq!(r.get::<String, _>(1), *op);
        assert_eq!(r.get::<String, _>(2), "reviewer:wang.li");
        assert!(r.get::<Option<String>, _>(3).is_some() && r.get::<Option<String>, _>(4).is_some());
    }

    // A second applier in a new group reads every decision again: all are
    // recorded already, nothing is applied twice.
    let before = env
        .count("SELECT sum(version)::bigint FROM customer_profile")
        .await;
    let mut raw = env.raw.clone();
    raw.review.decision_group = format!("{}.again", env.raw.kafka.group_id);
    let again = env.start_applier(govsync::config::check(raw).unwrap());
    wait_until(Duration::from_secs(60), "the second applier's batch", || async {
        env.count("SELECT count(*) FROM govsync_batch WHERE kind = 'review' AND consumer_group LIKE '%.again'")
            .await
            > 0
    })
    .await;
    again.stop().await;
    assert_eq!(
        env.count("SELECT sum(version)::bigint FROM customer_profile")
            .await,
        before
    );
    assert_eq!(
        env.count("SELECT count(*) FROM govsync_review_decision")
            .await,
        7
    );
    assert_eq!(
        env.count("SELECT count(*) FROM govsync_change_log WHERE source IS NOT NULL")
            .await,
        2
    );
}

/// Issue 15, what it must show 2 and 5: the applier killed (SIGKILL at
/// random instants and at its crash points) while 1,000 decisions and 100
/// re-sent ones flow; afterwards each decision applied once (row versions,
/// change log, items), none lost, and open + decided + superseded = raised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_decisions_under_sigkill_apply_once() {
    use std::os::unix::process::ExitStatusExt;

    use govsync::demo::generate;
    use rand::Rng;

    let env = Env::new("decisions_crash", 2).await;
    env.migrate().await;
    let cs = generate::customers(1000, 4, 151);
    env.seed(&cs).await;
    let events: Vec<Value> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            generate::bad_check_digit_event(c, &format!("dc-{i}"), generate::governed_at(i))
        })
        .collect();
    env.publish(&events).await;
    run_pipeline(&env).await;
    let raised = env.read_topic(&env.raw.kafka.review_topic).len();
    assert_eq!(raised, 1000);
    assert_eq!(
        env.db()
            .await
            .review_items(Some("open"))
            .await
            .unwrap()
            .len(),
        1000
    );

    // One decision per item: approve, reject, correct (the customer's valid
    // number) in turn; 100 of them published twice, later.
    let verdicts = [Verdict::Approve, Verdict::Reject, Verdict::Correct];
    let decisions: Vec<(String, ReviewDecision)> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let v = verdicts[i % 3];
            let corrected = (v == Verdict::Correct).then(|| {
                json!({"id_card": c.id_card, "validation_status": "valid"})
                    .as_object()
                    .cloned()
                    .unwrap()
            });
            let d = ReviewDecision::new(&format!("dc-{i}"), v, corrected, "reviewer.a", None);
            (c.id.clone(), d)
        })
        .collect();
    let mut msgs: Vec<RawOut> = decisions.iter().map(|(c, d)| msg(c, d)).collect();
    msgs.extend(decisions.iter().step_by(10).map(|(c, d)| msg(c, d)));

    let mut raw = env.raw.clone();
    raw.kafka.static_membership = true;
    let topic = env.raw.kafka.decision_topic.clone();
    let log = env.log_path("decisions-crash");
    let mut rng = generate::rng(17);
    let rounds = 8;
    let chunk = msgs.len().div_ceil(rounds);
    for (round, part) in msgs.chunks(chunk).enumerate() {
        env.publish_raw_to(&topic, part).await;
        let status = match round % 4 {
            0 | 2 => {
                let child = env.spawn_binary(&raw, &[], &log);
                tokio::time::sleep(Duration::from_millis(rng.random_range(400..2000))).await;
                child.signal(libc::SIGKILL);
                child.wait(Duration::from_secs(10)).await
            }
            r => {
                let point = if r == 1 {
                    "decision_before_commit"
                } else {
                    "decision_after_commit"
                };
                let child =
                    env.spawn_binary(&raw, &[("GOVSYNC_CRASH_AT", format!("{point}:1"))], &log);
                child.wait(Duration::from_secs(30)).await
            }
        };
        assert_eq!(status.signal(), Some(9), "round {round}: {status:?}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    for p in ["decision_before_commit", "decision_after_commit"] {
        assert!(text.contains(&format!("crash point {p} reached")), "{p}");
    }
    let child = env.spawn_binary(&raw, &[], &log);
    wait_until(
        Duration::from_secs(120),
        "1000 decisions recorded",
        || async {
            env.count("SELECT count(*) FROM govsync_review_decision")
                .await
                == 1000
        },
    )
    .await;
    // The re-sent tail consumed too (its offsets committed) before stopping.
    tokio::time::sleep(Duration::from_secs(2)).await;
    child.signal(libc::SIGTERM);
    assert!(child.wait(Duration::from_secs(60)).await.success());

    assert_eq!(
        env.count("SELECT count(*) FROM govsync_review_decision WHERE outcome = 'applied'")
            .await,
        1000,
        "none refused: each item decided once"
    );
    let items = env.db().await.review_items(None).await.unwrap();
    let by_status = |s: &str| items.iter().filter(|i| i.status == s).count();
    let decided = by_status("approved") + by_status("rejected") + by_status("corrected");
    assert_eq!(
        (by_status("open"), decided, by_status("superseded")),
        (0, 1000, 0)
    );
    assert_eq!(
        by_status("open") + decided + by_status("superseded"),
        raised,
        "open + decided + superseded = raised"
    );
    // Versions: the flag's write, then one more for approve and correct.
    for (i, (customer, d)) in decisions.iter().enumerate() {
        let want = if d.decision == Verdict::Reject { 1 } else { 2 };
        assert_eq!(version(&env, customer).await, want, "decision {i}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM govsync_change_log WHERE source = 'reviewer:reviewer.a'")
            .await,
        decisions
            .iter()
            .filter(|(_, d)| d.decision != Verdict::Reject)
            .count() as i64,
        "one change-log entry per approve and correct"
    );
    eprintln!(
        "decision batches: {}",
        env.count("SELECT count(*) FROM govsync_batch WHERE kind = 'review'")
            .await
    );
}
