//! Every metric govsync exports, named in one place. Labels are bounded:
//! outcome, data type, region (the partition key: a few hundred prefecture
//! codes at most), partition, error class. Never values or messages.
//! Emitted per batch, not per record.

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const RECORDS: &str = "govsync_records_total";
pub const BATCHES: &str = "govsync_batches_total";
pub const COMMIT_SECONDS: &str = "govsync_batch_commit_seconds";
pub const END_TO_END_SECONDS: &str = "govsync_end_to_end_latency_seconds";
pub const BATCH_TARGET_SIZE: &str = "govsync_batch_target_size";
pub const BATCH_RECORDS: &str = "govsync_batch_records";
pub const IN_FLIGHT: &str = "govsync_batches_in_flight";
pub const LAG: &str = "govsync_consumer_lag";
pub const RETRIES: &str = "govsync_retries_total";
pub const STALLED: &str = "govsync_partition_stalled";
pub const QUALITY_GAIN: &str = "govsync_quality_score_gain";
pub const SIDE_OUTPUTS: &str = "govsync_side_outputs_total";
pub const KAFKA_TXNS: &str = "govsync_kafka_transactions_total";
pub const ASSIGNED: &str = "govsync_partitions_assigned";
pub const LAST_COMMIT: &str = "govsync_last_commit_timestamp_seconds";
pub const BUFFERED: &str = "govsync_buffered_records";
pub const PAUSED: &str = "govsync_partition_paused";
pub const RATE_LIMIT_WAIT: &str = "govsync_rate_limit_wait_seconds";
pub const REVIEW_OPEN: &str = "govsync_review_items_open";
pub const REVIEW_OLDEST: &str = "govsync_review_oldest_open_seconds";
pub const REVIEW_DECISIONS: &str = "govsync_review_decisions_total";
pub const REVIEW_REFUSED: &str = "govsync_review_decisions_refused_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
            let e2e = [
                0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1800.0,
            ];
            let sizes = [
                10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 3000.0, 5000.0,
            ];
            let gain = [-0.5, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0];
            let wait = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(COMMIT_SECONDS.into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(END_TO_END_SECONDS.into()), &e2e)
                })
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_RECORDS.into()), &sizes))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(QUALITY_GAIN.into()), &gain))
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(RATE_LIMIT_WAIT.into()), &wait)
                })
                .expect("bucket lists are non-empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed (a test harness): keep ours
            // as a handle only then.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            preregister();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        RECORDS,
        "Records by outcome (applied, flagged, review, conflict, stale, duplicate, invalid, poison, skipped), data type and region."
    );
    describe_counter!(
        BATCHES,
        "Batch transactions by status: committed, or failed (each failed attempt; a failed batch is retried, never dropped)."
    );
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Duration of a batch's database transaction."
    );
    describe_histogram!(
        END_TO_END_SECONDS,
        Unit::Seconds,
        "Kafka message timestamp to database commit."
    );
    describe_gauge!(
        BATCH_TARGET_SIZE,
        "Current adaptive batch size target per partition."
    );
    describe_histogram!(BATCH_RECORDS, "Records per committed batch.");
    describe_gauge!(
        IN_FLIGHT,
        "Batches currently in their database transaction."
    );
    describe_gauge!(
        LAG,
        "Consumer lag per partition (high watermark minus next offset to apply)."
    );
    describe_counter!(RETRIES, "Batch retries by error class.");
    describe_gauge!(
        STALLED,
        "1 while a partition is stalled on an infrastructure fault."
    );
    describe_histogram!(
        QUALITY_GAIN,
        "Quality score after minus before, per applied record."
    );
    describe_counter!(
        SIDE_OUTPUTS,
        "Messages published to the review and dead-letter topics."
    );
    describe_counter!(KAFKA_TXNS, "Kafka transactions by result.");
    describe_gauge!(ASSIGNED, "Partitions assigned to this instance.");
    describe_gauge!(LAST_COMMIT, "Unix time of the last committed batch.");
    describe_gauge!(
        BUFFERED,
        "Records buffered per partition, waiting for a batch."
    );
    describe_gauge!(PAUSED, "1 while a partition is paused for backpressure.");
    describe_gauge!(
        REVIEW_OPEN,
        "Open review items (govsync_review_item) by priority and region, read from the database every 30 s."
    );
    describe_gauge!(
        REVIEW_OLDEST,
        Unit::Seconds,
        "Age of the oldest open review item per priority (0 when none is open)."
    );
    describe_counter!(
        REVIEW_DECISIONS,
        "Reviewers' decisions consumed, by outcome (approved, rejected, corrected, refused, duplicate)."
    );
    describe_counter!(
        REVIEW_REFUSED,
        "Refused decisions by reason (invalid, no_item, not_open, row_changed, correction, unwritable)."
    );
    describe_histogram!(
        RATE_LIMIT_WAIT,
        Unit::Seconds,
        "Time a batch waited on the rate limits."
    );
}

/// Sets the review gauges from the open items (`now`: their ages' end).
/// Every priority is set, 0 when none is open, and a region that had open
/// items and has none now goes to 0, so a series never sticks at its last
/// value.
pub fn open_reviews(open: &[crate::sink::OpenReviews], now: chrono::DateTime<chrono::Utc>) {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static SEEN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let mut counts: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut oldest: BTreeMap<String, f64> = ["high", "medium", "low"]
        .iter()
        .map(|p| (p.to_string(), 0.0))
        .collect();
    for o in open {
        *counts
            .entry((o.priority.clone(), o.region_code.clone()))
            .or_default() += o.count as f64;
        if let Some(t) = o.oldest {
            let age = (now - t).num_milliseconds().max(0) as f64 / 1000.0;
            let e = oldest.entry(o.priority.clone()).or_default();
            *e = e.max(age);
        }
    }
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    for key in seen.iter() {
        counts.entry(key.clone()).or_insert(0.0);
    }
    for ((priority, region), n) in &counts {
        gauge!(REVIEW_OPEN, "priority" => priority.clone(), "region" => region.clone()).set(*n);
    }
    *seen = counts.into_keys().collect();
    for (priority, age) in oldest {
        gauge!(REVIEW_OLDEST, "priority" => priority).set(age);
    }
}

