//! A reviewer's decision as it travels on the decision topic
//! (schemas/review-decision.v1.schema.json), and the rules a corrected value
//! passes before it may be written.
//!
//! The console (`govsync review serve`) and `govsync review decide` build
//! and publish decisions; the applier (`super::applier`, inside
//! `govsync run`) decodes them and writes them through the database.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Column, DataType, RuleSet, Value, address, idcard, phone};

/// What the reviewer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
    Correct,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
            Verdict::Correct => "correct",
        }
    }

    /// The item's status once this decision is applied.
    pub fn status(self) -> &'static str {
        match self {
            Verdict::Approve => "approved",
            Verdict::Reject => "rejected",
            Verdict::Correct => "corrected",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "approve" => Some(Verdict::Approve),
            "reject" => Some(Verdict::Reject),
            "correct" => Some(Verdict::Correct),
            _ => None,
        }
    }
}

/// One decision message (schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecision {
    pub schema_version: u32,
    pub decision_id: String,
    pub event_id: String,
    pub decision: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected: Option<serde_json::Map<String, serde_json::Value>>,
    pub reviewer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub decided_at: DateTime<Utc>,
}

impl ReviewDecision {
    /// A new decision with a fresh id, decided now.
    pub fn new(
        event_id: &str,
        decision: Verdict,
        corrected: Option<serde_json::Map<String, serde_json::Value>>,
        reviewer: &str,
        comment: Option<String>,
    ) -> Self {
        ReviewDecision {
            schema_version: 1,
            decision_id: uuid::Uuid::new_v4().to_string(),
            event_id: event_id.to_string(),
            decision,
            corrected,
            reviewer: reviewer.to_string(),
            comment: comment.filter(|c| !c.trim().is_empty()),
            decided_at: Utc::now(),
        }
    }

    /// Decodes a message and checks what the schema says; the error says
    /// what is wrong (it is recorded as the decision's refusal).
    pub fn decode(bytes: &[u8]) -> Result<ReviewDecision, String> {
        let d: ReviewDecision = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a review decision (schema v1): {e}"))?;
        d.validate()?;
        Ok(d)
    }

    /// The schema's rules that serde does not check.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema_version != 1 {
            return Err(format!(
                "schema_version {} is not supported (1 is)",
                self.schema_version
            ));
        }
        for (name, v, max) in [
            ("decision_id", &self.decision_id, 64),
            ("event_id", &self.event_id, 64),
            ("reviewer", &self.reviewer, 200),
        ] {
            let n = v.chars().count();
            if v.trim().is_empty() || n > max {
                return Err(format!("{name} must be 1 to {max} characters"));
            }
        }
        if self
            .comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > 2000)
        {
            return Err("comment is longer than 2000 characters".into());
        }
        match (self.decision, &self.corrected) {
            (Verdict::Correct, None) => {
                return Err("a correct decision needs corrected values".into());
            }
            (Verdict::Correct, Some(m)) if m.is_empty() => {
                return Err("corrected is empty".into());
            }
            (Verdict::Approve | Verdict::Reject, Some(_)) => {
                return Err(format!(
                    "corrected values belong to correct decisions only, not {}",
                    self.decision.as_str()
                ));
            }
            _ => {}
        }
        if let Some(m) = &self.corrected {
            for k in m.keys() {
                if Column::parse(k).is_none() {
                    return Err(format!("corrected names `{k}`, which is not a field"));
                }
            }
        }
        Ok(())
    }

    /// The message's value (JSON) and key (the customer, so one customer's
    /// decisions stay in order).
    pub fn to_message(&self, customer_id: &str) -> (Vec<u8>, Vec<u8>) {
        (
            customer_id.as_bytes().to_vec(),
            serde_json::to_vec(self).expect("a decision serializes"),
        )
    }
}

