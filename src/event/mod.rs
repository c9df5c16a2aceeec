//! The governance event: wire model, decoding, and business rules.
//!
//! [`decode`] turns bytes into an [`Event`] (structure, mirrored by the JSON
//! Schema in `schemas/`), [`rules::check`] turns an event into a verdict.
//! [`classify`] does both; the processor and `govsync validate` call it, so
//! their verdicts are the same by construction.

pub mod address;
pub mod columns;
pub mod decode;
pub mod idcard;
pub mod model;
pub mod phone;
pub mod rules;

pub use columns::{Column, Row, Value};
pub use decode::{DecodeError, decode};
pub use model::{DataType, Event, OperationType, Priority};
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

/// Decodes and checks one message value.
pub fn classify(bytes: &[u8], max_bytes: usize, rules: &RuleSet) -> Result<Checked, (Rejection, Option<Event>)> {
    let event = decode(bytes, max_bytes).map_err(|e| (Rejection::Decode(e), None))?;
    match rules::check(&event, rules) {
        Verdict::Checked(c) => Ok(*c),
        Verdict::Invalid(r) => Err((Rejection::Rule(r), Some(event))),
    }
}
