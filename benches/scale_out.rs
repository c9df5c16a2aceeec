//! Scale-out on the consumer group, eager against cooperative rebalancing
//! (issue 17): for each, three `govsync run` processes in one group on a
//! 12-partition topic, scaled 1 -> 3 -> 1 with a rolling restart (SIGTERM
//! each in turn, started again) while events flow
//! (`tests/common/scale.rs`, the same scenario as the exactly-once test
//! `it::scale_out`). Prints events/s per phase and, from the batch ledger,
//! the longest pause between two committed batches (of any partition)
//! while each group change settled; then checks the table against the
//! model and the side topics (each message once).
//!
//! `cargo bench --bench scale_out` (env: BENCH_EVENTS, default 60000;
//! BENCH_MODES, default "eager,cooperative"). Needs `scripts/services up`.

#[path = "../tests/common/mod.rs"]
mod tcommon;

mod common;

use tcommon::harness::Env;
use tcommon::scale::scale_1_3_1;
use tcommon::workload::{Workload, assert_exactly_once};

fn main() {
    common::main_with(run());
}

async fn run() {
    let events = common::env_usize("BENCH_EVENTS", 60_000);
    let modes = std::env::var("BENCH_MODES").unwrap_or_else(|_| "eager,cooperative".into());
    for mode in modes.split(',').map(str::trim) {
        let env = Env::new(&format!("scalebench_{mode}"), 12).await;
        env.migrate().await;
        let w = Workload::mixed(events, events / 10, 73);
        env.seed(&w.customers).await;
        let mut raw = env.raw.clone();
        raw.kafka.static_membership = true;
        raw.kafka.assignment = mode.to_string();
        let started = std::time::Instant::now();
        let report = scale_1_3_1(&env, &w, &raw).await;
        report.print(&format!(
            "{mode} rebalancing, static membership, 12 partitions, {events} events"
        ));
        assert_exactly_once(&env, &w, &report.offsets).await;
        println!(
            "  exactly once: table = model, side topics hold each message once ({:.0} s in all)",
            started.elapsed().as_secs_f64()
        );
    }
}
