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
