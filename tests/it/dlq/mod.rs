//! `govsync dlq inspect` and `govsync dlq replay` through the real binary,
//! the real broker and PostgreSQL: dead letters that a config change made
//! valid are applied after a replay, the others come back with replay
//! count 1; a replay killed halfway (SIGKILL), run again and stopped
//! (SIGTERM), then run to the end sends each message exactly once; a message at the replay limit is refused with a
//! clear message; inspect shows counts and masked samples only.
//!
//! [`replay`] is the replay of a config fix, [`filters`] the filters, the
//! dry run and the replay limit on dead letters written directly; this
//! module holds what both need to run the binary and read the topics.

mod filters;
mod replay;

use std::path::Path;
use std::time::{Duration, Instant};

use govsync::message::RawMessage;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::common::harness::{Env, Proc, RawOut};

/// Runs `govsync <args>` to completion: (exit code, stdout, stderr).
fn govsync(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the govsync binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `govsync <args>` with stdout and stderr into `log`.
fn spawn(args: &[&str], log: &Path) -> Proc {
    let file = std::fs::File::create(log).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_govsync"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("start the govsync binary");
    Proc(Some(child))
}

/// Sum of a group's committed offsets on a topic. `stable`: wait for
/// pending transactional offsets (read_committed); otherwise the offsets
/// committed so far, at once.
fn committed_sum(env: &Env, group: &str, topic: &str, partitions: i32, stable: bool) -> i64 {
    let c: BaseConsumer = env
        .client_config()
        .set("group.id", group)
        .set(
            "isolation.level",
            if stable {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// Sum of a topic's end offsets (messages plus transaction markers).
fn end_sum(env: &Env, topic: &str, partitions: i32) -> i64 {
    let c: BaseConsumer = env.client_config().create().unwrap();
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// Messages on a topic including those of aborted transactions
/// (read_uncommitted).
fn count_uncommitted(env: &Env, topic: &str, partitions: i32) -> usize {
    let c: BaseConsumer = env
        .client_config()
        .set("group.id", "unused")
        .set("isolation.level", "read_uncommitted")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let ends: Vec<i64> = (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(_)) => n += 1,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {
                let pos = c.position().unwrap();
                let done = (0..partitions).all(|p| {
                    matches!(pos.find_partition(topic, p).map(|e| e.offset()),
                        Some(Offset::Offset(o)) if o >= ends[p as usize])
                        || ends[p as usize] == 0
                });
                if done {
                    break;
                }
            }
        }
    }
    n
}

async fn publish_to(env: &Env, topic: &str, msgs: &[RawOut]) {
    let producer: FutureProducer = env
        .client_config()
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (k, v, h) in msgs {
        let mut rec = FutureRecord::<Vec<u8>, Vec<u8>>::to(topic)
            .payload(v)
            .headers(govsync::kafka::owned_headers(h));
        if let Some(k) = k {
            rec = rec.key(k);
        }
        producer
            .send(rec, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

fn event_id(m: &RawMessage) -> String {
    let v: Value = serde_json::from_slice(m.value.as_deref().unwrap()).unwrap();
    v["event_id"].as_str().unwrap().to_string()
}
