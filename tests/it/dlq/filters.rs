//! `govsync dlq replay` on dead letters written straight to the DLQ.

use govsync::message::RawMessage;
use govsync::output::{self, Failure, headers};

use super::{committed_sum, govsync, publish_to};
use crate::common::harness::{Env, RawOut, header};

/// Dead letters written straight to the DLQ: filters, `--dry-run`, the
/// replay limit, `--to`, and a second run that finds nothing left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_filters_dry_run_and_the_replay_limit() {
    let env = Env::new("dlq_filters", 1).await;
    let dlq = env.raw.kafka.dlq_topic.clone();
    let msgs = dead_letters(&env, &dlq);
    publish_to(&env, &dlq, &msgs).await;
    let cfg_path = env.write_config(&env.raw);
    let r = Replayer {
        env: &env,
        dlq: &dlq,
        cfg: cfg_path.to_str().unwrap(),
        group: format!("g_{}", env.name),
    };
    r.dry_run_sends_and_commits_nothing();
    let other = format!("{}.replayed", env.name);
    govsync::kafka::ensure_topics(&env.client_config(), &[(other.as_str(), 1)], 1)
        .await
        .unwrap();
    r.replay_to(&other, &msgs);
    r.again_nothing_is_sent_twice(&other);
    r.bad_arguments_are_refused_clearly();
    r.inspect_masks_the_payload();
}

/// Seven dead letters, one for each filter to skip, at and below the
/// replay limit.
fn dead_letters(env: &Env, dlq: &str) -> Vec<RawOut> {
    let dead = |class: &str, dt: &str, region: &str, batch: &str, count: Option<&str>| {
        let raw = RawMessage {
            topic: env.source().to_string(),
            partition: 0,
            offset: 7,
            key: Some(region.as_bytes().to_vec()),
            value: Some(
                format!("{{\"class\": \"{class}\", \"phone\": \"13812345678\"}}").into_bytes(),
            ),
            headers: match count {
                Some(c) => vec![
                    ("trace".into(), b"t".to_vec()),
                    (headers::REPLAY_COUNT.into(), c.as_bytes().to_vec()),
                ],
                None => vec![("trace".into(), b"t".to_vec())],
            },
            timestamp_ms: None,
        };
        let f = Failure {
            class: class.into(),
            message: "test".into(),
            batch_id: batch.into(),
            data_type: Some(dt.into()),
            region: Some(region.into()),
            ..Default::default()
        };
        let m = output::dead_letter(&raw, &f, dlq);
        (m.key, m.payload.unwrap(), m.headers)
    };
    vec![
        dead("rule", "phone", "3201", "b1", None),      // replayed
        dead("rule", "phone", "3202", "b1", None),      // other region
        dead("schema", "phone", "3201", "b1", None),    // other class
        dead("rule", "phone", "3201", "b1", Some("3")), // at the limit
        dead("rule", "address", "3201", "b1", None),    // other type
        dead("rule", "phone", "3201", "b2", None),      // other batch
        dead("rule", "phone", "3201", "b1", Some("2")), // replayed (3rd time)
    ]
}

/// `govsync dlq replay` with the filters on the test's config and group.
struct Replayer<'a> {
    env: &'a Env,
    dlq: &'a str,
    cfg: &'a str,
    group: String,
}

