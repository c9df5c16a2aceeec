//! The reviewers' side of the loop (issue 15): decisions on review items
//! travel on the decision topic ([`decision`]) and are applied exactly once
//! through the database by the applier that `govsync run` starts.

pub mod applier;
pub mod decision;

pub use decision::{ReviewDecision, Verdict, check_corrected};
