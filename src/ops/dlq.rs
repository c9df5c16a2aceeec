//! `govsync dlq inspect` and `govsync dlq replay`: the dead-letter topic as
//! an operator meets it.
//!
//! # Inspect
//!
//! Reads the whole topic, read_committed, with a consumer that joins no
//! group and commits nothing: it disturbs neither the processor nor a
//! replay. It reads up to the end offsets the topic had when it started.
//! Samples are masked (ID-card and phone numbers, addresses, names, birth
//! dates, exact coordinates); the customer id is shown as it is.
//!
//! # Replay: each message sent once, resumable
//!
//! A replay consumes the dead-letter topic as consumer group `--group` and
//! re-publishes with a transactional producer. Its messages go out in
//! chunks (at most [`CHUNK_MESSAGES`] messages or [`CHUNK_TIME`]); each
//! chunk commits in ONE Kafka transaction together with the group's
//! dead-letter offsets past it (`send_offsets_to_transaction`). So a
//! chunk's messages and the progress past them are visible together or not
//! at all. The transactional.id is derived from the group and the
//! dead-letter topic: a restarted replay's `init_transactions` fences an
//! interrupted one and aborts its open transaction, and it then resumes at
//! the group's committed offsets. A read_committed consumer of the
//! destination (the processor is one) therefore sees every replayed message
//! exactly once, however often the replay is interrupted.
//!
//! The group's offsets also mean that a message a replay has passed, whether
//! replayed, skipped by a filter or refused, is not looked at again by that
//! group: a replay with other filters over the same messages needs its own
//! `--group`.
//!
//! A replay stops at the end offsets the topic had when it started, so
//! messages that fail again during the replay (and come back to the
//! dead-letter topic) wait for the next run; it always terminates. Those
//! end offsets go into the metadata of every offset it commits: a run that
//! finds the group short of them resumes an interrupted run and finishes
//! that run's range, not more. Each
//! replayed message carries `govsync.replay.count` = previous count + 1, and
//! a message already replayed `dlq.max_replays` times is refused: a poison
//! message cannot loop forever.
//!
//! Everything here blocks (librdkafka): call it from a blocking context.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, KafkaConfig};
use crate::event::DataType;
use crate::message::RawMessage;
use crate::output::headers;
use crate::telemetry::mask;

/// Where a replayed message came from: `<dlq topic>/<partition>/<offset>`.
pub const REPLAYED_FROM: &str = "govsync.replayed.from";
/// Set by the committer when a dead letter was cut to the topic's limit.
const TRUNCATED: &str = "govsync.payload.truncated";

/// The error classes the processor writes (schemas/dead-letter-headers).
pub const KNOWN_CLASSES: [&str; 7] = [
    "malformed",
    "too_large",
    "unsupported_version",
    "schema",
    "rule",
    "db_rejected",
    "target_missing",
];

/// A chunk commits after this many messages…
pub const CHUNK_MESSAGES: usize = 500;
/// …or after this long, whichever comes first (well below any sane
/// transaction timeout, and it bounds what an interruption re-sends).
pub const CHUNK_TIME: Duration = Duration::from_secs(1);

const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-message lines (refused, or would-be-replayed in a dry run) printed
/// before the rest is only counted.
const MAX_LINES: u64 = 20;

// ---------------------------------------------------------------------
// Reading the dead-letter topic.

/// Reads a topic, read_committed, from given start offsets up to the end
/// offsets it had when opened.
struct DlqReader {
    consumer: BaseConsumer,
    topic: String,
    /// partition → (first offset this run reads, end offset at open).
    bounds: BTreeMap<i32, (i64, i64)>,
    /// partition → next offset to read.
    next: BTreeMap<i32, i64>,
    /// partition → the topic's first offset (earlier ones are deleted).
    low: BTreeMap<i32, i64>,
    /// The group's offsets belong to a run that did not finish: this one
    /// finishes that run's range.
    resumed: bool,
    /// Partitions not at their end yet.
    open: BTreeSet<i32>,
    /// How long the reader waits without any progress before giving up
    /// (an open transaction in the topic resolves within its timeout).
    idle_limit: Duration,
    last_progress: Instant,
}

