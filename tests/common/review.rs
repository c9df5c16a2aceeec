//! The review console under test: a reviewers file, the decision topic of
//! the test, `govsync review serve` as the real binary (its log captured),
//! review items inserted as a batch would, and the decisions read back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use govsync::config::RawConfig;
use govsync::review::ReviewDecision;
use serde_json::Value;

use super::harness::{Env, Proc, wait_until};
use super::http::{Browser, csrf_of, free_addr, send};

pub const REVIEWER: &str = "wang.li";
pub const PASSWORD: &str = "correct horse battery staple";

/// Points the config at a decision topic of this test (created) and a
/// reviewers file with [`REVIEWER`].
pub async fn prepare(env: &Env, raw: &mut RawConfig) {
    raw.kafka.decision_topic = format!("{}.decisions", env.name);
    govsync::kafka::ensure_topics(
        &env.client_config(),
        &[(raw.kafka.decision_topic.as_str(), 1)],
        1,
    )
    .await
    .unwrap();
    let hash = govsync::ops::console::auth::hash_password(PASSWORD).unwrap();
    let file = std::env::temp_dir().join(format!("{}-reviewers", env.name));
    std::fs::write(&file, format!("# test reviewers\n{REVIEWER}:{hash}\n")).unwrap();
    raw.review.reviewers_file = file.display().to_string();
}

/// `govsync review serve` running.
pub struct Console {
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub proc: Proc,
}

impl Console {
    /// Starts the binary on a free port and waits for /healthz.
    pub async fn start(env: &Env, raw: &RawConfig) -> Console {
        let path = env.write_config(raw);
        let addr = free_addr();
        let log = env.log_path("console");
        let file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
            .args(["review", "serve", "--config"])
            .arg(&path)
            .arg("--listen")
            .arg(addr.to_string())
            .env("RUST_LOG", "govsync=debug,info")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start the govsync binary");
        let console = Console {
            addr,
            log,
            proc: Proc(Some(child)),
        };
        let started = std::time::Instant::now();
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                let r = send(addr, "GET", "/healthz", &[], b"").await;
                assert_eq!(r.status, 200);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the console did not start; its log:\n{}",
                console.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        console
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client signed in as [`REVIEWER`].
    pub async fn signed_in(&self) -> Browser {
        let mut b = Browser::new(self.addr);
        let page = b.get("/signin").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = csrf_of(&page.body);
        let r = b
            .post(
                "/signin",
                &[("csrf", &csrf), ("name", REVIEWER), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(r.status, 303, "sign-in: {}", r.body);
        assert!(b.cookies.contains_key("govsync_session"));
        b
    }
}

/// A review item as a batch writes it.
pub struct NewItem<'a> {
    pub event_id: &'a str,
    pub customer_id: &'a str,
    pub data_type: &'a str,
    pub region: &'a str,
    pub reason: &'a str,
    pub priority: &'a str,
    pub details: Value,
    pub proposed: Value,
    pub current: Option<Value>,
    pub hours_old: i64,
}

pub async fn insert_item(env: &Env, i: NewItem<'_>) {
    let created = chrono::Utc::now() - chrono::Duration::hours(i.hours_old);
    sqlx::query(
        "INSERT INTO govsync_review_item (event_id, batch_id, customer_id, data_type, region_code, \
         reason, priority, details, proposed, current_row, row_version, governed_at, created_at, status) \
         VALUES ($1, 'test-batch', $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10, 'open')",
    )
    .bind(i.event_id)
    .bind(i.customer_id)
    .bind(i.data_type)
    .bind(i.region)
    .bind(i.reason)
    .bind(i.priority)
    .bind(i.details.to_string())
    .bind(i.proposed.to_string())
    .bind(i.current.map(|c| c.to_string()))
    .bind(created)
    .execute(&env.pg)
    .await
    .unwrap();
}

/// Every decision on the test's decision topic, with its key.
pub fn decisions(env: &Env, raw: &RawConfig) -> Vec<(String, ReviewDecision)> {
    env.read_topic(&raw.kafka.decision_topic)
        .iter()
        .map(|m| {
            (
                String::from_utf8(m.key.clone().unwrap_or_default()).unwrap(),
                ReviewDecision::decode(m.value.as_deref().unwrap_or_default())
                    .expect("a valid decision"),
            )
        })
        .collect()
}

/// Waits until the topic holds `n` decisions (a publish is acknowledged
/// before the console answers, so this is quick).
pub async fn wait_for_decisions(
    env: &Env,
    raw: &RawConfig,
    n: usize,
) -> Vec<(String, ReviewDecision)> {
    wait_until(
        Duration::from_secs(30),
        "decisions on the topic",
        || async { decisions(env, raw).len() >= n },
    )
    .await;
    decisions(env, raw)
}

/// The log holds none of these values.
pub fn assert_log_clean(log: &str, secrets: &[&str]) {
    assert!(!log.is_empty(), "the console logged nothing");
    for s in secrets {
        assert!(!log.contains(s), "the console's log shows `{s}`:\n{log}");
    }
}
