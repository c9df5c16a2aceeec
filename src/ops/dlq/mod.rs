//! `govsync dlq inspect` and `govsync dlq replay`: the dead-letter topic as
//! an operator meets it.
//!
//! # Inspect
//!
//! Reads the whole topic, read_committed, with a consumer that joins no
//! group and commits nothing: it disturbs neither the processor nor a
//! replay. It reads up to the end offsets the topic had when it started.
//! Samples are masked (ID-card and phone numbers, addresses, names, birth
//! dates, exact coordinates); the customer id is shown as it is.
//!
//! # Replay: each message sent once, resumable
//!
//! A replay consumes the dead-letter topic as consumer group `--group` and
//! re-publishes with a transactional producer. Its messages go out in
//! chunks (at most [`CHUNK_MESSAGES`] messages or [`CHUNK_TIME`]); each
//! chunk commits in ONE Kafka transaction together with the group's
//! dead-letter offsets past it (`send_offsets_to_transaction`). So a
//! chunk's messages and the progress past them are visible together or not
//! at all. The transactional.id is derived from the group and the
//! dead-letter topic: a restarted replay's `init_transactions` fences an
//! interrupted one and aborts its open transaction, and it then resumes at
//! the group's committed offsets. A read_committed consumer of the
//! destination (the processor is one) therefore sees every replayed message
//! exactly once, however often the replay is interrupted.
//!
//! The group's offsets also mean that a message a replay has passed, whether
//! replayed, skipped by a filter or refused, is not looked at again by that
//! group: a replay with other filters over the same messages needs its own
//! `--group`.
//!
//! A replay stops at the end offsets the topic had when it started, so
//! messages that fail again during the replay (and come back to the
//! dead-letter topic) wait for the next run; it always terminates. Those
//! end offsets go into the metadata of every offset it commits: a run that
//! finds the group short of them resumes an interrupted run and finishes
//! that run's range, not more. Each
//! replayed message carries `govsync.replay.count` = previous count + 1, and
//! a message already replayed `dlq.max_replays` times is refused: a poison
//! message cannot loop forever.
//!
//! Everything here blocks (librdkafka): call it from a blocking context.
//!
//! # Layout
//!
//! - `reader`: reads the topic up to the end offsets it had when opened.
//! - `labels`: what a dead letter's headers say (class, data type, region,
//!   when it was dead-lettered).
//! - `inspect`: `govsync dlq inspect`, its report and its printing.
//! - `filter`: which dead letters a replay takes, and the decision on each.
//! - `replay`: `govsync dlq replay`, one chunk after another.
//! - `txn`: the transactional producer that commits a chunk.
//! - `progress` and `summary`: what a replay shows while and after it runs.

mod filter;
mod inspect;
mod labels;
mod progress;
mod reader;
mod replay;
mod summary;
mod txn;

use std::time::Duration;

pub use filter::{Decision, Filter, decide};
pub use inspect::{InspectReport, PartitionRange, Sample, inspect};
pub use progress::ProgressMode;
pub use replay::{ReplayOptions, replay, replay_command, replay_headers, stop_on_signals};
pub use summary::{ClassCounts, ReplaySummary};

/// Where a replayed message came from: `<dlq topic>/<partition>/<offset>`.
pub const REPLAYED_FROM: &str = "govsync.replayed.from";
/// Set by the committer when a dead letter was cut to the topic's limit.
const TRUNCATED: &str = "govsync.payload.truncated";

/// The error classes the processor writes (schemas/dead-letter-headers).
pub const KNOWN_CLASSES: [&str; 7] = [
    "malformed",
    "too_large",
    "unsupported_version",
    "schema",
    "rule",
    "db_rejected",
    "target_missing",
];

/// A chunk commits after this many messages…
pub const CHUNK_MESSAGES: usize = 500;
/// …or after this long, whichever comes first (well below any sane
/// transaction timeout, and it bounds what an interruption re-sends).
pub const CHUNK_TIME: Duration = Duration::from_secs(1);

const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// A dead letter with `headers`, as the unit tests here build them.
#[cfg(test)]
fn dead_letter(headers: &[(&str, &str)]) -> crate::message::RawMessage {
    crate::message::RawMessage {
        topic: "x.dlq".into(),
        partition: 2,
        offset: 40,
        key: Some(b"3201".to_vec()),
        value: Some(b"{}".to_vec()),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
        timestamp_ms: Some(1_705_284_000_000),
    }
}
