//! The Kafka side of a batch, after its database commit: publish the
//! batch's review and dead-letter messages and commit the consumer offsets.
//!
//! `transactional` delivery does both in ONE Kafka transaction
//! (send_offsets_to_transaction with the consumer's group metadata, so a
//! zombie from an older generation is fenced). Batches that finish while a
//! transaction runs are grouped into the next one. `idempotent` delivery
//! produces, flushes, then commits the offsets (at-least-once for the side
//! outputs).
//!
//! The producer runs on its own thread: every transactional call blocks.

use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use rdkafka::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::consumer::ConsumerSlot;
use crate::config::{Delivery, KafkaConfig};
use crate::message::OutMessage;
use crate::telemetry::{metrics, outage};

/// Why the Kafka side of a batch did not commit. Either way the database
/// side did, and its outbox rows are republished by the next batch of the
/// partition (or by whoever gets the partition next).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("the consumer group rebalanced: {0}")]
    Rebalanced(String),
    #[error("{0}")]
    Failed(String),
}

pub struct CommitRequest {
    pub partition: i32,
    /// The offset to commit (the next to read).
    pub next_offset: i64,
    pub outputs: Vec<OutMessage>,
    pub reply: oneshot::Sender<Result<(), CommitError>>,
}

/// Handle to the committer thread.
#[derive(Clone)]
pub struct Committer {
    tx: std_mpsc::Sender<CommitRequest>,
}

impl Committer {
    pub fn start(
        kafka: &KafkaConfig,
        consumer: Arc<ConsumerSlot>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Committer, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std_mpsc::channel();
        let worker = Worker {
            config: kafka.clone(),
            consumer,
            producer: None,
            shutdown,
        };
        let handle = std::thread::Builder::new()
            .name("govsync-committer".into())
            .spawn(move || worker.run(rx))?;
        Ok((Committer { tx }, handle))
    }

    /// Publishes `outputs` and commits `next_offset` for `partition`.
    pub async fn commit(
        &self,
        partition: i32,
        next_offset: i64,
        outputs: Vec<OutMessage>,
    ) -> Result<(), CommitError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(CommitRequest {
                partition,
                next_offset,
                outputs,
                reply,
            })
            .map_err(|_| CommitError::Failed("the committer has stopped".into()))?;
        rx.await.unwrap_or_else(|_| {
            Err(CommitError::Failed(
                "the committer stopped mid-commit".into(),
            ))
        })
    }
}

struct Worker {
    config: KafkaConfig,
    consumer: Arc<ConsumerSlot>,
    producer: Option<ThreadedProducer<SideContext>>,
    shutdown: CancellationToken,
}

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

impl Worker {
    fn run(mut self, rx: std_mpsc::Receiver<CommitRequest>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < 64 {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            let result = self.commit_group(&group);
            for r in group {
                let _ = r.reply.send(result.clone());
            }
        }
        if let Some(p) = self.producer.take() {
            let _ = p.flush(Duration::from_secs(10));
        }
    }

    fn transactional(&self) -> bool {
        self.config.delivery == Delivery::Transactional
    }

