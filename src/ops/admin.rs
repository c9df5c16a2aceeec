//! The database and topic chores: `govsync migrate`, `produce`,
//! `rollback` and `batches`.

use std::io::Write;

use anyhow::Context;

use crate::cli::BatchesArgs;
use crate::config::Config;
use crate::sink::LedgerEntry;
use crate::sink::rollback::RollbackReport;
use crate::{kafka, sink};

/// `govsync migrate`: govsync's tables (with `with_target_table` also the
/// business table), and with `topics` the source, review and dead-letter
/// topics, created with `partitions` partitions when missing.
pub async fn migrate(
    cfg: &Config,
    with_target_table: bool,
    topics: bool,
    partitions: i32,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let db = sink::connect(&cfg.database).await?;
    let done = db.migrate(with_target_table).await?;
    writeln!(
        out,
        "database ({}): migrated {}",
        db.kind(),
        done.join(", ")
    )?;
    let kept = db.maintain(cfg.change_log_retention).await?;
    writeln!(
        out,
        "change log (retention {}): {kept}",
        humantime::format_duration(cfg.change_log_retention)
    )?;
    if topics {
        let created = kafka::ensure_topics(
            &kafka::tool_config(&cfg.kafka),
            &[
                (cfg.kafka.source_topic.as_str(), partitions),
                (cfg.kafka.review_topic.as_str(), partitions),
                (cfg.kafka.dlq_topic.as_str(), partitions),
                (cfg.kafka.decision_topic.as_str(), partitions),
            ],
            1,
        )
        .await
        .context("creating topics")?;
        writeln!(
            out,
            "kafka: created topics: {}",
            if created.is_empty() {
                "none (all exist)".into()
            } else {
                created.join(", ")
            }
        )?;
    }
    db.close().await;
    Ok(())
}

/// `govsync produce`: publishes the JSON lines of `file` (`-`: standard
/// input) to the source topic, keyed by region.
pub async fn produce(cfg: &Config, file: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    let producer: rdkafka::producer::FutureProducer = kafka::tool_config(&cfg.kafka).create()?;
    let events = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| (kafka::region_key(l.as_bytes()), l.as_bytes().to_vec()));
    let n = kafka::publish(&producer, &cfg.kafka.source_topic, events).await?;
    writeln!(out, "published {n} events to {}", cfg.kafka.source_topic)?;
    Ok(())
}

/// `govsync rollback`: undoes one batch (or, `dry_run`, says what it would
/// undo).
pub async fn rollback(
    cfg: &Config,
    batch: &str,
    dry_run: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let db = sink::connect(&cfg.database).await?;
    let report = sink::rollback::rollback(db.as_ref(), batch, dry_run).await?;
    print_rollback(&report, out)?;
    db.close().await;
    Ok(())
}

/// `govsync batches`: the ledger rows `args` select.
pub async fn batches(cfg: &Config, args: &BatchesArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let db = sink::connect(&cfg.database).await?;
    let since = match &args.since {
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .with_context(|| {
                    format!("--since {s}: expected an RFC 3339 time like 2024-01-15T10:00:00+08:00")
                })?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    let filter = sink::BatchFilter {
        limit: args.limit,
        topic: None,
        partition: args.partition,
        status: args.status.clone(),
        since,
        batch_id: args.batch.clone(),
    };
    let rows = db.batches(&filter).await?;
    print_batches(&rows, args.json, out)?;
    db.close().await;
    Ok(())
}

/// Prints a rollback report for a person.
pub fn print_rollback(r: &RollbackReport, out: &mut impl Write) -> std::io::Result<()> {
    let verb = if r.dry_run {
        "would restore"
    } else {
        "restored"
    };
    writeln!(
        out,
        "batch {}: {verb} {} rows",
        r.batch_id,
        r.restored.len()
    )?;
    if !r.deleted.is_empty() {
        let verb = if r.dry_run { "would delete" } else { "deleted" };
        writeln!(out, "  {verb} {} rows the batch inserted", r.deleted.len())?;
    }
    if !r.changed_since.is_empty() {
        writeln!(
            out,
            "  left alone {} rows changed since the batch:",
            r.changed_since.len()
        )?;
        for (cust, cols) in &r.changed_since {
            writeln!(out, "    {cust}: {}", cols.join(", "))?;
        }
    }
    if !r.dry_run {
        writeln!(out, "  logged as batch {}", r.rollback_batch_id)?;
    }
    Ok(())
}

/// Prints ledger rows as a table or JSON lines.
pub fn print_batches(
    rows: &[LedgerEntry],
    json: bool,
    out: &mut impl Write,
) -> std::io::Result<()> {
    if json {
        for r in rows {
            writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default())?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<48} {:>4} {:>21} {:>6} {:>7} {:>12} STATUS  COUNTS",
        "BATCH", "PART", "OFFSETS", "RECS", "MS", "STARTED"
    )?;
    for r in rows {
        let counts: Vec<String> = r.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(
            out,
            "{:<48} {:>4} {:>21} {:>6} {:>7} {:>12} {:<7} {}",
            r.batch_id,
            r.partition,
            format!("{}-{}", r.first_offset, r.last_offset),
            r.records,
            r.duration_ms,
            r.started_at.format("%m-%d %H:%M:%S"),
            r.status,
            counts.join(" ")
        )?;
    }
    Ok(())
}
