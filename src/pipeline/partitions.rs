//! The main loop's state: every assigned partition, and the scheduling of
//! their batches.
//!
//! A partition's life: assigned (fresh state, full credit) → batches cut
//! from its buffer, one transaction at a time, the previous batch's Kafka
//! commit overlapping the next transaction (partition.rs) → revoked (it
//! takes no more messages and starts no batch; it is given up once nothing
//! of it is in flight) → removed. Independently of that, the consumer hands it at
//! most `flow.max_buffered_per_partition` records beyond what completed
//! batches released (its credit, see `consumer.rs`): a partition that holds
//! its bound, or whose batch is stalled, is simply not read for a while.
//!
//! Ready partitions get the free in-flight slots in [`dispatch_order`],
//! within the global and per-region caps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Progress;
use super::apply::{self, BatchCtx, BatchResult, Committed, Completion, DbCommitted};
use super::batcher::Sizing;
use super::consumer::{AssignedPartition, FromConsumer, Incoming, ToConsumer};
use super::partition::{InFlight, Partition};
use crate::config::Config;
use crate::sink::PartitionKey;
use crate::telemetry::{metrics, outage};

/// Entries [`Progress::batch_log`] keeps.
pub const BATCH_LOG_MAX: usize = 100_000;

/// A partition with a batch ready to start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Ready {
    pub partition: i32,
    /// Its buffer holds `priority: high` records.
    pub high: bool,
    /// Since when its head has waited (its buffer's head arrived, or its
    /// previous batch started).
    pub since: Instant,
}

/// The order in which ready partitions get the free in-flight slots:
/// partitions holding `high` records first, then the one that has waited
/// longest (so standard partitions take turns and none is skipped for
/// ever). Within a partition records stay in offset order: priority
/// decides which partition goes next, never reorders a region.
pub(super) fn dispatch_order(mut ready: Vec<Ready>) -> Vec<i32> {
    ready.sort_by(|a, b| {
        b.high
            .cmp(&a.high)
            .then(a.since.cmp(&b.since))
            .then(a.partition.cmp(&b.partition))
    });
    ready.into_iter().map(|r| r.partition).collect()
}

/// Every assigned partition and the in-flight caps.
pub(super) struct Partitions {
    cfg: Arc<Config>,
    ctx: Arc<BatchCtx>,
    sizing: Sizing,
    parts: BTreeMap<i32, Partition>,
    in_flight: usize,
    region_in_flight: HashMap<String, usize>,
    commands: std::sync::mpsc::Sender<ToConsumer>,
    /// A revocation waiting for its partitions' batches to complete.
    revoke: Option<(HashSet<i32>, std::sync::mpsc::SyncSender<()>)>,
    progress: Arc<Progress>,
}

impl Partitions {
    pub fn new(
        cfg: Arc<Config>,
        ctx: Arc<BatchCtx>,
        commands: std::sync::mpsc::Sender<ToConsumer>,
        progress: Arc<Progress>,
    ) -> Self {
        let sizing = Sizing::new(&cfg.batch, ctx.limits.batch_cap());
        Partitions {
            cfg,
            ctx,
            sizing,
            parts: BTreeMap::new(),
            in_flight: 0,
            region_in_flight: HashMap::new(),
            commands,
            revoke: None,
            progress,
        }
    }

    /// Batches in flight, in either stage.
    pub fn in_flight(&self) -> usize {
        self.parts
            .values()
            .map(|p| p.db.is_some() as usize + p.committing.len())
            .sum()
    }

    pub fn report_buffered(&self) {
        for (p, st) in &self.parts {
            metrics::buffered(*p, st.buffer.len());
        }
    }

    /// Shutting down: stop the consumer, abandon in-flight batches at their
    /// next retry wait.
    pub fn shut_down(&mut self) {
        let _ = self.commands.send(ToConsumer::Shutdown);
        for p in self.parts.values() {
            if let Some(f) = &p.db {
                f.cancel.cancel();
            }
        }
    }

    pub fn on_event(&mut self, ev: FromConsumer) {
        match ev {
            FromConsumer::Messages(batch) => {
                for inc in batch {
                    self.on_message(inc);
                }
            }
            FromConsumer::Assigned(list) => self.on_assigned(list),
            FromConsumer::Revoked { partitions, ack } => {
                for p in &partitions {
                    if let Some(st) = self.parts.get_mut(p) {
                        st.revoking = true;
                        if let Some(f) = &st.db {
                            f.cancel.cancel();
                        }
                    }
                }
                self.revoke = Some((partitions.into_iter().collect(), ack));
            }
            FromConsumer::Closed => {}
            FromConsumer::HighWatermarks(marks) => {
                for (p, high) in marks {
                    if let Some(st) = self.parts.get(&p) {
                        metrics::lag(p, high - st.kafka.db_watermark);
                    }
                }
            }
        }
    }

    fn on_message(&mut self, inc: Incoming) {
        self.progress.consumed.fetch_add(1, Ordering::Relaxed);
        let p = inc.raw.partition;
        let max_buffered = self.cfg.flow.max_buffered_per_partition;
        let Some(st) = self.parts.get_mut(&p) else {
            return;
        };
        if st.revoking {
            return;
        }
        st.buffer.push(inc);
        st.update_held_back(p, max_buffered);
    }

