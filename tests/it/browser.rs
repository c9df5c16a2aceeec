//! The review console in a real browser (headless Chromium through
//! chromedriver, Debian's packages: `scripts/browser`) against the real
//! broker and PostgreSQL, with `govsync run` raising the items and
//! applying the decisions: sign in, filter the queue, approve one item
//! (keyboard), correct one (a bad ID number refused on the page with the
//! reason, then a valid one), reject one, bulk-approve three; then the
//! table, the change log (reviewer as source) and the items' statuses are
//! as decided. Screenshots of the pages are taken too (see [`screenshot`]).

use std::path::PathBuf;
use std::time::Duration;

use govsync::demo::generate::{self, Customer};
use govsync::review::Verdict;
use serde_json::Value;

use govsync::config::RawConfig;

use crate::common::harness::{Env, wait_until};
use crate::common::review::{Console, PASSWORD, REVIEWER, decisions, prepare};
use crate::common::webdriver::Driver;

/// A valid ID number (GB 11643) that none of the generated customers has.
const CORRECTED_ID: &str = "11010519491231002X";
/// Fails the check digit.
const BAD_ID: &str = "110105194912310021";

/// Where a screenshot goes: docs/screenshots/ (the README's pictures) when
/// GOVSYNC_UPDATE_SCREENSHOTS=1, else a temporary folder, so an ordinary
/// test run leaves the work tree as it was.
fn screenshot(name: &str) -> PathBuf {
    let dir = if std::env::var("GOVSYNC_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
    } else {
        std::env::temp_dir().join("govsync-screenshots")
    };
    dir.join(format!("{name}.png"))
}

fn event_id(i: usize) -> String {
    format!("br-flag-{i}")
}

/// Eight flagged ID numbers, customers alternating between two regions.
async fn raise_items(env: &Env, customers: &[Customer]) {
    let events: Vec<Value> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| generate::bad_check_digit_event(c, &event_id(i), generate::governed_at(i)))
        .collect();
    env.publish(&events).await;
    wait_until(
        Duration::from_secs(90),
        "govsync run raises 8 review items",
        || async {
            env.count("SELECT count(*) FROM govsync_review_item WHERE status = 'open'")
                .await
                == 8
        },
    )
    .await;
}

async fn sign_in(d: &Driver, base: &str) {
    d.goto(&format!("{base}/")).await;
    d.wait_url("/signin").await;
    d.fill("#name", REVIEWER).await;
    d.fill("#password", PASSWORD).await;
    d.click("#signin-button").await;
    d.find("#queue").await;
    assert_eq!(d.text("#reviewer").await, REVIEWER);
}