impl DlqReader {
    /// `group`: start at the group's committed offsets (else the beginning).
    fn open(k: &KafkaConfig, group: Option<&str>, idle_limit: Duration) -> anyhow::Result<Self> {
        let topic = k.dlq_topic.clone();
        let mut c = crate::kafka::tool_config(k);
        c.set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        // librdkafka needs a group id even to assign partitions; without
        // one (inspect) a name is given that nothing ever commits under
        // and no consumer joins.
        c.set("group.id", group.unwrap_or("govsync-dlq-inspect"));
        let consumer: BaseConsumer = c.create().context("creating the Kafka consumer")?;
        let md = consumer
            .fetch_metadata(Some(&topic), KAFKA_TIMEOUT)
            .with_context(|| {
                format!(
                    "cannot reach Kafka at {} (kafka.bootstrap_servers)",
                    k.bootstrap_servers
                )
            })?;
        let parts: Vec<i32> = match md.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                t.partitions().iter().map(|p| p.id()).collect()
            }
            _ => bail!(
                "the dead-letter topic {topic} (config key `kafka.dlq_topic`) does not exist; \
                 check the key, or create it with `govsync migrate --topics`"
            ),
        };
        // partition → (committed offset, end of the run that committed it).
        let committed: BTreeMap<i32, (i64, Option<i64>)> = match group {
            None => BTreeMap::new(),
            Some(g) => {
                let mut tpl = TopicPartitionList::new();
                for p in &parts {
                    tpl.add_partition(&topic, *p);
                }
                let got = consumer
                    .committed_offsets(tpl, KAFKA_TIMEOUT)
                    .with_context(|| format!("reading the committed offsets of group {g}"))?;
                got.elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => {
                            Some((e.partition(), (o, parse_range_end(e.metadata()))))
                        }
                        _ => None,
                    })
                    .collect()
            }
        };
        let mut marks = BTreeMap::new();
        for p in &parts {
            let m = consumer
                .fetch_watermarks(&topic, *p, KAFKA_TIMEOUT)
                .with_context(|| format!("reading the offsets of {topic} partition {p}"))?;
            marks.insert(*p, m);
        }
        // An interrupted run left some partition short of its range's end:
        // this run finishes that range on every partition, not more (what
        // the interrupted run dead-lettered again waits for the next run).
        let resumed = parts.iter().any(|p| match committed.get(p) {
            Some((o, Some(e))) => o < e && *e <= marks[p].1,
            _ => false,
        });
        let mut bounds = BTreeMap::new();
        let mut lows = BTreeMap::new();
        let mut assign = TopicPartitionList::new();
        let mut open = BTreeSet::new();
        for p in parts {
            let (low, high) = marks[&p];
            let (start, end) = match committed.get(&p) {
                None => (low, high),
                Some((o, run_end)) => {
                    let start = (*o).clamp(low, high);
                    match run_end {
                        Some(e) if resumed && *e <= high => (start, (*e).max(start)),
                        _ => (start, high),
                    }
                }
            };
            bounds.insert(p, (start, end));
            lows.insert(p, low);
            if start < end {
                assign.add_partition_offset(&topic, p, Offset::Offset(start))?;
                open.insert(p);
            }
        }
        consumer.assign(&assign)?;
        let next = bounds.iter().map(|(p, (s, _))| (*p, *s)).collect();
        Ok(DlqReader {
            consumer,
            topic,
            bounds,
            next,
            low: lows,
            resumed,
            open,
            idle_limit,
            last_progress: Instant::now(),
        })
    }

    /// Offsets this run covers (messages, plus transaction markers).
    fn total(&self) -> u64 {
        self.bounds.values().map(|(s, e)| (e - s) as u64).sum()
    }

    /// Offsets passed so far.
    fn passed(&self) -> u64 {
        self.bounds
            .iter()
            .map(|(p, (s, _))| (self.next[p] - s) as u64)
            .sum()
    }

    /// Where this run starts, per partition.
    fn start_offsets(&self) -> BTreeMap<i32, i64> {
        self.bounds.iter().map(|(p, (s, _))| (*p, *s)).collect()
    }

    fn finish(&mut self, p: i32) {
        if self.open.remove(&p) {
            let end = self.bounds[&p].1;
            self.next.insert(p, end);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.topic, p);
            let _ = self.consumer.pause(&tpl);
        }
    }

    /// Marks partitions whose position reached their end (the rest of the
    /// range was transaction markers or aborted messages).
    fn check_positions(&mut self) {
        let Ok(pos) = self.consumer.position() else {
            return;
        };
        let done: Vec<i32> = self
            .open
            .iter()
            .copied()
            .filter(|p| {
                matches!(
                    pos.find_partition(&self.topic, *p).map(|e| e.offset()),
                    Some(Offset::Offset(o)) if o >= self.bounds[p].1
                )
            })
            .collect();
        for p in done {
            self.last_progress = Instant::now();
            self.finish(p);
        }
    }

    /// The next message below the end offsets, or None when every
    /// partition reached its end.
    fn next_message(&mut self) -> anyhow::Result<Option<RawMessage>> {
        loop {
            if self.open.is_empty() {
                return Ok(None);
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let p = m.partition();
                    let o = m.offset();
                    if !self.open.contains(&p) {
                        continue;
                    }
                    self.last_progress = Instant::now();
                    let end = self.bounds[&p].1;
                    if o >= end {
                        self.finish(p);
                        continue;
                    }
                    self.next.insert(p, o + 1);
                    let raw = RawMessage {
                        topic: m.topic().to_string(),
                        partition: p,
                        offset: o,
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        headers: m
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|x| {
                                        (x.key.to_string(), x.value.unwrap_or_default().to_vec())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        timestamp_ms: m.timestamp().to_millis(),
                    };
                    if o + 1 >= end {
                        self.finish(p);
                    }
                    return Ok(Some(raw));
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {
                    self.check_positions();
                    if !self.open.is_empty() && self.last_progress.elapsed() > self.idle_limit {
                        let stuck: Vec<String> = self
                            .open
                            .iter()
                            .map(|p| {
                                format!("partition {p} at {} of {}", self.next[p], self.bounds[p].1)
                            })
                            .collect();
                        bail!(
                            "{} made no progress for {:?} ({}): an open transaction, or the broker is unreachable; \
                             progress so far is kept, run the command again",
                            self.topic,
                            self.idle_limit,
                            stuck.join(", ")
                        );
                    }
                }
                Some(Err(e)) => {
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
                        bail!("reading {}: {e}", self.topic);
                    }
                    tracing::warn!(error = %e, topic = %self.topic, "consumer error; retrying");
                }
            }
        }
    }
}

