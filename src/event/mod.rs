//! The governance event: wire model, decoding, and business rules.
//!
//! [`decode`] turns bytes into an [`Event`] (structure, mirrored by the JSON
//! Schema in `schemas/`), [`rules::check`] turns an event into a verdict.
//! [`decode_and_check`] does both; the processor and `govsync validate` call it, so
//! their verdicts are the same by construction.

pub mod address;
pub mod columns;
pub mod decode;
pub mod idcard;
pub mod model;
pub mod phone;
pub mod policy;
pub mod rules;

pub use columns::{Column, Row, Value, value_from_json};
pub use decode::{DecodeError, decode};
pub use model::{DataType, Event, OperationType, Priority};
pub use policy::ConflictPolicy;
pub use rules::{Checked, Disposition, RuleError, RuleSet, Verdict};

/// Why a message is dead-lettered before it reaches the database.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Rule(#[from] RuleError),
}

impl Rejection {
    /// The error class of the dead-letter headers and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Rejection::Decode(d) => d.class(),
            Rejection::Rule(_) => "rule",
        }
    }
}

/// A message rejected before the database, with the labels it had.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub rejection: Rejection,
    /// Known when the message decoded but broke a rule.
    pub data_type: Option<DataType>,
    pub region: Option<String>,
}

/// Decodes and checks one message value.
pub fn decode_and_check(
    bytes: &[u8],
    max_bytes: usize,
    rules: &RuleSet,
) -> Result<Checked, Rejected> {
    let event = decode(bytes, max_bytes).map_err(|e| {
        let (data_type, region) = match &e {
            DecodeError::Schema { .. } => decode::labels(bytes),
            _ => (None, None),
        };
        Rejected {
            rejection: Rejection::Decode(e),
            data_type,
            region,
        }
    })?;
    match rules::check(&event, rules) {
        Verdict::Checked(c) => Ok(*c),
        Verdict::Invalid(r) => Err(Rejected {
            rejection: Rejection::Rule(r),
            data_type: Some(event.data_type),
            region: Some(event.region_code),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schema error whose data type and region are readable keeps them
    /// (dead-letter headers, `dlq inspect`, metric labels); before, every
    /// schema error was labelled "unknown".
    #[test]
    fn schema_rejections_carry_the_readable_labels() {
        let mut event: serde_json::Value = serde_json::from_str(include_str!(
            "../../schemas/examples/01-address-update.json"
        ))
        .expect("example event");
        event["priority"] = serde_json::json!("urgent");
        let bytes = serde_json::to_vec(&event).unwrap();
        let r = decode_and_check(&bytes, 1 << 20, &RuleSet::default()).unwrap_err();
        assert_eq!(r.rejection.class(), "schema");
        assert_eq!(r.data_type, Some(DataType::Address));
        assert_eq!(r.region.as_deref(), Some("3201"));
    }
}
