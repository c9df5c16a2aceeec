//! Security (issue 16): govsync against the broker's SASL_SSL listener
//! (SCRAM-SHA-512, TLS with the test CA, ACLs enforced) and PostgreSQL over
//! TLS (sslmode=verify-full) as the least-privilege role `govsync_app`, with
//! only the ACLs of README "Security" and the grants of
//! migrations/postgres/grants.sql. `scripts/services up` makes the users,
//! the CA and the role; each test grants on its own topics, group and schema
//! (through the PLAINTEXT listener, whose principal is a super user, with
//! scripts/kafka/KafkaAdmin.java: rdkafka has no ACL API).
//!
//! Every failure mode (wrong password, missing ACL, untrusted certificate,
//! revoked column grant) must name what failed, lose nothing (nothing
//! applied or dead-lettered past the failure) and resume once the
//! permission is back; no secret may appear in any log or output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use govsync::config::RawConfig;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sqlx::postgres::PgConnectOptions;

use crate::common::harness::{Env, Proc, pg_url, wait_until};
use crate::common::workload::{Workload, assert_exactly_once, caught_up};

const HOW: &str = "start the test services with `scripts/services up` (it makes the \
                   SASL_SSL listener, the test CA and the govsync_app role)";

/// The least-privilege database role `scripts/services` creates.
const APP_ROLE: &str = "govsync_app";

/// The state dir of `scripts/services` (the CA, the test secrets, the
/// Kafka jars and KafkaAdmin).
fn state_dir() -> PathBuf {
    std::env::var_os("GOVSYNC_SERVICES_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".services"))
}

fn sasl_servers() -> String {
    std::env::var("GOVSYNC_TEST_KAFKA_SASL").unwrap_or_else(|_| "127.0.0.1:9094".into())
}

/// What the secured tests need from the services.
struct Secured {
    ca: PathBuf,
    untrusted_ca: PathBuf,
    kafka_password: String,
    db_password: String,
}

impl Secured {
    fn get() -> Secured {
        let state = state_dir();
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{} is not readable ({e}): {HOW}", p.display()))
                .trim()
                .to_string()
        };
        let ca = state.join("tls/ca.pem");
        assert!(ca.exists(), "{} is missing: {HOW}", ca.display());
        Secured {
            untrusted_ca: state.join("tls/untrusted-ca.pem"),
            kafka_password: read(state.join("secrets/kafka-govsync.password")),
            db_password: read(state.join(format!("secrets/pg-{APP_ROLE}.password"))),
            ca,
        }
    }

    /// The secrets no output may show.
    fn secrets(&self) -> Vec<&str> {
        vec![&self.kafka_password, &self.db_password, WRONG_PASSWORD]
    }

    /// The environment a secured govsync gets its passwords from.
    fn env(&self, kafka_password: &str) -> Vec<(&'static str, String)> {
        vec![
            ("GOVSYNC_KAFKA_SASL_PASSWORD", kafka_password.to_string()),
            ("GOVSYNC_DB_PASSWORD", self.db_password.clone()),
        ]
    }

    /// The test's config for the SASL_SSL listener (as `user`, trusting
    /// `ca`) and the TLS database URL of the least-privilege role.
    fn raw(&self, env: &Env, ca: &Path) -> RawConfig {
        let mut raw = env.raw.clone();
        raw.kafka.bootstrap_servers = sasl_servers();
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "govsync"),
            ("ssl.ca.location", ca.to_str().unwrap()),
        ] {
            raw.kafka.client.insert(k.into(), v.into());
        }
        let pg = PgConnectOptions::from_str(&pg_url()).unwrap();
        raw.database.url = format!(
            "postgres://{APP_ROLE}@{}:{}/{}?sslmode=verify-full&sslrootcert={}",
            pg.get_host(),
            pg.get_port(),
            pg.get_database().unwrap_or("govsync"),
            self.ca.display()
        );
        raw.database.password_env = "GOVSYNC_DB_PASSWORD".into();
        // A stalled partition is tried again soon after the fix.
        raw.retry.stalled_backoff_max = "2s".into();
        raw.retry.connection_attempts = 3;
        raw
    }
}

const WRONG_PASSWORD: &str = "not-the-password-31e9b7";

