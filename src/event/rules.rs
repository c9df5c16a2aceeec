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
use super::model::{CheckResult, DataType, Event, FormatValidation, OperationType, Priority};
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

fn rule(field: impl Into<String>, message: impl Into<String>) -> RuleError {
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

    // Target fields: known columns, inside the data type's allow-list.
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

    let mut flag_reasons = Vec::new();
    let mut hold_reasons = Vec::new();
    if op == OperationType::FlagForReview {
        flag_reasons.push("the governance engine asked for review (flag_for_review)".to_string());
    } else if e.sync_operation.requires_manual_review == Some(true) {
        flag_reasons.push("the governance engine asked for manual review".to_string());
    }

    let g = &e.governance_result;
    let o = &e.original_data;
    let mut seen_values = Vec::new();
    let mut data_value: Option<(Column, Value)> = None;
    match e.data_type {
        DataType::Address => {
            let std_addr = g.standardized_address.as_deref().unwrap_or_default();
            address::check_levels(std_addr).map_err(|m| {
                rule(
                    "governance_result.standardized_address",
                    format!("the standardised address {m}"),
                )
            })?;
            if let Some(geo) = &g.geocoding_result
                && let (Some(lat), Some(lon)) = (geo.latitude, geo.longitude)
                && !address::in_china(lat, lon)
            {
                return Err(rule(
                    "governance_result.geocoding_result",
                    format!("({lat}, {lon}) is outside China's bounds"),
                ));
            }
            if let Some(a) = &o.address {
                seen_values.push((Column::Address, Value::Text(a.clone())));
            }
            data_value = Some((Column::Address, Value::Text(std_addr.trim().to_string())));
        }
        DataType::IdCard => {
            let id = o
                .id_card
                .as_deref()
                .unwrap_or_default()
                .trim()
                .to_ascii_uppercase();
            let county = if rules.id_card_region_match {
                e.county_code.as_deref()
            } else {
                None
            };
            let findings =
                idcard::check(&id, county, governed_at.date_naive(), rules.id_card_max_age);
            let engine_passed = g.checksum_validation == Some(CheckResult::Passed)
                && g.format_check != Some(CheckResult::Failed);
            if !engine_passed && op != OperationType::FlagForReview {
                return Err(rule(
                    "governance_result.checksum_validation",
                    format!(
                        "the engine found the number invalid, so the operation must be flag_for_review, not {}",
                        op.as_str()
                    ),
                ));
            }
            let found: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
            if engine_passed && !findings.is_empty() {
                hold_reasons.push(format!(
                    "the engine says the ID number is valid but govsync's check disagrees: {}",
                    found.join("; ")
                ));
            } else if !engine_passed && !found.is_empty() {
                flag_reasons.push(format!(
                    "govsync's check of the ID number: {}",
                    found.join("; ")
                ));
            } else if !engine_passed {
                hold_reasons.push(
                    "the engine says the ID number is invalid but it passes govsync's check".into(),
                );
            }
            if findings.contains(&idcard::IdFinding::Legacy15)
                && hold_reasons.is_empty()
                && flag_reasons.is_empty()
            {
                hold_reasons.push("15-digit legacy number: not applied".into());
            }
            if let Some(corr) = &g.suggested_correction {
                let corr_findings = idcard::check(
                    corr,
                    county,
                    governed_at.date_naive(),
                    rules.id_card_max_age,
                );
                let note = if corr_findings.is_empty() {
                    "passes govsync's check".to_string()
                } else {
                    let f: Vec<String> = corr_findings.iter().map(|f| f.to_string()).collect();
                    format!("fails govsync's check: {}", f.join("; "))
                };
                let reason = format!("suggested correction (never applied automatically) {note}");
                if op == OperationType::FlagForReview || !flag_reasons.is_empty() {
                    flag_reasons.push(reason);
                } else {
                    hold_reasons.push(reason);
                }
            }
            seen_values.push((Column::IdCard, Value::Text(id.clone())));
            data_value = Some((Column::IdCard, Value::Text(id)));
        }
        DataType::Phone => {
            let raw = o.phone.as_deref().unwrap_or_default();
            let checked = phone::normalize_mobile(raw);
            let engine_valid = g.format_validation != Some(FormatValidation::Invalid);
            if !engine_valid && op != OperationType::FlagForReview {
                return Err(rule(
                    "governance_result.format_validation",
                    format!(
                        "the engine found the number invalid, so the operation must be flag_for_review, not {}",
                        op.as_str()
                    ),
                ));
            }
            seen_values.push((Column::Phone, Value::Text(raw.to_string())));
            match checked {
                Ok(national) => data_value = Some((Column::Phone, Value::Text(national))),
                Err(why) if engine_valid => hold_reasons.push(format!(
                    "the engine says the phone number is valid but govsync's check disagrees: {why}"
                )),
                Err(why) => {
                    flag_reasons.push(format!("govsync's check of the phone number: {why}"))
                }
            }
        }
    }

    let disposition = if !hold_reasons.is_empty() {
        hold_reasons.extend(flag_reasons);
        Disposition::Hold(hold_reasons)
    } else if !flag_reasons.is_empty() {
        Disposition::Flag(flag_reasons)
    } else {
        Disposition::Apply
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
        let v = match col {
            Column::Address | Column::IdCard | Column::Phone => match &data_value {
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
        };
        match v {
            Some(v) => writes.push((col, v)),
            None => {
                return Err(rule(
                    "sync_operation.target_fields",
                    format!("`{col}` is a target but the event carries no value for it"),
                ));
            }
        }
    }

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
