//! `govsync dlq inspect`: counts by error class, data type and region,
//! replay counts, and masked samples per error class, as a table or JSON.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::TRUNCATED;
use super::labels::{class_of, data_type_of, dead_lettered_at, header_str, region_of};
use super::reader::DlqReader;
use crate::config::Config;
use crate::output::headers;
use crate::telemetry::mask;

/// One masked dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub partition: i32,
    pub offset: i64,
    pub error_class: String,
    pub error_message: String,
    pub data_type: String,
    pub region: String,
    pub dead_lettered_at: String,
    pub replay_count: u32,
    pub batch_id: String,
    /// `topic/partition/offset` of the original message.
    pub source: String,
    pub key: String,
    pub value_bytes: usize,
    /// The masked event, when the value is JSON.
    pub value: Option<Value>,
    /// A masked prefix, when it is not.
    pub value_prefix: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionRange {
    pub partition: i32,
    pub start_offset: i64,
    pub end_offset: i64,
}

/// What `govsync dlq inspect` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InspectReport {
    pub topic: String,
    pub messages: u64,
    pub partitions: Vec<PartitionRange>,
    pub first_dead_lettered_at: Option<String>,
    pub last_dead_lettered_at: Option<String>,
    pub by_class: BTreeMap<String, u64>,
    pub by_data_type: BTreeMap<String, u64>,
    pub by_region: BTreeMap<String, u64>,
    /// class → data type → count.
    pub by_class_and_data_type: BTreeMap<String, BTreeMap<String, u64>>,
    /// replay count → messages.
    pub replay_counts: BTreeMap<u32, u64>,
    pub max_replays: u32,
    /// Messages replayed `max_replays` times already: a replay refuses them.
    pub at_max_replays: u64,
    /// Messages cut to the topic's size limit (cannot be replayed).
    pub truncated: u64,
    /// Up to N masked samples per error class.
    pub samples: BTreeMap<String, Vec<Sample>>,
}

