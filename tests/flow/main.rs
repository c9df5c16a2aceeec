//! Flow control under load and faults, through the real broker, the real
//! PostgreSQL and (mostly) the real binary: adaptive batch sizes against a
//! database slowed on purpose, recovery from terminated sessions and a
//! restarted PostgreSQL, bounded memory over a million-event backlog, rate
//! limits, pause/resume across a rebalance, and SIGTERM during an outage.
//!
//! A binary of its own, and every test takes [`support::serial`] first:
//! one test restarts the PostgreSQL cluster, and the others measure
//! rates, sizes and memory that parallel tests would disturb. Cargo runs
//! test binaries one after another, so `cargo test --all-targets`
//! (`scripts/test`) never runs them alongside `tests/it`.

#[path = "../it/harness.rs"]
mod harness;
#[path = "../it/workload.rs"]
mod workload;

mod adaptive;
mod memory;
mod outage;
mod rate;
mod support;
