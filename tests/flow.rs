//! Flow control under load and faults, through the real broker, the real
//! PostgreSQL and (mostly) the real binary: adaptive batch sizes against a
//! database slowed on purpose, recovery from terminated sessions and a
//! restarted PostgreSQL, bounded memory over a million-event backlog, rate
//! limits, pause/resume across a rebalance, and SIGTERM during an outage.
//!
//! A binary of its own, and every test takes [`flow::support::serial`] first:
//! one test restarts the PostgreSQL cluster, and the others measure
//! rates, sizes and memory that parallel tests would disturb. Cargo runs
//! test binaries one after another, so `cargo test --all-targets`
//! (`scripts/test`) never runs them alongside `tests/it`.
//!
//! This crate root sits beside `tests/common/` so that `mod common;` finds
//! the shared harness; the tests themselves are the files of `tests/flow/`
//! (the inline module `flow` below, so their names start with `flow::`).

mod common;

mod flow {
    mod adaptive;
    mod memory;
    mod outage;
    mod rate;
    mod support;
}