/// Reads the whole dead-letter topic and prints counts and masked samples
/// (a table, or JSON with `json`). Commits nothing.
pub fn inspect(
    cfg: &Config,
    samples: usize,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<InspectReport> {
    let k = &cfg.kafka;
    let mut reader = DlqReader::open(k, None, k.transaction_timeout + Duration::from_secs(30))?;
    let mut r = InspectReport {
        topic: k.dlq_topic.clone(),
        max_replays: cfg.max_replays,
        partitions: reader
            .bounds
            .iter()
            .map(|(p, (s, e))| PartitionRange {
                partition: *p,
                start_offset: *s,
                end_offset: *e,
            })
            .collect(),
        ..Default::default()
    };
    let (mut first, mut last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
    while let Some(m) = reader.next_message()? {
        r.messages += 1;
        let class = class_of(&m);
        let dt = data_type_of(&m);
        *r.by_class.entry(class.clone()).or_default() += 1;
        *r.by_data_type.entry(dt.clone()).or_default() += 1;
        *r.by_region.entry(region_of(&m)).or_default() += 1;
        *r.by_class_and_data_type
            .entry(class.clone())
            .or_default()
            .entry(dt.clone())
            .or_default() += 1;
        let count = m.replay_count();
        *r.replay_counts.entry(count).or_default() += 1;
        if count >= cfg.max_replays {
            r.at_max_replays += 1;
        }
        if m.header(TRUNCATED).is_some() {
            r.truncated += 1;
        }
        let at = dead_lettered_at(&m);
        if let Some(t) = at {
            first = Some(first.map_or(t, |f| f.min(t)));
            last = Some(last.map_or(t, |l| l.max(t)));
        }
        let list = r.samples.entry(class.clone()).or_default();
        if list.len() < samples {
            let (value_bytes, value, value_prefix) = sample_value(m.value.as_deref());
            list.push(Sample {
                partition: m.partition,
                offset: m.offset,
                error_class: class,
                error_message: mask::digits_in(
                    header_str(&m, headers::ERROR_MESSAGE).unwrap_or(""),
                ),
                data_type: dt,
                region: region_of(&m),
                dead_lettered_at: rfc3339(at),
                replay_count: count,
                batch_id: header_str(&m, headers::BATCH_ID).unwrap_or("").to_string(),
                source: format!(
                    "{}/{}/{}",
                    header_str(&m, headers::SOURCE_TOPIC).unwrap_or("?"),
                    header_str(&m, headers::SOURCE_PARTITION).unwrap_or("?"),
                    header_str(&m, headers::SOURCE_OFFSET).unwrap_or("?")
                ),
                key: shown_key(m.key.as_deref()),
                value_bytes,
                value,
                value_prefix,
            });
        }
    }
    r.samples.retain(|_, v| !v.is_empty());
    r.first_dead_lettered_at = first.map(crate::output::rfc3339);
    r.last_dead_lettered_at = last.map(crate::output::rfc3339);
    if json {
        serde_json::to_writer_pretty(&mut *out, &r)?;
        writeln!(out)?;
    } else {
        print_inspect(&r, out)?;
    }
    Ok(r)
}

fn print_counts(
    title: &str,
    counts: &BTreeMap<String, u64>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(out, "{title:<24} {:>8}", "COUNT")?;
    let mut rows: Vec<(&String, &u64)> = counts.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (k, n) in rows {
        writeln!(out, "{k:<24} {n:>8}")?;
    }
    Ok(())
}

fn print_inspect(r: &InspectReport, out: &mut impl Write) -> std::io::Result<()> {
    let parts: Vec<String> = r
        .partitions
        .iter()
        .map(|p| {
            format!(
                "{}: offsets {}..{}",
                p.partition, p.start_offset, p.end_offset
            )
        })
        .collect();
    writeln!(
        out,
        "dead-letter topic {}: {} messages ({})",
        r.topic,
        r.messages,
        parts.join(", ")
    )?;
    if r.messages == 0 {
        writeln!(out, "nothing to inspect")?;
        return Ok(());
    }
    writeln!(
        out,
        "dead-lettered from {} to {}",
        r.first_dead_lettered_at.as_deref().unwrap_or("unknown"),
        r.last_dead_lettered_at.as_deref().unwrap_or("unknown")
    )?;
    let counts: Vec<String> = r
        .replay_counts
        .iter()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    writeln!(
        out,
        "replay counts (times replayed: messages): {}",
        counts.join(", ")
    )?;
    writeln!(
        out,
        "at the replay limit (dlq.max_replays = {}): {} (a replay refuses them)",
        r.max_replays, r.at_max_replays
    )?;
    if r.truncated > 0 {
        writeln!(
            out,
            "truncated to the topic's size limit: {} (cannot be replayed; the original is not kept)",
            r.truncated
        )?;
    }
    print_counts("ERROR CLASS", &r.by_class, out)?;
    print_counts("DATA TYPE", &r.by_data_type, out)?;
    print_counts("REGION", &r.by_region, out)?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:<12} {:>8}",
        "ERROR CLASS", "DATA TYPE", "COUNT"
    )?;
    for (class, by_dt) in &r.by_class_and_data_type {
        for (dt, n) in by_dt {
            writeln!(out, "{class:<24} {dt:<12} {n:>8}")?;
        }
    }
    if !r.samples.is_empty() {
        writeln!(out)?;
        writeln!(out, "samples (personal data masked):")?;
    }
    for (class, list) in &r.samples {
        for s in list {
            writeln!(
                out,
                "[{class}] partition {} offset {}, dead-lettered {}, replay count {}, data type {}, region {}",
                s.partition, s.offset, s.dead_lettered_at, s.replay_count, s.data_type, s.region
            )?;
            writeln!(out, "  error:  {}", s.error_message)?;
            writeln!(out, "  source: {}  batch: {}", s.source, s.batch_id)?;
            writeln!(out, "  key:    {}", s.key)?;
            match (&s.value, &s.value_prefix) {
                (Some(v), _) => {
                    let text = v.to_string();
                    let shown: String = text.chars().take(600).collect();
                    let more = if text.chars().count() > 600 {
                        "…"
                    } else {
                        ""
                    };
                    writeln!(
                        out,
                        "  value:  {} bytes, JSON: {shown}{more}",
                        s.value_bytes
                    )?;
                }
                (None, Some(p)) => {
                    writeln!(out, "  value:  {} bytes, not JSON: {p}", s.value_bytes)?
                }
                (None, None) => writeln!(out, "  value:  {} bytes", s.value_bytes)?,
            }
        }
    }
    Ok(())
}

fn rfc3339(t: Option<DateTime<Utc>>) -> String {
    t.map(crate::output::rfc3339)
        .unwrap_or_else(|| "unknown".into())
}

/// A value as a sample: masked JSON when it parses, otherwise its size and
/// a masked, escaped prefix.
fn sample_value(v: Option<&[u8]>) -> (usize, Option<Value>, Option<String>) {
    let Some(bytes) = v else {
        return (0, None, Some("(no value)".into()));
    };
    if let Ok(json) = serde_json::from_slice::<Value>(bytes) {
        return (bytes.len(), Some(mask::json(&json)), None);
    }
    (bytes.len(), None, Some(mask::prefix(bytes, 48)))
}

fn shown_key(k: Option<&[u8]>) -> String {
    match k {
        None => "(none)".into(),
        Some(k) => match std::str::from_utf8(k) {
            Ok(s) => mask::text(s),
            Err(_) => format!("({} bytes, not UTF-8)", k.len()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_json_prefixes_are_masked() {
        let (n, v, p) = sample_value(Some(
            "{\"phone\": \"13812345678\", \"address\": \"江苏省南京市玄武区中山路123号\", \u{1}"
                .as_bytes(),
        ));
        assert!(v.is_none());
        assert!(n > 48);
        let p = p.unwrap();
        assert!(!p.contains("13812345678"), "{p}");
        assert!(!p.contains("中山路"), "{p}");
        assert!(p.ends_with('…'), "{p}");
        let (_, _, p) = sample_value(Some(&[0xff, 0xfe, b'{', 0x80]));
        assert!(p.unwrap().contains('\u{fffd}'));
    }
}
