//! Scale-out on the consumer group (issue 17): instances of `govsync run`
//! started and stopped while events flow: 1 instance, scale to 3, 3, a
//! rolling restart (SIGTERM each in turn, started again), scale back to 1.
//! Each phase publishes a share of the workload and waits until it is
//! applied and committed; the report says how fast each phase went and,
//! from the batch ledger, the longest pause between two committed batches
//! (of any partition) while each group change settled.
//!
//! Used by the exactly-once test (`it::scale_out`, which then checks the
//! table against the model) and by the benchmark (`benches/scale_out.rs`,
//! which compares eager and cooperative rebalancing).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::harness::{Env, Proc, wait_until};
use super::workload::{Workload, caught_up};
use govsync::config::RawConfig;

/// One phase: its events and how long they took to be applied.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    pub events: usize,
    pub secs: f64,
}

/// One group change: the longest pause between committed batches from
/// when it began until the phase caught up.
#[derive(Debug, Clone)]
pub struct GroupChange {
    pub name: &'static str,
    pub longest_pause: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct ScaleReport {
    pub phases: Vec<Phase>,
    pub changes: Vec<GroupChange>,
    /// (partition, offset) of every published message.
    pub offsets: Vec<(i32, i64)>,
    /// SIGTERM to exit, of every stop.
    pub stops: Vec<Duration>,
}

impl ScaleReport {
    pub fn print(&self, label: &str) {
        println!("{label}:");
        for p in &self.phases {
            println!(
                "  {:<18} {:>6} events in {:>6.1} s: {:>7.0} events/s",
                p.name,
                p.events,
                p.secs,
                p.events as f64 / p.secs
            );
        }
        for c in &self.changes {
            println!(
                "  {:<18} longest pause between committed batches: {:.2} s",
                c.name,
                c.longest_pause.as_secs_f64()
            );
        }
        if let Some(max) = self.stops.iter().max() {
            println!(
                "  SIGTERM to exit: longest {:.2} s of {} stops",
                max.as_secs_f64(),
                self.stops.len()
            );
        }
    }
}

/// A running instance and its log.
struct Instance {
    raw: RawConfig,
    log: std::path::PathBuf,
    proc: Option<Proc>,
}

impl Instance {
    fn new(env: &Env, raw: &RawConfig, id: &str) -> Instance {
        let mut raw = raw.clone();
        raw.kafka.instance_id = format!("{}-{id}", env.name);
        Instance {
            log: env.log_path(&format!("scale-{id}")),
            raw,
            proc: None,
        }
    }

    fn starts(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("govsync starting")
            .count()
    }

    async fn start(&mut self, env: &Env) {
        let before = self.starts();
        self.proc = Some(env.spawn_binary(&self.raw, &[], &self.log));
        let log = self.log.clone();
        wait_until(Duration::from_secs(60), "an instance starts", || {
            let log = log.clone();
            async move {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .matches("govsync starting")
                    .count()
                    > before
            }
        })
        .await;
    }

    /// SIGTERM and wait: the instance finishes or abandons its batches and
    /// leaves within the shutdown bound.
    async fn stop(&mut self) -> Duration {
        let p = self.proc.take().expect("running");
        let t = Instant::now();
        p.signal(libc::SIGTERM);
        let status = p.wait(Duration::from_secs(60)).await;
        assert!(status.success(), "clean stop: {status:?}");
        t.elapsed()
    }
}

/// Commit times of the env's batches since `from`, in order.
async fn commits_since(env: &Env, from: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    sqlx::query_scalar(
        "SELECT committed_at FROM govsync_batch WHERE kind = 'apply' AND committed_at >= $1 \
         ORDER BY committed_at",
    )
    .bind(from)
    .fetch_all(&env.pg)
    .await
    .unwrap()
}

/// The longest time without a committed batch in `[from, to]`.
async fn longest_pause(env: &Env, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    let mut last = from;
    let mut longest = chrono::TimeDelta::zero();
    for t in commits_since(env, from).await {
        if t > to {
            break;
        }
        longest = longest.max(t - last);
        last = t;
    }
    longest = longest.max(to - last);
    longest.to_std().unwrap_or_default()
}

/// Runs the phases with `raw` (each instance gets its own instance id).
/// Returns the figures and the published offsets; every instance is
/// stopped at the end.
pub async fn scale_1_3_1(env: &Env, w: &Workload, raw: &RawConfig) -> ScaleReport {
    let mut report = ScaleReport::default();
    let mut inst: Vec<Instance> = ["a", "b", "c"]
        .iter()
        .map(|id| Instance::new(env, raw, id))
        .collect();
    let phases = 5;
    let chunk = w.msgs.len() / phases;
    let range = |i: usize| {
        i * chunk..if i == phases - 1 {
            w.msgs.len()
        } else {
            (i + 1) * chunk
        }
    };
    inst[0].start(env).await;
    for (i, name) in [
        "1 instance",
        "scale 1 -> 3",
        "3 instances",
        "rolling restart",
        "scale 3 -> 1",
    ]
    .into_iter()
    .enumerate()
    {
        let r = range(i);
        let events = r.len();
        let t0 = Instant::now();
        let at = Utc::now();
        report.offsets.extend(env.publish_raw(&w.raw(r)).await);
        match i {
            1 => {
                inst[1].start(env).await;
                inst[2].start(env).await;
            }
            3 => {
                for one in inst.iter_mut() {
                    report.stops.push(one.stop().await);
                    one.start(env).await;
                }
            }
            4 => {
                report.stops.push(inst[1].stop().await);
                report.stops.push(inst[2].stop().await);
            }
            _ => {}
        }
        let total = report.offsets.len() as i64;
        wait_until(Duration::from_secs(300), name, || caught_up(env, total)).await;
        report.phases.push(Phase {
            name,
            events,
            secs: t0.elapsed().as_secs_f64(),
        });
        if matches!(i, 1 | 3 | 4) {
            report.changes.push(GroupChange {
                name,
                longest_pause: longest_pause(env, at, Utc::now()).await,
            });
        }
    }
    report.stops.push(inst[0].stop().await);
    report
}
