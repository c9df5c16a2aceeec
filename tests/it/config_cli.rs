//! The configuration as a user meets it: files, environment overrides and
//! `govsync check-config`, through the real binary.

use std::process::Command;

fn govsync(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_govsync"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn config_file(body: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(f.path(), body).unwrap();
    f
}

/// Regression: scripts/test exports GOVSYNC_TEST_PG_URL, which figment
/// read as an unknown config key `test_pg_url`, so every spawned processor
/// exited at startup in CI.
#[test]
fn unrelated_govsync_variables_are_not_config_but_overrides_are() {
    let f = config_file("[kafka]\ngroup_id = \"from-file\"\n[metrics]\nlisten = \"\"\n");
    let path = f.path().to_str().unwrap();
    let (_, text) = govsync(
        &["check-config", "--config", path],
        &[
            ("GOVSYNC_TEST_PG_URL", "postgres://x/y"),
            ("GOVSYNC_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1"),
            ("GOVSYNC_DATABASE__URL", "sqlite://:memory:"),
        ],
    );
    assert!(text.contains("config: ok"), "{text}");
    assert!(
        text.contains("cannot reach 127.0.0.1:1"),
        "the override is used: {text}"
    );
}

#[test]
fn a_single_underscore_override_is_refused_with_the_right_spelling() {
    let (code, text) = govsync(
        &["check-config"],
        &[("GOVSYNC_KAFKA_BOOTSTRAP_SERVERS", "x:1")],
    );
    assert_eq!(code, 1);
    assert!(text.contains("GOVSYNC_KAFKA__BOOTSTRAP_SERVERS"), "{text}");
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `check-config` on a broken file: exit status 1, and the output names
/// `key` and says `fix`.
fn assert_names_key_and_fix(body: &str, key: &str, fix: &[&str]) -> String {
    let f = config_file(body);
    let (code, text) = govsync(
        &["check-config", "--config", f.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 1, "check-config fails: {text}");
    assert!(text.contains(key), "the message names `{key}`: {text}");
    for f in fix {
        assert!(text.contains(f), "the message says {f:?}: {text}");
    }
    assert!(text.contains("some checks failed") || text.starts_with("config: config key"));
    text
}

/// A scratch SQLite file, so that the database check passes quickly and
/// only the broken part fails.
fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}/check.db", dir.path().display())
}

#[test]
fn check_config_wrong_broker_port_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let text = assert_names_key_and_fix(
        &format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:{port}\"\n[database]\nurl = \"{}\"\n",
            sqlite_url(&dir)
        ),
        "kafka.bootstrap_servers",
        &[
            &format!("kafka: cannot reach 127.0.0.1:{port}"),
            "that the broker runs",
        ],
    );
    assert!(text.contains("config: ok"), "{text}");
}

#[test]
fn check_config_bad_database_urls_name_the_key() {
    // Unreachable: nothing listens on the port.
    let port = closed_port();
    assert_names_key_and_fix(
        &format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n[database]\nurl = \"postgres://govsync@127.0.0.1:{port}/govsync\"\nconnect_timeout = \"1s\"\n",
            crate::common::harness::kafka_servers()
        ),
        "database.url",
        &[
            &format!("database: postgres://govsync@127.0.0.1:{port}/govsync does not answer"),
            "the password (database.password_env)",
        ],
    );
    // Not a URL govsync can read.
    assert_names_key_and_fix(
        "[database]\nurl = \"postgres://govsync@127.0.0.1:port/govsync\"\n",
        "config key `database.url`",
        &["`port` is not a port number", "(PostgreSQL: 5432)"],
    );
    assert_names_key_and_fix(
        "[database]\nurl = \"mysql://govsync@127.0.0.1:3306/govsync\"\n",
        "config key `database.url`",
        &[
            "unknown database `mysql`",
            "use postgres://…, sqlite://… or oracle://…",
        ],
    );
}

#[test]
fn check_config_unknown_key_suggests_the_known_one() {
    assert_names_key_and_fix(
        "[kafka]\nbootstrap_server = \"127.0.0.1:9092\"\n",
        "config key `kafka.bootstrap_server`",
        &[
            "unknown key `bootstrap_server`",
            "did you mean `bootstrap_servers`?",
            "Fix the spelling or remove it",
        ],
    );
    assert_names_key_and_fix(
        "[kafak]\nbootstrap_servers = \"127.0.0.1:9092\"\n",
        "config key `kafak`",
        &["did you mean `kafka`?"],
    );
}

#[test]
fn check_config_bad_duration_names_the_key() {
    assert_names_key_and_fix(
        "[batch]\nmax_wait = \"5 parsecs\"\n",
        "config key `batch.max_wait`",
        &["`5 parsecs` is not a duration", "write e.g. \"500ms\""],
    );
    // A bare number: seconds? milliseconds? Say how to write it.
    assert_names_key_and_fix(
        "[kafka]\nsession_timeout = 10\n",
        "config key `kafka.session_timeout`",
        &["expected a duration in quotes", "(default \"10s\")"],
    );
}

#[test]
fn check_config_inverted_batch_bounds_name_the_key() {
    assert_names_key_and_fix(
        "[batch]\nmin_size = 3000\nmax_size = 200\n",
        "config key `batch.min_size`",
        &[
            "(3000) is greater than batch.max_size (200)",
            "make min_size ≤ max_size",
        ],
    );
    assert_names_key_and_fix(
        "[batch]\nphone = [5000, 3000]\n",
        "config key `batch.phone`",
        &[
            "[5000, 3000] is inverted",
            "write [min, max] with min ≤ max",
        ],
    );
}

/// `govsync run` with an Oracle URL on a machine without the Oracle Client
/// library stops at startup with what is missing and how to install it, and
/// exits 1 (a panic would exit 101). Where a client library is installed the
/// connection to nothing fails instead, still as an error, not a panic.
#[test]
fn run_with_an_oracle_url_and_no_client_says_what_to_install() {
    let f = config_file(
        "[database]\nurl = \"oracle://govsync@127.0.0.1:1/FREEPDB1\"\nconnect_timeout = \"2s\"\n\
         [kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n[metrics]\nlisten = \"\"\n",
    );
    let path = f.path().to_str().unwrap();
    let (code, text) = govsync(
        &["run", "--config", path],
        &[("GOVSYNC_DB_PASSWORD", "not-used")],
    );
    assert_eq!(code, 1, "{text}");
    assert!(!text.contains("panicked"), "{text}");
    if text.contains("DPI-1047") {
        for needed in [
            "Oracle Client library",
            "Instant Client",
            "LD_LIBRARY_PATH",
            "libaio",
        ] {
            assert!(text.contains(needed), "no {needed:?} in: {text}");
        }
    } else {
        assert!(text.contains("ORA-") || text.contains("DPI-"), "{text}");
    }
}
