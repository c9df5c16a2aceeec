//! govsync: writes data-governance results from Kafka back into the
//! business database, exactly once, in adaptive micro-batches.
//!
//! # Layout
//!
//! - [`config`]: the configuration file, parsed then checked.
//! - [`event`]: the v1 event (wire model, decoding, business rules).
//! - [`message`]: a consumed Kafka message and one to publish.
//! - [`output`]: the review message and the dead-letter envelope.
//! - [`sink`]: the database side: the batch protocol and its dialects.
//! - [`pipeline`]: consume → batch → apply → publish → commit.
//! - [`kafka`]: client settings and admin helpers.
//! - [`review`]: reviewers' decisions and their applier.
//! - [`ops`]: the commands behind the binary (run, migrate, validate,
//!   produce, dlq, batches, rollback, check-config).
//! - [`demo`]: `govsync demo`, the whole job on embedded defaults.
//! - [`telemetry`]: logs, metrics, masking, the HTTP endpoint.
//! - [`failpoint`]: crash points for the crash-recovery tests.

pub mod cli;
pub mod config;
pub mod demo;
pub mod event;
pub mod failpoint;
pub mod kafka;
pub mod message;
pub mod ops;
pub mod output;
pub mod pipeline;
pub mod review;
pub mod sink;
pub mod telemetry;