    fn on_assigned(&mut self, list: Vec<AssignedPartition>) {
        for a in list {
            let committed = a.committed.unwrap_or(0);
            let watermark = a.watermark.unwrap_or(0);
            let st = Partition::new(self.sizing.controller(), a.credit, committed, watermark);
            if st.kafka.needs_recovery {
                tracing::info!(
                    partition = a.partition,
                    committed,
                    watermark,
                    "database is ahead of Kafka: republishing the outbox of the batches in between"
                );
            }
            metrics::target_size(a.partition, st.aimd.target());
            self.parts.insert(a.partition, st);
        }
        self.progress
            .assigned
            .store(self.parts.len(), Ordering::Relaxed);
        metrics::assigned(self.parts.len());
    }

    /// Gives up the revoked partitions once none has a batch in flight.
    pub fn check_revoke_done(&mut self) {
        let Some((set, _)) = &self.revoke else { return };
        if set
            .iter()
            .any(|p| self.parts.get(p).is_some_and(Partition::busy))
        {
            return;
        }
        let (set, ack) = self.revoke.take().expect("checked above");
        for p in &set {
            self.parts.remove(p);
            metrics::partition_released(*p);
        }
        self.progress
            .assigned
            .store(self.parts.len(), Ordering::Relaxed);
        metrics::assigned(self.parts.len());
        let _ = ack.send(());
    }

    pub fn on_completion(&mut self, c: Completion) {
        match c {
            Completion::Stalled { partition, stalled } => {
                metrics::stalled(partition, stalled);
                if stalled {
                    self.progress.stalled.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.progress.stalled.fetch_sub(1, Ordering::Relaxed);
                }
                let max_buffered = self.cfg.flow.max_buffered_per_partition;
                if let Some(st) = self.parts.get_mut(&partition) {
                    st.stalled = stalled;
                    st.credit.set_stalled(stalled);
                    st.update_held_back(partition, max_buffered);
                }
            }
            Completion::DbCommitted(d) => self.on_db_committed(d),
            Completion::Done {
                partition,
                size,
                result,
            } => self.on_done(partition, size, result),
        }
    }

    /// A batch's transaction committed: its database slot and regions are
    /// free, and its commit latency sizes the partition's next batch.
    fn on_db_committed(&mut self, d: DbCommitted) {
        self.in_flight -= 1;
        metrics::in_flight(self.in_flight);
        let Some(st) = self.parts.get_mut(&d.partition) else {
            return;
        };
        for r in st.db_done() {
            if let Some(n) = self.region_in_flight.get_mut(&r) {
                *n -= 1;
            }
        }
        st.kafka.db_watermark = st.kafka.db_watermark.max(d.watermark_after);
        // Its records left memory: the consumer may hand over as many more.
        st.credit.release(d.size);
        st.update_held_back(d.partition, self.cfg.flow.max_buffered_per_partition);
        if d.failures > 0 {
            st.aimd.on_error(d.ceiling);
        } else if d.size > 0 {
            st.aimd.on_commit(
                d.latency,
                self.cfg.batch.target_commit_latency,
                d.was_full,
                d.ceiling,
            );
        }
        metrics::target_size(d.partition, st.aimd.target());
    }

    /// A batch ended: committed in Kafka (or not), or abandoned before its
    /// database commit.
    fn on_done(&mut self, partition: i32, size: usize, result: BatchResult) {
        let db_committed = matches!(result, BatchResult::Committed(_));
        if !db_committed {
            self.in_flight -= 1;
            metrics::in_flight(self.in_flight);
        }
        let Some(st) = self.parts.get_mut(&partition) else {
            return;
        };
        for r in st.done(db_committed) {
            if let Some(n) = self.region_in_flight.get_mut(&r) {
                *n -= 1;
            }
        }
        let BatchResult::Committed(c) = result else {
            // Abandoned before its commit: its records left memory now.
            st.credit.release(size);
            st.update_held_back(partition, self.cfg.flow.max_buffered_per_partition);
            return;
        };
        let Committed { report, kafka } = *c;
        let k = &mut st.kafka;
        match kafka {
            Ok(()) => {
                k.confirmed = report.watermark_after;
                k.needs_recovery = false;
                k.outbox_dirty |= !report.outputs.is_empty() || !report.foreign_outputs.is_empty();
            }
            Err(e) => {
                // During a Kafka outage this is the outage's (its summary
                // says what waits); otherwise a line of its own.
                if outage::KAFKA.ongoing() {
                    tracing::debug!(partition, error = %e, "Kafka commit failed; republishing from the outbox");
                } else {
                    tracing::warn!(
                        partition, error = %e,
                        "the batch committed in the database but its Kafka commit failed; \
                         its side outputs will be republished from the outbox"
                    );
                }
                k.needs_recovery = true;
            }
        }
    }

