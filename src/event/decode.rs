//! Bytes → [`Event`]: the structural half of the contract.
//!
//! Everything here mirrors `schemas/governance-event.v1.schema.json`; the
//! tests in tests/contract/agreement.rs feed both the same valid
//! and mutated events and requires identical verdicts. Business rules
//! (check digits, allow-lists, dates that exist) are *not* structural and
//! live in [`super::rules`].

use serde::Deserialize;

use super::model::{DataType, Event, ObjectOnly};

/// Why a message could not be decoded into an [`Event`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("message has no value (tombstone)")]
    Empty,
    #[error("message is not UTF-8 (invalid byte at offset {0})")]
    NotUtf8(usize),
    #[error("message is not JSON: {0}")]
    NotJson(String),
    #[error("unsupported schema_version {0}; this govsync reads version 1")]
    UnsupportedVersion(String),
    #[error("{path}: {message}")]
    Schema { path: String, message: String },
}

impl DecodeError {
    /// The error class written to the dead-letter headers and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Empty | DecodeError::NotUtf8(_) | DecodeError::NotJson(_) => "malformed",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
            DecodeError::Schema { .. } => "schema",
        }
    }

    fn schema(path: impl Into<String>, message: impl Into<String>) -> Self {
        DecodeError::Schema {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Decodes one Kafka message value.
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Event, DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::NotUtf8(e.valid_up_to()))?;
    let mut de = serde_json::Deserializer::from_str(text);
    // ObjectOnly: serde's derive would also take an array, field by position.
    match Event::deserialize(ObjectOnly(&mut de)) {
        Ok(event) => {
            // Anything but whitespace after the object: not one JSON text.
            de.end().map_err(|e| DecodeError::NotJson(e.to_string()))?;
            check_structure(&event)?;
            Ok(event)
        }
        // Again, tracking the path (which costs on every field): the error
        // then names the field.
        Err(plain) => {
            let mut de = serde_json::Deserializer::from_str(text);
            match serde_path_to_error::deserialize::<_, Event>(ObjectOnly(&mut de)) {
                Err(err) => Err(classify_serde_error(text, err)),
                Ok(_) => Err(DecodeError::schema("$", plain.to_string())),
            }
        }
    }
}

/// Turns a serde failure into the most useful class: not JSON at all, a
/// version we do not read, or a schema violation naming the field.
fn classify_serde_error(
    text: &str,
    err: serde_path_to_error::Error<serde_json::Error>,
) -> DecodeError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return DecodeError::NotJson(e.to_string()),
    };
    if let Some(obj) = value.as_object()
        && let Some(v) = obj.get("schema_version")
        && v.as_f64() != Some(1.0)
    {
        return DecodeError::UnsupportedVersion(truncate(&v.to_string(), 40));
    }
    if !value.is_object() {
        return DecodeError::schema("$", "the event must be a JSON object");
    }
    let path = err.path().to_string();
    let inner = err.into_inner().to_string();
    // serde_json appends " at line L column C"; the path says more.
    let message = match inner.rfind(" at line ") {
        Some(i) => inner[..i].to_string(),
        None => inner,
    };
    let path = if path == "." { "$".to_string() } else { path };
    DecodeError::schema(path, message)
}

