//! Batching of one partition: the buffer of records waiting for a batch,
//! when the next batch is ready, where it is cut, and how large it may be.
//!
//! # When a batch is ready
//!
//! A partition's next batch is ready when its buffer holds a full batch, or
//! when the buffer's head has waited `batch.max_wait` (a quarter of it when
//! the buffer holds `priority: high` records).
//!
//! # How large: additive increase, multiplicative decrease (AIMD)
//!
//! The target grows by `step` after a *full* batch whose database
//! transaction stayed under the target latency (a partial batch says
//! nothing about capacity), and halves when a commit exceeds it or fails.
//! Each batch is then clamped to the bounds of the data type of its first
//! record (the seed's advice: address 1000–2000, id_card 2000–3000, phone
//! 3000–5000), within the absolute bounds. The target moves relative to
//! the batches it governs: it grows no further than the upper bound of the
//! batch that proved it, and halves from that bound. A target of 5000 over
//! batches capped at 2000 would otherwise take two slow commits, not one,
//! to bring the batches down when the database slows.
//!
//! Every bound on a batch's size (per data type, absolute, the rate limit's
//! cap) is applied in one place, [`Sizing::next`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::consumer::Incoming;
use crate::config::BatchConfig;
use crate::event::{DataType, Priority};

/// The bounds a batch's size is kept within.
#[derive(Debug, Clone)]
pub struct Sizing {
    batch: BatchConfig,
    /// The rate limit's cap: the largest batch that does not wait more than
    /// about a second for its rate-limit cells.
    rate_cap: Option<usize>,
}

/// The size of the next batch of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextSize {
    pub size: usize,
    /// The upper size bound of the batch's data type: the target does not
    /// grow past what a batch may hold.
    pub ceiling: usize,
}

impl Sizing {
    pub fn new(batch: &BatchConfig, rate_cap: Option<usize>) -> Self {
        Sizing {
            batch: batch.clone(),
            rate_cap,
        }
    }

    /// A new partition's size controller: it starts at the smallest lower
    /// bound of any data type.
    pub fn controller(&self) -> Aimd {
        let b = &self.batch;
        Aimd::new(
            b.per_type.values().map(|x| x.0).min().unwrap_or(b.min_size),
            b.min_size,
            b.max_size,
        )
    }

    /// The next batch's size given the controller's target and the data
    /// type of the batch's head record.
    pub fn next(&self, aimd: &Aimd, head: Option<DataType>) -> NextSize {
        let b = &self.batch;
        let bounds = head.map_or((b.min_size, b.max_size), |d| b.bounds(d));
        let size = aimd.size_for(bounds);
        let ceiling = bounds.1.min(b.max_size);
        match self.rate_cap {
            Some(cap) => NextSize {
                size: size.min(cap.max(1)),
                ceiling: ceiling.min(cap.max(1)),
            },
            None => NextSize { size, ceiling },
        }
    }
}

/// Records of one partition waiting for a batch, in offset order.
#[derive(Debug, Default)]
pub struct Buffer {
    records: VecDeque<Incoming>,
    /// When the head arrived, or when the previous batch was cut from a
    /// buffer that kept records (max_wait counts from it).
    oldest: Option<Instant>,
    /// High-priority records in the buffer.
    high: usize,
}

fn is_high(i: &Incoming) -> bool {
    matches!(&i.verdict, Ok(c) if c.priority == Priority::High)
}

impl Buffer {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether the buffer holds `priority: high` records.
    pub fn has_high(&self) -> bool {
        self.high > 0
    }

    /// Since when the head has waited (`now` for an empty buffer).
    pub fn waiting_since(&self, now: Instant) -> Instant {
        self.oldest.unwrap_or(now)
    }

    pub fn push(&mut self, inc: Incoming) {
        if self.records.is_empty() {
            self.oldest = Some(Instant::now());
        }
        if is_high(&inc) {
            self.high += 1;
        }
        self.records.push_back(inc);
    }

    /// The data type of the head record (None when empty or rejected).
    pub fn head_type(&self) -> Option<DataType> {
        self.records
            .front()
            .and_then(|i| i.verdict.as_ref().ok())
            .map(|c| c.data_type)
    }

