//! The review console over HTTP, as the real binary (`govsync review
//! serve`) against the real broker and PostgreSQL: sign-in, sessions and
//! CSRF tokens guard every decision; content is escaped; decisions reach
//! the decision topic with the reviewer's name, and only valid ones; the
//! log carries no personal data.

use std::time::Duration;

use govsync::review::Verdict;
use serde_json::json;

use crate::common::harness::Env;
use crate::common::http::{Browser, csrf_of, send};
use crate::common::review::{
    Console, NewItem, PASSWORD, REVIEWER, assert_log_clean, decisions, insert_item, prepare,
    wait_for_decisions,
};

pub(super) const ID: &str = "320102199001011234";
const VALID_ID: &str = "11010519491231002X";
const PHONE: &str = "13812345678";
const ADDRESS: &str = "江苏省南京市玄武区中山路123号";
const SCRIPT: &str = "<script>alert(1)</script>";

/// A flagged ID item, a contradiction on an address with a script in it.
pub(super) async fn items(env: &Env) {
    insert_item(
        env,
        NewItem {
            event_id: "ev-flagged-1",
            customer_id: "CUST_320102_004",
            data_type: "id_card",
            region: "320102",
            reason: "flagged",
            priority: "high",
            details: json!(["engine: 校验位错误，正确应为'1'", "govsync: check digit"]),
            proposed: json!({"quality_score": 0.25, "validation_status": "invalid", "review_flag": true}),
            current: Some(json!({"id_card": ID, "phone": PHONE, "address": ADDRESS, "quality_score": 0.3})),
            hours_old: 5,
        },
    )
    .await;
    insert_item(
        env,
        NewItem {
            event_id: "ev-script-2",
            customer_id: "CUST_310101_009",
            data_type: "address",
            region: SCRIPT,
            reason: "check_contradiction",
            priority: "medium",
            details: json!([format!("address {SCRIPT} has no district")]),
            proposed: json!({"address": format!("江苏省南京市玄武区{SCRIPT}"), "quality_score": 0.5}),
            current: Some(json!({"address": SCRIPT})),
            hours_old: 1,
        },
    )
    .await;
}

