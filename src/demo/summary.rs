//! What the demo prints: a progress bar (or plain progress lines) while it
//! runs, then the summary: throughput, outcomes by data type, batch sizes and
//! latency, the seed document's records and a few masked changes, and where
//! to look next.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Row as _;

use super::{DemoOptions, DemoSummary};
use crate::pipeline::Progress;
use crate::sink::Outcome;
use crate::telemetry::mask;

/// A progress bar on a terminal, plain lines otherwise.
pub(super) struct Bar {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    last_line: std::cell::Cell<Instant>,
    started: Instant,
}

impl Bar {
    pub(super) fn new(total: u64, fancy: bool) -> Self {
        let bar = fancy.then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} records  {per_sec}  ETA {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Bar {
            bar,
            total,
            last_line: std::cell::Cell::new(Instant::now()),
            started: Instant::now(),
        }
    }

    pub(super) fn update(&self, p: &Progress) {
        let done = p.done();
        match &self.bar {
            Some(b) => b.set_position(done),
            None if self.last_line.get().elapsed() >= Duration::from_secs(2) => {
                self.last_line.set(Instant::now());
                let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
                println!(
                    "progress: {done}/{} records, {rate:.0} records/s",
                    self.total
                );
            }
            None => {}
        }
    }

    pub(super) fn finish(&self, p: &Progress) {
        if let Some(b) = &self.bar {
            b.set_position(p.done());
            b.finish();
        }
    }
}
/// The seed records' review reasons (masked), by customer id.
pub(super) fn seed_review_reasons(review: &[Vec<u8>]) -> BTreeMap<String, String> {
    review
        .iter()
        .filter_map(|v| serde_json::from_slice::<Value>(v).ok())
        .filter(|d| {
            d["customer_id"]
                .as_str()
                .is_some_and(|c| c.starts_with("CUST_320102_00"))
        })
        .map(|d| {
            let details: Vec<String> = d["details"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(mask::digits_in))
                .collect();
            (
                d["customer_id"].as_str().unwrap_or_default().to_string(),
                format!(
                    "{}: {}",
                    d["reason"].as_str().unwrap_or_default(),
                    details.join("; ")
                ),
            )
        })
        .collect()
}

pub(super) async fn print_summary(
    out: &mut impl Write,
    s: &DemoSummary,
    progress: &Progress,
    pool: &sqlx::SqlitePool,
    opts: &DemoOptions,
    cfg_path: &Path,
    seed_reviews: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    print_throughput(out, s)?;
    print_outcomes(out, s, pool).await?;
    print_batches(out, progress)?;
    print_seed_records(out, pool, seed_reviews).await?;
    print_sample_changes(out, pool).await?;
    print_next_steps(out, opts, cfg_path)
}

fn print_throughput(out: &mut impl Write, s: &DemoSummary) -> anyhow::Result<()> {
    let secs = s.elapsed.as_secs_f64();
    writeln!(out)?;
    writeln!(
        out,
        "== {} events in {:.1} s: {:.0} events/s end to end (publish → SQLite commit)",
        s.published,
        secs,
        s.published as f64 / secs
    )?;
    writeln!(out)?;
    Ok(())
}

/// Outcomes by data type: the change log has the data type of every
/// decided record; duplicates and dead letters are counted by the processor.
async fn print_outcomes(
    out: &mut impl Write,
    s: &DemoSummary,
    pool: &sqlx::SqlitePool,
) -> anyhow::Result<()> {
    let rows =
        sqlx::query("SELECT data_type, outcome, count(*) FROM govsync_change_log GROUP BY 1, 2")
            .fetch_all(pool)
            .await?;
    let mut by: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in rows {
        by.insert(
            (r.try_get::<String, _>(1)?, r.try_get::<String, _>(0)?),
            r.try_get(2)?,
        );
    }
    writeln!(
        out,
        "{:<10} {:>9} {:>9} {:>9} {:>9}   what",
        "outcome", "total", "address", "id_card", "phone"
    )?;
    for o in Outcome::ALL {
        let name = o.as_str();
        let total = s.outcomes.get(name).copied().unwrap_or(0);
        if o == Outcome::Skipped && total == 0 {
            continue;
        }
        let cell = |dt: &str| {
            by.get(&(name.to_string(), dt.to_string()))
                .map_or("-".to_string(), |n| n.to_string())
        };
        writeln!(
            out,
            "{:<10} {:>9} {:>9} {:>9} {:>9}   {}",
            name,
            total,
            cell("address"),
            cell("id_card"),
            cell("phone"),
            what(name)
        )?;
    }
    let sum: u64 = s.outcomes.values().sum();
    writeln!(
        out,
        "{:<10} {:>9}   = published {}",
        "sum", sum, s.published
    )?;
    writeln!(
        out,
        "topics: {} review messages, {} dead-letter messages",
        s.review_messages, s.dlq_messages
    )?;
    Ok(())
}

