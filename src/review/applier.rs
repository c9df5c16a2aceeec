//! The decision applier: consumes the decision topic in its own consumer
//! group (`review.decision_group`) and applies each partition's decisions
//! through the database in one transaction per batch
//! ([`crate::sink::decisions::apply`]), then commits the offsets.
//!
//! Exactly once: the transaction advances the decision partition's
//! watermark with the writes, and records every decision id (applied or
//! refused). A crash between the database commit and the offset commit
//! re-reads messages that the watermark then skips; a decision re-sent
//! with the same id is a duplicate. A database outage pauses the applier
//! (the batch is retried with a capped backoff, nothing is refused for it);
//! governance results keep flowing in their own pipeline meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::decision::ReviewDecision;
use crate::config::Config;
use crate::sink::decisions::{self, DecisionBatch, DecisionMessage, DecisionOutcome};
use crate::sink::{Database, PartitionKey, SinkError};
use crate::telemetry::metrics;

/// Messages taken into one batch at most.
const MAX_BATCH: usize = 500;
/// How long a batch waits for more messages after its first.
const LINGER: Duration = Duration::from_millis(50);

/// Runs until `shutdown`; returns an error only when the consumer cannot
/// be created or subscribed.
pub async fn run(
    cfg: Arc<Config>,
    db: Arc<dyn Database>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut seq: u64 = 0;
    loop {
        let consumer = decision_consumer(&cfg)?;
        tracing::info!(
            topic = %cfg.kafka.decision_topic, group = %cfg.review.decision_group,
            "review decision applier started"
        );
        if !consume(&consumer, &cfg, &*db, &shutdown, &mut seq).await? {
            break;
        }
    }
    tracing::info!("review decision applier stopped");
    Ok(())
}

/// The decision topic's consumer, subscribed.
fn decision_consumer(cfg: &Config) -> anyhow::Result<StreamConsumer<crate::kafka::OutageContext>> {
    let mut cc = crate::kafka::consumer_config(&cfg.kafka);
    cc.set("group.id", &cfg.review.decision_group);
    if cfg.kafka.static_membership {
        cc.set(
            "group.instance.id",
            format!("{}-decisions", cfg.kafka.instance_id),
        );
    }
    let consumer: StreamConsumer<crate::kafka::OutageContext> =
        cc.create_with_context(crate::kafka::OutageContext)?;
    consumer.subscribe(&[&cfg.kafka.decision_topic])?;
    Ok(consumer)
}

/// Applies what `consumer` delivers until shutdown (false) or until
/// librdkafka declares it dead (true: a static member fenced, which a
/// broker restart can make it do to itself; it never rejoins, so the
/// caller makes a new one. The watermark keeps the decisions
/// exactly-once).
async fn consume(
    consumer: &StreamConsumer<crate::kafka::OutageContext>,
    cfg: &Config,
    db: &dyn Database,
    shutdown: &CancellationToken,
    seq: &mut u64,
) -> anyhow::Result<bool> {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(false),
            m = consumer.recv() => m,
        };
        let mut taken = vec![first];
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while taken.len() < MAX_BATCH {
            tokio::select! {
                _ = &mut linger => break,
                m = consumer.recv() => taken.push(m),
            }
        }
        // Per partition, in offset order.
        let mut parts: BTreeMap<i32, Vec<DecisionMessage>> = BTreeMap::new();
        for m in taken {
            match m {
                Ok(m) => parts
                    .entry(m.partition())
                    .or_default()
                    .push(DecisionMessage {
                        offset: m.offset(),
                        decision: match m.payload() {
                            Some(p) => ReviewDecision::decode(p),
                            None => Err("an empty message (no payload)".into()),
                        },
                    }),
                Err(e) => crate::telemetry::outage::KAFKA.failed("decision consumer", &e),
            }
        }
        let fatal = consumer.client().fatal_error();
        for (partition, messages) in parts {
            *seq += 1;
            let key = PartitionKey {
                group: cfg.review.decision_group.clone(),
                topic: cfg.kafka.decision_topic.clone(),
                partition,
            };
            let next = messages.last().map(|m| m.offset + 1);
            let batch = DecisionBatch {
                batch_id: format!(
                    "{}-{}-review-{partition}-{}-{seq}",
                    cfg.review.decision_group,
                    cfg.kafka.instance_id,
                    messages.first().map_or(0, |m| m.offset)
                ),
                key,
                messages,
                attempt: 1,
            };
            if !apply_until_done(db, batch, cfg, shutdown).await {
                return Ok(false);
            }
            if let Some(next) = next {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(
                    &cfg.kafka.decision_topic,
                    partition,
                    Offset::Offset(next),
                )?;
                // The watermark makes a lost commit harmless: the messages
                // come again and are skipped.
                if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                    crate::telemetry::outage::KAFKA.failed("decision commit", &e);
                }
            }
        }
        if let Some((code, reason)) = fatal {
            tracing::error!(
                error = %code, reason = %reason,
                "the decision consumer failed fatally; joining its group again with a new consumer"
            );
            return Ok(true);
        }
    }
}