impl Replayer<'_> {
    /// Runs the filtered replay with `extra` arguments.
    fn replay(&self, extra: &[&str]) -> (i32, String, String) {
        let filters = [
            "--error-class",
            "rule",
            "--data-type",
            "phone",
            "--region",
            "3201",
            "--batch",
            "b1",
            "--since",
            "2020-01-01T00:00:00Z",
        ];
        let mut a = vec![
            "dlq",
            "replay",
            "--config",
            self.cfg,
            "--group",
            self.group.as_str(),
        ];
        a.extend_from_slice(&filters);
        a.extend_from_slice(extra);
        govsync(&a)
    }

    /// Dry run: says what it would do, sends and commits nothing.
    fn dry_run_sends_and_commits_nothing(&self) {
        let (code, text, err) = self.replay(&["--dry-run"]);
        assert_eq!(code, 0, "{text}{err}");
        assert_eq!(
            text.matches("would replay: partition 0").count(),
            2,
            "{text}"
        );
        assert!(
            text.contains("would replay: partition 0 offset 6"),
            "{text}"
        );
        assert!(text.contains("replay count 2 → 3"), "{text}");
        assert!(
            text.contains("refused: partition 0 offset 3 (rule, phone, region 3201): replayed 3 times already, dlq.max_replays is 3"),
            "{text}"
        );
        assert!(
            text.contains("read 7, would be replayed 2, skipped by filter 4, refused 1"),
            "{text}"
        );
        assert!(
            self.env.read_topic(self.env.source()).is_empty(),
            "a dry run sends nothing"
        );
        assert_eq!(
            committed_sum(self.env, &self.group, self.dlq, 1, true),
            0,
            "and commits nothing"
        );
    }

    /// The replay, to another topic.
    fn replay_to(&self, other: &str, msgs: &[RawOut]) {
        let (code, text, err) = self.replay(&["--to", other]);
        assert_eq!(code, 0, "{text}{err}");
        assert!(
            text.contains("replay done: read 7, replayed 2, skipped by filter 4, refused 1"),
            "{text}"
        );
        assert!(
            text.contains("refused at max replays: 1 (replayed 3 times or more already"),
            "{text}"
        );
        assert!(
            text.contains("replayed 3 times already, dlq.max_replays is 3"),
            "{text}"
        );
        let out = self.env.read_topic(other);
        assert_eq!(out.len(), 2);
        assert!(self.env.read_topic(self.env.source()).is_empty());
        assert_eq!(header(&out[0], headers::REPLAY_COUNT), Some("1"));
        assert_eq!(header(&out[1], headers::REPLAY_COUNT), Some("3"));
        assert_eq!(
            header(&out[0], govsync::ops::dlq::REPLAYED_FROM),
            Some(format!("{}/0/0", self.dlq).as_str())
        );
        assert_eq!(
            out[0].headers,
            vec![
                ("trace".to_string(), b"t".to_vec()),
                (headers::REPLAY_COUNT.to_string(), b"1".to_vec()),
                (
                    govsync::ops::dlq::REPLAYED_FROM.to_string(),
                    format!("{}/0/0", self.dlq).into_bytes()
                ),
            ],
            "the original headers, the count and the origin; no dead-letter headers"
        );
        assert_eq!(out[0].value.as_deref(), Some(msgs[0].1.as_slice()));
        assert_eq!(committed_sum(self.env, &self.group, self.dlq, 1, true), 7);
    }

    /// Again: the group is at the end; nothing is sent twice.
    fn again_nothing_is_sent_twice(&self, other: &str) {
        let (code, text, _) = self.replay(&["--to", other]);
        assert_eq!(code, 0);
        assert!(text.contains("nothing to replay"), "{text}");
        assert!(text.contains("read 0, replayed 0"), "{text}");
        assert_eq!(self.env.read_topic(other).len(), 2);
    }

    /// Clear errors for bad arguments.
    fn bad_arguments_are_refused_clearly(&self) {
        let (code, _, err) = govsync(&[
            "dlq",
            "replay",
            "--config",
            self.cfg,
            "--since",
            "yesterday",
        ]);
        assert_eq!(code, 1);
        assert!(
            err.contains("--since yesterday: expected an RFC 3339 time"),
            "{err}"
        );
        let (code, _, err) = govsync(&["dlq", "replay", "--config", self.cfg, "--to", self.dlq]);
        assert_eq!(code, 1);
        assert!(err.contains("is the dead-letter topic itself"), "{err}");
    }

    /// Inspect: counts and the masked payload of a non-event value.
    fn inspect_masks_the_payload(&self) {
        let (code, text, err) = govsync(&["dlq", "inspect", "--config", self.cfg]);
        assert_eq!(code, 0, "{err}");
        assert!(
            text.contains("at the replay limit (dlq.max_replays = 3): 1"),
            "{text}"
        );
        assert!(!text.contains("13812345678"), "{text}");
        assert!(text.contains("138****5678"), "{text}");
    }
}
