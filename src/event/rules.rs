//! Business rules (DESIGN.md section 4) on a structurally valid [`Event`].
//!
//! The result is a [`Verdict`]:
//! - `Invalid`: the event itself is wrong (a rule the engine must keep):
//!   dead-lettered, never retried.
//! - `Checked` with a [`Disposition`]: `Apply` (write the target fields),
//!   `Flag` (write only the metadata target fields, send to review) or
//!   `Hold` (write nothing, send to review: govsync's own check of the value
//!   contradicts the governance result, or a correction was suggested).

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

use super::columns::{Column, Value};
use super::model::{CheckResult, DataType, Event, OperationType, Priority};
use super::{address, idcard, phone};

/// The rule settings (from `[rules]` in the config).
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Columns each data type may write.
    pub allow: HashMap<DataType, Vec<Column>>,
    /// Offset of `original_data.last_update` values written without one.
    pub local_offset: FixedOffset,
    /// Require an ID number's division code to equal the event's county_code.
    pub id_card_region_match: bool,
    pub id_card_max_age: u32,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet {
            allow: DataType::ALL
                .into_iter()
                .map(|d| (d, Column::default_allow_list(d).to_vec()))
                .collect(),
            local_offset: FixedOffset::east_opt(8 * 3600).expect("valid offset"),
            id_card_region_match: true,
            id_card_max_age: 120,
        }
    }
}

/// A rule violation: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

pub(super) fn rule(field: impl Into<String>, message: impl Into<String>) -> RuleError {
    RuleError {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Write the target fields.
    Apply,
    /// Write only the metadata target fields; send to review with reasons.
    Flag(Vec<String>),
    /// Write nothing; send to review with reasons.
    Hold(Vec<String>),
}

/// A checked event, reduced to what the sink needs.
#[derive(Debug, Clone)]
pub struct Checked {
    pub event_id: String,
    pub customer_id: String,
    pub region_code: String,
    pub data_type: DataType,
    pub operation: OperationType,
    pub priority: Priority,
    pub governed_at: DateTime<Utc>,
    /// The row's last_update as the engine saw it.
    pub seen_last_update: Option<DateTime<Utc>>,
    /// Column values to write, in target_fields order (for `Flag` only the
    /// metadata columns are kept).
    pub writes: Vec<(Column, Value)>,
    /// Every target column's value as the event would write it if applied,
    /// for a record that is not applied as it is (flag, hold); empty when
    /// it equals `writes`. Read it through [`Checked::proposal`].
    pub proposed: Vec<(Column, Value)>,
    /// Data values as the engine read them (merge policy compares the row
    /// against these).
    pub seen_values: Vec<(Column, Value)>,
    /// `name` for inserts.
    pub name: Option<String>,
    pub disposition: Disposition,
    /// The engine's review priority (sync_operation.review_priority), for
    /// the review message even when the column is not a target.
    pub review_priority: Option<super::model::ReviewPriority>,
    /// Quality score after minus before, when both are known.
    pub quality_gain: Option<f64>,
}

impl Checked {
    /// What the event would write were it applied: the review item's
    /// proposal, what approving it writes.
    pub fn proposal(&self) -> &[(Column, Value)] {
        if self.proposed.is_empty() {
            &self.writes
        } else {
            &self.proposed
        }
    }
}

#[derive(Debug, Clone)]
pub enum Verdict {
    Checked(Box<Checked>),
    Invalid(RuleError),
}

/// Microsecond precision: what PostgreSQL, SQLite (as text) and Oracle all
/// store exactly, so the post-commit re-read compares equal.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let micros = t.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(t)
}

/// Parses `2024-01-10 14:30:00` (local offset) or an RFC 3339 time.
pub fn parse_loose_time(s: &str, local: FixedOffset) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(to_micros(t.with_timezone(&Utc)));
    }
    let s = s.replacen('T', " ", 1);
    let naive = NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    local
        .from_local_datetime(&naive)
        .single()
        .map(|t| to_micros(t.with_timezone(&Utc)))
}

