//! Batch sizing: additive increase, multiplicative decrease (AIMD) per
//! partition, driven by the measured commit latency.
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

use std::time::Duration;

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
