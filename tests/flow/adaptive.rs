//! Adaptive batch sizes, read from the processor's own /metrics: the
//! target grows while commits are fast, shrinks while a trigger makes every
//! row update sleep, and grows back when the trigger is dropped.

use std::time::{Duration, Instant};

use govsync::config::RawConfig;

use super::support::{self, Scrape, Templates, free_port, publish_fast, scrape, serial};
use crate::common::harness::Env;

const TARGET: &str = "govsync_batch_target_size";
const RECORDS_SUM: &str = "govsync_batch_records_sum";
const RECORDS_COUNT: &str = "govsync_batch_records_count";

/// One reading of the processor's batch sizing.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    target: f64,
    /// Committed batches and their records so far (the histogram's count
    /// and sum).
    batches: f64,
    records: f64,
}

struct Watch {
    port: u16,
    started: Instant,
    samples: Vec<Sample>,
}

impl Watch {
    async fn read(&mut self) -> Option<Sample> {
        let s: Scrape = scrape(self.port).await?;
        let sample = Sample {
            at: self.started.elapsed(),
            target: s.get(TARGET, "partition=\"0\"")?,
            batches: s.sum(RECORDS_COUNT),
            records: s.sum(RECORDS_SUM),
        };
        self.samples.push(sample);
        Some(sample)
    }

    /// Samples every 100 ms until `pred` holds; returns the first sample
    /// that satisfies it.
    async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Sample) -> bool,
    ) -> Sample {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.read().await
                && pred(&s)
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last samples: {:?}",
                &self.samples[self.samples.len().saturating_sub(5)..]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Mean size of the batches committed between two samples.
    fn mean_between(a: &Sample, b: &Sample) -> f64 {
        let n = b.batches - a.batches;
        if n > 0.0 {
            (b.records - a.records) / n
        } else {
            0.0
        }
    }

    /// Prints the target and the mean committed batch size about once a
    /// second from `first` on.
    fn print_per_second(&self, first: Sample) {
        eprintln!("batch target size (partition 0) and mean committed batch size, per second:");
        let mut last = first;
        for s in &self.samples {
            if s.at.as_secs_f64() - last.at.as_secs_f64() >= 1.0 {
                eprintln!(
                    "  t={:>5.1}s target={:>5} mean batch={:>6.0}",
                    s.at.as_secs_f64(),
                    s.target,
                    Watch::mean_between(&last, s)
                );
                last = *s;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sizes_shrink_while_the_database_is_slow_and_grow_back_after() {
    let _serial = serial().await;
    let started = Instant::now();
    let env = Env::new("adaptive", 1).await;
    env.migrate().await;
    let customers = support::seed(&env, 3000, 1, 51).await;
    let t = Templates::new(&customers, "adaptive", false);
    let n = 60_000;
    let took = publish_fast(&env, &t, 0..n, |_| None);
    eprintln!("published {n} events in {took:?}");

    let port = free_port();
    let raw = adaptive_config(&env, port);
    let log = env.log_path("adaptive");
    let child = env.spawn_binary(&raw, &[], &log);
    let mut w = Watch {
        port,
        started: Instant::now(),
        samples: Vec::new(),
    };

    // Fast database: the target grows from the minimum.
    let first = w
        .until("the processor to report", Duration::from_secs(30), |_| true)
        .await;
    let grown = w
        .until("the target to grow to 900", Duration::from_secs(60), |s| {
            s.target >= 900.0
        })
        .await;

    // Every row update now sleeps 3 ms: a 1000-row batch takes over 3 s,
    // far over the 1 s target.
    support::slow_down(&env, 3.0).await;
    let slowed_at = w.read().await.unwrap();
    let shrunk = w
        .until(
            "the target to shrink to 250 or less",
            Duration::from_secs(60),
            |s| s.target <= 250.0,
        )
        .await;
    // It stays small while the database is slow.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = w.read().await.unwrap();
    let slow_max = w
        .samples
        .iter()
        .filter(|s| s.at >= shrunk.at)
        .map(|s| s.target)
        .fold(0.0, f64::max);

    support::speed_up(&env).await;
    let sped_at = w.read().await.unwrap();
    let regrown = w
        .until(
            "the target to grow back to 900",
            Duration::from_secs(60),
            |s| s.target >= 900.0,
        )
        .await;

    w.print_per_second(first);
    let fast_mean = Watch::mean_between(&first, &grown);
    let slow_mean = Watch::mean_between(&shrunk, &held);
    let regrown_mean = Watch::mean_between(&sped_at, &regrown);
    eprintln!(
        "grew to {} in {:.1}s (mean batch {:.0}); slowed at {:.1}s, target {} after {:.1}s, \
         at most {} while slow (mean batch {:.0}); sped up at {:.1}s, target {} after {:.1}s \
         (mean batch {:.0})",
        grown.target,
        (grown.at - first.at).as_secs_f64(),
        fast_mean,
        slowed_at.at.as_secs_f64(),
        shrunk.target,
        (shrunk.at - slowed_at.at).as_secs_f64(),
        slow_max,
        slow_mean,
        sped_at.at.as_secs_f64(),
        regrown.target,
        (regrown.at - sped_at.at).as_secs_f64(),
        regrown_mean
    );
    assert!(
        slow_max <= 500.0,
        "the target stays small while the database is slow"
    );
    assert!(
        held.batches > shrunk.batches && slow_mean <= 500.0,
        "batches committed while slow are small: mean {slow_mean:.0}"
    );

    child.signal(libc::SIGTERM);
    let status = child.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "clean stop: {status:?}");
    support::delete_topics(&env).await;
    support::drop_schema(&env).await;
    eprintln!("test took {:?}", started.elapsed());
}

/// Bounds and target the debug build meets with room to spare (a 1000-row
/// batch commits in about 0.5 s here), and the metrics port.
fn adaptive_config(env: &Env, port: u16) -> RawConfig {
    let mut raw = env.raw.clone();
    raw.batch.target_commit_latency = "1s".into();
    raw.batch.min_size = 100;
    raw.batch.max_size = 1000;
    raw.batch.address = [100, 1000];
    raw.batch.id_card = [100, 1000];
    raw.batch.phone = [100, 1000];
    raw.flow.max_buffered_per_partition = 3000;
    raw.metrics.listen = format!("127.0.0.1:{port}");
    raw
}