/// What an outcome means, for the outcome table.
fn what(o: &str) -> &'static str {
    match o {
        "applied" => "written to customer_profile",
        "flagged" => "review flag written, sent to the review topic",
        "review" => "not applied: govsync's check contradicts the engine; review topic",
        "conflict" => "not applied: the row changed after governance read it; review topic",
        "stale" => "not applied: a newer result was already applied",
        "duplicate" => "skipped: event_id already applied",
        "invalid" => "dead-lettered (malformed, schema or rule)",
        "poison" => "dead-lettered: the database rejected the record",
        _ => "",
    }
}

/// Batch sizes and commit latency, from the batch log.
fn print_batches(out: &mut impl Write, progress: &Progress) -> anyhow::Result<()> {
    let mut log = progress
        .batch_log
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    if !log.is_empty() {
        let mut sizes: Vec<usize> = log.iter().map(|b| b.records).collect();
        sizes.sort_unstable();
        log.sort_unstable_by_key(|b| b.latency());
        let pct = |p: f64| {
            log[((p / 100.0) * (log.len() - 1) as f64).round() as usize]
                .latency()
                .as_secs_f64()
                * 1000.0
        };
        writeln!(
            out,
            "batches: {} committed; sizes min {} / median {} / max {} (adaptive); commit latency p50 {:.1} ms, p99 {:.1} ms",
            log.len(),
            sizes[0],
            sizes[sizes.len() / 2],
            sizes[sizes.len() - 1],
            pct(50.0),
            pct(99.0)
        )?;
    }
    Ok(())
}

async fn print_seed_records(
    out: &mut impl Write,
    pool: &sqlx::SqlitePool,
    seed_reviews: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    writeln!(out)?;
    writeln!(out, "the seed document's records:")?;
    let seed = sqlx::query(
        "SELECT customer_id, data_type, outcome, before_image, after_image FROM govsync_change_log \
         WHERE customer_id LIKE 'CUST_320102_00_' ORDER BY customer_id",
    )
    .fetch_all(pool)
    .await?;
    for r in seed {
        let id: String = r.try_get(0)?;
        let outcome: String = r.try_get(2)?;
        let before: Option<String> = r.try_get(3)?;
        let after: Option<String> = r.try_get(4)?;
        writeln!(
            out,
            "  {id} {:<8} {:<9} {}",
            r.try_get::<String, _>(1)?,
            outcome,
            change_text(before.as_deref(), after.as_deref())
        )?;
        if let Some(reason) = seed_reviews.get(&id) {
            writeln!(out, "      on the review topic, {reason}")?;
        }
    }
    Ok(())
}

/// One masked change per data type from the generated records.
async fn print_sample_changes(out: &mut impl Write, pool: &sqlx::SqlitePool) -> anyhow::Result<()> {
    writeln!(out)?;
    writeln!(out, "three changes from the change log (masked):")?;
    for dt in ["address", "phone", "id_card"] {
        let row = sqlx::query(
            "SELECT customer_id, before_image, after_image FROM govsync_change_log \
             WHERE data_type = ?1 AND outcome IN ('applied', 'flagged') AND customer_id NOT LIKE 'CUST_320102_00_' ORDER BY id LIMIT 1",
        )
        .bind(dt)
        .fetch_optional(pool)
        .await?;
        if let Some(r) = row {
            let b: Option<String> = r.try_get(1)?;
            let a: Option<String> = r.try_get(2)?;
            writeln!(
                out,
                "  {} {dt}: {}",
                r.try_get::<String, _>(0)?,
                change_text(b.as_deref(), a.as_deref())
            )?;
        }
    }
    Ok(())
}

