//! Retry schedules by error class (DESIGN.md section 5, the seed's retry
//! table made safe): connection errors back off exponentially, timeouts
//! linearly, deadlocks and serialization failures retry at once with
//! jitter. When a class's attempts run out the batch is NOT dead-lettered:
//! the partition is marked stalled and the batch retried with capped
//! backoff until the database recovers.

use std::time::Duration;

use rand::Rng;

use crate::config::RetryConfig;
use crate::sink::{SinkError, Transient};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Retry after this delay.
    Retry(Duration),
    /// Attempts are exhausted: the partition is stalled; retry after this.
    Stalled(Duration),
}

impl Step {
    pub fn delay(self) -> Duration {
        match self {
            Step::Retry(d) | Step::Stalled(d) => d,
        }
    }
}

/// Retry state of one batch.
#[derive(Debug, Default)]
pub struct RetryState {
    failures: u32,
    stalled_delay: Option<Duration>,
}

impl RetryState {
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The step after a failure.
    pub fn next(&mut self, err: &SinkError, cfg: &RetryConfig) -> Step {
        self.failures += 1;
        let n = self.failures;
        let jitter = |max_ms: u64| Duration::from_millis(rand::rng().random_range(0..=max_ms));
        let quick = match err {
            SinkError::Transient {
                class: Transient::Connection,
                ..
            } if n <= cfg.connection_attempts => {
                Some(cfg.connection_base * 2u32.saturating_pow(n - 1) + jitter(50))
            }
            SinkError::Transient {
                class: Transient::Timeout,
                ..
            } if n <= cfg.timeout_attempts => Some(cfg.timeout_step * n + jitter(50)),
            SinkError::Transient {
                class: Transient::Deadlock | Transient::Serialization | Transient::LockWait,
                ..
            } if n <= cfg.conflict_attempts => Some(jitter(100)),
            _ => None,
        };
        match quick {
            Some(d) => Step::Retry(d),
            None => {
                let d = match self.stalled_delay {
                    None => Duration::from_secs(1),
                    Some(prev) => (prev * 2).min(cfg.stalled_backoff_max),
                };
                self.stalled_delay = Some(d);
                Step::Stalled(d + jitter(250))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetryConfig {
        RetryConfig {
            connection_base: Duration::from_millis(500),
            connection_attempts: 3,
            timeout_step: Duration::from_secs(1),
            timeout_attempts: 2,
            conflict_attempts: 3,
            stalled_backoff_max: Duration::from_secs(30),
        }
    }

    fn conn() -> SinkError {
        SinkError::transient(Transient::Connection, "refused")
    }

    #[test]
    fn connection_backs_off_exponentially_then_stalls() {
        let mut s = RetryState::default();
        let d: Vec<Step> = (0..6).map(|_| s.next(&conn(), &cfg())).collect();
        let ms = |st: Step| st.delay().as_millis();
        assert!(matches!(d[0], Step::Retry(_)) && (500..=550).contains(&ms(d[0])));
        assert!((1000..=1050).contains(&ms(d[1])));
        assert!((2000..=2050).contains(&ms(d[2])));
        assert!(matches!(d[3], Step::Stalled(_)));
        assert!(
            ms(d[4]) >= 2000 && ms(d[5]) >= 4000,
            "stalled backoff doubles"
        );
        let mut s = RetryState::default();
        let last = (0..20).map(|_| s.next(&conn(), &cfg())).last().unwrap();
        assert!(last.delay() <= Duration::from_millis(30_250), "capped");
    }

    #[test]
    fn timeouts_are_linear_and_deadlocks_immediate() {
        let mut s = RetryState::default();
        let t = SinkError::transient(Transient::Timeout, "t");
        assert!((1000..=1050).contains(&s.next(&t, &cfg()).delay().as_millis()));
        assert!((2000..=2050).contains(&s.next(&t, &cfg()).delay().as_millis()));
        assert!(matches!(s.next(&t, &cfg()), Step::Stalled(_)));
        let mut s = RetryState::default();
        let d = SinkError::transient(Transient::Deadlock, "d");
        assert!(s.next(&d, &cfg()).delay() <= Duration::from_millis(100));
    }

    #[test]
    fn fatal_errors_stall_at_once() {
        let mut s = RetryState::default();
        assert!(matches!(
            s.next(&SinkError::Fatal("no table".into()), &cfg()),
            Step::Stalled(_)
        ));
    }
}