    /// Creates (and for transactions, initialises) the producer, retrying
    /// while the broker is unreachable.
    fn producer(&mut self) -> Result<&ThreadedProducer<SideContext>, CommitError> {
        if self.producer.is_none() {
            let mut delay = Duration::from_millis(200);
            loop {
                let created: Result<ThreadedProducer<SideContext>, KafkaError> =
                    crate::kafka::producer_config(&self.config, self.transactional())
                        .create_with_context(SideContext::default());
                let r = created.and_then(|p| {
                    if self.transactional() {
                        // Fences the previous incarnation of this
                        // transactional.id and aborts its open transaction.
                        p.init_transactions(TXN_TIMEOUT)?;
                    }
                    Ok(p)
                });
                match r {
                    Ok(p) => {
                        self.producer = Some(p);
                        break;
                    }
                    Err(e) if !self.shutdown.is_cancelled() => {
                        outage::KAFKA.failed("producer", &e);
                        tracing::debug!(error = %e, retry_in = ?delay, "creating the side-output producer failed");
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                    Err(e) => return Err(CommitError::Failed(format!("producer: {e}"))),
                }
            }
        }
        Ok(self.producer.as_ref().expect("set above"))
    }

    fn commit_group(&mut self, group: &[CommitRequest]) -> Result<(), CommitError> {
        let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
        for r in group {
            let e = offsets.entry(r.partition).or_insert(r.next_offset);
            *e = (*e).max(r.next_offset);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &offsets {
            if let Err(e) =
                tpl.add_partition_offset(&self.config.source_topic, *p, Offset::Offset(*o))
            {
                // Kafka's committed offset then lags; the database watermark
                // still keeps the partition exactly-once.
                tracing::error!(partition = p, offset = o, error = %e, "offset left out of the commit");
            }
        }
        let msgs: Vec<&OutMessage> = group.iter().flat_map(|r| r.outputs.iter()).collect();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let r = if self.transactional() {
                self.transaction(&msgs, &tpl)
            } else {
                self.produce_then_commit(&msgs, &tpl)
            };
            match r {
                Ok(()) => {
                    metrics::kafka_txn("committed");
                    outage::KAFKA.recovered();
                    let dlq = msgs
                        .iter()
                        .filter(|m| m.topic == self.config.dlq_topic)
                        .count();
                    metrics::side_outputs("dlq", dlq);
                    metrics::side_outputs("review", msgs.len() - dlq);
                    return Ok(());
                }
                Err(TxnError::Rebalanced(m)) => {
                    metrics::kafka_txn("rebalanced");
                    return Err(CommitError::Rebalanced(m));
                }
                Err(TxnError::Retry(m)) if attempts < 3 => {
                    metrics::kafka_txn("retried");
                    outage::KAFKA.failed("transaction", &m);
                    tracing::debug!(error = %m, attempt = attempts, "Kafka transaction failed; retrying");
                    std::thread::sleep(Duration::from_millis(100 * attempts));
                }
                Err(TxnError::Fatal(m)) if attempts < 3 => {
                    metrics::kafka_txn("producer_reset");
                    outage::KAFKA.failed("producer", &m);
                    tracing::debug!(error = %m, "side-output producer failed fatally; recreating it");
                    self.producer = None;
                }
                Err(TxnError::Retry(m) | TxnError::Fatal(m)) => {
                    metrics::kafka_txn("failed");
                    outage::KAFKA.failed("transaction", &m);
                    return Err(CommitError::Failed(m));
                }
            }
        }
    }

    fn transaction(
        &mut self,
        msgs: &[&OutMessage],
        offsets: &TopicPartitionList,
    ) -> Result<(), TxnError> {
        let consumer = self.consumer.current();
        let max_payload = self.config.side_output_max_bytes;
        let p = self
            .producer()
            .map_err(|e| TxnError::Fatal(e.to_string()))?;
        p.begin_transaction().map_err(TxnError::from_kafka)?;
        let body = (|| {
            for m in msgs {
                send(p, m, max_payload)?;
            }
            crate::failpoint::hit("kafka_mid_txn");
            let cgm = consumer
                .group_metadata()
                .ok_or(KafkaError::Rebalance(RDKafkaErrorCode::UnknownMemberId))?;
            p.send_offsets_to_transaction(offsets, &cgm, TXN_TIMEOUT)?;
            commit_resuming(p)
        })();
        match body {
            Ok(()) => {
                crate::failpoint::hit("kafka_after_commit");
                Ok(())
            }
            Err(e) => {
                let err = TxnError::from_kafka(e).caused_by(abortable_cause(p));
                if !matches!(err, TxnError::Fatal(_)) {
                    if let Err(abort) = p.abort_transaction(TXN_TIMEOUT) {
                        tracing::warn!(error = %abort, "aborting the Kafka transaction failed");
                        return Err(TxnError::Fatal(format!("{err}; abort failed: {abort}")));
                    }
                }
                Err(err)
            }
        }
    }

    fn produce_then_commit(
        &mut self,
        msgs: &[&OutMessage],
        offsets: &TopicPartitionList,
    ) -> Result<(), TxnError> {
        let consumer = self.consumer.current();
        let max_payload = self.config.side_output_max_bytes;
        let p = self
            .producer()
            .map_err(|e| TxnError::Fatal(e.to_string()))?;
        p.context().take_failure();
        for m in msgs {
            send(p, m, max_payload).map_err(TxnError::from_kafka)?;
        }
        p.flush(TXN_TIMEOUT).map_err(TxnError::from_kafka)?;
        if p.in_flight_count() > 0 {
            return Err(TxnError::Retry("side outputs not delivered in time".into()));
        }
        if let Some(cause) = p.context().take_failure() {
            return Err(TxnError::Retry(format!(
                "a side output was not delivered: {cause}"
            )));
        }
        consumer
            .commit(offsets, CommitMode::Sync)
            .map_err(TxnError::from_kafka)
    }
}

/// Produces one side output. A payload over `max_payload` (the broker's
/// limit for the side topics) is cut to that size and marked with
/// `govsync.payload.truncated: <original size>`: a dead letter the broker
/// cannot take must not stall the partition forever.
fn send(
    p: &ThreadedProducer<SideContext>,
    m: &OutMessage,
    max_payload: usize,
) -> Result<(), KafkaError> {
    let mut headers = m.headers.clone();
    let payload = match &m.payload {
        Some(v) if v.len() > max_payload => {
            headers.push((
                "govsync.payload.truncated".into(),
                v.len().to_string().into_bytes(),
            ));
            Some(&v[..max_payload])
        }
        other => other.as_deref(),
    };
    let headers = crate::kafka::owned_headers(&headers);
    let mut rec = BaseRecord::<Vec<u8>, [u8]>::to(&m.topic).headers(headers);
    if let Some(k) = &m.key {
        rec = rec.key(k);
    }
    if let Some(v) = payload {
        rec = rec.payload(v);
    }
    loop {
        match p.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                p.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum TxnError {
    #[error("{0}")]
    Rebalanced(String),
    #[error("{0}")]
    Retry(String),
    #[error("{0}")]
    Fatal(String),
}

/// Commits the open transaction. A commit that timed out or hit a
/// retriable error (a broker restarting) is resumed by calling it again,
/// as librdkafka asks: aborting then conflicts with the commit still in
/// progress ("Conflicting commit_transaction API call is already in
/// progress", seen after a broker restart), which forced a producer reset.
fn commit_resuming(p: &ThreadedProducer<SideContext>) -> Result<(), KafkaError> {
    let mut resumed = 0;
    loop {
        match p.commit_transaction(TXN_TIMEOUT) {
            Err(KafkaError::Transaction(t))
                if t.is_retriable() && !t.txn_requires_abort() && resumed < 4 =>
            {
                resumed += 1;
                outage::KAFKA.failed("transaction", &t);
                tracing::debug!(error = %t, resumed, "commit_transaction resumed");
            }
            other => return other,
        }
    }
}

/// Why the open transaction must be aborted, when it must. A refused
/// request (e.g. AddPartitionsToTxn with "Topic authorization failed" for a
/// missing WRITE ACL) puts the transaction in librdkafka's abortable state
/// in the background, and the call that meets it may report only a
/// consequence ("Erroneous state" from send_offsets_to_transaction): the
/// operator must read the cause. `begin_transaction` reports that state's
/// error (librdkafka keeps the first one) and changes nothing: inside a
/// transaction it is refused either way, with a plain state error when the
/// transaction is not abortable.
fn abortable_cause(p: &ThreadedProducer<SideContext>) -> Option<String> {
    match p.begin_transaction() {
        Err(KafkaError::Transaction(t)) if t.txn_requires_abort() => Some(t.to_string()),
        _ => None,
    }
}

impl TxnError {
    /// Adds what caused this error (unless the message has it already),
    /// classification unchanged.
    fn caused_by(self, cause: Option<String>) -> TxnError {
        let Some(cause) = cause.filter(|c| !self.to_string().contains(c.as_str())) else {
            return self;
        };
        let with = |m: String| format!("{m} (caused by: {cause})");
        match self {
            TxnError::Rebalanced(m) => TxnError::Rebalanced(with(m)),
            TxnError::Retry(m) => TxnError::Retry(with(m)),
            TxnError::Fatal(m) => TxnError::Fatal(with(m)),
        }
    }

    /// Sorts by error code and librdkafka's transaction flags, never by
    /// message text.
    fn from_kafka(e: KafkaError) -> TxnError {
        use RDKafkaErrorCode as C;
        let code = e.rdkafka_error_code();
        if matches!(
            code,
            Some(
                C::IllegalGeneration
                    | C::UnknownMemberId
                    | C::FencedInstanceId
                    | C::RebalanceInProgress
                    | C::AssignmentLost
            )
        ) {
            return TxnError::Rebalanced(e.to_string());
        }
        if let KafkaError::Transaction(t) = &e
            && t.is_fatal()
        {
            return TxnError::Fatal(e.to_string());
        }
        TxnError::Retry(e.to_string())
    }
}

/// Keeps the first failed delivery's error (idempotent mode checks it after
/// a flush and reports it) and routes librdkafka's log to tracing.
#[derive(Default)]
struct SideContext {
    first_failure: Mutex<Option<String>>,
}

impl SideContext {
    fn take_failure(&self) -> Option<String> {
        self.first_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl ClientContext for SideContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::log_to_tracing(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
    }
}

impl ProducerContext for SideContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        // Reported by the committer as part of ONE error line, the one the
        // operator reads first. In transactional mode the transaction's own
        // error carries the cause (see `abortable_cause`; the messages an
        // abort purges are its consequence), and this record goes unread.
        if let Err((e, _)) = result {
            let mut first = self.first_failure.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_added_once_and_keeps_the_classification() {
        let cause = "Transaction error: Failed to add partition(s) to transaction: \
                     Broker: Topic authorization failed";
        let consequence = TxnError::Retry(
            "Transaction error: Failed to commit offsets to transaction on broker (none): \
             Local: Erroneous state"
                .into(),
        );
        let told = consequence.caused_by(Some(cause.into()));
        assert!(matches!(told, TxnError::Retry(_)), "{told:?}");
        assert!(
            told.to_string()
                .ends_with(&format!("Erroneous state (caused by: {cause})")),
            "{told}"
        );

        // The error that is the cause itself is not repeated.
        let itself = TxnError::Fatal(cause.into()).caused_by(Some(cause.into()));
        assert!(
            matches!(&itself, TxnError::Fatal(m) if m == cause),
            "{itself:?}"
        );
        let none = TxnError::Rebalanced("gen".into()).caused_by(None);
        assert!(
            matches!(&none, TxnError::Rebalanced(m) if m == "gen"),
            "{none:?}"
        );
    }
}
