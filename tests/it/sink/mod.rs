//! The sink test suite, written once: every scenario runs against each
//! database through the same `Database` trait (PostgreSQL and SQLite here;
//! Oracle when GOVSYNC_ORACLE_URL is set, see oracle.rs). Batches are built
//! directly, without Kafka: this is the database half of exactly-once.
//!
//! Each scenario of [`scenarios`] is a test of its own per database,
//! `sink::<database>::<scenario>` (stamped out by [`scenario_tests!`]), on
//! tables of its own: a fresh PostgreSQL schema, a fresh SQLite file, the
//! Oracle test schema reset (one Oracle test at a time).

mod mapped;
mod oracle;
mod postgres;
mod scenarios;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use govsync::demo::generate::Customer;
use govsync::event::{self, ConflictPolicy, DataType, Row, RuleSet};
use govsync::message::RawMessage;
use govsync::output::{self, Failure};
use govsync::sink::protocol::{self, ApplyOptions, BatchReport};
use govsync::sink::{Database, PartitionKey, SinkBatch, SinkError, SinkRecord};
use serde_json::Value;

/// What the suite needs besides the `Database` trait: the business side's
/// own writes and reads, in each dialect.
#[async_trait]
pub trait Business: Send + Sync {
    /// Inserts customer rows as the business side holds them
    /// (last_update = generate::seen_last_update() in +08:00, version 0).
    async fn seed(&self, customers: &[Customer]);
    /// A concurrent business update: address and last_update.
    async fn business_update(&self, customer: &str, address: &str, last_update: DateTime<Utc>);
    async fn row(&self, customer: &str) -> Option<Row>;
    // No scenario counts rows (yet).
    #[allow(dead_code)]
    async fn count(&self, table: &str) -> i64;
    /// Makes the database rewrite `address` on every update (a trigger), or
    /// returns false when the dialect does not support it here.
    async fn install_tampering_trigger(&self) -> bool;
}

pub struct Suite {
    pub db: Arc<dyn Database>,
    pub biz: Box<dyn Business>,
    pub topic: String,
}

pub fn opts(policy: ConflictPolicy) -> ApplyOptions {
    ApplyOptions {
        review_topic: "suite.review".into(),
        dlq_topic: "suite.dlq".into(),
        policies: DataType::ALL.into_iter().map(|d| (d, policy)).collect(),
        max_poison_fraction: 0.1,
        duplicates_met: Default::default(),
    }
}

impl Suite {
    pub fn key(&self, partition: i32) -> PartitionKey {
        PartitionKey {
            group: "suite".into(),
            topic: self.topic.clone(),
            partition,
        }
    }

    /// A batch of `events` at offsets `first..`, expecting the watermark at
    /// `expected`.
    pub fn batch(&self, partition: i32, first: i64, expected: i64, events: &[Value]) -> SinkBatch {
        let rules = RuleSet::default();
        let key = self.key(partition);
        let last = first + events.len() as i64 - 1;
        let batch_id = format!("suite:{}:{partition}:{first}-{last}", self.topic);
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let value = serde_json::to_vec(e).unwrap();
            let raw = Arc::new(RawMessage {
                topic: self.topic.clone(),
                partition,
                offset: first + i as i64,
                key: govsync::kafka::region_key(&value),
                value: Some(value.clone()),
                headers: vec![],
                timestamp_ms: None,
            });
            match event::decode_and_check(&value, 1 << 20, &rules) {
                Ok(checked) => records.push(SinkRecord { raw, checked }),
                Err(r) => {
                    let f = Failure {
                        class: r.rejection.class().into(),
                        message: r.rejection.to_string(),
                        batch_id: batch_id.clone(),
                        ..Default::default()
                    };
                    rejected.push((raw.offset, output::dead_letter(&raw, &f, "suite.dlq")));
                }
            }
        }
        SinkBatch {
            batch_id,
            key,
            expected_watermark: expected,
            first_offset: first,
            last_offset: last,
            records,
            rejected,
            prune_outbox_upto: None,
            attempt: 1,
        }
    }

    pub async fn apply(
        &self,
        b: &SinkBatch,
        policy: ConflictPolicy,
    ) -> Result<BatchReport, SinkError> {
        protocol::apply(self.db.as_ref(), b, &opts(policy)).await
    }
}

/// The columns of a customer row the scenarios check, for PostgreSQL and
/// SQLite (the bind placeholder appended).
const ROW_SQL: &str = "SELECT address, geo_lat, geo_lon, geo_accuracy, id_card, phone, carrier_info, quality_score, \
     validation_status, review_flag, review_priority, last_governance_time, last_update, version \
     FROM customer_profile WHERE customer_id = ";

/// Runs one scenario on `suite`: migrates (its tables are its own), then
/// the scenario.
pub async fn run(suite: &Suite, scenario: impl AsyncFnOnce(&Suite)) {
    suite.db.migrate(true).await.unwrap();
    scenario(suite).await;
}

/// One `#[tokio::test]` per scenario of [`scenarios`], named after it. Each
/// calls `with_suite(test name, scenario)` of the invoking module, which
/// sets up a fresh database and hands the suite to [`run`].
macro_rules! scenario_tests {
    ($with_suite:ident) => {
        scenario_tests!(@each $with_suite:
            applies_writes_log_ledger_and_watermark,
            duplicates_are_skipped_within_and_across_batches,
            stale_results_do_not_overwrite_newer_ones,
            seed_concurrent_update_under_each_policy,
            same_customer_several_times_in_one_batch,
            one_rejected_record_among_a_thousand,
            records_below_the_watermark_are_skipped_and_foreign_outbox_returned,
            rollback_restores_exactly_the_before_images,
            verification_failure_rolls_back,
            review_items_follow_the_review_topic_and_newer_results_supersede_them,
            decisions_apply_once_with_reasons_for_refusals,
        );
    };
    (@each $with_suite:ident: $($scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                $with_suite(stringify!($scenario), crate::it::sink::scenarios::$scenario).await;
            }
        )+
    };
}
use scenario_tests;
