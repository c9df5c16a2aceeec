//! Scale-out under load (issue 17): three instances of `govsync run` in one
//! group, scaled 1 -> 3 -> 1 with a rolling restart in between, while
//! events flow; afterwards the table equals the model and the review and
//! dead-letter topics hold each message once. The figures (events/s per
//! phase, longest pause between commits per group change) are printed,
//! not asserted: `cargo bench --bench scale_out` compares eager and
//! cooperative rebalancing.

use crate::common::harness::Env;
use crate::common::scale::scale_1_3_1;
use crate::common::workload::{Workload, assert_exactly_once};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_scaled_1_3_1_and_restarted_in_turn_apply_everything_once() {
    let env = Env::new("scaleout", 6).await;
    env.migrate().await;
    let w = Workload::mixed(6000, 600, 71);
    env.seed(&w.customers).await;
    let mut raw = env.raw.clone();
    raw.kafka.static_membership = true;
    raw.batch.max_wait = "50ms".into();
    let report = scale_1_3_1(&env, &w, &raw).await;
    report.print("scale-out (eager rebalancing, the default; static membership)");
    assert_eq!(report.phases.len(), 5);
    assert_exactly_once(&env, &w, &report.offsets).await;
}