/// Runs scripts/kafka/KafkaAdmin (compiled by `scripts/services up`) with
/// the broker's jars against the PLAINTEXT listener.
fn kafka_admin(args: &[&str]) {
    let state = state_dir();
    let cp = format!(
        "{}:{}/*",
        state.join("kafka/admin").display(),
        state.join("kafka/lib").display()
    );
    let out = Command::new("java")
        .args(["-Xmx128m", "-XX:TieredStopAtLevel=1", "-Dlog4j2.level=OFF"])
        .arg("-cp")
        .arg(cp)
        .arg("KafkaAdmin")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("java is not runnable ({e}): {HOW}"));
    assert!(
        out.status.success(),
        "KafkaAdmin {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn acls(op: &str, bindings: &[String]) {
    let servers = crate::common::harness::kafka_servers();
    let mut args = vec!["acls", servers.as_str(), op];
    args.extend(bindings.iter().map(String::as_str));
    kafka_admin(&args);
}

/// govsync's ACLs on this test's names (README "Security"), one binding
/// each: principal,permission,operation,resource-type,pattern-type,name.
fn govsync_acls(env: &Env) -> Vec<String> {
    let k = &env.raw.kafka;
    let u = "User:govsync";
    let mut out = Vec::new();
    for t in [&k.source_topic, &k.decision_topic] {
        out.push(format!("{u},ALLOW,READ,TOPIC,LITERAL,{t}"));
        out.push(format!("{u},ALLOW,DESCRIBE,TOPIC,LITERAL,{t}"));
    }
    out.push(format!("{u},ALLOW,READ,GROUP,LITERAL,{}", k.group_id));
    out.push(format!(
        "{u},ALLOW,READ,GROUP,LITERAL,{}.decisions",
        k.group_id
    ));
    for t in [&k.review_topic, &k.dlq_topic] {
        out.push(format!("{u},ALLOW,WRITE,TOPIC,LITERAL,{t}"));
        out.push(format!("{u},ALLOW,DESCRIBE,TOPIC,LITERAL,{t}"));
    }
    out.push(format!(
        "{u},ALLOW,WRITE,TRANSACTIONAL_ID,PREFIXED,{}-",
        k.group_id
    ));
    out.push(format!(
        "{u},ALLOW,DESCRIBE,TRANSACTIONAL_ID,PREFIXED,{}-",
        k.group_id
    ));
    out.push(format!(
        "{u},ALLOW,IDEMPOTENT_WRITE,CLUSTER,LITERAL,kafka-cluster"
    ));
    out
}

/// The columns of the dev table govsync reads and writes (its mapping),
/// and those it updates (no key, name or last_update).
const SELECT_COLUMNS: &str = "customer_id, name, address, geo_lat, geo_lon, geo_accuracy, id_card, \
     phone, carrier_info, quality_score, validation_status, review_flag, review_priority, \
     last_update, last_governance_time, version";
const UPDATE_COLUMNS: &str = "address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, \
     quality_score, validation_status, review_flag, review_priority, last_governance_time, version";

