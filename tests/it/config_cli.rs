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