fn print_next_steps(
    out: &mut impl Write,
    opts: &DemoOptions,
    cfg_path: &Path,
) -> anyhow::Result<()> {
    writeln!(out)?;
    writeln!(out, "where to look next:")?;
    writeln!(
        out,
        "  the database:    sqlite3 {} 'SELECT * FROM govsync_batch LIMIT 5'",
        opts.db.display()
    )?;
    writeln!(
        out,
        "  the batches:     govsync batches --config {}",
        cfg_path.display()
    )?;
    writeln!(
        out,
        "  undo a batch:    govsync rollback --config {} --batch <id> --dry-run",
        cfg_path.display()
    )?;
    writeln!(
        out,
        "  the DLQ (on your Kafka): govsync dlq inspect --config config/local.toml"
    )?;
    if let Some(m) = opts.metrics {
        writeln!(
            out,
            "  metrics:         http://{m}/metrics (while govsync runs)"
        )?;
    }
    writeln!(
        out,
        "  review items:    govsync review list --config {} --status open",
        cfg_path.display()
    )?;
    if opts.review.is_none() {
        writeln!(
            out,
            "  decide them:     govsync demo --review (the same run, then the review console \
             in your browser until Ctrl-C)"
        )?;
    }
    Ok(())
}

/// `address: 江苏南京*** → 江苏省南京市玄武区***` with every value masked.
fn change_text(before: Option<&str>, after: Option<&str>) -> String {
    let parse = |s: Option<&str>| {
        s.and_then(|s| serde_json::from_str::<Value>(s).ok())
            .unwrap_or(Value::Null)
    };
    let (b, a) = (parse(before), parse(after));
    let Some(am) = a.as_object() else {
        return String::new();
    };
    let mut parts = Vec::new();
    for (k, av) in am {
        if k == "last_governance_time" {
            continue;
        }
        let bv = b.get(k).cloned().unwrap_or(Value::Null);
        if &bv == av {
            continue; // written but unchanged (e.g. a verified phone number)
        }
        let show = |v: &Value| match (k.as_str(), v) {
            ("address", Value::String(s)) => mask::address(s),
            ("id_card", Value::String(s)) => mask::id_card(s),
            ("phone", Value::String(s)) => mask::phone(s),
            ("carrier_info", Value::String(s)) => serde_json::from_str::<Value>(s)
                .ok()
                .and_then(|v| {
                    v.get("carrier")
                        .and_then(|c| c.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "…".into()),
            (_, Value::Null) => "∅".into(),
            (_, Value::Number(n)) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or_default())
                .trim_end_matches('0')
                .to_string(),
            (_, Value::String(s)) => s.clone(),
            (_, other) => other.to_string(),
        };
        parts.push(format!("{k} {} → {}", show(&bv), show(av)));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::change_text;

    #[test]
    fn change_text_masks_values_and_skips_unchanged_fields() {
        let before = r#"{"phone":"18787101980","quality_score":0.49,"carrier_info":null}"#;
        let after = r#"{"phone":"18787101980","quality_score":0.9,"carrier_info":"{\"carrier\":\"中国移动\"}","last_governance_time":"2024-01-26T15:46:55Z"}"#;
        let text = change_text(Some(before), Some(after));
        assert_eq!(text, "carrier_info ∅ → 中国移动, quality_score 0.49 → 0.9");
        let text = change_text(
            Some(r#"{"address":"江苏南京玄武区中山路1号"}"#),
            Some(r#"{"address":"江苏省南京市玄武区中山路1号"}"#),
        );
        assert!(!text.contains("中山路"), "unmasked address in {text}");
        assert!(text.starts_with("address "), "{text}");
    }
}
