//! Outages that read well in the logs: one WARN line when Kafka or the
//! database starts failing, a WARN summary at most once a minute while it
//! lasts (how long, how many failures of which kind, what waits, the last
//! error), and one INFO line when it works again. The failures themselves
//! are logged at DEBUG.
//!
//! Without this, three broker restarts of ~15 s under load wrote about 1,200
//! WARN lines (every consumer poll error and every librdkafka connection
//! line), 27 a second.
//!
//! The trackers are process-wide: every client of a service (consumer,
//! producer, the decision applier) reports into the same outage, and any
//! success ends it.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// How often a summary is logged while an outage lasts.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// A success ends an outage only this long after its last failure.
pub const SETTLE: Duration = Duration::from_secs(2);
/// With no success, an outage ends after this long without a failure.
pub const QUIET: Duration = Duration::from_secs(20);

/// One service's outage state.
pub struct Outage {
    name: &'static str,
    /// What waits while it is down (for the summary).
    waits: &'static str,
    /// Fast path: most calls of [`Outage::recovered`] find no outage.
    active: AtomicBool,
    /// Partitions stalled by this outage (the database's), for the lines.
    stalled: AtomicI64,
    state: Mutex<Option<Ongoing>>,
}

struct Ongoing {
    since: Instant,
    /// The last failure.
    last_at: Instant,
    /// Something succeeded after the last failure.
    succeeded: bool,
    last_summary: Instant,
    failures: u64,
    by_kind: BTreeMap<&'static str, u64>,
    last: String,
}

/// What a failure report led to (the tests check the lines a sequence of
/// failures makes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Started(String),
    Summary(String),
    Ended(String),
    Quiet,
}

pub static KAFKA: Outage = Outage::new(
    "Kafka",
    "consuming, publishing and committing wait; nothing is skipped",
);
pub static DATABASE: Outage = Outage::new(
    "the database",
    "batches are retried and their partitions paused; nothing is dead-lettered",
);

impl Outage {
    pub const fn new(name: &'static str, waits: &'static str) -> Self {
        Outage {
            name,
            waits,
            active: AtomicBool::new(false),
            stalled: AtomicI64::new(0),
            state: Mutex::new(None),
        }
    }

    /// A partition stalled (`true`) or resumed (`false`) by this outage.
    pub fn stall(&self, stalled: bool) {
        self.stalled
            .fetch_add(if stalled { 1 } else { -1 }, Ordering::Relaxed);
    }

    fn stalled_now(&self) -> String {
        match self.stalled.load(Ordering::Relaxed) {
            n if n > 0 => format!("; {n} partitions stalled"),
            _ => String::new(),
        }
    }

    /// Whether an outage is going on.
    pub fn ongoing(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// A failure of `kind` (e.g. `consumer`, `transaction`, `connection`).
    /// Starts an outage with one WARN line, or counts into the one going on
    /// (a WARN summary at most every [`SUMMARY_EVERY`]).
    pub fn failed(&self, kind: &'static str, error: &dyn Display) {
        let line = self.failed_at(kind, error, Instant::now());
        self.log(&line);
    }

    /// A success (a committed transaction): ends the outage going on with
    /// one INFO line once no failure came for [`SETTLE`] (a batch that
    /// commits while another partition's fails is no end: the next success
    /// or [`Outage::tick`] ends it).
    pub fn recovered(&self) {
        if !self.ongoing() {
            return;
        }
        let line = self.succeeded_at(Instant::now());
        self.log(&line);
    }

    /// Messages fetched: a success too (prefetched messages may come while
    /// a broker is down; [`SETTLE`] covers them).
    pub fn fetched(&self) {
        self.recovered();
    }

    /// Called periodically: ends an outage that had a success after its
    /// last failure and no failure for [`SETTLE`], or none for [`QUIET`]
    /// (nothing succeeded, e.g. no traffic, but nothing fails any more).
    pub fn tick(&self) {
        if !self.ongoing() {
            return;
        }
        let line = self.tick_at(Instant::now());
        self.log(&line);
    }

    fn succeeded_at(&self, now: Instant) -> Line {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(o) = state.as_mut() {
                o.succeeded = true;
            }
        }
        self.recovered_at(now, SETTLE)
    }