/// The offset metadata a replay commits: the end of its range, so that a
/// run resuming it finishes the same range.
fn range_metadata(end: i64) -> String {
    format!("govsync-replay end={end}")
}

fn parse_range_end(metadata: &str) -> Option<i64> {
    metadata.strip_prefix("govsync-replay end=")?.parse().ok()
}

// ---------------------------------------------------------------------
// What a dead letter says about itself.

fn header_str<'a>(m: &'a RawMessage, name: &str) -> Option<&'a str> {
    m.header(name).and_then(|v| std::str::from_utf8(v).ok())
}

fn class_of(m: &RawMessage) -> String {
    header_str(m, headers::ERROR_CLASS)
        .unwrap_or("unknown")
        .to_string()
}

fn data_type_of(m: &RawMessage) -> String {
    header_str(m, headers::DATA_TYPE)
        .unwrap_or("unknown")
        .to_string()
}

/// The region header, else the message key (the region code, when the
/// event could not be read far enough to know it).
fn region_of(m: &RawMessage) -> String {
    header_str(m, headers::REGION)
        .map(str::to_string)
        .or_else(|| {
            m.key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .filter(|k| k.len() <= 6 && k.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// When the message was dead-lettered (first failure), else its timestamp.
fn dead_lettered_at(m: &RawMessage) -> Option<DateTime<Utc>> {
    header_str(m, headers::FIRST_FAILED_AT)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| m.timestamp_ms.and_then(DateTime::from_timestamp_millis))
}

fn rfc3339(t: Option<DateTime<Utc>>) -> String {
    t.map(crate::output::rfc3339)
        .unwrap_or_else(|| "unknown".into())
}

// ---------------------------------------------------------------------
// Masking samples.

/// A copy of an event with its personal data masked: ID-card and phone
/// numbers, addresses, names, birth dates, exact coordinates; every other
/// string has its long digit runs masked. `customer_id` is kept.
pub fn masked_json(v: &Value) -> Value {
    let mut v = v.clone();
    mask_in_place(None, &mut v);
    v
}

fn mask_in_place(key: Option<&str>, v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                mask_in_place(Some(k.as_str()), x);
            }
        }
        Value::Array(a) => {
            for x in a {
                mask_in_place(key, x);
            }
        }
        Value::String(s) => *s = mask_field(key.unwrap_or(""), s),
        Value::Number(n) if matches!(key, Some("latitude" | "longitude")) => {
            // About 1 km: enough to see the region, not the house.
            if let Some(f) = n.as_f64()
                && let Some(r) = serde_json::Number::from_f64((f * 100.0).round() / 100.0)
            {
                *n = r;
            }
        }
        _ => {}
    }
}

fn mask_field(key: &str, s: &str) -> String {
    match key {
        "customer_id" => s.to_string(),
        "address" | "standardized_address" => mask::address(s),
        "id_card" => mask::id_card(s),
        "phone" => mask::phone(s),
        "name" => {
            let mut c = s.chars();
            match c.next() {
                Some(first) => format!("{first}{}", "*".repeat(c.count())),
                None => String::new(),
            }
        }
        "extracted_date" => match s.split_once('-') {
            Some((year, _)) => format!("{year}-**-**"),
            None => "*".repeat(s.chars().count()),
        },
        _ => mask_text(s),
    }
}

/// Free text: long digit runs masked (ID and phone numbers), and runs of
/// non-ASCII text (addresses, names) cut after their district or first
/// three characters.
pub fn mask_text(s: &str) -> String {
    let digits = mask::digits_in(s);
    let mut out = String::with_capacity(digits.len());
    let mut run = String::new();
    for c in digits.chars() {
        if c.is_ascii() {
            if !run.is_empty() {
                out.push_str(&mask_run(&run));
                run.clear();
            }
            out.push(c);
        } else {
            run.push(c);
        }
    }
    if !run.is_empty() {
        out.push_str(&mask_run(&run));
    }
    out
}

fn mask_run(run: &str) -> String {
    if run.chars().count() <= 4 {
        run.to_string()
    } else {
        mask::address(run)
    }
}

/// A value as a sample: masked JSON when it parses, otherwise its size and
/// a masked, escaped prefix.
fn sample_value(v: Option<&[u8]>) -> (usize, Option<Value>, Option<String>) {
    let Some(bytes) = v else {
        return (0, None, Some("(no value)".into()));
    };
    if let Ok(json) = serde_json::from_slice::<Value>(bytes) {
        return (bytes.len(), Some(masked_json(&json)), None);
    }
    (bytes.len(), None, Some(masked_prefix(bytes, 48)))
}

fn masked_prefix(bytes: &[u8], chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut prefix = String::new();
    for c in text.chars().take(chars) {
        if c.is_control() {
            prefix.extend(c.escape_default());
        } else {
            prefix.push(c);
        }
    }
    let more = if text.chars().count() > chars {
        "…"
    } else {
        ""
    };
    format!("{}{more}", mask_text(&prefix))
}

