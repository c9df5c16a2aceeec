//! Side outputs: the review message and the dead-letter envelope.
//!
//! Both are interfaces other teams consume; their shapes are published in
//! `schemas/review-message.v1.schema.json` and
//! `schemas/dead-letter-headers.v1.schema.json`.
//!
//! A dead-letter message is the original message, byte for byte (key, value,
//! headers), plus `govsync.*` headers that say what failed and where it came
//! from. A review message is a JSON document that embeds the original event.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::{Checked, Column, DataType, Row};
use crate::message::{OutMessage, RawMessage};

/// Header names added to dead-letter messages.
pub mod headers {
    pub const ERROR_CLASS: &str = "govsync.error.class";
    pub const ERROR_MESSAGE: &str = "govsync.error.message";
    pub const SOURCE_TOPIC: &str = "govsync.source.topic";
    pub const SOURCE_PARTITION: &str = "govsync.source.partition";
    pub const SOURCE_OFFSET: &str = "govsync.source.offset";
    pub const BATCH_ID: &str = "govsync.batch.id";
    pub const ATTEMPTS: &str = "govsync.attempts";
    pub const FIRST_FAILED_AT: &str = "govsync.first.failed.at";
    pub const VERSION: &str = "govsync.version";
    pub const REPLAY_COUNT: &str = "govsync.replay.count";
    pub const DB_CODE: &str = "govsync.db.code";
    pub const DB_CONSTRAINT: &str = "govsync.db.constraint";
    pub const DATA_TYPE: &str = "govsync.data.type";
    pub const REGION: &str = "govsync.region";

    /// Every header govsync adds; replay strips these (except the count).
    pub const ALL: [&str; 14] = [
        ERROR_CLASS,
        ERROR_MESSAGE,
        SOURCE_TOPIC,
        SOURCE_PARTITION,
        SOURCE_OFFSET,
        BATCH_ID,
        ATTEMPTS,
        FIRST_FAILED_AT,
        VERSION,
        REPLAY_COUNT,
        DB_CODE,
        DB_CONSTRAINT,
        DATA_TYPE,
        REGION,
    ];
}

/// Why a message is dead-lettered.
#[derive(Debug, Clone, Default)]
pub struct Failure {
    pub class: String,
    pub message: String,
    pub batch_id: String,
    pub attempts: u32,
    pub first_failed_at: Option<DateTime<Utc>>,
    /// SQLSTATE or ORA number when the database rejected the record.
    pub db_code: Option<String>,
    pub db_constraint: Option<String>,
    pub data_type: Option<String>,
    pub region: Option<String>,
}

impl Failure {
    /// A failure of class `class` (a [`headers::ERROR_CLASS`] value) in
    /// batch `batch_id`, after `attempts` attempts.
    pub fn new(class: &str, message: String, batch_id: &str, attempts: u32) -> Self {
        Failure {
            class: class.to_string(),
            message,
            batch_id: batch_id.to_string(),
            attempts,
            ..Default::default()
        }
    }

    /// With the record's data type and region, where they could be read.
    pub fn labelled(mut self, data_type: Option<DataType>, region: Option<&str>) -> Self {
        self.data_type = data_type.map(|d| d.as_str().to_string());
        self.region = region.map(str::to_string);
        self
    }

    /// With the database's error code (SQLSTATE, ORA-nnnnn) and constraint.
    pub fn rejected_by_db(mut self, code: Option<String>, constraint: Option<String>) -> Self {
        self.db_code = code;
        self.db_constraint = constraint;
        self
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Builds the dead-letter message for `raw`.
pub fn dead_letter(raw: &RawMessage, f: &Failure, dlq_topic: &str) -> OutMessage {
    let mut h = raw.headers.clone();
    let mut add = |k: &str, v: String| h.push((k.to_string(), v.into_bytes()));
    add(headers::ERROR_CLASS, f.class.clone());
    // Error messages name fields; a parser's message can quote a value, so
    // long digit runs (ID and phone numbers) are masked, and the length is
    // capped so a pathological message cannot bloat the DLQ.
    add(
        headers::ERROR_MESSAGE,
        crate::telemetry::mask::digits_in(&f.message)
            .chars()
            .take(1000)
            .collect(),
    );
    add(headers::SOURCE_TOPIC, raw.topic.clone());
    add(headers::SOURCE_PARTITION, raw.partition.to_string());
    add(headers::SOURCE_OFFSET, raw.offset.to_string());
    add(headers::BATCH_ID, f.batch_id.clone());
    add(headers::ATTEMPTS, f.attempts.max(1).to_string());
    add(
        headers::FIRST_FAILED_AT,
        rfc3339(f.first_failed_at.unwrap_or_else(Utc::now)),
    );
    add(headers::VERSION, env!("CARGO_PKG_VERSION").to_string());
    if raw.header(headers::REPLAY_COUNT).is_none() {
        add(headers::REPLAY_COUNT, "0".into());
    }
    if let Some(c) = &f.db_code {
        add(headers::DB_CODE, c.clone());
    }
    if let Some(c) = &f.db_constraint {
        add(headers::DB_CONSTRAINT, c.clone());
    }
    if let Some(d) = &f.data_type {
        add(headers::DATA_TYPE, d.clone());
    }
    if let Some(r) = &f.region {
        add(headers::REGION, r.clone());
    }
    OutMessage {
        topic: dlq_topic.to_string(),
        key: raw.key.clone(),
        payload: raw.value.clone(),
        headers: h,
    }
}

/// Why a record is on the review topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewReason {
    /// The engine asked for review (flag_for_review / requires_manual_review);
    /// the metadata columns were written.
    Flagged,
    /// govsync's own check contradicts the engine, or a correction was
    /// suggested: nothing was written.
    CheckContradiction,
    /// The row changed after the engine read it: nothing was written.
    Conflict,
}

#[derive(Serialize)]
struct ReviewDoc<'a> {
    schema_version: u32,
    event_id: &'a str,
    customer_id: &'a str,
    region_code: &'a str,
    data_type: &'a str,
    reason: ReviewReason,
    details: &'a [String],
    review_priority: &'a str,
    /// Whether govsync wrote anything for this event (flag columns).
    written: bool,
    /// The row's values of the event's target columns when govsync decided
    /// (conflicts: what someone else wrote).
    current: Option<serde_json::Value>,
    /// What the event would have written.
    proposed: serde_json::Value,
    source: Source<'a>,
    batch_id: &'a str,
    decided_at: String,
    event: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct Source<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
}