async fn start(test: &str) -> (Env, govsync::config::RawConfig, Console) {
    let env = Env::new(test, 1).await;
    env.migrate().await;
    let mut raw = env.raw.clone();
    prepare(&env, &mut raw).await;
    items(&env).await;
    let console = Console::start(&env, &raw).await;
    (env, raw, console)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_without_a_session_redirects_pages_and_refuses_decisions() {
    let (env, raw, console) = start("console_nosession").await;
    let mut anon = Browser::new(console.addr);
    for page in ["/", "/item/ev-flagged-1", "/?priority=high"] {
        let r = anon.get(page).await;
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/signin")),
            "{page}"
        );
    }
    // A POST needs a session; a made-up cookie is none.
    for cookie in [None, Some("govsync_session=0000")] {
        let mut h = vec![(
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        )];
        if let Some(c) = cookie {
            h.push(("Cookie", c.to_string()));
        }
        for (path, body) in [
            ("/item/ev-flagged-1/decide", "verdict=approve&csrf=x"),
            ("/bulk", "verdict=approve&event=ev-flagged-1&csrf=x"),
        ] {
            let r = send(console.addr, "POST", path, &h, body.as_bytes()).await;
            assert_eq!(r.status, 401, "{path} with {cookie:?}: {}", r.body);
        }
    }
    // A wrong password signs nobody in.
    let page = anon.get("/signin").await;
    let csrf = csrf_of(&page.body);
    let r = anon
        .post(
            "/signin",
            &[("csrf", &csrf), ("name", REVIEWER), ("password", "guess")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Unknown name or wrong password"));
    assert!(!anon.cookies.contains_key("govsync_session"));
    // Nor does a sign-in form without its token.
    let mut other = Browser::new(console.addr);
    let r = other
        .post(
            "/signin",
            &[("csrf", &csrf), ("name", REVIEWER), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 403);

    let mut b = console.signed_in().await;
    let q = b.get("/").await;
    assert_eq!(q.status, 200);
    assert!(
        q.body
            .contains(&format!(r#"<strong id="reviewer">{REVIEWER}</strong>"#))
    );
    let csrf = csrf_of(&q.body);
    let r = b.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    let r = b.get("/").await;
    assert_eq!(r.status, 303, "signed out");

    assert!(decisions(&env, &raw).is_empty(), "nothing was published");
    assert_log_clean(&console.log_text(), &[ID, PHONE, ADDRESS, PASSWORD]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_refuses_forged_forms_without_the_sessions_csrf_token() {
    let (env, raw, console) = start("console_csrf").await;
    let mut b = console.signed_in().await;
    let page = b.get("/item/ev-flagged-1").await;
    let good = csrf_of(&page.body);
    // Another session's token is no better than none.
    let mut other = console.signed_in().await;
    let theirs = csrf_of(&other.get("/").await.body);
    assert_ne!(good, theirs);
    for token in [None, Some(""), Some("0123"), Some(theirs.as_str())] {
        let mut f = vec![("verdict", "approve")];
        if let Some(t) = token {
            f.push(("csrf", t));
        }
        let r = b.post("/item/ev-flagged-1/decide", &f).await;
        assert_eq!(r.status, 403, "decide with {token:?}: {}", r.body);
        f.push(("event", "ev-flagged-1"));
        let r = b.post("/bulk", &f).await;
        assert_eq!(r.status, 403, "bulk with {token:?}: {}", r.body);
        let r = b.post("/signout", &f).await;
        assert_eq!(r.status, 403, "signout with {token:?}");
    }
    assert!(decisions(&env, &raw).is_empty(), "nothing was published");
    assert!(console.log_text().contains("CSRF"), "refusals are logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_script_in_content_escaped_and_masks_the_queue() {
    let (_env, _raw, console) = start("console_escape").await;
    let mut b = console.signed_in().await;
    // askama escapes `<` and `>` as numeric references.
    let escaped = "&#60;script&#62;alert(1)&#60;/script&#62;";
    let item = b.get("/item/ev-script-2").await;
    assert_eq!(item.status, 200);
    assert!(!item.body.contains(SCRIPT), "{}", item.body);
    assert!(item.body.contains(escaped), "{}", item.body);
    let q = b.get("/?status=open").await;
    assert!(!q.body.contains(SCRIPT), "{}", q.body);
    assert!(
        q.body.contains(escaped),
        "the region is shown escaped: {}",
        q.body
    );
    // The queue masks; the item page shows the row in full.
    assert!(
        !q.body.contains(ID) && !q.body.contains(PHONE),
        "{}",
        q.body
    );
    let full = b.get("/item/ev-flagged-1").await;
    assert!(full.body.contains(ID) && full.body.contains(PHONE) && full.body.contains(ADDRESS));
    assert!(
        full.body.contains("paper ID card"),
        "the item's instructions"
    );
    assert!(full.body.contains("校验位错误"), "the reasons");
    // Headers that keep pages out of frames and scripts to the console.
    let csp = item
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-security-policy"));
    assert!(csp.is_some_and(|(_, v)| v.contains("default-src 'self'")));
    assert_log_clean(&console.log_text(), &[ID, PHONE, ADDRESS]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_filters_the_queue_oldest_high_priority_first() {
    let (_env, _raw, console) = start("console_filter").await;
    let mut b = console.signed_in().await;
    let all = b.get("/").await.body;
    let (a, s) = (
        all.find("ev-flagged-1").unwrap(),
        all.find("ev-script-2").unwrap(),
    );
    assert!(a < s, "high priority first");
    assert!(all.contains("<strong>2</strong> matching"), "{all}");
    for (query, flagged, script) in [
        ("?priority=high", true, false),
        ("?data_type=address", false, true),
        ("?reason=flagged", true, false),
        ("?region=320102", true, false),
        ("?age=4h", true, false),
        ("?age=1d", false, false),
        ("?status=approved", false, false),
    ] {
        let body = b.get(&format!("/{query}")).await.body;
        assert_eq!(
            (body.contains("ev-flagged-1"), body.contains("ev-script-2")),
            (flagged, script),
            "{query}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_approve_publishes_one_decision_with_the_reviewers_name() {
    let (env, raw, console) = start("console_approve").await;
    let mut b = console.signed_in().await;
    let page = b.get("/item/ev-flagged-1").await;
    let csrf = csrf_of(&page.body);
    let r = b
        .post(
            "/item/ev-flagged-1/decide",
            &[
                ("csrf", &csrf),
                ("verdict", "approve"),
                ("comment", "checked the paper ID"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let location = r.header("location").unwrap().to_string();
    let got = wait_for_decisions(&env, &raw, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = decisions(&env, &raw);
    assert_eq!(got_after.len(), 1, "exactly one decision: {got:?}");
    let (key, d) = &got_after[0];
    assert_eq!(key, "CUST_320102_004");
    assert_eq!(
        (
            d.event_id.as_str(),
            d.decision,
            d.reviewer.as_str(),
            d.comment.as_deref()
        ),
        (
            "ev-flagged-1",
            Verdict::Approve,
            REVIEWER,
            Some("checked the paper ID")
        )
    );
    assert!(
        location.ends_with(&format!("?published={}", d.decision_id)),
        "{location}"
    );
    let shown = b.get(&location).await;
    assert!(
        shown.body.contains(&d.decision_id),
        "the page names the decision"
    );
    assert_log_clean(&console.log_text(), &[ID, PHONE, ADDRESS]);
    assert!(console.log_text().contains("decision published"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_correction_failing_gb11643_shows_the_reason_and_publishes_nothing() {
    let (env, raw, console) = start("console_correct").await;
    let mut b = console.signed_in().await;
    let csrf = csrf_of(&b.get("/item/ev-flagged-1").await.body);
    let bad = "110105194912310021";
    let r = b
        .post(
            "/item/ev-flagged-1/decide",
            &[
                ("csrf", &csrf),
                ("verdict", "correct"),
                ("set.id_card", bad),
                ("comment", "typo"),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("Not published") && r.body.contains("GB 11643"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(&format!(r#"value="{bad}""#)),
        "the typed value is kept"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        decisions(&env, &raw).is_empty(),
        "a refused correction publishes nothing"
    );

    let r = b
        .post(
            "/item/ev-flagged-1/decide",
            &[
                ("csrf", &csrf),
                ("verdict", "correct"),
                ("set.id_card", VALID_ID),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let got = wait_for_decisions(&env, &raw, 1).await;
    assert_eq!(got.len(), 1);
    let d = &got[0].1;
    assert_eq!(
        (d.decision, d.reviewer.as_str()),
        (Verdict::Correct, REVIEWER)
    );
    assert_eq!(d.corrected.as_ref().unwrap()["id_card"], VALID_ID);
    assert_log_clean(&console.log_text(), &[ID, PHONE, ADDRESS, bad, VALID_ID]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_item_page_shows_refused_decisions_with_their_reason() {
    let (env, _raw, console) = start("console_history").await;
    sqlx::query(
        "INSERT INTO govsync_review_decision (decision_id, event_id, reviewer, decision, outcome, \
         reason, comment, decided_at, batch_id, source_partition, source_offset) \
         VALUES ('d-1', 'ev-flagged-1', 'li.na', 'approve', 'refused', $1, $2, now(), 'b', 0, 0)",
    )
    .bind("the row changed since the item was raised")
    .bind(SCRIPT)
    .execute(&env.pg)
    .await
    .unwrap();
    let mut b = console.signed_in().await;
    let page = b.get("/item/ev-flagged-1").await.body;
    let history = &page[page.find(r#"id="history""#).expect("a history table")..];
    assert!(
        history.contains("li.na") && history.contains("refused"),
        "{history}"
    );
    assert!(
        history.contains("the row changed since the item was raised"),
        "{history}"
    );
    assert!(!page.contains(SCRIPT), "a comment is escaped too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_behind_a_trusted_proxy_takes_the_reviewer_from_its_header() {
    let env = Env::new("console_proxy", 1).await;
    env.migrate().await;
    let mut raw = env.raw.clone();
    prepare(&env, &mut raw).await;
    raw.review.reviewers_file = String::new();
    raw.review.trusted_proxy_header = "X-Forwarded-User".into();
    items(&env).await;
    let console = Console::start(&env, &raw).await;
    let get = |path: &'static str, headers: Vec<(&'static str, String)>| {
        let addr = console.addr;
        async move { send(addr, "GET", path, &headers, b"").await }
    };
    // Without the header nobody is signed in; the sign-in page says why.
    let r = get("/", vec![]).await;
    assert_eq!(r.status, 303);
    let r = get("/signin", vec![]).await;
    assert!(r.body.contains("proxy") && !r.body.contains(r#"id="password""#));

    let user = vec![("X-Forwarded-User", "zhao.min".to_string())];
    let r = get("/item/ev-flagged-1", user.clone()).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains(r#"<strong id="reviewer">zhao.min</strong>"#)
    );
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = csrf_of(&r.body);
    let form = |h: &[(&'static str, String)]| {
        let mut h = h.to_vec();
        h.push(("Cookie", cookie.clone()));
        h.push(("Content-Type", "application/x-www-form-urlencoded".into()));
        h
    };
    let body = format!("verdict=reject&csrf={csrf}");
    // The session belongs to the header's reviewer: another name is refused.
    let other = [("X-Forwarded-User", "li.na".to_string())];
    let r = send(
        console.addr,
        "POST",
        "/item/ev-flagged-1/decide",
        &form(&other),
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = send(
        console.addr,
        "POST",
        "/item/ev-flagged-1/decide",
        &form(&user),
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let got = wait_for_decisions(&env, &raw, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].1.decision, got[0].1.reviewer.as_str()),
        (Verdict::Reject, "zhao.min")
    );
}