/// Opens an item from the queue by its event id.
async fn open(d: &Driver, base: &str, event: &str) {
    d.goto(&format!("{base}/")).await;
    d.click(&format!(r#"tr[data-event="{event}"] a.open"#))
        .await;
    d.wait_url(&format!("/item/{event}")).await;
}

/// Opens an item that left the open queue.
async fn open_closed(d: &Driver, base: &str, event: &str) {
    d.goto(&format!("{base}/item/{event}")).await;
    d.find("#status").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_reviewer_decides_items_and_govsync_applies_them() {
    let env = Env::new("browser", 1).await;
    env.migrate().await;
    let customers = generate::customers(8, 2, 15);
    env.seed(&customers).await;
    let mut raw = env.raw.clone();
    prepare(&env, &mut raw).await;
    raw.review.apply_decisions = true;
    let run_log = env.log_path("run");
    let _run = env.spawn_binary(&raw, &[], &run_log);
    raise_items(&env, &customers).await;
    let console = Console::start(&env, &raw).await;
    let base = format!("http://{}", console.addr);
    let d = Driver::start(1280, 900).await;

    // Each phase boxed, like each WebDriver call: in a debug build the
    // scenario's futures are large for the test thread's 2 MiB stack.
    Box::pin(decide_in_the_browser(&d, &base, &env, &raw, &customers)).await;
    Box::pin(decisions_published(&env, &raw, &customers)).await;
    Box::pin(decisions_applied(&env, &d, &base, &customers)).await;
    d.quit().await;
    let log = console.log_text();
    for c in &customers {
        assert!(
            !log.contains(&c.id_card) && !log.contains(&c.phone),
            "personal data in the console's log"
        );
    }
}

/// Sign in, filter, approve, correct (refused, then valid), reject, bulk.
async fn decide_in_the_browser(
    d: &Driver,
    base: &str,
    env: &Env,
    raw: &RawConfig,
    customers: &[Customer],
) {
    sign_in(d, base).await;
    // Filter: one region's ID-card items.
    let region = customers[0].region;
    d.click(&format!(r#"#f-region option[value="{region}"]"#))
        .await;
    d.click(r#"#f-data_type option[value="id_card"]"#).await;
    d.click("#apply-filters").await;
    d.wait_url(&format!("region={region}")).await;
    let shown = d.all("tr.row").await.len();
    let src = d.source().await;
    assert_eq!(shown, 4, "four of the eight items are in region {region}");
    for (i, c) in customers.iter().enumerate() {
        assert_eq!(
            src.contains(&event_id(i)),
            c.region == region,
            "{}",
            event_id(i)
        );
        assert!(
            !src.contains(&c.id_card[..17]),
            "the queue masks ID numbers"
        );
    }
    d.screenshot(&screenshot("queue")).await;

    // Approve with the keyboard.
    open(d, base, &event_id(0)).await;
    // Tall enough for the whole page: comparison, reasons, forms.
    d.resize(1280, 2000).await;
    d.screenshot(&screenshot("item")).await;
    d.resize(1280, 900).await;
    d.key("a").await;
    d.wait_url("published=").await;
    assert!(d.text("#notice").await.contains("published"));

    // Correct: a bad ID number is refused on the page, a valid one is sent.
    open(d, base, &event_id(2)).await;
    d.key("c").await;
    d.fill("#set-id_card", BAD_ID).await;
    d.fill("#correct-comment", "confirmed with the customer")
        .await;
    d.click("#correct").await;
    let refusal = d.text("#refusal").await;
    assert!(refusal.contains("GB 11643"), "{refusal}");
    d.screenshot(&screenshot("refusal")).await;
    assert!(
        decisions(env, raw)
            .iter()
            .all(|(_, x)| x.corrected.is_none())
    );
    d.fill("#set-id_card", CORRECTED_ID).await;
    d.click("#correct").await;
    d.wait_url("published=").await;

    // Reject.
    open(d, base, &event_id(4)).await;
    d.click("#reject").await;
    d.wait_url("published=").await;

    // Bulk-approve three.
    d.goto(&format!("{base}/")).await;
    for i in [6, 1, 3] {
        d.click(&format!(r#"input[name="event"][value="{}"]"#, event_id(i)))
            .await;
    }
    d.click("#bulk-approve").await;
    d.wait_url("published=3").await;
    assert!(d.text(".notice").await.contains("3 decision(s) published"));

    // A phone-sized view of an item, for the README.
    d.resize(390, 844).await;
    open(d, base, &event_id(5)).await;
    d.screenshot(&screenshot("phone-item")).await;
    d.resize(1280, 900).await;
}

/// The decisions on the topic: one each, the reviewer's.
async fn decisions_published(env: &Env, raw: &RawConfig, customers: &[Customer]) {
    let published = decisions(env, raw);
    let verdict_of = |i: usize| {
        published
            .iter()
            .filter(|(_, x)| x.event_id == event_id(i))
            .map(|(key, x)| {
                assert_eq!(
                    (key.as_str(), x.reviewer.as_str()),
                    (customers[i].id.as_str(), REVIEWER)
                );
                x.decision
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(published.len(), 6, "{published:?}");
    for (i, v) in [
        (0, Verdict::Approve),
        (2, Verdict::Correct),
        (4, Verdict::Reject),
        (6, Verdict::Approve),
        (1, Verdict::Approve),
        (3, Verdict::Approve),
    ] {
        assert_eq!(verdict_of(i), [v], "{}", event_id(i));
    }
    assert!(verdict_of(5).is_empty() && verdict_of(7).is_empty());
}

/// govsync run applies them: statuses, the table, the change log, and
/// the console shows it.
async fn decisions_applied(env: &Env, d: &Driver, base: &str, customers: &[Customer]) {
    let status = |i: usize| {
        let pg = env.pg.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT status FROM govsync_review_item WHERE event_id = $1",
            )
            .bind(event_id(i))
            .fetch_one(&pg)
            .await
            .unwrap()
        }
    };
    wait_until(
        Duration::from_secs(90),
        "govsync run applies the six decisions",
        || async {
            env.count("SELECT count(*) FROM govsync_review_item WHERE status <> 'open'")
                .await
                == 6
        },
    )
    .await;
    for (i, want) in [
        (0, "approved"),
        (2, "corrected"),
        (4, "rejected"),
        (6, "approved"),
        (1, "approved"),
        (3, "approved"),
        (5, "open"),
        (7, "open"),
    ] {
        assert_eq!(status(i).await, want, "{}", event_id(i));
    }
    let decided_by: i64 = env
        .count(&format!(
            "SELECT count(*) FROM govsync_review_item WHERE decided_by = '{REVIEWER}'"
        ))
        .await;
    assert_eq!(decided_by, 6);
    let id_card: String =
        sqlx::query_scalar("SELECT id_card FROM customer_profile WHERE customer_id = $1")
            .bind(&customers[2].id)
            .fetch_one(&env.pg)
            .await
            .unwrap();
    assert_eq!(id_card, CORRECTED_ID);
    let rejected_id: String =
        sqlx::query_scalar("SELECT id_card FROM customer_profile WHERE customer_id = $1")
            .bind(&customers[4].id)
            .fetch_one(&env.pg)
            .await
            .unwrap();
    assert_eq!(
        rejected_id, customers[4].id_card,
        "a rejection writes nothing"
    );
    let logged = |i: usize| {
        let pg = env.pg.clone();
        let id = customers[i].id.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM govsync_change_log WHERE customer_id = $1 AND source = $2",
            )
            .bind(id)
            .bind(format!("reviewer:{REVIEWER}"))
            .fetch_one(&pg)
            .await
            .unwrap()
        }
    };
    for i in [0, 2, 6, 1, 3] {
        assert_eq!(
            logged(i).await,
            1,
            "the change log names the reviewer for {}",
            event_id(i)
        );
    }
    assert_eq!(logged(4).await, 0, "a rejection logs no change");
    // The console shows what was applied.
    open_closed(d, base, &event_id(2)).await;
    assert_eq!(d.text("#status").await, "corrected");
    let history = d.text("#history").await;
    assert!(
        history.contains(REVIEWER) && history.contains("applied"),
        "{history}"
    );
    assert!(
        d.all("#decide").await.is_empty(),
        "no forms on a closed item"
    );
}