    fn tick_at(&self, now: Instant) -> Line {
        let succeeded = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.as_ref().is_some_and(|o| o.succeeded)
        };
        self.recovered_at(now, if succeeded { SETTLE } else { QUIET })
    }

    fn log(&self, line: &Line) {
        match line {
            Line::Started(m) | Line::Summary(m) => tracing::warn!(outage = self.name, "{m}"),
            Line::Ended(m) => tracing::info!(outage = self.name, "{m}"),
            Line::Quiet => {}
        }
    }

    fn failed_at(&self, kind: &'static str, error: &dyn Display, now: Instant) -> Line {
        tracing::debug!(outage = self.name, kind, %error, "failure");
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.as_mut() {
            None => {
                *state = Some(Ongoing {
                    since: now,
                    last_at: now,
                    succeeded: false,
                    last_summary: now,
                    failures: 1,
                    by_kind: BTreeMap::from([(kind, 1)]),
                    last: error.to_string(),
                });
                self.active.store(true, Ordering::Relaxed);
                Line::Started(format!(
                    "{} is failing ({kind}: {error}); {}. A summary follows every {}s until it recovers",
                    self.name,
                    self.waits,
                    SUMMARY_EVERY.as_secs()
                ))
            }
            Some(o) => {
                o.failures += 1;
                o.last_at = now;
                o.succeeded = false;
                *o.by_kind.entry(kind).or_default() += 1;
                o.last = error.to_string();
                if now.duration_since(o.last_summary) < SUMMARY_EVERY {
                    return Line::Quiet;
                }
                o.last_summary = now;
                Line::Summary(format!(
                    "{} still failing after {}: {} failures ({}){}; {}; last: {}",
                    self.name,
                    seconds(now.duration_since(o.since)),
                    o.failures,
                    kinds(&o.by_kind),
                    self.stalled_now(),
                    self.waits,
                    o.last
                ))
            }
        }
    }

    fn recovered_at(&self, now: Instant, quiet_for: Duration) -> Line {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.as_ref() {
            Some(o) if now.saturating_duration_since(o.last_at) >= quiet_for => {}
            _ => return Line::Quiet,
        }
        let Some(o) = state.take() else {
            return Line::Quiet;
        };
        self.active.store(false, Ordering::Relaxed);
        Line::Ended(format!(
            "{} works again after {} ({} failures: {})",
            self.name,
            seconds(now.duration_since(o.since)),
            o.failures,
            kinds(&o.by_kind)
        ))
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.0}s", d.as_secs_f64())
}

fn kinds(by: &BTreeMap<&'static str, u64>) -> String {
    by.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_one_line_a_summary_a_minute_and_one_line_at_the_end() {
        let o = Outage::new("Kafka", "consuming waits");
        let t0 = Instant::now();
        let err = "2/2 brokers are down";
        assert!(
            matches!(o.failed_at("consumer", &err, t0), Line::Started(m) if m.contains("Kafka is failing (consumer: 2/2 brokers are down); consuming waits"))
        );
        assert!(o.ongoing());
        // 27 failures a second for 90 s: one summary, at the minute.
        let mut lines = Vec::new();
        for i in 1..(27 * 90) {
            let at = t0 + Duration::from_millis(i * 1000 / 27);
            let kind = if i % 10 == 0 {
                "transaction"
            } else {
                "consumer"
            };
            match o.failed_at(kind, &err, at) {
                Line::Quiet => {}
                l => lines.push(l),
            }
        }
        assert_eq!(lines.len(), 1, "{lines:?}");
        let Line::Summary(m) = &lines[0] else {
            panic!("{lines:?}")
        };
        assert!(m.starts_with("Kafka still failing after 60s: "), "{m}");
        assert!(m.contains("consumer") && m.contains("transaction"), "{m}");
        let last = t0 + Duration::from_millis(2429 * 1000 / 27);
        assert_eq!(
            o.succeeded_at(last + Duration::from_secs(1)),
            Line::Quiet,
            "a success right after a failure does not end it"
        );
        let Line::Ended(m) = o.tick_at(t0 + Duration::from_secs(93)) else {
            panic!("the tick after a success and a quiet SETTLE ends it")
        };
        assert!(
            m.starts_with(
                "Kafka works again after 93s (2430 failures: consumer 2188, transaction 242)"
            ),
            "{m}"
        );
        assert!(!o.ongoing());
        assert_eq!(o.succeeded_at(t0 + Duration::from_secs(99)), Line::Quiet);
        // Without any success, quiet for QUIET ends it.
        let t1 = t0 + Duration::from_secs(200);
        assert!(matches!(
            o.failed_at("consumer", &err, t1),
            Line::Started(_)
        ));
        assert_eq!(o.tick_at(t1 + Duration::from_secs(5)), Line::Quiet);
        assert!(matches!(o.tick_at(t1 + QUIET), Line::Ended(_)));
    }
}