fn shown_key(k: Option<&[u8]>) -> String {
    match k {
        None => "(none)".into(),
        Some(k) => match std::str::from_utf8(k) {
            Ok(s) => mask_text(s),
            Err(_) => format!("({} bytes, not UTF-8)", k.len()),
        },
    }
}

// ---------------------------------------------------------------------
// Inspect.

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

// ---------------------------------------------------------------------
// Replay.

/// Which dead letters a replay takes.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub error_class: Option<String>,
    pub data_type: Option<String>,
    pub region: Option<String>,
    /// Dead-lettered at or after.
    pub since: Option<DateTime<Utc>>,
    /// Dead-lettered before.
    pub until: Option<DateTime<Utc>>,
    pub batch: Option<String>,
}

fn parse_time(flag: &str, s: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| {
            format!("{flag} {s}: expected an RFC 3339 time like 2024-01-15T10:00:00+08:00")
        })
}

impl Filter {
    /// From the command line's filters; checks the values.
    pub fn from_args(a: &crate::cli::ReplayArgs) -> anyhow::Result<Filter> {
        if let Some(d) = &a.data_type
            && DataType::parse(d).is_none()
        {
            bail!("--data-type {d}: use address, id_card or phone");
        }
        let f = Filter {
            error_class: a.error_class.clone(),
            data_type: a.data_type.clone(),
            region: a.region.clone(),
            since: a
                .since
                .as_deref()
                .map(|s| parse_time("--since", s))
                .transpose()?,
            until: a
                .until
                .as_deref()
                .map(|s| parse_time("--until", s))
                .transpose()?,
            batch: a.batch.clone(),
        };
        if let (Some(s), Some(u)) = (f.since, f.until)
            && s >= u
        {
            bail!("--since must be before --until");
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        self.error_class.is_none()
            && self.data_type.is_none()
            && self.region.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.batch.is_none()
    }

    pub fn matches(&self, m: &RawMessage) -> bool {
        if let Some(c) = &self.error_class
            && header_str(m, headers::ERROR_CLASS) != Some(c.as_str())
        {
            return false;
        }
        if let Some(d) = &self.data_type
            && header_str(m, headers::DATA_TYPE) != Some(d.as_str())
        {
            return false;
        }
        if let Some(r) = &self.region
            && region_of(m) != *r
        {
            return false;
        }
        if let Some(b) = &self.batch
            && header_str(m, headers::BATCH_ID) != Some(b.as_str())
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(at) = dead_lettered_at(m) else {
                return false;
            };
            if self.since.is_some_and(|s| at < s) || self.until.is_some_and(|u| at >= u) {
                return false;
            }
        }
        true
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.error_class {
            parts.push(format!("error class {c}"));
        }
        if let Some(d) = &self.data_type {
            parts.push(format!("data type {d}"));
        }
        if let Some(r) = &self.region {
            parts.push(format!("region {r}"));
        }
        if let Some(s) = self.since {
            parts.push(format!("since {}", crate::output::rfc3339(s)));
        }
        if let Some(u) = self.until {
            parts.push(format!("until {}", crate::output::rfc3339(u)));
        }
        if let Some(b) = &self.batch {
            parts.push(format!("batch {b}"));
        }
        if parts.is_empty() {
            "all messages".into()
        } else {
            parts.join(", ")
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar on standard output (a terminal).
    Bar,
    /// A plain line every second through `out` (logs, pipes, tests).
    Lines,
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Destination; None: the source topic.
    pub to: Option<String>,
    pub filter: Filter,
    pub dry_run: bool,
    /// Messages per second; 0 = unlimited.
    pub rate: u32,
    pub group: String,
    pub progress: ProgressMode,
    /// Set (by Ctrl-C / SIGTERM, see [`stop_on_signals`]) to stop after
    /// committing what is done.
    pub stop: Arc<AtomicBool>,
}

impl ReplayOptions {
    pub fn from_args(a: &crate::cli::ReplayArgs, progress: ProgressMode) -> anyhow::Result<Self> {
        if a.group.trim().is_empty() {
            bail!("--group is empty: name the consumer group that records replay progress");
        }
        Ok(ReplayOptions {
            to: a.to.clone(),
            filter: Filter::from_args(a)?,
            dry_run: a.dry_run,
            rate: a.rate,
            group: a.group.trim().to_string(),
            progress,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ClassCounts {
    pub replayed: u64,
    pub skipped_by_filter: u64,
    pub refused: u64,
}

/// What a replay did (or, dry run, would do).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReplaySummary {
    pub dry_run: bool,
    /// Messages read in this run.
    pub read: u64,
    pub replayed: u64,
    pub skipped_by_filter: u64,
    /// Refused: replayed `max_replays` times already.
    pub refused_max_replays: u64,
    /// Refused: the payload was cut to the topic's limit.
    pub refused_truncated: u64,
    pub by_class: BTreeMap<String, ClassCounts>,
    /// Kafka transactions committed.
    pub chunks: u64,
    /// Stopped by a signal before the end of its range.
    pub interrupted: bool,
}

impl ReplaySummary {
    fn add(&mut self, o: &ReplaySummary) {
        self.read += o.read;
        self.replayed += o.replayed;
        self.skipped_by_filter += o.skipped_by_filter;
        self.refused_max_replays += o.refused_max_replays;
        self.refused_truncated += o.refused_truncated;
        for (c, n) in &o.by_class {
            let e = self.by_class.entry(c.clone()).or_default();
            e.replayed += n.replayed;
            e.skipped_by_filter += n.skipped_by_filter;
            e.refused += n.refused;
        }
    }

    pub fn refused(&self) -> u64 {
        self.refused_max_replays + self.refused_truncated
    }
}

/// What to do with one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Replay,
    Filtered,
    /// Replayed `count` times already, at or over the limit.
    RefusedMaxReplays {
        count: u32,
        max: u32,
    },
    /// The dead letter holds only a prefix of the original.
    RefusedTruncated {
        original_bytes: String,
    },
}

pub fn decide(m: &RawMessage, filter: &Filter, max_replays: u32) -> Decision {
    if !filter.matches(m) {
        return Decision::Filtered;
    }
    if let Some(size) = header_str(m, TRUNCATED) {
        return Decision::RefusedTruncated {
            original_bytes: size.to_string(),
        };
    }
    let count = m.replay_count();
    if count >= max_replays {
        return Decision::RefusedMaxReplays {
            count,
            max: max_replays,
        };
    }
    Decision::Replay
}

/// The headers of a replayed message: the original ones (every `govsync.*`
/// header removed: they describe the failure, not the event), the new
/// replay count and where it was replayed from.
pub fn replay_headers(m: &RawMessage) -> Vec<(String, Vec<u8>)> {
    let mut h: Vec<(String, Vec<u8>)> = m
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with("govsync."))
        .cloned()
        .collect();
    h.push((
        headers::REPLAY_COUNT.to_string(),
        (m.replay_count() + 1).to_string().into_bytes(),
    ));
    h.push((
        REPLAYED_FROM.to_string(),
        format!("{}/{}/{}", m.topic, m.partition, m.offset).into_bytes(),
    ));
    h
}

/// Back to the source partition when replaying to the topic the message
/// came from: the replayed event joins its region's partition, so its
/// order relative to the region's other events is kept the way the
/// producer partitioned them (whatever partitioner it used). Elsewhere the
/// key decides.
fn original_partition(m: &RawMessage, dest: &str, dest_partitions: i32) -> Option<i32> {
    if header_str(m, headers::SOURCE_TOPIC) != Some(dest) {
        return None;
    }
    header_str(m, headers::SOURCE_PARTITION)
        .and_then(|p| p.parse::<i32>().ok())
        .filter(|p| (0..dest_partitions).contains(p))
}

/// A replayed message waiting for its chunk's commit (kept to re-send the
/// chunk when its transaction must be aborted and retried).
struct Pending {
    /// The partition the original came from, when it goes back there.
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

/// The transactional side of a replay.
struct Txn {
    producer: ThreadedProducer<DefaultProducerContext>,
    dest: String,
    open: bool,
}

impl Txn {
    fn new(k: &KafkaConfig, group: &str, dest: &str) -> anyhow::Result<Txn> {
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

    fn send(&mut self, p: &Pending) -> Result<(), KafkaError> {
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

/// Shows progress as a bar (terminal) or as plain lines.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn new(mode: ProgressMode, total: u64) -> Progress {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stdout());
            if let Ok(style) = ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} read, {msg} (ETA {eta})",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b
        });
        Progress {
            bar,
            total,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn update(
        &mut self,
        passed: u64,
        s: &ReplaySummary,
        verb: &str,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        let msg = format!(
            "{verb} {}, skipped {}, refused {}",
            s.replayed,
            s.skipped_by_filter,
            s.refused()
        );
        if let Some(b) = &self.bar {
            b.set_position(passed);
            b.set_message(msg);
            return Ok(());
        }
        if self.last_line.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.last_line = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = if passed > 0 && passed < self.total {
            let secs = elapsed * (self.total - passed) as f64 / passed as f64;
            format!("ETA {}s", secs.ceil() as u64)
        } else {
            "ETA -".into()
        };
        writeln!(out, "progress: {passed}/{} read, {msg}, {eta}", self.total)
    }

    /// Writes a line without tearing the bar.
    fn line(&self, out: &mut impl Write, text: &str) -> std::io::Result<()> {
        match &self.bar {
            Some(b) => b.suspend(|| writeln!(out, "{text}")),
            None => writeln!(out, "{text}"),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Re-publishes the matching dead letters (see the module doc for the
/// guarantees). Prints what it does and a summary through `out`.
pub fn replay(
    cfg: &Config,
    opts: &ReplayOptions,
    out: &mut impl Write,
) -> anyhow::Result<ReplaySummary> {
    let k = &cfg.kafka;
    let dest = opts.to.clone().unwrap_or_else(|| k.source_topic.clone());
    if dest == k.dlq_topic {
        bail!(
            "--to {dest} is the dead-letter topic itself: replay to the source topic (the default) or another topic"
        );
    }
    if let Some(c) = &opts.filter.error_class
        && !KNOWN_CLASSES.contains(&c.as_str())
    {
        writeln!(
            out,
            "note: `{c}` is not an error class govsync writes ({}); nothing may match",
            KNOWN_CLASSES.join(", ")
        )?;
    }
    // The producer first: it fences an interrupted replay of this group.
    let mut txn = if opts.dry_run {
        None
    } else {
        Some(Txn::new(k, &opts.group, &dest)?)
    };
    let idle = k.transaction_timeout + Duration::from_secs(30);
    let mut reader = DlqReader::open(k, Some(&opts.group), idle)?;
    let dest_partitions = check_destination(&reader.consumer, &dest, opts.to.is_some())?;

    let starts = reader.start_offsets();
    let already: i64 = reader
        .bounds
        .keys()
        .map(|p| starts[p] - reader.low[p])
        .sum();
    writeln!(
        out,
        "{} {} → {} (group {}, {}, dlq.max_replays = {}{})",
        if opts.dry_run {
            "dry run: would replay"
        } else {
            "replaying"
        },
        k.dlq_topic,
        dest,
        opts.group,
        opts.filter.describe(),
        cfg.max_replays,
        if opts.rate > 0 {
            format!(", at most {} messages/s", opts.rate)
        } else {
            String::new()
        }
    )?;
    if reader.resumed {
        writeln!(
            out,
            "resuming an interrupted replay: group {} is at {}; finishing that run's range ({} offsets)",
            opts.group,
            starts
                .iter()
                .map(|(p, o)| format!("partition {p} offset {o} of {}", reader.bounds[p].1))
                .collect::<Vec<_>>()
                .join(", "),
            reader.total()
        )?;
    } else if already > 0 {
        writeln!(
            out,
            "continuing: group {} already passed {already} offsets ({}); reading the {} offsets after them",
            opts.group,
            starts
                .iter()
                .map(|(p, o)| format!("partition {p} at {o}"))
                .collect::<Vec<_>>()
                .join(", "),
            reader.total()
        )?;
    }
    if reader.total() == 0 {
        writeln!(
            out,
            "nothing to replay: the group is at the end of every partition"
        )?;
    }

    let limiter = NonZeroU32::new(opts.rate).map(|r| {
        let burst = NonZeroU32::new((r.get() / 10).max(1)).expect("at least 1");
        RateLimiter::direct(Quota::per_second(r).allow_burst(burst))
    });
    let clock = DefaultClock::default();
    let verb = if opts.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    let mut progress = Progress::new(opts.progress, reader.total());
    let mut done = ReplaySummary {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut chunk = ReplaySummary::default();
    let mut chunk_msgs: Vec<Pending> = Vec::new();
    // The group's offsets as last committed (None: this run has committed
    // nothing yet).
    let mut committed: Option<BTreeMap<i32, i64>> = None;
    let mut chunk_started = Instant::now();
    let mut lines = 0u64;
    let mut refused_lines = 0u64;

    let mut read_error = None;
    loop {
        // On a stop request or a read error, what was handled so far is
        // committed before returning.
        let next = if opts.stop.load(Ordering::Relaxed) {
            done.interrupted = true;
            None
        } else {
            match reader.next_message() {
                Ok(n) => n,
                Err(e) => {
                    read_error = Some(e);
                    None
                }
            }
        };
        if let Some(m) = &next {
            let class = class_of(m);
            chunk.read += 1;
            let counts = chunk.by_class.entry(class.clone()).or_default();
            match decide(m, &opts.filter, cfg.max_replays) {
                Decision::Filtered => {
                    counts.skipped_by_filter += 1;
                    chunk.skipped_by_filter += 1;
                }
                Decision::RefusedMaxReplays { count, max } => {
                    counts.refused += 1;
                    chunk.refused_max_replays += 1;
                    refused_lines += 1;
                    if refused_lines <= MAX_LINES {
                        progress.line(out, &format!(
                            "refused: partition {} offset {} ({class}, {}, region {}): replayed {} already, \
                             dlq.max_replays is {max}; it stays in the dead-letter topic",
                            m.partition, m.offset, data_type_of(m), region_of(m), times(count)
                        ))?;
                    }
                }
                Decision::RefusedTruncated { original_bytes } => {
                    counts.refused += 1;
                    chunk.refused_truncated += 1;
                    refused_lines += 1;
                    if refused_lines <= MAX_LINES {
                        progress.line(out, &format!(
                            "refused: partition {} offset {} ({class}): its payload was cut from {original_bytes} bytes \
                             to the dead-letter topic's limit; the original is not in the topic",
                            m.partition, m.offset
                        ))?;
                    }
                }
                Decision::Replay => {
                    counts.replayed += 1;
                    chunk.replayed += 1;
                    if opts.dry_run {
                        lines += 1;
                        if lines <= MAX_LINES {
                            progress.line(
                                out,
                                &format!(
                                    "would replay: partition {} offset {} ({class}, {}, region {}, replay count {} → {})",
                                    m.partition,
                                    m.offset,
                                    data_type_of(m),
                                    region_of(m),
                                    m.replay_count(),
                                    m.replay_count() + 1
                                ),
                            )?;
                        }
                    } else {
                        if let Some(l) = &limiter {
                            while let Err(not_until) = l.check() {
                                std::thread::sleep(not_until.wait_time_from(clock.now()));
                            }
                        }
                        let p = Pending {
                            partition: original_partition(m, &dest, dest_partitions),
                            key: m.key.clone(),
                            value: m.value.clone(),
                            headers: replay_headers(m),
                        };
                        if let Some(t) = txn.as_mut()
                            && let Err(e) = t.send(&p)
                        {
                            commit_failed(t, &e)?;
                        }
                        chunk_msgs.push(p);
                    }
                }
            }
        }
        let full = chunk_msgs.len() >= CHUNK_MESSAGES || chunk_started.elapsed() >= CHUNK_TIME;
        if next.is_none() || full {
            // Every message below `reader.next` has been handled: the
            // group's offsets move there (also past transaction markers at
            // a partition's end). Every partition is committed, each with
            // the end of this run's range, so that an interruption after
            // the first commit resumes exactly this range.
            let moved = match &committed {
                Some(c) => *c != reader.next,
                None => reader.next != starts,
            };
            if let Some(t) = txn.as_mut()
                && (moved || t.open)
            {
                let offsets: BTreeMap<i32, (i64, i64)> = reader
                    .next
                    .iter()
                    .map(|(p, o)| (*p, (*o, reader.bounds[p].1)))
                    .collect();
                commit_chunk(t, &reader, &chunk_msgs, &offsets)?;
                done.chunks += 1;
            }
            committed = Some(reader.next.clone());
            done.add(&chunk);
            chunk = ReplaySummary::default();
            chunk_msgs.clear();
            chunk_started = Instant::now();
        }
        let mut shown = done.clone();
        shown.add(&chunk);
        progress.update(reader.passed(), &shown, verb, out)?;
        if next.is_none() {
            break;
        }
    }
    progress.finish();
    if let Some(e) = read_error {
        print_summary(&done, cfg.max_replays, &opts.group, out)?;
        return Err(e.context(
            "the replay stopped early; what it did is committed: run the same command again to finish",
        ));
    }
    if refused_lines > MAX_LINES {
        writeln!(
            out,
            "… and {} more refused (counted below)",
            refused_lines - MAX_LINES
        )?;
    }
    if opts.dry_run && lines > MAX_LINES {
        writeln!(
            out,
            "… and {} more would be replayed (counted below)",
            lines - MAX_LINES
        )?;
    }
    if done.interrupted {
        writeln!(
            out,
            "interrupted: what is counted below is committed; run the same command again to finish this run"
        )?;
    }
    print_summary(&done, cfg.max_replays, &opts.group, out)?;
    Ok(done)
}

/// A flag set by the first Ctrl-C or SIGTERM (a replay then commits what
/// it did and stops); a second signal exits at once. Needs a tokio runtime.
pub fn stop_on_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for _ in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async {
                    match term.as_mut() {
                        Some(t) => { t.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
            if f.swap(true, Ordering::SeqCst) {
                // Second signal: the open transaction is aborted by the
                // next run (or times out); nothing is sent twice.
                std::process::exit(130);
            }
            eprintln!("stopping after the current chunk (again to stop at once)");
        }
    });
    flag
}

/// The destination's partition count; an error when it does not exist.
fn check_destination(c: &BaseConsumer, dest: &str, explicit: bool) -> anyhow::Result<i32> {
    let md = c.fetch_metadata(Some(dest), KAFKA_TIMEOUT)?;
    match md.topics().iter().find(|t| t.name() == dest) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().len() as i32)
        }
        _ if explicit => bail!("--to {dest}: the topic does not exist; create it first"),
        _ => bail!(
            "the source topic {dest} (config key `kafka.source_topic`) does not exist; check the key or pass --to"
        ),
    }
}

/// Commits the chunk's transaction; on an abortable error aborts it and
/// re-sends the chunk in a new one (up to 3 times).
fn commit_chunk(
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

fn commit_failed(t: &mut Txn, e: &KafkaError) -> anyhow::Result<()> {
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

fn times(n: u32) -> String {
    if n == 1 {
        "1 time".into()
    } else {
        format!("{n} times")
    }
}

fn print_summary(
    s: &ReplaySummary,
    max_replays: u32,
    group: &str,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let verb = if s.dry_run {
        "would be replayed"
    } else {
        "replayed"
    };
    writeln!(out)?;
    writeln!(
        out,
        "{}: read {}, {verb} {}, skipped by filter {}, refused {}",
        if s.dry_run {
            "dry run done (nothing sent, nothing committed)"
        } else if s.interrupted {
            "replay stopped"
        } else {
            "replay done"
        },
        s.read,
        s.replayed,
        s.skipped_by_filter,
        s.refused()
    )?;
    if s.refused_max_replays > 0 {
        writeln!(
            out,
            "refused at max replays: {} (replayed {} or more already, the limit dlq.max_replays; \
             they stay in the dead-letter topic: fix their cause, see `govsync dlq inspect`)",
            s.refused_max_replays,
            times(max_replays)
        )?;
    }
    if s.refused_truncated > 0 {
        writeln!(
            out,
            "refused as truncated: {} (only a prefix of the original is in the dead-letter topic)",
            s.refused_truncated
        )?;
    }
    if s.skipped_by_filter > 0 && !s.dry_run {
        writeln!(
            out,
            "skipped messages stay in the dead-letter topic; group {group} has passed them: \
             to replay them later use another --group"
        )?;
    }
    if !s.by_class.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<24} {:>9} {:>9} {:>9}",
            "ERROR CLASS",
            if s.dry_run { "WOULD" } else { "REPLAYED" },
            "SKIPPED",
            "REFUSED"
        )?;
        for (c, n) in &s.by_class {
            writeln!(
                out,
                "{c:<24} {:>9} {:>9} {:>9}",
                n.replayed, n.skipped_by_filter, n.refused
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dead_letter(headers: &[(&str, &str)]) -> RawMessage {
        RawMessage {
            topic: "x.dlq".into(),
            partition: 2,
            offset: 40,
            key: Some(b"3201".to_vec()),
            value: Some(b"{}".to_vec()),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            timestamp_ms: Some(1_705_284_000_000),
        }
    }

    #[test]
    fn replay_headers_keep_the_originals_and_count() {
        let m = dead_letter(&[
            ("traceparent", "00-abc"),
            (headers::ERROR_CLASS, "rule"),
            (headers::REPLAY_COUNT, "1"),
            (REPLAYED_FROM, "x.dlq/0/3"),
            (headers::REGION, "3201"),
        ]);
        let h = replay_headers(&m);
        assert_eq!(
            h,
            vec![
                ("traceparent".to_string(), b"00-abc".to_vec()),
                (headers::REPLAY_COUNT.to_string(), b"2".to_vec()),
                (REPLAYED_FROM.to_string(), b"x.dlq/2/40".to_vec()),
            ]
        );
    }

    #[test]
    fn replays_to_the_source_go_back_to_the_original_partition() {
        let m = dead_letter(&[
            (headers::SOURCE_TOPIC, "src"),
            (headers::SOURCE_PARTITION, "2"),
        ]);
        assert_eq!(original_partition(&m, "src", 4), Some(2));
        assert_eq!(
            original_partition(&m, "src", 2),
            None,
            "fewer partitions now"
        );
        assert_eq!(original_partition(&m, "elsewhere", 4), None);
    }

    #[test]
    fn decisions() {
        let f = Filter::default();
        let m = dead_letter(&[(headers::REPLAY_COUNT, "3")]);
        assert_eq!(
            decide(&m, &f, 3),
            Decision::RefusedMaxReplays { count: 3, max: 3 }
        );
        assert_eq!(decide(&m, &f, 4), Decision::Replay);
        let t = dead_letter(&[(TRUNCATED, "2000000")]);
        assert!(matches!(
            decide(&t, &f, 3),
            Decision::RefusedTruncated { .. }
        ));
        let only_rule = Filter {
            error_class: Some("rule".into()),
            ..Default::default()
        };
        assert_eq!(decide(&m, &only_rule, 3), Decision::Filtered);
    }

    #[test]
    fn filters() {
        let m = dead_letter(&[
            (headers::ERROR_CLASS, "rule"),
            (headers::DATA_TYPE, "phone"),
            (headers::BATCH_ID, "b1"),
            (headers::FIRST_FAILED_AT, "2024-01-15T02:40:00Z"),
        ]);
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let yes = Filter {
            error_class: Some("rule".into()),
            data_type: Some("phone".into()),
            // No region header: the key is the region.
            region: Some("3201".into()),
            since: Some(t("2024-01-15T02:40:00Z")),
            until: Some(t("2024-01-15T02:40:01Z")),
            batch: Some("b1".into()),
        };
        assert!(yes.matches(&m));
        for no in [
            Filter {
                error_class: Some("schema".into()),
                ..Default::default()
            },
            Filter {
                data_type: Some("address".into()),
                ..Default::default()
            },
            Filter {
                region: Some("3202".into()),
                ..Default::default()
            },
            Filter {
                until: Some(t("2024-01-15T02:40:00Z")),
                ..Default::default()
            },
            Filter {
                since: Some(t("2024-01-15T10:40:01+08:00")),
                ..Default::default()
            },
            Filter {
                batch: Some("b2".into()),
                ..Default::default()
            },
        ] {
            assert!(!no.matches(&m), "{no:?}");
        }
        // Without the header, the message timestamp is the time.
        let ts = dead_letter(&[]);
        let since = Filter {
            since: Some(t("2024-01-15T02:00:00Z")),
            ..Default::default()
        };
        assert!(since.matches(&ts));
    }

    #[test]
    fn samples_are_masked() {
        let e = json!({
            "customer_id": "CUST_320102_0000001",
            "original_data": {"address": "江苏南京玄武区中山路123", "id_card": "32010219900101123X",
                              "phone": "13812345678", "name": "张伟"},
            "governance_result": {
                "standardized_address": "江苏省南京市玄武区中山路123号",
                "suggested_correction": "320102199001011232",
                "geocoding_result": {"latitude": 32.058123, "longitude": 118.796912},
                "birth_date_analysis": {"extracted_date": "1990-01-01"},
                "issues": ["号码 13812345678 无效"]
            }
        });
        let m = masked_json(&e);
        let text = m.to_string();
        for secret in [
            "13812345678",
            "32010219900101123X",
            "320102199001011232",
            "中山路",
            "张伟",
            "1990-01-01",
            "32.058123",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(m["customer_id"], "CUST_320102_0000001");
        assert_eq!(m["original_data"]["id_card"], "320102********123X");
        assert_eq!(m["original_data"]["phone"], "138****5678");
        assert_eq!(
            m["governance_result"]["standardized_address"],
            "江苏省南京市玄武区***"
        );
        assert_eq!(m["original_data"]["name"], "张*");
        assert_eq!(
            m["governance_result"]["geocoding_result"]["latitude"],
            32.06
        );
    }

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
