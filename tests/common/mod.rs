//! The shared test harness of the test binaries that need the real
//! services (`tests/it.rs`, `tests/flow.rs`; each declares `mod common;`):
//! [`harness`] gives each test its own topics, consumer group and
//! PostgreSQL schema and runs the processor in-process or as the real
//! binary; [`workload`] is a mixed workload with known outcomes and the
//! exactly-once check of its final state.

// Each binary uses a part of the harness only.
#![allow(dead_code)]

pub mod cust_base;
pub mod harness;
pub mod http;
pub mod review;
pub mod webdriver;
pub mod workload;