/// Runs migrations/postgres/grants.sql with psql, as the owner, for this
/// test's schema.
fn grant(env: &Env) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres/grants.sql");
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-v", &format!("app_role={APP_ROLE}")])
        .args(["-v", &format!("schema={}", env.schema)])
        .args(["-v", &format!("target_schema={}", env.schema)])
        .args([
            "-v",
            &format!("target_table={}.customer_profile", env.schema),
        ])
        .args(["-v", &format!("select_columns={SELECT_COLUMNS}")])
        .args(["-v", &format!("update_columns={UPDATE_COLUMNS}")])
        .arg("-f")
        .arg(&file)
        .arg(pg_url())
        .output()
        .unwrap_or_else(|e| panic!("psql is not runnable ({e}): {HOW}"));
    assert!(
        out.status.success(),
        "psql -f grants.sql: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test env with the workload's customers, govsync's tables, the grants
/// and govsync's ACLs.
async fn secured_env(test: &str, w: &Workload) -> Env {
    let env = Env::new(test, 2).await;
    env.migrate().await;
    env.seed(&w.customers).await;
    grant(&env);
    acls("add", &govsync_acls(&env));
    env
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits until the log of a spawned govsync holds `needle`.
async fn wait_for_log(log: &Path, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !log_text(log).contains(needle) {
        if Instant::now() > deadline {
            panic!(
                "the log has no line with {needle:?} after {timeout:?}; it holds:\n{}",
                log_text(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows a secret:\n{text}");
    }
}

/// `govsync check-config` with this config and environment: its output.
fn check_config(env: &Env, raw: &RawConfig, vars: &[(&str, String)]) -> String {
    let path = env.write_config(raw);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_govsync"));
    cmd.arg("check-config").arg("--config").arg(&path);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Nothing got through while govsync was stalled: no watermark moved and
/// the dead-letter topic holds nothing.
async fn assert_nothing_got_through(env: &Env) {
    let marks = env
        .count("SELECT COALESCE(SUM(next_offset), 0)::int8 FROM govsync_watermark")
        .await;
    assert_eq!(marks, 0, "no batch committed while stalled");
    let dlq = env.read_topic(&env.raw.kafka.dlq_topic);
    assert!(
        dlq.is_empty(),
        "nothing dead-lettered while stalled: {dlq:?}"
    );
}

/// Starts govsync, waits for it to apply all `total` records, stops it.
async fn run_to_the_end(env: &Env, raw: &RawConfig, vars: &[(&str, String)], log: &Path) {
    let child = env.spawn_binary(raw, vars, log);
    let total = env.end_offsets().values().sum::<i64>();
    wait_until(Duration::from_secs(120), "govsync catches up", || {
        caught_up(env, total)
    })
    .await;
    stop(child).await;
}

async fn stop(child: Proc) {
    child.signal(libc::SIGTERM);
    let status = child.wait(Duration::from_secs(60)).await;
    assert!(status.success(), "clean stop: {status:?}");
}

fn workload(seed: u64) -> Workload {
    Workload::mixed(400, 60, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_exactly_once_over_sasl_ssl_and_tls_with_only_its_acls_and_grants() {
    let sec = Secured::get();
    let w = workload(161);
    let env = secured_env("sec_e2e", &w).await;
    let offsets = env.publish_raw(&w.raw(0..w.msgs.len())).await;
    // Both passwords from files here (the other tests: from the environment).
    let mut raw = sec.raw(&env, &sec.ca);
    let secrets = state_dir().join("secrets");
    raw.kafka.sasl_password_file = secrets
        .join("kafka-govsync.password")
        .to_string_lossy()
        .into();
    raw.database.password_file = secrets
        .join(format!("pg-{APP_ROLE}.password"))
        .to_string_lossy()
        .into();
    let vars = [];

    let checked = check_config(&env, &raw, &vars);
    assert!(checked.contains("all checks passed"), "{checked}");
    assert_no_secret("check-config", &checked, &sec.secrets());

    let log = env.log_path("e2e");
    run_to_the_end(&env, &raw, &vars, &log).await;
    assert_exactly_once(&env, &w, &offsets).await;

    let text = log_text(&log);
    assert_no_secret("the log", &text, &sec.secrets());
    // The change log's retention runs as the owner (grants.sql).
    assert!(
        text.contains("change log kept"),
        "the retention ran as govsync_app:\n{text}"
    );
    // The role sees only what it was granted.
    let app = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            PgConnectOptions::from_str(&raw.database.url)
                .unwrap()
                .password(&sec.db_password),
        )
        .await
        .unwrap();
    for sql in [
        format!("UPDATE {}.customer_profile SET name = 'x'", env.schema),
        format!("DELETE FROM {}.customer_profile", env.schema),
        format!("CREATE TABLE {}.intruder (x int)", env.schema),
    ] {
        let e = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&app)
            .await
            .expect_err(&sql);
        assert!(e.to_string().contains("permission denied"), "{sql}: {e}");
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_kafka_password_stalls_until_the_right_one_is_given() {
    let sec = Secured::get();
    let w = workload(162);
    let env = secured_env("sec_pw", &w).await;
    let offsets = env.publish_raw(&w.raw(0..w.msgs.len())).await;
    let raw = sec.raw(&env, &sec.ca);
    let wrong = sec.env(WRONG_PASSWORD);

    let checked = check_config(&env, &raw, &wrong);
    assert!(!checked.contains("all checks passed"), "{checked}");
    eprintln!("check-config with a wrong password:\n{checked}");
    assert!(
        checked.contains("the broker refused the credentials"),
        "check-config names the failed check: {checked}"
    );
    assert_no_secret("check-config", &checked, &sec.secrets());

    let log = env.log_path("pw");
    let child = env.spawn_binary(&raw, &wrong, &log);
    wait_for_log(&log, "invalid credentials", Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_nothing_got_through(&env).await;
    stop(child).await;

    run_to_the_end(&env, &raw, &sec.env(&sec.kafka_password), &log).await;
    assert_exactly_once(&env, &w, &offsets).await;
    assert_no_secret("the log", &log_text(&log), &sec.secrets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_write_acl_on_the_review_topic_stalls_until_it_is_granted() {
    let sec = Secured::get();
    let w = workload(163);
    let env = secured_env("sec_acl", &w).await;
    let review_write = format!(
        "User:govsync,ALLOW,WRITE,TOPIC,LITERAL,{}",
        env.raw.kafka.review_topic
    );
    acls("remove", std::slice::from_ref(&review_write));
    let offsets = env.publish_raw(&w.raw(0..w.msgs.len())).await;
    let raw = sec.raw(&env, &sec.ca);
    let vars = sec.env(&sec.kafka_password);

    let log = env.log_path("acl");
    let child = env.spawn_binary(&raw, &vars, &log);
    // The outage's first line is the transaction's error, which names the
    // refused topic's authorization.
    wait_for_log(&log, "Kafka is failing (", Duration::from_secs(60)).await;
    let text = log_text(&log);
    let first = text
        .lines()
        .find(|l| l.contains("Kafka is failing ("))
        .unwrap();
    assert!(
        first.contains("Kafka is failing (transaction:")
            && first.contains("Topic authorization failed"),
        "the failure names the missing permission: {first}"
    );
    eprintln!("log while the ACL is missing:\n{}", log_text(&log));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The database side may have committed (its outbox keeps the side
    // outputs); Kafka got nothing: no dead letter, no committed offset.
    assert!(env.read_topic(&env.raw.kafka.dlq_topic).is_empty());
    assert!(env.read_topic(&env.raw.kafka.review_topic).is_empty());
    assert!(
        env.committed().values().all(|o| o.is_none()),
        "no offset committed while the review topic is not writable"
    );

    acls("add", std::slice::from_ref(&review_write));
    let total = env.end_offsets().values().sum::<i64>();
    wait_until(Duration::from_secs(120), "govsync resumes", || {
        caught_up(&env, total)
    })
    .await;
    stop(child).await;
    assert_exactly_once(&env, &w, &offsets).await;
    assert_no_secret("the log", &log_text(&log), &sec.secrets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_broker_certificate_stalls_until_the_right_ca_is_given() {
    let sec = Secured::get();
    let w = workload(164);
    let env = secured_env("sec_ca", &w).await;
    let offsets = env.publish_raw(&w.raw(0..w.msgs.len())).await;
    let vars = sec.env(&sec.kafka_password);
    let untrusted = sec.raw(&env, &sec.untrusted_ca);

    let checked = check_config(&env, &untrusted, &vars);
    assert!(!checked.contains("all checks passed"), "{checked}");
    eprintln!("check-config with an untrusted CA:\n{checked}");
    assert!(
        checked.contains("the TLS handshake failed") && checked.contains("ssl.ca.location"),
        "check-config names the failed check: {checked}"
    );
    assert_no_secret("check-config", &checked, &sec.secrets());

    let log = env.log_path("ca");
    let child = env.spawn_binary(&untrusted, &vars, &log);
    wait_for_log(&log, "certificate verify failed", Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_nothing_got_through(&env).await;
    stop(child).await;

    run_to_the_end(&env, &sec.raw(&env, &sec.ca), &vars, &log).await;
    assert_exactly_once(&env, &w, &offsets).await;
    assert_no_secret("the log", &log_text(&log), &sec.secrets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_column_grant_stalls_until_it_is_granted_again() {
    let sec = Secured::get();
    let w = workload(165);
    let env = secured_env("sec_grant", &w).await;
    let table = format!("{}.customer_profile", env.schema);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "REVOKE UPDATE (address) ON {table} FROM {APP_ROLE}"
    )))
    .execute(&env.pg)
    .await
    .unwrap();
    let offsets = env.publish_raw(&w.raw(0..w.msgs.len())).await;
    let raw = sec.raw(&env, &sec.ca);
    let vars = sec.env(&sec.kafka_password);

    let log = env.log_path("grant");
    let child = env.spawn_binary(&raw, &vars, &log);
    wait_for_log(
        &log,
        "permission denied for table customer_profile (SQLSTATE 42501): govsync's database \
         role lacks a privilege",
        Duration::from_secs(60),
    )
    .await;
    eprintln!("log while the grant is missing:\n{}", log_text(&log));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_nothing_got_through(&env).await;

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "GRANT UPDATE (address) ON {table} TO {APP_ROLE}"
    )))
    .execute(&env.pg)
    .await
    .unwrap();
    let total = env.end_offsets().values().sum::<i64>();
    wait_until(Duration::from_secs(120), "govsync resumes", || {
        caught_up(&env, total)
    })
    .await;
    stop(child).await;
    assert_exactly_once(&env, &w, &offsets).await;
    assert_no_secret("the log", &log_text(&log), &sec.secrets());
}

/// What a client got when it tried to read a topic.
#[derive(Debug)]
enum Read {
    /// At least one message.
    Got,
    /// The broker refused, with this error.
    Refused(String),
    /// Nothing within the time allowed (not even an error: the client never
    /// got past authentication).
    Nothing,
}

/// Tries to read partition 0 of `topic` from the beginning: asks for the
/// topic's metadata (refused without DESCRIBE), then fetches.
fn try_read(cfg: &ClientConfig, topic: &str) -> Read {
    let c: BaseConsumer = cfg
        .clone()
        .set("enable.auto.commit", "false")
        .set("socket.timeout.ms", "5000")
        .create()
        .unwrap();
    match c.fetch_metadata(Some(topic), Duration::from_secs(10)) {
        Err(e) => return Read::Refused(e.to_string()),
        Ok(md) => {
            if let Some(e) = md.topics().first().and_then(|t| t.error()) {
                return Read::Refused(rdkafka::types::RDKafkaErrorCode::from(e).to_string());
            }
        }
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(_)) => return Read::Got,
            Some(Err(e)) => return Read::Refused(e.to_string()),
            None => {}
        }
    }
    Read::Nothing
}

fn sasl_client(user: &str, password: &str, ca: &Path, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", sasl_servers())
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("ssl.ca.location", ca.to_str().unwrap())
        .set("group.id", group);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_reviewer_reads_the_review_topic_and_nobody_reads_the_dlq() {
    let sec = Secured::get();
    let env = Env::new("sec_read", 1).await;
    let k = env.raw.kafka.clone();
    let r = "User:reviewer";
    acls(
        "add",
        &[
            format!("{r},ALLOW,READ,TOPIC,LITERAL,{}", k.review_topic),
            format!("{r},ALLOW,DESCRIBE,TOPIC,LITERAL,{}", k.review_topic),
            format!("{r},ALLOW,READ,GROUP,PREFIXED,govsync-review"),
            format!("{r},ALLOW,WRITE,TOPIC,LITERAL,{}", k.decision_topic),
            format!("{r},ALLOW,DESCRIBE,TOPIC,LITERAL,{}", k.decision_topic),
        ],
    );
    let msg = vec![(None, b"{\"x\": 1}".to_vec(), vec![])];
    for t in [&k.source_topic, &k.review_topic, &k.dlq_topic] {
        env.publish_raw_to(t, &msg).await;
    }
    let state = state_dir();
    let pw = |u: &str| {
        std::fs::read_to_string(state.join(format!("secrets/kafka-{u}.password")))
            .unwrap()
            .trim()
            .to_string()
    };

    let reviewer = sasl_client("reviewer", &pw("reviewer"), &sec.ca, "govsync-review-test");
    assert!(
        matches!(try_read(&reviewer, &k.review_topic), Read::Got),
        "the reviewer reads the review topic"
    );
    for t in [&k.source_topic, &k.dlq_topic] {
        match try_read(&reviewer, t) {
            Read::Refused(e) => assert!(e.contains("authorization"), "{t}: {e}"),
            other => panic!("the reviewer must be refused {t}: {other:?}"),
        }
    }

    // A user with no ACL at all, and a client with no credentials (TLS,
    // no SASL) on the SASL_SSL listener: neither reads anything.
    let nobody = sasl_client("nobody", &pw("nobody"), &sec.ca, "govsync-review-test");
    let mut anonymous = ClientConfig::new();
    anonymous
        .set("bootstrap.servers", sasl_servers())
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", sec.ca.to_str().unwrap())
        .set("group.id", "govsync-review-test");
    for t in [&k.review_topic, &k.dlq_topic] {
        let got = try_read(&nobody, t);
        assert!(
            matches!(&got, Read::Refused(e) if e.contains("authorization")),
            "nobody reading {t}: {got:?}"
        );
        let got = try_read(&anonymous, t);
        assert!(
            !matches!(got, Read::Got),
            "a client without credentials read {t}"
        );
    }
}
