//! The console's view of the review state in the database: the items and
//! their decision history, read through [`crate::sink::Database`]. The one
//! place that knows how the stored rows map to what the pages show, so a
//! change of the database's review API touches this file only.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::sink::{Database, SinkResult, StoredDecision, StoredReviewItem};

/// A review item as the console shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub event_id: String,
    pub customer_id: String,
    pub data_type: String,
    pub region_code: String,
    /// `flagged`, `check_contradiction` or `conflict`.
    pub reason: String,
    /// `high`, `medium` or `low`.
    pub priority: String,
    pub status: String,
    pub superseded_by: Option<String>,
    /// The row's version when the item was raised.
    pub row_version: Option<i64>,
    /// What the event would write, by logical field.
    pub proposed: Map<String, Value>,
    /// The row's fields when the item was raised (`None`: no row).
    pub current: Option<Map<String, Value>>,
    /// govsync's reasons for sending the record to review.
    pub details: Vec<String>,
    pub governed_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision: Option<String>,
    pub comment: Option<String>,
}

/// A decision on an item as the applier recorded it, applied or refused
/// (the sink's own type: nothing to adapt).
pub type DecisionRecord = StoredDecision;

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// govsync's reasons: a JSON array of strings (anything else is shown as
/// it is).
fn details(text: &str) -> Vec<String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        _ if text.trim().is_empty() => Vec::new(),
        _ => vec![text.to_string()],
    }
}

impl From<StoredReviewItem> for Item {
    fn from(i: StoredReviewItem) -> Item {
        Item {
            proposed: object(&i.proposed),
            current: i.current_row.as_deref().map(object),
            details: details(&i.details),
            event_id: i.event_id,
            customer_id: i.customer_id,
            data_type: i.data_type,
            region_code: i.region_code,
            reason: i.reason,
            priority: i.priority,
            status: i.status,
            superseded_by: i.superseded_by,
            row_version: i.row_version,
            governed_at: i.governed_at,
            created_at: i.created_at,
            decided_by: i.decided_by,
            decided_at: i.decided_at,
            decision: i.decision,
            comment: i.comment,
        }
    }
}

/// Items of `status` (all when `None`), oldest first.
pub async fn items(db: &dyn Database, status: Option<&str>) -> SinkResult<Vec<Item>> {
    Ok(db
        .review_items(status)
        .await?
        .into_iter()
        .map(Item::from)
        .collect())
}

/// One item by its event id.
pub async fn item(db: &dyn Database, event_id: &str) -> SinkResult<Option<Item>> {
    Ok(db.review_item(event_id).await?.map(Item::from))
}

/// The decisions the applier recorded for an item, applied and refused,
/// in the order applied.
pub async fn decisions(db: &dyn Database, event_id: &str) -> SinkResult<Vec<DecisionRecord>> {
    db.review_decisions(event_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_a_list_of_reasons() {
        assert_eq!(details(r#"["a","b"]"#), vec!["a", "b"]);
        assert_eq!(details(r#"[1]"#), vec!["1"]);
        assert_eq!(details("plain"), vec!["plain"]);
        assert!(details("").is_empty());
        assert!(object("[1]").is_empty());
    }
}
