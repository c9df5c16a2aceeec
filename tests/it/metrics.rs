//! `/metrics`, `/healthz` and `/readyz` of a processor running in this
//! process against the real broker and PostgreSQL: the record counters
//! scraped over HTTP add up to what the test published, outcome by outcome
//! and region by region.
//!
//! The Prometheus recorder is process-global and every test of this binary
//! shares it, so this test's events carry region codes no other test uses
//! (99xx) and only those series are counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use govsync::config::Config;
use govsync::demo::generate::{self, Customer};
use govsync::event::DataType;
use govsync::pipeline::Progress;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::common::harness::{Env, RawOut};

const REGIONS: [&str; 2] = ["9971", "9972"];

/// Serves /metrics, /healthz and /readyz for a processor started with
/// `Env::start_with`, as `govsync run` does: `/readyz` reads the
/// pipeline's `Progress::assigned`.
async fn serve_metrics(cfg: &Config, progress: Arc<Progress>) -> (SocketAddr, CancellationToken) {
    let handle = govsync::telemetry::metrics::install();
    let db = govsync::sink::connect(&cfg.database).await.unwrap();
    let health = Arc::new(govsync::telemetry::http::Health { progress, db });
    let stop = CancellationToken::new();
    let addr = govsync::telemetry::http::serve(
        cfg.metrics_listen.expect("metrics.listen is set"),
        handle,
        health,
        stop.clone(),
    )
    .await
    .unwrap();
    (addr, stop)
}

/// A plain HTTP/1.1 GET: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_string())
}

/// `govsync_records_total` of this test's regions: (outcome, region) → n.
fn records(metrics: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("govsync_records_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").expect("labels and value");
        let labels: BTreeMap<&str, &str> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if !REGIONS.contains(&labels["region"]) {
            continue;
        }
        let n: f64 = value.trim().parse().unwrap();
        *out.entry((labels["outcome"].to_string(), labels["region"].to_string()))
            .or_default() += n as u64;
    }
    out
}

fn msg(e: &Value) -> RawOut {
    (
        Some(e["region_code"].as_str().unwrap().as_bytes().to_vec()),
        serde_json::to_vec(e).unwrap(),
        vec![],
    )
}

type Counts = BTreeMap<(String, String), u64>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_published_record_and_health_answers() {
    let env = Env::new("metrics", 2).await;
    env.migrate().await;
    let customers = generate::customers(60, 4, 9971);
    env.seed(&customers).await;
    // Rows someone changed after the engine read them: conflicts.
    for c in &customers[45..50] {
        sqlx::query("UPDATE customer_profile SET last_update = '2024-01-12T00:00:00Z' WHERE customer_id = $1")
            .bind(&c.id)
            .execute(&env.pg)
            .await
            .unwrap();
    }
    let mut expected: Counts = BTreeMap::new();
    let (first, applied_events) = phase_one(&customers, &mut expected);

    let mut raw = env.raw.clone();
    raw.metrics.listen = "127.0.0.1:0".into();
    let cfg = govsync::config::check(raw).unwrap();
    let running = env.start_with(cfg.clone());
    let (addr, stop_http) = serve_metrics(&cfg, running.progress.clone()).await;
    health_and_readiness_answer(addr).await;

    env.publish_raw(&first).await;
    let phase1: u64 = expected.values().sum();
    // Scraped while the processor runs.
    let (got, _) = scrape_until(addr, phase1, "phase 1 in /metrics").await;
    assert_eq!(got, expected, "phase 1, by outcome and region");

    let second = phase_two(&customers, &applied_events, &mut expected);
    env.publish_raw(&second).await;
    let published = (first.len() + second.len()) as u64;
    let (got, text) = scrape_until(addr, published, "phase 2 in /metrics").await;
    running.stop().await;
    // Nothing more arrives after the processor stopped.
    let (_, after) = get(addr, "/metrics").await;
    let (code, body) = get(addr, "/nope").await;
    assert_eq!(code, 404, "{body}");
    stop_http.cancel();
    counts_add_up(&got, &expected, &records(&after), published);
    other_families_exported_without_personal_data(&text, &customers);
}

fn region(i: usize) -> &'static str {
    REGIONS[i % 2]
}

fn expect(expected: &mut Counts, outcome: &str, i: usize) {
    *expected
        .entry((outcome.to_string(), region(i).to_string()))
        .or_default() += 1;
}

fn at_region(mut e: Value, i: usize) -> Value {
    e["region_code"] = json!(region(i));
    e
}

