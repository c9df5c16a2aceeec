//! The review commands of the binary: `govsync review decide` checks a
//! decision as the console does and publishes it, `review show --json`,
//! `review hash-password`, and `review serve` refusing to start when nobody
//! could sign in.

use govsync::review::Verdict;

use super::console::{ID, items};
use crate::common::harness::Env;
use crate::common::review::{prepare, wait_for_decisions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_decide_on_the_command_line_checks_and_publishes() {
    let env = Env::new("console_cli", 1).await;
    env.migrate().await;
    let mut raw = env.raw.clone();
    prepare(&env, &mut raw).await;
    items(&env).await;
    let cfg = env.write_config(&raw);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
            .args(["review", "decide", "--config"])
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, out) = run(&[
        "ev-flagged-1",
        "correct",
        "--reviewer",
        "li.na",
        "--set",
        "id_card=110105194912310021",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("refused, nothing published") && out.contains("GB 11643"),
        "{out}"
    );
    let (code, out) = run(&["ev-missing", "approve", "--reviewer", "li.na"]);
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = run(&[
        "ev-flagged-1",
        "reject",
        "--reviewer",
        "li.na",
        "--comment",
        "row is right",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let got = wait_for_decisions(&env, &raw, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.decision_id, out.trim());
    assert_eq!(
        (got[0].1.decision, got[0].1.reviewer.as_str()),
        (Verdict::Reject, "li.na")
    );

    // show --json gives the item in full.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
        .args(["review", "show", "--json", "--config"])
        .arg(&cfg)
        .arg("ev-flagged-1")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["current_row"]["id_card"], ID);
    assert_eq!(v["region_code"], "320102");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_serve_refuses_to_start_without_a_way_to_sign_in() {
    let env = Env::new("console_nosignin", 1).await;
    let path = env.write_config(&env.raw);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
        .args(["review", "serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("review.reviewers_file") && err.contains("review.trusted_proxy_header"),
        "{err}"
    );
    // hash-password reads standard input and prints a PHC string.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
        .args(["review", "hash-password"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let hash = String::from_utf8(out.stdout).unwrap();
    let r = govsync::ops::console::auth::Reviewers::parse(&format!("ops:{}", hash.trim())).unwrap();
    assert!(r.verify("ops", "s3cret") && !r.verify("ops", "s3cret\n"));
}