    /// Starts batches for partitions that are ready, in [`dispatch_order`],
    /// within the in-flight caps.
    pub fn dispatch(&mut self) {
        let now = Instant::now();
        let max_wait = self.cfg.batch.max_wait;
        let mut ready: Vec<Ready> = Vec::new();
        for (p, st) in &self.parts {
            if !st.may_start() {
                continue;
            }
            let size = self.sizing.next(&st.aimd, st.buffer.head_type()).size;
            if st.buffer.is_ready(size, max_wait, now)
                || (st.buffer.is_empty() && st.kafka.needs_recovery)
            {
                ready.push(Ready {
                    partition: *p,
                    high: st.buffer.has_high(),
                    since: st.buffer.waiting_since(now),
                });
            }
        }
        for p in dispatch_order(ready) {
            if self.in_flight >= self.cfg.flow.max_in_flight {
                break;
            }
            let regions = self.head_regions(p);
            let cap = self.cfg.flow.max_in_flight_per_region;
            if regions
                .iter()
                .any(|r| self.region_in_flight.get(r).copied().unwrap_or(0) >= cap)
            {
                continue;
            }
            self.start_batch(p, regions);
        }
    }

    /// The regions (message keys) of the partition's next batch.
    fn head_regions(&self, p: i32) -> Vec<String> {
        let st = &self.parts[&p];
        let n = self.sizing.next(&st.aimd, st.buffer.head_type()).size;
        let mut regions: Vec<String> = st
            .buffer
            .head(n)
            .filter_map(|i| {
                i.raw
                    .key
                    .as_ref()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        regions.sort();
        regions
    }

    fn start_batch(&mut self, p: i32, regions: Vec<String>) {
        let cfg = self.cfg.clone();
        let st = self.parts.get_mut(&p).expect("ready partition exists");
        let next = self.sizing.next(&st.aimd, st.buffer.head_type());
        let items = st.buffer.cut(next.size);
        let n = items.len();
        let was_full = n >= next.size;
        let cancel = CancellationToken::new();
        for r in &regions {
            *self.region_in_flight.entry(r.clone()).or_default() += 1;
        }
        let (previous, outcome) = st.start(InFlight {
            records: n,
            cancel: cancel.clone(),
            regions,
        });
        self.in_flight += 1;
        metrics::in_flight(self.in_flight);
        metrics::buffered(p, st.buffer.len());

        let key = PartitionKey {
            group: cfg.kafka.group_id.clone(),
            topic: cfg.kafka.source_topic.clone(),
            partition: p,
        };
        let expected = st.expected_watermark();
        let k = &mut st.kafka;
        let prepared = apply::build(
            &cfg,
            key,
            items,
            expected,
            k.db_watermark,
            k.outbox_dirty.then_some(k.confirmed),
        );
        k.outbox_dirty = false;
        let batch = prepared.batch;
        let ctx = self.ctx.clone();
        let stage = apply::Stage {
            previous,
            outcome,
            was_full,
            ceiling: next.ceiling,
        };
        let span = tracing::info_span!("batch", batch_id = %batch.batch_id, partition = p, first_offset = batch.first_offset, last_offset = batch.last_offset, records = n);
        tokio::spawn(
            async move {
                let result = apply::run_batch(&ctx, batch, prepared.rejected, cancel, stage).await;
                let _ = ctx.completions.send(Completion::Done {
                    partition: p,
                    size: n,
                    result,
                });
            }
            .instrument(span),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ready(partition: i32, high: bool, waited_ms: u64, now: Instant) -> Ready {
        Ready {
            partition,
            high,
            since: now - Duration::from_millis(waited_ms),
        }
    }

    #[test]
    fn partitions_with_high_priority_records_go_first_then_the_longest_waiting() {
        let now = Instant::now();
        let order = dispatch_order(vec![
            ready(0, false, 900, now),
            ready(1, true, 10, now),
            ready(2, false, 50, now),
            ready(3, true, 400, now),
            ready(4, false, 900, now),
        ]);
        assert_eq!(order, vec![3, 1, 0, 4, 2]);
    }

    /// With one free slot per round and a partition that always has high
    /// records, the high partition gets every slot; standard partitions
    /// take turns by waiting time, so each one gets a slot within as many
    /// rounds as there are standard partitions once the high work is done.
    #[test]
    fn a_high_partition_is_never_queued_behind_a_standard_backlog() {
        let start = Instant::now();
        let mut since: BTreeMap<i32, Instant> = (0..8).map(|p| (p, start)).collect();
        let mut served = Vec::new();
        for round in 0..16u64 {
            let now = start + Duration::from_millis(100 * (round + 1));
            // Partition 7 gets high records for the first 8 rounds.
            let cands = since
                .iter()
                .map(|(p, s)| Ready {
                    partition: *p,
                    high: *p == 7 && round < 8,
                    since: *s,
                })
                .collect();
            let p = dispatch_order(cands)[0];
            served.push(p);
            since.insert(p, now);
        }
        assert!(served[..8].iter().all(|p| *p == 7), "{served:?}");
        let mut rest = served[8..].to_vec();
        rest.sort();
        assert_eq!(
            rest,
            (0..8).collect::<Vec<_>>(),
            "then every partition in turn"
        );
    }
}
