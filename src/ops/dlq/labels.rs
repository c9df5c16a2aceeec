//! What a dead letter says about itself: the error class, data type,
//! region and time the processor wrote into its headers, each read with a
//! fallback (`unknown`, the key, the message timestamp) when missing.

use chrono::{DateTime, Utc};

use crate::message::RawMessage;
use crate::output::headers;

pub(super) fn header_str<'a>(m: &'a RawMessage, name: &str) -> Option<&'a str> {
    m.header(name).and_then(|v| std::str::from_utf8(v).ok())
}

pub(super) fn class_of(m: &RawMessage) -> String {
    header_str(m, headers::ERROR_CLASS)
        .unwrap_or("unknown")
        .to_string()
}

pub(super) fn data_type_of(m: &RawMessage) -> String {
    header_str(m, headers::DATA_TYPE)
        .unwrap_or("unknown")
        .to_string()
}

/// The region header, else the message key (the region code, when the
/// event could not be read far enough to know it).
pub(super) fn region_of(m: &RawMessage) -> String {
    header_str(m, headers::REGION)
        .map(str::to_string)
        .or_else(|| {
            m.key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .filter(|k| k.len() <= 6 && k.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// When the message was dead-lettered (first failure), else its timestamp.
pub(super) fn dead_lettered_at(m: &RawMessage) -> Option<DateTime<Utc>> {
    header_str(m, headers::FIRST_FAILED_AT)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| m.timestamp_ms.and_then(DateTime::from_timestamp_millis))
}
