//! Rate limits (governor): records per second per region and overall. A
//! batch waits for its cells before its transaction starts; cells are
//! taken in chunks no larger than the burst (governor refuses a request
//! larger than its burst).

use std::num::NonZeroU32;
use std::time::Instant;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::telemetry::metrics;

pub struct Limits {
    global: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
    region: Option<(DefaultKeyedRateLimiter<String>, NonZeroU32)>,
}

impl Limits {
    pub fn new(per_region: u32, global: u32) -> Self {
        // Burst of one second's worth: smooth enough, and a batch never
        // waits for more than it needs.
        Limits {
            global: NonZeroU32::new(global).map(|r| (RateLimiter::direct(Quota::per_second(r)), r)),
            region: NonZeroU32::new(per_region)
                .map(|r| (RateLimiter::keyed(Quota::per_second(r)), r)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.global.is_some() || self.region.is_some()
    }

    /// The largest batch that does not wait more than about a second.
    pub fn batch_cap(&self) -> Option<usize> {
        let caps = [
            self.global.as_ref().map(|g| g.1.get()),
            self.region.as_ref().map(|r| r.1.get()),
        ];
        caps.into_iter().flatten().min().map(|c| c as usize)
    }

    /// Waits until `n` records of `region` may proceed.
    pub async fn acquire(&self, region: &str, n: usize) {
        if !self.enabled() || n == 0 {
            return;
        }
        let started = Instant::now();
        if let Some((lim, burst)) = &self.region {
            let key = region.to_string();
            let mut left = n as u32;
            while left > 0 {
                let chunk = left.min(burst.get());
                let _ = lim
                    .until_key_n_ready(&key, NonZeroU32::new(chunk).expect("chunk > 0"))
                    .await;
                left -= chunk;
            }
        }
        if let Some((lim, burst)) = &self.global {
            let mut left = n as u32;
            while left > 0 {
                let chunk = left.min(burst.get());
                let _ = lim
                    .until_n_ready(NonZeroU32::new(chunk).expect("chunk > 0"))
                    .await;
                left -= chunk;
            }
        }
        metrics::rate_limit_wait(started.elapsed().as_secs_f64());
    }
}