/// Counters of the fixed label sets start at 0, so that the first failure
/// is a visible increase (an alert on `increase()` sees it).
fn preregister() {
    for status in ["committed", "failed"] {
        counter!(BATCHES, "status" => status).absolute(0);
    }
    for class in [
        "connection",
        "timeout",
        "deadlock",
        "serialization",
        "lock_wait",
        "record",
        "verification",
        "fatal",
    ] {
        counter!(RETRIES, "class" => class).absolute(0);
    }
    for result in [
        "committed",
        "retried",
        "rebalanced",
        "producer_reset",
        "failed",
    ] {
        counter!(KAFKA_TXNS, "result" => result).absolute(0);
    }
    for topic in ["dlq", "review"] {
        counter!(SIDE_OUTPUTS, "topic" => topic).absolute(0);
    }
    for outcome in ["approved", "rejected", "corrected", "refused", "duplicate"] {
        counter!(REVIEW_DECISIONS, "outcome" => outcome).absolute(0);
    }
    for r in crate::sink::decisions::Refusal::ALL {
        counter!(REVIEW_REFUSED, "reason" => r.as_str()).absolute(0);
    }
}

/// Counts a committed batch of decisions.
pub fn decisions(outcomes: &[crate::sink::decisions::DecisionOutcome]) {
    use crate::sink::decisions::DecisionOutcome;
    for o in outcomes {
        match o {
            DecisionOutcome::Applied(v) => {
                counter!(REVIEW_DECISIONS, "outcome" => v.status()).increment(1);
            }
            DecisionOutcome::Refused(r, _) => {
                counter!(REVIEW_DECISIONS, "outcome" => "refused").increment(1);
                counter!(REVIEW_REFUSED, "reason" => r.as_str()).increment(1);
            }
            DecisionOutcome::Duplicate => {
                counter!(REVIEW_DECISIONS, "outcome" => "duplicate").increment(1);
            }
            DecisionOutcome::Skipped => {}
        }
    }
}

/// Drops a revoked partition's gauges to 0 so another instance's values
/// are not double-counted.
pub fn partition_released(partition: i32) {
    let p = partition.to_string();
    for name in [LAG, BATCH_TARGET_SIZE, BUFFERED, PAUSED, STALLED] {
        gauge!(name, "partition" => p.clone()).set(0.0);
    }
}

pub fn records(outcome: &str, data_type: &str, region: &str, n: u64) {
    if n > 0 {
        counter!(RECORDS, "outcome" => outcome.to_string(), "data_type" => data_type.to_string(), "region" => region.to_string())
            .increment(n);
    }
}

pub fn batch(status: &'static str) {
    counter!(BATCHES, "status" => status).increment(1);
}

pub fn commit_latency(seconds: f64) {
    histogram!(COMMIT_SECONDS).record(seconds);
}

/// End-to-end latencies of one batch's written records.
pub fn end_to_end(seconds: impl IntoIterator<Item = f64>) {
    let h = histogram!(END_TO_END_SECONDS);
    for s in seconds {
        h.record(s);
    }
}

pub fn batch_records(n: usize) {
    histogram!(BATCH_RECORDS).record(n as f64);
}

pub fn target_size(partition: i32, size: usize) {
    gauge!(BATCH_TARGET_SIZE, "partition" => partition.to_string()).set(size as f64);
}

pub fn in_flight(n: usize) {
    gauge!(IN_FLIGHT).set(n as f64);
}

pub fn lag(partition: i32, lag: i64) {
    gauge!(LAG, "partition" => partition.to_string()).set(lag.max(0) as f64);
}

pub fn retry(class: &'static str) {
    counter!(RETRIES, "class" => class).increment(1);
}

pub fn stalled(partition: i32, stalled: bool) {
    gauge!(STALLED, "partition" => partition.to_string()).set(if stalled { 1.0 } else { 0.0 });
}

/// Quality-score gains of one batch's applied records.
pub fn quality_gain(gains: impl IntoIterator<Item = f64>) {
    let h = histogram!(QUALITY_GAIN);
    for g in gains {
        h.record(g);
    }
}

pub fn side_outputs(topic_kind: &'static str, n: usize) {
    if n > 0 {
        counter!(SIDE_OUTPUTS, "topic" => topic_kind).increment(n as u64);
    }
}

pub fn kafka_txn(result: &'static str) {
    counter!(KAFKA_TXNS, "result" => result).increment(1);
}

pub fn assigned(n: usize) {
    gauge!(ASSIGNED).set(n as f64);
}

pub fn last_commit_now() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    gauge!(LAST_COMMIT).set(now);
}

pub fn buffered(partition: i32, n: usize) {
    gauge!(BUFFERED, "partition" => partition.to_string()).set(n as f64);
}

pub fn paused(partition: i32, paused: bool) {
    gauge!(PAUSED, "partition" => partition.to_string()).set(if paused { 1.0 } else { 0.0 });
}

pub fn rate_limit_wait(seconds: f64) {
    histogram!(RATE_LIMIT_WAIT).record(seconds);
}