    /// A batch of `size` is ready: the buffer holds that many, or its head
    /// waited `max_wait` (a quarter of it with high-priority records).
    pub fn is_ready(&self, size: usize, max_wait: Duration, now: Instant) -> bool {
        let wait = if self.high > 0 {
            max_wait / 4
        } else {
            max_wait
        };
        let aged = self.oldest.is_some_and(|t| now.duration_since(t) >= wait);
        self.records.len() >= size || (!self.records.is_empty() && aged)
    }

    /// The first `n` records (fewer when the buffer holds fewer).
    pub fn head(&self, n: usize) -> impl Iterator<Item = &Incoming> {
        self.records.iter().take(n)
    }

    /// Cuts the next batch: the first `n` records (at most).
    pub fn cut(&mut self, n: usize) -> Vec<Incoming> {
        let n = n.min(self.records.len());
        let items: Vec<Incoming> = self.records.drain(..n).collect();
        self.high = self.records.iter().filter(|i| is_high(i)).count();
        self.oldest = if self.records.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        items
    }
}

/// The per-partition batch-size controller.
#[derive(Debug, Clone)]
pub struct Aimd {
    target: usize,
    min: usize,
    max: usize,
    step: usize,
}

impl Aimd {
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        Aimd {
            target: initial.clamp(min, max),
            min,
            max,
            step: min.max(1),
        }
    }

    pub fn target(&self) -> usize {
        self.target
    }

    /// The size of the next batch given its head record's bounds.
    pub fn size_for(&self, bounds: (usize, usize)) -> usize {
        self.target.clamp(
            bounds.0.max(self.min),
            bounds.1.min(self.max).max(bounds.0.max(self.min)),
        )
    }

    /// After a committed batch whose data type allows at most `ceiling`
    /// records.
    pub fn on_commit(
        &mut self,
        latency: Duration,
        target_latency: Duration,
        was_full: bool,
        ceiling: usize,
    ) {
        if latency > target_latency {
            self.decrease(ceiling);
        } else if was_full && self.target < ceiling {
            self.target = (self.target + self.step).min(ceiling).min(self.max);
        }
    }

    /// After a batch that needed retries; it allowed at most `ceiling`.
    pub fn on_error(&mut self, ceiling: usize) {
        self.decrease(ceiling);
    }

    fn decrease(&mut self, ceiling: usize) {
        self.target = (self.target.min(ceiling) / 2).max(self.min);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(500);

    #[test]
    fn grows_on_fast_full_batches_and_halves_on_slow_ones() {
        let mut a = Aimd::new(1000, 100, 5000);
        a.on_commit(Duration::from_millis(100), T, true, 5000);
        assert_eq!(a.target(), 1100);
        a.on_commit(Duration::from_millis(100), T, false, 5000);
        assert_eq!(a.target(), 1100, "partial batches do not grow the target");
        a.on_commit(Duration::from_millis(900), T, true, 5000);
        assert_eq!(a.target(), 550);
        for _ in 0..10 {
            a.on_error(5000);
        }
        assert_eq!(a.target(), 100);
        for _ in 0..100 {
            a.on_commit(Duration::from_millis(1), T, true, 5000);
        }
        assert_eq!(a.target(), 5000);
    }

    #[test]
    fn the_target_stops_at_the_ceiling_of_the_batches_that_proved_it() {
        let mut a = Aimd::new(1000, 100, 5000);
        for _ in 0..50 {
            a.on_commit(Duration::from_millis(1), T, true, 2000);
        }
        assert_eq!(a.target(), 2000, "address batches hold at most 2000");
        a.on_commit(Duration::from_millis(900), T, true, 2000);
        assert_eq!(a.target(), 1000, "one slow commit halves the batches");
        // Phone batches (up to 5000) may take it further.
        for _ in 0..50 {
            a.on_commit(Duration::from_millis(1), T, true, 5000);
        }
        assert_eq!(a.target(), 5000);
        // A target above a smaller ceiling is not cut by a fast commit,
        // and halves from what the slow batch could hold.
        a.on_commit(Duration::from_millis(1), T, true, 2000);
        assert_eq!(a.target(), 5000);
        a.on_commit(Duration::from_millis(900), T, true, 2000);
        assert_eq!(a.target(), 1000);
    }

    #[test]
    fn per_type_bounds_clamp_each_batch() {
        let a = Aimd::new(5000, 100, 5000);
        assert_eq!(a.size_for((1000, 2000)), 2000);
        let a = Aimd::new(100, 100, 5000);
        assert_eq!(a.size_for((3000, 5000)), 3000);
        assert_eq!(a.size_for((100, 5000)), 100);
    }
}
