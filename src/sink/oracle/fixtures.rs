//! Fixtures shared by the unit tests of the Oracle sink's files: a sample
//! partition, row write and set of SQL texts, and a placeholder parser.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::sql::Sql;
use crate::event::Row;
use crate::sink::PartitionKey;
use crate::sink::plan::RowWrite;

/// The placeholders of a SQL text, in order of appearance.
pub(super) fn placeholders(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_quote = false;
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => in_quote = !in_quote,
            b':' if !in_quote => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                    end += 1;
                }
                out.push(sql[start..end].to_string());
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

pub(super) fn key() -> PartitionKey {
    PartitionKey {
        group: "g".into(),
        topic: "governance.results".into(),
        partition: 3,
    }
}

pub(super) fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(super) fn write(id: &str) -> RowWrite {
    RowWrite {
        customer_id: id.into(),
        name: Some("张三".into()),
        row: Row {
            address: Some("江苏省南京市玄武区中山路123号".into()),
            geo_lat: Some(32.0581),
            geo_lon: Some(118.7969),
            geo_accuracy: Some("building_level".into()),
            id_card: None,
            phone: Some("13812345678".into()),
            carrier_info: Some(r#"{"carrier":"China Mobile"}"#.into()),
            quality_score: Some(0.92),
            validation_status: Some("verified".into()),
            review_flag: Some(true),
            review_priority: None,
            last_governance_time: Some(t("2024-01-15T02:20:00.123456Z")),
            last_update: Some(t("2024-01-10T06:30:00Z")),
            version: 4,
        },
    }
}

pub(super) fn sql() -> Sql {
    Sql::new("customer_profile", Duration::from_millis(2500))
}
