//! One assigned partition's state in the main loop.
//!
//! A batch goes through two stages: its database transaction, then its
//! Kafka commit (side outputs and offsets, in one Kafka transaction). A
//! partition runs at most one database transaction at a time, so records
//! apply in offset order, but the next batch's transaction may start while
//! the previous batch's Kafka commit is still under way: the Kafka commit
//! is off the partition's critical path. The next batch then counts on the
//! previous one's Kafka commit: it expects the database watermark the
//! previous batch left, waits for that commit before its own, and skips its
//! own if that one failed (so offsets never pass side outputs that were not
//! published); the partition then republishes from the outbox, with a batch
//! that starts only once the Kafka stage is empty (the one batch that
//! publishes them). At most [`MAX_COMMITTING`] batches wait in their Kafka
//! stage.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::Shared;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::batcher::{Aimd, Buffer};
use super::consumer::Credit;
use crate::telemetry::metrics;

/// Batches past their database commit that may wait for their Kafka
/// commit while the next batch's transaction runs.
pub const MAX_COMMITTING: usize = 1;

/// Whether a batch's Kafka commit went through, for the batch after it.
pub type KafkaOutcome = Shared<oneshot::Receiver<bool>>;

/// A batch in flight.
pub(super) struct InFlight {
    /// Its records. They count towards `max_buffered_per_partition` with
    /// the buffer: what bounds memory is every record the partition holds,
    /// not only those still waiting.
    pub records: usize,
    /// Cancels (abandons) its transaction at its next retry wait.
    pub cancel: CancellationToken,
    /// Its regions (released from the per-region cap when its transaction
    /// ends).
    pub regions: Vec<String>,
}

/// How far the partition's side outputs and offsets reached Kafka.
pub(super) struct KafkaProgress {
    /// Offsets and side outputs confirmed in Kafka up to here.
    pub confirmed: i64,
    /// The database watermark as far as we know.
    pub db_watermark: i64,
    /// Outbox rows were published since the last prune.
    pub outbox_dirty: bool,
    /// Side outputs between `confirmed` and the watermark still need
    /// publishing (after a failed Kafka commit, or found at assignment).
    pub needs_recovery: bool,
    /// The latest batch's Kafka outcome, while it may still be pending.
    pub last: Option<KafkaOutcome>,
}

pub(super) struct Partition {
    pub buffer: Buffer,
    pub aimd: Aimd,
    /// The batch in its database transaction.
    pub db: Option<InFlight>,
    /// Batches between their database commit and the end of their Kafka
    /// commit, oldest first.
    pub committing: VecDeque<InFlight>,
    /// Revoked: it takes no messages and starts no batch; it is given up
    /// once nothing of it is in flight.
    pub revoking: bool,
    /// What the consumer may still hand over (shared with it).
    pub credit: Arc<Credit>,
    /// Not being read: it holds its bound, or its batch is stalled. The
    /// metric `partition_paused` says so (kept here to update it on changes
    /// only).
    pub held_back: bool,
    pub stalled: bool,
    pub kafka: KafkaProgress,
}

impl Partition {
    pub fn new(aimd: Aimd, credit: Arc<Credit>, committed: i64, watermark: i64) -> Self {
        Partition {
            buffer: Buffer::default(),
            aimd,
            db: None,
            committing: VecDeque::new(),
            revoking: false,
            credit,
            held_back: false,
            stalled: false,
            kafka: KafkaProgress {
                confirmed: committed,
                db_watermark: watermark,
                outbox_dirty: true,
                needs_recovery: watermark > committed,
                last: None,
            },
        }
    }

    /// Any batch of it in flight (either stage).
    pub fn busy(&self) -> bool {
        self.db.is_some() || !self.committing.is_empty()
    }

    /// A new batch may start: no transaction runs, and the Kafka stage
    /// has room. Side outputs to republish (a failed Kafka commit, or found
    /// at assignment) wait for the Kafka stage to drain: the batch that
    /// republishes them must be the only one to.
    pub fn may_start(&self) -> bool {
        !self.revoking
            && self.db.is_none()
            && if self.kafka.needs_recovery {
                self.committing.is_empty()
            } else {
                self.committing.len() <= MAX_COMMITTING
            }
    }

    /// Records the partition holds: buffered and in its transaction (a
    /// batch in its Kafka stage has let its records go).
    pub fn held(&self) -> usize {
        self.buffer.len() + self.db.as_ref().map_or(0, |f| f.records)
    }

    /// The watermark the next batch expects to find: the one the previous
    /// batch left (a batch still in its Kafka stage publishes what is
    /// below), unless side outputs must be republished: then Kafka's, and
    /// the batch publishes what lies in between.
    pub fn expected_watermark(&self) -> i64 {
        if self.kafka.needs_recovery {
            self.kafka.confirmed
        } else {
            self.kafka.db_watermark
        }
    }

    /// A batch starts: its Kafka outcome becomes the one the next batch
    /// waits for; returns the previous one and the sender of its own. A
    /// recovery batch (side outputs to republish) gets none: it starts only
    /// once the Kafka stage is empty, so the previous outcome is settled, and
    /// its failure is what this batch repairs. (Waiting on it made every
    /// recovery batch fail in turn, for ever, after a failed Kafka commit:
    /// tests/it/security.rs, no WRITE ACL on the review topic.)
    pub fn start(&mut self, f: InFlight) -> (Option<KafkaOutcome>, oneshot::Sender<bool>) {
        let (tx, rx) = oneshot::channel();
        self.db = Some(f);
        let previous = self.kafka.last.replace(rx.shared());
        (previous.filter(|_| !self.kafka.needs_recovery), tx)
    }

    /// Says in the metrics whether the partition is being read.
    pub fn update_held_back(&mut self, partition: i32, max_buffered: usize) {
        let held_back = self.stalled || self.held() >= max_buffered;
        if held_back != self.held_back {
            self.held_back = held_back;
            metrics::paused(partition, held_back);
        }
    }

    /// Its transaction ended (committed): the batch moves to its Kafka
    /// stage. Returns the regions it held.
    pub fn db_done(&mut self) -> Vec<String> {
        match self.db.take() {
            Some(mut f) => {
                let regions = std::mem::take(&mut f.regions);
                self.committing.push_back(f);
                regions
            }
            None => Vec::new(),
        }
    }

    /// Its oldest batch ended: committed in Kafka (or not), or abandoned
    /// before its database commit. Returns the regions it still held.
    pub fn done(&mut self, db_committed: bool) -> Vec<String> {
        if db_committed {
            self.committing.pop_front();
            Vec::new()
        } else {
            self.db.take().map(|f| f.regions).unwrap_or_default()
        }
    }
}