/// Applies the business rules to a decoded event.
pub fn check(e: &Event, rules: &RuleSet) -> Verdict {
    match check_inner(e, rules) {
        Ok(c) => Verdict::Checked(Box::new(c)),
        Err(err) => Verdict::Invalid(err),
    }
}

fn check_inner(e: &Event, rules: &RuleSet) -> Result<Checked, RuleError> {
    let (governed_at, seen_last_update) = times(e, rules)?;
    let op = e.sync_operation.operation_type;
    let targets = target_columns(e, rules)?;

    let mut found = Findings::default();
    if op == OperationType::FlagForReview {
        found
            .flag
            .push("the governance engine asked for review (flag_for_review)".to_string());
    } else if e.sync_operation.requires_manual_review == Some(true) {
        found
            .flag
            .push("the governance engine asked for manual review".to_string());
    }
    match e.data_type {
        DataType::Address => address::apply_rules(e, &mut found)?,
        DataType::IdCard => idcard::apply_rules(e, rules, governed_at, &mut found)?,
        DataType::Phone => phone::apply_rules(e, &mut found)?,
    }
    let Findings {
        seen_values,
        data_value,
        flag: flag_reasons,
        hold: mut hold_reasons,
    } = found;

    let disposition = if !hold_reasons.is_empty() {
        hold_reasons.extend(flag_reasons);
        Disposition::Hold(hold_reasons)
    } else if !flag_reasons.is_empty() {
        Disposition::Flag(flag_reasons)
    } else {
        Disposition::Apply
    };

    // What the event would write were it applied (what a reviewer
    // approves), kept only where it differs from what this disposition
    // writes: most records apply, and a batch holds thousands.
    let proposed: Vec<(Column, Value)> = match disposition {
        Disposition::Apply => Vec::new(),
        _ => targets
            .iter()
            .filter_map(|col| {
                column_value(e, *col, &data_value, &Disposition::Apply, governed_at)
                    .map(|v| (*col, v))
            })
            .collect(),
    };
    // The value of each column this disposition writes.
    let mut writes = Vec::with_capacity(targets.len());
    for col in targets {
        let wanted = match &disposition {
            Disposition::Apply => true,
            Disposition::Flag(_) => col.is_metadata(),
            Disposition::Hold(_) => false,
        };
        if !wanted {
            continue;
        }
        match column_value(e, col, &data_value, &disposition, governed_at) {
            Some(v) => writes.push((col, v)),
            None => {
                return Err(rule(
                    "sync_operation.target_fields",
                    format!("`{col}` is a target but the event carries no value for it"),
                ));
            }
        }
    }

    let g = &e.governance_result;
    let o = &e.original_data;
    let after_score = g.quality_score.or(g.confidence_score);
    Ok(Checked {
        event_id: e.event_id.clone(),
        customer_id: e.customer_id.clone(),
        region_code: e.region_code.clone(),
        data_type: e.data_type,
        operation: op,
        priority: e.priority.unwrap_or_default(),
        governed_at,
        seen_last_update,
        writes,
        proposed,
        seen_values,
        name: o.name.clone(),
        disposition,
        review_priority: e.sync_operation.review_priority,
        quality_gain: match (o.quality_score, after_score) {
            (Some(b), Some(a)) => Some(a - b),
            _ => None,
        },
    })
}

/// What a data type's own rules found (see `apply_rules` in address.rs,
/// idcard.rs and phone.rs).
#[derive(Debug, Default)]
pub(super) struct Findings {
    /// The row's values as the engine saw them (merge policy).
    pub seen_values: Vec<(Column, Value)>,
    /// The data value the event would write (address, ID or phone number).
    pub data_value: Option<(Column, Value)>,
    /// Reasons to write only the metadata columns and send to review.
    pub flag: Vec<String>,
    /// Reasons to write nothing and send to review.
    pub hold: Vec<String>,
}

