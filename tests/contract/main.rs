//! The published contract (`schemas/`) against the code that implements it.
//!
//! - The event schema and `govsync::event::decode` accept and reject the
//!   same documents (seed samples, generated events, mutations of both).
//! - The review-message and dead-letter-headers schemas describe what
//!   `govsync::output` builds, and the example files.
//! - The review-decision schema takes its example and refuses the
//!   mistakes a client can make.
//! - `decode` and `decode_and_check` never panic on arbitrary input.
//! - The ID-card check agrees with an independent ISO 7064 MOD 11-2.
//! - The seed records get the verdicts DESIGN.md section 4 asks for.
//!
//! None of these needs Kafka or PostgreSQL.

mod agreement;
mod corpus;
mod decisions;
mod gb11643;
mod no_panic;
mod schemas;
mod seed_records;
mod side_outputs;
