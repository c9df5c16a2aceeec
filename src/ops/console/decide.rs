//! Making a decision and publishing it: shared by the console's forms and
//! `govsync review decide`. A decision is checked here before it is sent
//! (the item is open, a correction passes the governance rules), so a
//! reviewer sees a refusal at once instead of in the applier's record; the
//! applier checks again, since the row may change in between.
//!
//! Only the decision topic is written: the business table is the applier's
//! (`govsync run`).

use std::time::Duration;

use chrono::NaiveDate;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Map, Value};

use super::store::Item;
use crate::config::KafkaConfig;
use crate::event::{Column, DataType, RuleSet};
use crate::review::{ReviewDecision, Verdict, check_corrected};

/// Publishes decisions to `kafka.decision_topic`, keyed by customer so one
/// customer's decisions stay in order.
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
}

impl Publisher {
    pub fn new(cfg: &KafkaConfig) -> Result<Publisher, rdkafka::error::KafkaError> {
        Ok(Publisher {
            producer: crate::kafka::producer_config(cfg, false).create()?,
            topic: cfg.decision_topic.clone(),
        })
    }

    /// Sends one decision and waits for the broker's acknowledgement.
    pub async fn publish(
        &self,
        d: &ReviewDecision,
        customer_id: &str,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let (key, value) = d.to_message(customer_id);
        let rec = FutureRecord::to(&self.topic).key(&key).payload(&value);
        self.producer
            .send(rec, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

/// Corrected values as typed by a person (`field=value`), made JSON of each
/// field's type: numbers for coordinates and the quality score, true/false
/// for the review flag, text otherwise. Empty values are left out.
pub fn corrected_from_text(pairs: &[(String, String)]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (name, text) in pairs {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let col = Column::parse(name).ok_or_else(|| format!("`{name}` is not a field"))?;
        let v = match col {
            Column::GeoLat | Column::GeoLon | Column::QualityScore => {
                let f: f64 = text
                    .parse()
                    .map_err(|_| format!("{name}: `{text}` is not a number"))?;
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{name}: `{text}` is not a number"))?
            }
            Column::ReviewFlag => match text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(format!("{name}: `{text}` is not true or false")),
            },
            _ => Value::String(text.to_string()),
        };
        out.insert(name.clone(), v);
    }
    Ok(out)
}

/// What a reviewer asks for.
pub struct Request<'a> {
    pub verdict: Verdict,
    /// For `correct`: the values as typed.
    pub set: &'a [(String, String)],
    pub reviewer: &'a str,
    pub comment: Option<String>,
}

/// The decision to publish for `item`, or why none may be.
pub fn build(
    item: &Item,
    req: Request<'_>,
    rules: &RuleSet,
    today: NaiveDate,
) -> Result<ReviewDecision, String> {
    if item.status != "open" {
        return Err(format!(
            "the item is {}, not open: there is nothing to decide",
            item.status
        ));
    }
    let corrected = match req.verdict {
        Verdict::Correct => {
            let map = corrected_from_text(req.set)?;
            if map.is_empty() {
                return Err("a correction needs at least one corrected value".into());
            }
            let dt = DataType::parse(&item.data_type)
                .ok_or_else(|| format!("unknown data type {}", item.data_type))?;
            check_corrected(&map, dt, rules, today)?;
            Some(map)
        }
        Verdict::Approve | Verdict::Reject => None,
    };
    let d = ReviewDecision::new(
        &item.event_id,
        req.verdict,
        corrected,
        req.reviewer,
        req.comment,
    );
    d.validate()?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(status: &str) -> Item {
        Item {
            event_id: "e1".into(),
            customer_id: "C1".into(),
            data_type: "id_card".into(),
            region_code: "320102".into(),
            reason: "flagged".into(),
            priority: "high".into(),
            status: status.into(),
            superseded_by: None,
            row_version: Some(1),
            proposed: Map::new(),
            current: None,
            details: Vec::new(),
            governed_at: None,
            created_at: None,
            decided_by: None,
            decided_at: None,
            decision: None,
            comment: None,
        }
    }

    fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn typed_values_become_json_of_the_fields_type() {
        let m = corrected_from_text(&set(&[
            ("quality_score", "0.9"),
            ("review_flag", "false"),
            ("id_card", " 11010519491231002X "),
            ("phone", ""),
        ]))
        .unwrap();
        assert_eq!(m["quality_score"], serde_json::json!(0.9));
        assert_eq!(m["review_flag"], Value::Bool(false));
        assert_eq!(m["id_card"], "11010519491231002X");
        assert!(!m.contains_key("phone"));
        assert!(corrected_from_text(&set(&[("nope", "1")])).is_err());
        assert!(corrected_from_text(&set(&[("geo_lat", "north")])).is_err());
        assert!(corrected_from_text(&set(&[("review_flag", "yes")])).is_err());
    }

    fn decide(
        status: &str,
        verdict: Verdict,
        pairs: &[(&str, &str)],
    ) -> Result<ReviewDecision, String> {
        let s = set(pairs);
        let req = Request {
            verdict,
            set: &s,
            reviewer: "wang.li",
            comment: Some("ok".into()),
        };
        let today = NaiveDate::from_ymd_opt(2024, 1, 15).unwrap();
        build(&item(status), req, &RuleSet::default(), today)
    }

    #[test]
    fn a_decision_is_refused_for_a_closed_item_or_a_failing_correction() {
        let d = decide("open", Verdict::Approve, &[]).unwrap();
        assert_eq!(
            (d.reviewer.as_str(), d.decision),
            ("wang.li", Verdict::Approve)
        );
        assert_eq!(d.comment.as_deref(), Some("ok"));
        assert!(d.corrected.is_none());
        let e = decide("approved", Verdict::Approve, &[]).unwrap_err();
        assert!(e.contains("approved, not open"), "{e}");

        let e = decide(
            "open",
            Verdict::Correct,
            &[("id_card", "110105194912310021")],
        )
        .unwrap_err();
        assert!(e.contains("GB 11643"), "{e}");
        let d = decide(
            "open",
            Verdict::Correct,
            &[("id_card", "11010519491231002X")],
        )
        .unwrap();
        assert_eq!(d.corrected.unwrap()["id_card"], "11010519491231002X");
        let e = decide("open", Verdict::Correct, &[]).unwrap_err();
        assert!(e.contains("at least one"), "{e}");
    }
}
