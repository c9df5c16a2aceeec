//! The transactional side of a replay: [`Txn`] sends a chunk's messages in
//! one Kafka transaction and commits it together with the group's
//! dead-letter offsets; [`commit_chunk`] retries an aborted chunk.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::KAFKA_TIMEOUT;
use super::reader::{DlqReader, range_metadata};
use crate::config::KafkaConfig;

/// A replayed message waiting for its chunk's commit (kept to re-send the
/// chunk when its transaction must be aborted and retried).
pub(super) struct Pending {
    /// The partition the original came from, when it goes back there.
    pub(super) partition: Option<i32>,
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Option<Vec<u8>>,
    pub(super) headers: Vec<(String, Vec<u8>)>,
}

/// The transactional side of a replay.
pub(super) struct Txn {
    producer: ThreadedProducer<DefaultProducerContext>,
    dest: String,
    pub(super) open: bool,
}

impl Txn {
    pub(super) fn new(k: &KafkaConfig, group: &str, dest: &str) -> anyhow::Result<Txn> {
        let mut c: ClientConfig = crate::kafka::producer_config(k, false);
        c.set("transactional.id", format!("{group}.{}", k.dlq_topic))
            .set(
                "transaction.timeout.ms",
                k.transaction_timeout.as_millis().to_string(),
            )
            .set("linger.ms", "20");
        let producer: ThreadedProducer<DefaultProducerContext> =
            c.create().context("creating the replay producer")?;
        // Fences an interrupted replay of the same group and aborts its
        // open transaction, before this one reads the committed offsets.
        producer
            .init_transactions(KAFKA_TIMEOUT)
            .with_context(|| {
                format!(
                    "initialising the replay's Kafka transactions (is {} reachable, and does it support transactions?)",
                    k.bootstrap_servers
                )
            })?;
        Ok(Txn {
            producer,
            dest: dest.to_string(),
            open: false,
        })
    }

    pub(super) fn send(&mut self, p: &Pending) -> Result<(), KafkaError> {
        if !self.open {
            self.producer.begin_transaction()?;
            self.open = true;
        }
        let hdrs = crate::kafka::owned_headers(&p.headers);
        let mut rec = BaseRecord::<Vec<u8>, Vec<u8>>::to(&self.dest).headers(hdrs);
        if let Some(part) = p.partition {
            rec = rec.partition(part);
        }
        if let Some(k) = &p.key {
            rec = rec.key(k);
        }
        if let Some(v) = &p.value {
            rec = rec.payload(v);
        }
        loop {
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Commits the open transaction with `offsets`: partition → (the
    /// group's next offset on the dead-letter topic, the end of the run's
    /// range there, kept in the offset's metadata).
    fn commit(
        &mut self,
        consumer: &BaseConsumer,
        topic: &str,
        offsets: &BTreeMap<i32, (i64, i64)>,
    ) -> Result<(), KafkaError> {
        if !self.open {
            self.producer.begin_transaction()?;
            self.open = true;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, (o, end)) in offsets {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))?;
            if let Some(mut e) = tpl.find_partition(topic, *p) {
                e.set_metadata(range_metadata(*end));
            }
        }
        let cgm = consumer
            .group_metadata()
            .ok_or(KafkaError::Rebalance(RDKafkaErrorCode::UnknownMemberId))?;
        self.producer
            .send_offsets_to_transaction(&tpl, &cgm, KAFKA_TIMEOUT)?;
        self.producer.commit_transaction(KAFKA_TIMEOUT)?;
        self.open = false;
        Ok(())
    }

    fn abort(&mut self) -> Result<(), KafkaError> {
        if self.open {
            self.open = false;
            self.producer.abort_transaction(KAFKA_TIMEOUT)?;
        }
        Ok(())
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t) if t.is_fatal())
        || matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced)
        )
}

/// Commits the chunk's transaction; on an abortable error aborts it and
/// re-sends the chunk in a new one (up to 3 times).
pub(super) fn commit_chunk(
    t: &mut Txn,
    reader: &DlqReader,
    msgs: &[Pending],
    offsets: &BTreeMap<i32, (i64, i64)>,
) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = t.commit(&reader.consumer, &reader.topic, offsets);
        let Err(e) = r else { return Ok(()) };
        if is_fatal(&e) || attempt >= 3 {
            return commit_failed(t, &e);
        }
        tracing::warn!(error = %e, attempt, "replay transaction failed; aborting and re-sending the chunk");
        if let Err(abort) = t.abort() {
            return commit_failed(t, &abort);
        }
        std::thread::sleep(Duration::from_millis(200 * attempt));
        for p in msgs {
            if let Err(e) = t.send(p) {
                return commit_failed(t, &e);
            }
        }
    }
}

pub(super) fn commit_failed(t: &mut Txn, e: &KafkaError) -> anyhow::Result<()> {
    if !is_fatal(e) {
        let _ = t.abort();
    }
    let fenced = matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced)
    );
    if fenced {
        bail!(
            "another replay with the same --group started and took over ({e}); this one stops. \
             Nothing of its last chunk was published"
        );
    }
    bail!(
        "the replay stopped: {e}. Nothing of the last chunk was published; what was committed before \
         stays. Run the same command again to resume"
    )
}