/// Applies a batch, retrying infrastructure failures with a capped backoff
/// until it commits. A decision the database itself rejects (a value too
/// long for a mapped column, a constraint) is refused alone. Returns false
/// when shut down before it committed.
async fn apply_until_done(
    db: &dyn Database,
    mut batch: DecisionBatch,
    cfg: &Config,
    shutdown: &CancellationToken,
) -> bool {
    let mut delay = Duration::from_millis(200);
    loop {
        match decisions::apply(db, &batch, &cfg.rules).await {
            Ok(report) => {
                crate::telemetry::outage::DATABASE.recovered();
                report_outcomes(&batch, &report.outcomes);
                return true;
            }
            Err(SinkError::Record { .. }) if batch.messages.len() > 1 => {
                // Find the one the database rejects: each message alone.
                let partition = batch.key.partition;
                for (i, m) in std::mem::take(&mut batch.messages).into_iter().enumerate() {
                    let single = DecisionBatch {
                        batch_id: format!("{}-{i}", batch.batch_id),
                        key: batch.key.clone(),
                        messages: vec![m],
                        attempt: batch.attempt,
                    };
                    if !Box::pin(apply_until_done(db, single, cfg, shutdown)).await {
                        return false;
                    }
                }
                tracing::info!(partition, "decision batch applied message by message");
                return true;
            }
            Err(e @ SinkError::Record { .. }) => {
                let m = &mut batch.messages[0];
                tracing::warn!(offset = m.offset, error = %e, "the database rejects a decision: refused");
                m.decision = Err(format!("the database rejects it: {e}"));
            }
            Err(e) => {
                if matches!(e.class(), "connection" | "timeout") {
                    crate::telemetry::outage::DATABASE.failed(e.class(), &e);
                } else {
                    tracing::warn!(
                        partition = batch.key.partition, class = e.class(), error = %e,
                        attempt = batch.attempt, retry_in = ?delay,
                        "applying review decisions failed; retrying"
                    );
                }
                metrics::retry(e.class());
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(cfg.retry.stalled_backoff_max);
                batch.attempt += 1;
            }
        }
    }
}

/// Metrics and one log line per decision (ids, verdict and reviewer only:
/// never the values).
fn report_outcomes(batch: &DecisionBatch, outcomes: &[DecisionOutcome]) {
    metrics::decisions(outcomes);
    for (m, o) in batch.messages.iter().zip(outcomes) {
        let (id, event, reviewer) = match &m.decision {
            Ok(d) => (
                d.decision_id.as_str(),
                d.event_id.as_str(),
                d.reviewer.as_str(),
            ),
            Err(_) => ("", "", ""),
        };
        match o {
            DecisionOutcome::Applied(v) => tracing::info!(
                decision_id = id,
                event_id = event,
                reviewer,
                verdict = v.as_str(),
                offset = m.offset,
                "review decision applied"
            ),
            DecisionOutcome::Refused(class, why) => tracing::warn!(
                decision_id = id, event_id = event, reviewer, reason = class.as_str(),
                why = %why, offset = m.offset, "review decision refused"
            ),
            DecisionOutcome::Duplicate => tracing::info!(
                decision_id = id,
                event_id = event,
                offset = m.offset,
                "review decision already applied or refused: skipped"
            ),
            DecisionOutcome::Skipped => {}
        }
    }
}