/// A corrected value set, checked with the rules governance results pass:
/// each field must be one the item's data type may write (its allow-list),
/// of the field's type, and an ID number must pass GB 11643, a phone number
/// must be a valid mainland mobile number (stored normalised), an address
/// must name its levels. Returns the values to write, or why not.
pub fn check_corrected(
    corrected: &serde_json::Map<String, serde_json::Value>,
    data_type: DataType,
    rules: &RuleSet,
    today: NaiveDate,
) -> Result<Vec<(Column, Value)>, String> {
    let allowed = rules
        .allow
        .get(&data_type)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(corrected.len());
    for (name, json) in corrected {
        let col = Column::parse(name).ok_or_else(|| format!("`{name}` is not a field"))?;
        if !allowed.contains(&col) {
            return Err(format!(
                "{name} is not among the fields a {} result may write (rules.allow)",
                data_type.as_str()
            ));
        }
        let value = crate::event::value_from_json(col, json)
            .ok_or_else(|| format!("{name}: not a value this field takes"))?;
        let value = match (col, value) {
            (Column::IdCard, Value::Text(id)) => {
                let findings = idcard::check(&id, None, today, rules.id_card_max_age);
                if let Some(f) = findings.first() {
                    return Err(format!("id_card fails the check: {f}"));
                }
                Value::Text(id.trim().to_ascii_uppercase())
            }
            (Column::Phone, Value::Text(p)) => {
                Value::Text(phone::normalize_mobile(&p).map_err(|e| format!("phone: {e}"))?)
            }
            (Column::Address, Value::Text(a)) => {
                address::check_levels(&a).map_err(|e| format!("address: {e}"))?;
                Value::Text(a)
            }
            (Column::QualityScore, Value::Float(s)) if !(0.0..=1.0).contains(&s) => {
                return Err(format!("quality_score {s} is not between 0 and 1"));
            }
            (_, v) => v,
        };
        out.push((col, value));
    }
    if let (Some(Value::Float(lat)), Some(Value::Float(lon))) = (
        out.iter().find(|(c, _)| *c == Column::GeoLat).map(|x| &x.1),
        out.iter().find(|(c, _)| *c == Column::GeoLon).map(|x| &x.1),
    ) && !address::in_china(*lat, *lon)
    {
        return Err(format!("geo_lat/geo_lon {lat},{lon} is outside China"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(json: serde_json::Value) -> Result<ReviewDecision, String> {
        ReviewDecision::decode(json.to_string().as_bytes())
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "schema_version": 1, "decision_id": "d1", "event_id": "e1",
            "decision": "approve", "reviewer": "wang.li",
            "decided_at": "2024-01-15T16:05:00+08:00"
        })
    }

    #[test]
    fn a_decision_round_trips_and_the_schema_rules_hold() {
        let d = decision(base()).unwrap();
        assert_eq!(d.decision, Verdict::Approve);
        let back = ReviewDecision::decode(&d.to_message("C1").1).unwrap();
        assert_eq!(back, d);

        let mut v = base();
        v["decision"] = "correct".into();
        assert!(decision(v.clone()).unwrap_err().contains("needs corrected"));
        v["corrected"] = serde_json::json!({"nope": 1});
        assert!(decision(v.clone()).unwrap_err().contains("`nope`"));
        let mut v = base();
        v["corrected"] = serde_json::json!({"phone": "13812345678"});
        assert!(decision(v).unwrap_err().contains("correct decisions only"));
        let mut v = base();
        v["schema_version"] = 2.into();
        assert!(decision(v).unwrap_err().contains("schema_version 2"));
        let mut v = base();
        v["extra"] = 1.into();
        assert!(decision(v).unwrap_err().contains("unknown field"));
        let mut v = base();
        v["decision_id"] = "".into();
        assert!(decision(v).unwrap_err().contains("decision_id"));
        assert!(ReviewDecision::decode(b"{").is_err());
    }

    #[test]
    fn corrected_values_pass_the_governance_rules() {
        let rules = RuleSet::default();
        let today = NaiveDate::from_ymd_opt(2024, 1, 15).unwrap();
        let map = |v: serde_json::Value| v.as_object().unwrap().clone();
        let ok = check_corrected(
            &map(
                serde_json::json!({"id_card": "11010519491231002x", "validation_status": "valid"}),
            ),
            DataType::IdCard,
            &rules,
            today,
        )
        .unwrap();
        assert_eq!(
            ok[0],
            (Column::IdCard, Value::Text("11010519491231002X".into()))
        );
        let bad = check_corrected(
            &map(serde_json::json!({"id_card": "110105194912310021"})),
            DataType::IdCard,
            &rules,
            today,
        )
        .unwrap_err();
        assert!(bad.contains("GB 11643"), "{bad}");
        let phone = check_corrected(
            &map(serde_json::json!({"phone": "+86 138-1234-5678"})),
            DataType::Phone,
            &rules,
            today,
        )
        .unwrap();
        assert_eq!(phone[0].1, Value::Text("13812345678".into()));
        assert!(
            check_corrected(
                &map(serde_json::json!({"phone": "12345"})),
                DataType::Phone,
                &rules,
                today
            )
            .is_err()
        );
        let wrong_type = check_corrected(
            &map(serde_json::json!({"id_card": "11010519491231002X"})),
            DataType::Address,
            &rules,
            today,
        )
        .unwrap_err();
        assert!(wrong_type.contains("rules.allow"), "{wrong_type}");
        let outside = check_corrected(
            &map(serde_json::json!({"geo_lat": 48.85, "geo_lon": 2.35})),
            DataType::Address,
            &rules,
            today,
        )
        .unwrap_err();
        assert!(outside.contains("outside China"), "{outside}");
    }
}
