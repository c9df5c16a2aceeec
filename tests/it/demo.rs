//! `govsync demo` on a fresh machine needs no service: it runs here with a
//! small N, and its printed counts must match the SQLite tables and the
//! embedded broker's topics; the seed's six records end as the standard
//! says.

use std::collections::HashMap;

use sqlx::Row;

fn printed_counts(text: &str) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some(name), Some(total)) = (parts.next(), parts.next())
            && let Ok(n) = total.parse::<i64>()
            && [
                "applied",
                "flagged",
                "review",
                "conflict",
                "stale",
                "duplicate",
                "invalid",
                "poison",
                "skipped",
                "sum",
            ]
            .contains(&name)
        {
            out.insert(name.to_string(), n);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_without_services_and_its_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let out = tokio::task::spawn_blocking({
        let db = db.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
                .args(["demo", "--events", "1500", "--metrics", "", "--db"])
                .arg(&db)
                .env_remove("GOVSYNC_TEST_KAFKA")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "demo failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = printed_counts(&text);
    let published = 1506;
    outcomes_add_up(&c, published, &text);
    topics_match(&c, &text);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    tables_match(&pool, &c, published).await;
    seed_records_end_as_the_standard_says(&pool).await;
    review_reasons_printed_and_nothing_unmasked(&text);
}

/// The printed outcomes add up to the events published, and the mix
/// produced every kind.
fn outcomes_add_up(c: &HashMap<String, i64>, published: i64, text: &str) {
    assert_eq!(c["sum"], published, "{text}");
    let outcomes: i64 = c
        .iter()
        .filter(|(k, _)| k.as_str() != "sum")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        outcomes, published,
        "the outcomes add up to the events published"
    );
    for kind in [
        "applied",
        "flagged",
        "review",
        "conflict",
        "stale",
        "duplicate",
        "invalid",
    ] {
        assert!(c[kind] > 0, "the mix produced {kind}: {text}");
    }
}

/// The topics, as the demo read them from the embedded broker.
fn topics_match(c: &HashMap<String, i64>, text: &str) {
    let topics = text.lines().find(|l| l.starts_with("topics:")).unwrap();
    let nums: Vec<i64> = topics
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(
        nums[0],
        c["flagged"] + c["review"] + c["conflict"],
        "review topic: {topics}"
    );
    assert_eq!(
        nums[1],
        c["invalid"] + c["poison"],
        "dead-letter topic: {topics}"
    );
}

/// The SQLite tables agree with the printed counts.
async fn tables_match(pool: &sqlx::SqlitePool, c: &HashMap<String, i64>, published: i64) {
    for outcome in ["applied", "flagged", "review", "conflict", "stale"] {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM govsync_change_log WHERE outcome = ?1")
                .bind(outcome)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(n, c[outcome], "change log {outcome}");
    }
    let versions: i64 = sqlx::query_scalar("SELECT sum(version) FROM customer_profile")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        versions,
        c["applied"] + c["flagged"],
        "one version per write"
    );
    let ledger: i64 = sqlx::query_scalar("SELECT sum(records) FROM govsync_batch")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(ledger, published, "the ledger accounts for every record");
}

/// The seed's records end as the standard says.
async fn seed_records_end_as_the_standard_says(pool: &sqlx::SqlitePool) {
    let row = |id: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT address, validation_status, review_flag, carrier_info, version FROM customer_profile WHERE customer_id = ?1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        row("CUST_320102_001").await.get::<String, _>("address"),
        "江苏省南京市玄武区中山路123号"
    );
    assert_eq!(
        row("CUST_320102_002").await.get::<String, _>("address"),
        "江苏省南京市建邺区江东中路368号"
    );
    assert_eq!(
        row("CUST_320102_003").await.get::<i64, _>("version"),
        0,
        "03: not applied"
    );
    let r4 = row("CUST_320102_004").await;
    assert_eq!(
        r4.get::<Option<i64>, _>("review_flag"),
        Some(1),
        "04: flagged"
    );
    assert_eq!(
        r4.get::<Option<String>, _>("validation_status").as_deref(),
        Some("invalid")
    );
    let carrier: String = row("CUST_320102_005").await.get("carrier_info");
    assert!(carrier.contains("中国移动"), "05: applied with its carrier");
    assert_eq!(
        row("CUST_320102_006").await.get::<i64, _>("version"),
        0,
        "06: conflict"
    );
}

/// The review reasons of the seed's records are printed, and no ID-card or
/// phone number unmasked.
fn review_reasons_printed_and_nothing_unmasked(text: &str) {
    for reason in [
        "expected 2, found X",
        "expected 2, found 4",
        "expected 2, found 1",
    ] {
        assert!(
            text.contains(reason),
            "the review reason `{reason}` is printed: {text}"
        );
    }
    // Nothing unmasked in the printed examples.
    for secret in ["32010219900101123X", "320102199001011234", "13812345678"] {
        assert!(!text.contains(secret), "{secret} printed unmasked");
    }
}

/// `govsync demo --review`: after the run the console and the decision
/// applier stay up on the embedded broker; a reviewer signs in with the
/// printed password, approves an open item, and the demo's database shows
/// it approved with the reviewer's write in the change log; SIGTERM stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_keeps_the_review_console_up_and_applies_a_decision() {
    use std::io::{BufRead, BufReader};
    use std::time::Duration;

    use crate::common::http::{Browser, csrf_of, free_addr};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let addr = free_addr();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
        .args(["demo", "--events", "1500", "--metrics", "", "--review"])
        .arg("--review-listen")
        .arg(addr.to_string())
        .arg("--db")
        .arg(&db)
        .env_remove("GOVSYNC_TEST_KAFKA")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The console line names the reviewer's password.
    // (Read to the end: a closed pipe would fail the demo's next line.)
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("sign in as demo / ").nth(1)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.split_whitespace().next().unwrap().to_string());
            }
        }
    });
    let password = tokio::time::timeout(Duration::from_secs(180), rx)
        .await
        .expect("the console line within 3 minutes")
        .expect("the demo printed a review console line");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (event_id,): (String,) = sqlx::query_as(
        "SELECT event_id FROM govsync_review_item WHERE status = 'open' AND reason = 'conflict' \
         ORDER BY event_id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();

    // The line comes just before the console binds its address.
    let up = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(std::time::Instant::now() < up, "the console listens");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut b = Browser::new(addr);
    let page = b.get("/signin").await;
    let csrf = csrf_of(&page.body);
    let r = b
        .post(
            "/signin",
            &[("csrf", &csrf), ("name", "demo"), ("password", &password)],
        )
        .await;
    assert_eq!(r.status, 303, "sign-in: {}", r.body);
    let page = b.get(&format!("/item/{event_id}")).await;
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.body);
    let r = b
        .post(
            &format!("/item/{event_id}/decide"),
            &[("csrf", &csrf), ("verdict", "approve")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, by): (String, Option<String>) = sqlx::query_as(
            "SELECT status, decided_by FROM govsync_review_item WHERE event_id = ?1",
        )
        .bind(&event_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        if status == "approved" {
            assert_eq!(by.as_deref(), Some("demo"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the decision was applied within 60 s (status {status})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let logged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM govsync_change_log WHERE source = 'reviewer:demo'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(logged, 1, "the reviewer's write is in the change log");
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "SIGTERM stops the demo cleanly: {status:?}"
    );
    assert!(
        !db.with_extension("reviewers").exists(),
        "the one-off reviewers file is removed"
    );
}