/// The data type and region of an event that broke the schema elsewhere,
/// where they can be read and are themselves valid (they become metric
/// labels and dead-letter headers, so nothing else is taken).
pub fn labels(bytes: &[u8]) -> (Option<DataType>, Option<String>) {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(bytes)
    else {
        return (None, None);
    };
    let data_type = obj
        .get("data_type")
        .and_then(|v| v.as_str())
        .and_then(DataType::parse);
    let region = obj
        .get("region_code")
        .and_then(|v| v.as_str())
        .filter(|r| matches(Pat::Digits(2, 6), r))
        .map(str::to_string);
    (data_type, region)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

// --- structural checks (mirror of the JSON Schema) -------------------------

/// Patterns used by the schema, as predicates.
#[derive(Clone, Copy, Debug)]
enum Pat {
    /// `^[A-Za-z0-9][A-Za-z0-9._:-]*$`
    Ident,
    /// `^[0-9]{min,max}$`
    Digits(usize, usize),
    /// RFC 3339 date-time with offset.
    DateTime,
    /// `YYYY-MM-DD HH:MM:SS` or RFC 3339, offset optional.
    LooseDateTime,
    /// `YYYY-MM-DD`
    Date,
    /// `^[a-z][a-z0-9_]*$`
    Snake,
    /// No control characters U+0000..U+001F.
    Text,
}

fn matches(p: Pat, s: &str) -> bool {
    let b = s.as_bytes();
    match p {
        Pat::Ident => {
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
        }
        Pat::Digits(min, max) => (min..=max).contains(&b.len()) && b.iter().all(u8::is_ascii_digit),
        Pat::Date => is_date(b),
        Pat::DateTime => is_datetime(b, b'T', true),
        Pat::LooseDateTime => is_datetime(b, b'T', false) || is_datetime(b, b' ', false),
        Pat::Snake => {
            !b.is_empty()
                && b[0].is_ascii_lowercase()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        }
        Pat::Text => !s.chars().any(|c| (c as u32) < 0x20),
    }
}

fn digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

fn is_date(b: &[u8]) -> bool {
    b.len() == 10
        && digits(&b[0..4])
        && b[4] == b'-'
        && digits(&b[5..7])
        && b[7] == b'-'
        && digits(&b[8..10])
}

/// `date SEP HH:MM:SS(.f{1,9})?(Z|±HH:MM)` with the offset required or optional.
fn is_datetime(b: &[u8], sep: u8, offset_required: bool) -> bool {
    if b.len() < 19 || !is_date(&b[0..10]) || b[10] != sep {
        return false;
    }
    let t = &b[11..19];
    if !(digits(&t[0..2]) && t[2] == b':' && digits(&t[3..5]) && t[5] == b':' && digits(&t[6..8])) {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        rest = &rest[1 + n..];
    }
    match rest {
        [] => !offset_required,
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => digits(&[*h1, *h2, *m1, *m2]),
        _ => false,
    }
}

struct Checker {
    error: Option<DecodeError>,
}

impl Checker {
    fn fail(&mut self, path: &str, message: String) {
        if self.error.is_none() {
            self.error = Some(DecodeError::schema(path, message));
        }
    }

    fn string(&mut self, path: &str, s: &str, min: usize, max: usize, pat: Pat) {
        let n = s.chars().count();
        if n < min {
            self.fail(path, format!("must be at least {min} characters long"));
        } else if n > max {
            self.fail(
                path,
                format!("is {n} characters long, the maximum is {max}"),
            );
        } else if !matches(pat, s) {
            let what = match pat {
                Pat::Ident => {
                    "letters, digits and . _ : - (starting with a letter or digit)".to_string()
                }
                Pat::Digits(a, b) if a == b => format!("exactly {a} digits"),
                Pat::Digits(a, b) => format!("{a} to {b} digits"),
                Pat::DateTime => {
                    "an RFC 3339 date-time with offset, e.g. 2024-01-15T10:20:00+08:00".into()
                }
                Pat::LooseDateTime => "a date-time like 2024-01-10 14:30:00 or RFC 3339".into(),
                Pat::Date => "a date like 2024-01-15".into(),
                Pat::Snake => "lower-case letters, digits and _".into(),
                Pat::Text => "text without control characters".into(),
            };
            self.fail(path, format!("must be {what}"));
        }
    }

    fn opt_string(&mut self, path: &str, s: &Option<String>, min: usize, max: usize, pat: Pat) {
        if let Some(s) = s {
            self.string(path, s, min, max, pat);
        }
    }

    fn number(&mut self, path: &str, v: Option<f64>, min: f64, max: f64) {
        if let Some(v) = v
            && !(min..=max).contains(&v)
        {
            self.fail(path, format!("{v} is outside [{min}, {max}]"));
        }
    }

    fn string_list(
        &mut self,
        path: &str,
        v: &Option<Vec<String>>,
        max_items: usize,
        max_len: usize,
        pat: Pat,
    ) {
        if let Some(items) = v {
            if items.len() > max_items {
                self.fail(
                    path,
                    format!("has {} items, the maximum is {max_items}", items.len()),
                );
            }
            for (i, s) in items.iter().enumerate() {
                self.string(&format!("{path}[{i}]"), s, 0, max_len, pat);
            }
        }
    }

    fn required<T>(&mut self, path: &str, v: &Option<T>, why: &str) {
        if v.is_none() {
            self.fail(path, format!("is required {why}"));
        }
    }
}

/// Structural limits, shared with the schema document.
pub mod limits {
    pub const ID_MAX: usize = 64;
    pub const BATCH_ID_MAX: usize = 128;
    pub const ADDRESS_MAX: usize = 500;
    pub const NAME_MAX: usize = 100;
    pub const SHORT_MAX: usize = 64;
    pub const CODE_MAX: usize = 32;
    pub const LIST_MAX: usize = 50;
    pub const LIST_ITEM_MAX: usize = 500;
    pub const TARGET_FIELDS_MAX: usize = 16;
}

fn check_structure(e: &Event) -> Result<(), DecodeError> {
    use limits::*;
    let mut c = Checker { error: None };
    if e.schema_version.0 != 1.0 {
        return Err(DecodeError::UnsupportedVersion(
            e.schema_version.0.to_string(),
        ));
    }
    c.string("event_id", &e.event_id, 1, ID_MAX, Pat::Ident);
    c.opt_string("batch_id", &e.batch_id, 1, BATCH_ID_MAX, Pat::Ident);
    c.string("region_code", &e.region_code, 2, 6, Pat::Digits(2, 6));
    c.opt_string("county_code", &e.county_code, 6, 6, Pat::Digits(6, 6));
    c.string("governed_at", &e.governed_at, 20, 40, Pat::DateTime);
    c.string("customer_id", &e.customer_id, 1, ID_MAX, Pat::Ident);

    let o = &e.original_data;
    c.opt_string(
        "original_data.address",
        &o.address,
        0,
        ADDRESS_MAX,
        Pat::Text,
    );
    c.opt_string("original_data.id_card", &o.id_card, 0, CODE_MAX, Pat::Text);
    c.opt_string("original_data.phone", &o.phone, 0, CODE_MAX, Pat::Text);
    c.opt_string("original_data.name", &o.name, 0, NAME_MAX, Pat::Text);
    c.opt_string(
        "original_data.last_update",
        &o.last_update,
        19,
        40,
        Pat::LooseDateTime,
    );
    c.opt_string(
        "original_data.data_source",
        &o.data_source,
        0,
        SHORT_MAX,
        Pat::Text,
    );
    c.number("original_data.quality_score", o.quality_score, 0.0, 1.0);

    let g = &e.governance_result;
    c.opt_string(
        "governance_result.standardized_address",
        &g.standardized_address,
        1,
        ADDRESS_MAX,
        Pat::Text,
    );
    c.number(
        "governance_result.confidence_score",
        g.confidence_score,
        0.0,
        1.0,
    );
    c.opt_string(
        "governance_result.validation_status",
        &g.validation_status,
        1,
        CODE_MAX,
        Pat::Snake,
    );
    if let Some(geo) = &g.geocoding_result {
        c.number(
            "governance_result.geocoding_result.latitude",
            geo.latitude,
            -90.0,
            90.0,
        );
        c.number(
            "governance_result.geocoding_result.longitude",
            geo.longitude,
            -180.0,
            180.0,
        );
        c.opt_string(
            "governance_result.geocoding_result.accuracy",
            &geo.accuracy,
            1,
            CODE_MAX,
            Pat::Snake,
        );
    }
    c.opt_string(
        "governance_result.reference_source",
        &g.reference_source,
        0,
        SHORT_MAX * 2,
        Pat::Text,
    );
    c.string_list(
        "governance_result.quality_improvements",
        &g.quality_improvements,
        LIST_MAX,
        LIST_ITEM_MAX,
        Pat::Text,
    );
    if let Some(r) = &g.region_validation {
        c.opt_string(
            "governance_result.region_validation.region_code",
            &r.region_code,
            2,
            6,
            Pat::Digits(2, 6),
        );
        c.opt_string(
            "governance_result.region_validation.region_name",
            &r.region_name,
            0,
            SHORT_MAX * 2,
            Pat::Text,
        );
        c.opt_string(
            "governance_result.region_validation.status",
            &r.status,
            1,
            CODE_MAX,
            Pat::Snake,
        );
    }
    if let Some(b) = &g.birth_date_analysis {
        c.opt_string(
            "governance_result.birth_date_analysis.extracted_date",
            &b.extracted_date,
            10,
            10,
            Pat::Date,
        );
        c.number(
            "governance_result.birth_date_analysis.age",
            b.age.map(|a| a.0 as f64),
            0.0,
            200.0,
        );
        c.opt_string(
            "governance_result.birth_date_analysis.reasonableness",
            &b.reasonableness,
            1,
            CODE_MAX,
            Pat::Snake,
        );
    }
    c.string_list(
        "governance_result.issues",
        &g.issues,
        LIST_MAX,
        LIST_ITEM_MAX,
        Pat::Text,
    );
    c.opt_string(
        "governance_result.suggested_correction",
        &g.suggested_correction,
        0,
        CODE_MAX,
        Pat::Text,
    );
    c.number("governance_result.quality_score", g.quality_score, 0.0, 1.0);
    c.number("governance_result.confidence", g.confidence, 0.0, 1.0);
    c.opt_string(
        "governance_result.risk_level",
        &g.risk_level,
        1,
        CODE_MAX,
        Pat::Snake,
    );
    if let Some(ci) = &g.carrier_info {
        if ci.len() > 20 {
            c.fail(
                "governance_result.carrier_info",
                format!("has {} properties, the maximum is 20", ci.len()),
            );
        }
        for key in ["carrier", "number_type", "region"] {
            match ci.get(key) {
                None => {}
                Some(serde_json::Value::String(s)) => c.string(
                    &format!("governance_result.carrier_info.{key}"),
                    s,
                    0,
                    SHORT_MAX,
                    Pat::Text,
                ),
                Some(_) => c.fail(
                    &format!("governance_result.carrier_info.{key}"),
                    "must be a string".into(),
                ),
            }
        }
    }
    c.string_list(
        "governance_result.risk_indicators",
        &g.risk_indicators,
        LIST_MAX,
        LIST_ITEM_MAX,
        Pat::Text,
    );

    let s = &e.sync_operation;
    if s.target_fields.is_empty() {
        c.fail(
            "sync_operation.target_fields",
            "must name at least one column".into(),
        );
    }
    if s.target_fields.len() > TARGET_FIELDS_MAX {
        c.fail(
            "sync_operation.target_fields",
            format!(
                "has {} items, the maximum is {TARGET_FIELDS_MAX}",
                s.target_fields.len()
            ),
        );
    }
    for (i, f) in s.target_fields.iter().enumerate() {
        c.string(
            &format!("sync_operation.target_fields[{i}]"),
            f,
            1,
            SHORT_MAX,
            Pat::Snake,
        );
        if s.target_fields[..i].contains(f) {
            c.fail(
                &format!("sync_operation.target_fields[{i}]"),
                format!("`{f}` is listed twice"),
            );
        }
    }
    c.string_list(
        "sync_operation.validation_rules",
        &s.validation_rules,
        32,
        SHORT_MAX,
        Pat::Snake,
    );

    // Conditional requirements (the schema's if/then per data_type).
    match e.data_type {
        DataType::Address => {
            c.required("original_data.address", &o.address, "for data_type address");
            c.required(
                "governance_result.standardized_address",
                &g.standardized_address,
                "for data_type address",
            );
        }
        DataType::IdCard => {
            c.required("original_data.id_card", &o.id_card, "for data_type id_card");
            c.required(
                "governance_result.checksum_validation",
                &g.checksum_validation,
                "for data_type id_card",
            );
        }
        DataType::Phone => c.required("original_data.phone", &o.phone, "for data_type phone"),
    }
    match c.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_schema_error_keeps_the_labels_it_can_read() {
        let bad = br#"{"schema_version":1,"data_type":"phone","region_code":"3201","event_id":7}"#;
        assert!(matches!(
            decode(bad, 1 << 20),
            Err(DecodeError::Schema { .. })
        ));
        assert_eq!(
            labels(bad),
            (Some(DataType::Phone), Some("3201".to_string()))
        );
        let odd = br#"{"data_type":"fax","region_code":"32 01; DROP"}"#;
        assert_eq!(labels(odd), (None, None), "only valid values become labels");
        assert_eq!(labels(b"[1,2]"), (None, None));
    }

    use super::*;

    #[test]
    fn datetime_patterns() {
        assert!(matches(Pat::DateTime, "2024-01-15T10:20:00+08:00"));
        assert!(matches(Pat::DateTime, "2024-01-15T10:20:00.123Z"));
        assert!(!matches(Pat::DateTime, "2024-01-15 10:20:00"));
        assert!(!matches(Pat::DateTime, "2024-01-15T10:20:00"));
        assert!(matches(Pat::LooseDateTime, "2024-01-10 14:30:00"));
        assert!(matches(Pat::LooseDateTime, "2024-01-10T14:30:00+08:00"));
        assert!(!matches(Pat::LooseDateTime, "2024-01-10"));
        assert!(!matches(Pat::DateTime, "2024-01-15T10:20:00.+08:00"));
    }

    #[test]
    fn classes_of_broken_messages() {
        assert_eq!(decode(b"", 100).unwrap_err().class(), "malformed");
        assert_eq!(decode(&[0xff, 0xfe], 100).unwrap_err().class(), "malformed");
        assert_eq!(decode(b"{not json", 100).unwrap_err().class(), "malformed");
        assert_eq!(decode(&[b' '; 200], 100).unwrap_err().class(), "too_large");
        assert_eq!(
            decode(br#"{"schema_version": 2, "x": 1}"#, 100)
                .unwrap_err()
                .class(),
            "unsupported_version"
        );
        let e = decode(br#"[1,2]"#, 100).unwrap_err();
        assert_eq!(e.class(), "schema");
    }
}