/// Phase 1: applied, invalid, flagged, conflict, held for review. Returns
/// the messages and the events that will be applied.
fn phase_one(customers: &[Customer], expected: &mut Counts) -> (Vec<RawOut>, Vec<Value>) {
    let mut first = Vec::new();
    let mut applied_events = Vec::new();
    for (i, c) in customers[..30].iter().enumerate() {
        let e = at_region(
            generate::event(
                c,
                DataType::ALL[i % 3],
                &format!("m-ok-{i}"),
                generate::governed_at(100 + i),
                false,
            ),
            i,
        );
        applied_events.push(e.clone());
        first.push(msg(&e));
        expect(expected, "applied", i);
    }
    for (i, c) in customers.iter().enumerate().take(40).skip(30) {
        let mut e = generate::event(
            c,
            DataType::Phone,
            &format!("m-bad-{i}"),
            generate::governed_at(i),
            false,
        );
        e["sync_operation"]["target_fields"] = json!(["phone", "address"]);
        first.push(msg(&at_region(e, i)));
        expect(expected, "invalid", i);
    }
    for (i, c) in customers.iter().enumerate().take(45).skip(40) {
        let e =
            generate::bad_check_digit_event(c, &format!("m-flag-{i}"), generate::governed_at(i));
        first.push(msg(&at_region(e, i)));
        expect(expected, "flagged", i);
    }
    for (i, c) in customers.iter().enumerate().take(50).skip(45) {
        let e = generate::event(
            c,
            DataType::Address,
            &format!("m-conflict-{i}"),
            generate::governed_at(i),
            false,
        );
        first.push(msg(&at_region(e, i)));
        expect(expected, "conflict", i);
    }
    for (i, c) in customers.iter().enumerate().take(55).skip(50) {
        // The engine says the checksum passed; govsync's own check says no.
        let mut e = generate::event(
            c,
            DataType::IdCard,
            &format!("m-review-{i}"),
            generate::governed_at(i),
            false,
        );
        let mut wrong = c.id_card.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        e["original_data"]["id_card"] = json!(wrong);
        first.push(msg(&at_region(e, i)));
        expect(expected, "review", i);
    }
    (first, applied_events)
}

/// `/healthz` at once, `/readyz` once the partitions are assigned.
async fn health_and_readiness_answer(addr: SocketAddr) {
    let (code, body) = get(addr, "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let started = Instant::now();
    loop {
        let (code, body) = get(addr, "/readyz").await;
        if code == 200 {
            assert!(body.starts_with("ready: 2 partitions"), "{body}");
            break;
        }
        assert_eq!(code, 503, "{body}");
        assert!(body.starts_with("not ready"), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scrapes `/metrics` until this test's records add up to `total`.
async fn scrape_until(addr: SocketAddr, total: u64, what: &str) -> (Counts, String) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (code, text) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        let got = records(&text);
        if got.values().sum::<u64>() >= total {
            return (got, text);
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Phase 2: the same events again (duplicates) and older results for
/// customers that already have a newer one of the same type (stale).
fn phase_two(
    customers: &[Customer],
    applied_events: &[Value],
    expected: &mut Counts,
) -> Vec<RawOut> {
    let mut second = Vec::new();
    for (i, e) in applied_events.iter().enumerate().take(10) {
        second.push(msg(e));
        expect(expected, "duplicate", i);
    }
    for (i, c) in customers.iter().enumerate().take(15).skip(10) {
        let older = generate::governed_at(0) - chrono::Duration::days(1);
        let e = at_region(
            generate::event(
                c,
                DataType::ALL[i % 3],
                &format!("m-stale-{i}"),
                older,
                false,
            ),
            i,
        );
        second.push(msg(&e));
        expect(expected, "stale", i);
    }
    second
}

/// applied + review + dlq + duplicates (+ stale) = published, and every
/// series as expected, also after the processor stopped.
fn counts_add_up(got: &Counts, expected: &Counts, after: &Counts, published: u64) {
    let sum = |outcomes: &[&str]| -> u64 {
        got.iter()
            .filter(|((o, _), _)| outcomes.contains(&o.as_str()))
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(
        sum(&["applied"])
            + sum(&["flagged", "review", "conflict"])
            + sum(&["invalid"])
            + sum(&["duplicate", "stale"]),
        published,
        "applied + review + dlq + duplicates (+ stale) = published: {got:?}"
    );
    assert_eq!(got, expected, "by outcome and region");
    assert_eq!(after, expected);
}

/// The other families are exported (consumer lag comes from librdkafka's
/// statistics every 5 s: not waited for); labels carry no personal data.
fn other_families_exported_without_personal_data(text: &str, customers: &[Customer]) {
    for family in [
        "govsync_batches_total{status=\"committed\"}",
        "govsync_batch_commit_seconds_bucket",
        "govsync_end_to_end_latency_seconds_bucket",
        "govsync_batch_records_bucket",
        "govsync_quality_score_gain_bucket",
        "govsync_partitions_assigned",
        "govsync_batch_target_size{partition=",
        "# HELP govsync_records_total",
        // Read from govsync_review_item when the processor starts.
        "govsync_review_oldest_open_seconds{priority=\"high\"}",
    ] {
        assert!(text.contains(family), "{family} missing from /metrics");
    }
    for c in customers {
        assert!(!text.contains(&c.phone) && !text.contains(&c.id_card));
    }
}