/// A review's priority: the engine's, else high for what govsync refused to
/// write and medium for a flag written.
pub fn review_priority(c: &Checked, reason: ReviewReason) -> &'static str {
    c.review_priority
        .map(|p| p.as_str())
        .unwrap_or(match reason {
            ReviewReason::CheckContradiction | ReviewReason::Conflict => "high",
            ReviewReason::Flagged => "medium",
        })
}

/// The name of a review reason, as the review topic and the review items
/// write it.
pub fn reason_name(reason: ReviewReason) -> &'static str {
    match reason {
        ReviewReason::Flagged => "flagged",
        ReviewReason::CheckContradiction => "check_contradiction",
        ReviewReason::Conflict => "conflict",
    }
}

/// Builds the review message for a record.
#[allow(clippy::too_many_arguments)]
pub fn review(
    raw: &RawMessage,
    c: &Checked,
    reason: ReviewReason,
    details: &[String],
    written: bool,
    current: Option<&Row>,
    batch_id: &str,
    review_topic: &str,
) -> OutMessage {
    let cols: Vec<Column> = c.proposal().iter().map(|(col, _)| *col).collect();
    let mut proposed = serde_json::Map::new();
    for (col, v) in c.proposal() {
        proposed.insert(
            col.name().to_string(),
            serde_json::to_value(v).unwrap_or_default(),
        );
    }
    let event_text = raw
        .value
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok());
    let event: Option<Box<RawValue>> =
        event_text.and_then(|t| RawValue::from_string(t.to_string()).ok());
    let priority = review_priority(c, reason);
    let doc = ReviewDoc {
        schema_version: 1,
        event_id: &c.event_id,
        customer_id: &c.customer_id,
        region_code: &c.region_code,
        data_type: c.data_type.as_str(),
        reason,
        details,
        review_priority: priority,
        written,
        current: current.map(|r| r.image(&cols)),
        proposed: serde_json::Value::Object(proposed),
        source: Source {
            topic: &raw.topic,
            partition: raw.partition,
            offset: raw.offset,
        },
        batch_id,
        decided_at: rfc3339(Utc::now()),
        event: event.as_deref(),
    };
    OutMessage {
        topic: review_topic.to_string(),
        key: Some(c.customer_id.as_bytes().to_vec()),
        payload: Some(serde_json::to_vec(&doc).expect("review document serialises")),
        headers: vec![
            (
                "govsync.review.reason".into(),
                serde_json::to_string(&reason)
                    .unwrap_or_default()
                    .trim_matches('"')
                    .as_bytes()
                    .to_vec(),
            ),
            (headers::SOURCE_TOPIC.into(), raw.topic.as_bytes().to_vec()),
            (
                headers::SOURCE_PARTITION.into(),
                raw.partition.to_string().into_bytes(),
            ),
            (
                headers::SOURCE_OFFSET.into(),
                raw.offset.to_string().into_bytes(),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawMessage {
        RawMessage {
            topic: "t".into(),
            partition: 3,
            offset: 42,
            key: Some(b"3201".to_vec()),
            value: Some(vec![0xff, 0x00, b'x']),
            headers: vec![("trace".into(), vec![1, 2, 3])],
            timestamp_ms: None,
        }
    }

    #[test]
    fn dead_letter_keeps_the_original_bytes() {
        let f = Failure {
            class: "malformed".into(),
            message: "not UTF-8".into(),
            batch_id: "b1".into(),
            ..Default::default()
        };
        let m = dead_letter(&raw(), &f, "dlq");
        assert_eq!(m.key.as_deref(), Some(&b"3201"[..]));
        assert_eq!(m.payload.as_deref(), Some(&[0xff, 0x00, b'x'][..]));
        assert_eq!(m.headers[0], ("trace".to_string(), vec![1, 2, 3]));
        let get = |k: &str| {
            m.headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(get(headers::ERROR_CLASS).as_deref(), Some("malformed"));
        assert_eq!(get(headers::SOURCE_OFFSET).as_deref(), Some("42"));
        assert_eq!(get(headers::REPLAY_COUNT).as_deref(), Some("0"));
    }
}