/// `governed_at`, and the row's last update as the engine saw it.
fn times(e: &Event, rules: &RuleSet) -> Result<(DateTime<Utc>, Option<DateTime<Utc>>), RuleError> {
    let governed_at = DateTime::parse_from_rfc3339(&e.governed_at)
        .map_err(|_| {
            rule(
                "governed_at",
                format!("{} is not a real date-time", e.governed_at),
            )
        })?
        .with_timezone(&Utc);
    let governed_at = to_micros(governed_at);
    let seen_last_update = match &e.original_data.last_update {
        Some(s) => Some(parse_loose_time(s, rules.local_offset).ok_or_else(|| {
            rule(
                "original_data.last_update",
                format!("{s} is not a real date-time"),
            )
        })?),
        None => None,
    };
    let op = e.sync_operation.operation_type;
    if op != OperationType::Insert && seen_last_update.is_none() {
        return Err(rule(
            "original_data.last_update",
            format!(
                "is required for operation {} (conflict detection compares against it)",
                op.as_str()
            ),
        ));
    }
    Ok((governed_at, seen_last_update))
}

/// Target fields: known columns, inside the data type's allow-list.
fn target_columns(e: &Event, rules: &RuleSet) -> Result<Vec<Column>, RuleError> {
    let allow = rules
        .allow
        .get(&e.data_type)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut targets = Vec::with_capacity(e.sync_operation.target_fields.len());
    for (i, f) in e.sync_operation.target_fields.iter().enumerate() {
        let field = format!("sync_operation.target_fields[{i}]");
        let col = Column::parse(f)
            .ok_or_else(|| rule(&field, format!("`{f}` is not a column govsync writes")))?;
        if !allow.contains(&col) {
            let names: Vec<&str> = allow.iter().map(|c| c.name()).collect();
            return Err(rule(
                &field,
                format!(
                    "`{f}` is not allowed for data_type {} (allowed: {})",
                    e.data_type,
                    names.join(", ")
                ),
            ));
        }
        targets.push(col);
    }
    Ok(targets)
}

/// The value the event carries for `col`, if any.
fn column_value(
    e: &Event,
    col: Column,
    data_value: &Option<(Column, Value)>,
    disposition: &Disposition,
    governed_at: DateTime<Utc>,
) -> Option<Value> {
    let g = &e.governance_result;
    match col {
        Column::Address | Column::IdCard | Column::Phone => match data_value {
            Some((c, v)) if *c == col => Some(v.clone()),
            _ => None,
        },
        Column::GeoLat => g
            .geocoding_result
            .as_ref()
            .and_then(|x| x.latitude)
            .map(Value::Float),
        Column::GeoLon => g
            .geocoding_result
            .as_ref()
            .and_then(|x| x.longitude)
            .map(Value::Float),
        Column::GeoAccuracy => g
            .geocoding_result
            .as_ref()
            .and_then(|x| x.accuracy.clone())
            .map(Value::Text),
        Column::CarrierInfo => g
            .carrier_info
            .as_ref()
            .map(|m| Value::Text(serde_json::Value::Object(m.clone()).to_string())),
        Column::QualityScore => g.quality_score.or(g.confidence_score).map(Value::Float),
        Column::ValidationStatus => g
            .validation_status
            .clone()
            .or_else(|| g.format_validation.map(|f| format!("{f:?}").to_lowercase()))
            .or_else(|| {
                g.checksum_validation.map(|c| {
                    if c == CheckResult::Passed {
                        "valid"
                    } else {
                        "invalid"
                    }
                    .to_string()
                })
            })
            .map(Value::Text),
        Column::ReviewFlag => Some(Value::Bool(matches!(disposition, Disposition::Flag(_)))),
        Column::ReviewPriority => e
            .sync_operation
            .review_priority
            .map(|p| Value::Text(p.as_str().to_string())),
        Column::LastGovernanceTime => Some(Value::Time(governed_at)),
    }
}
