//! `govsync dlq replay`: re-publishes dead letters chunk by chunk, each
//! chunk one Kafka transaction with the group's offsets past it (the
//! guarantees are in the module doc of [`super`]).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::filter::{Decision, Filter, decide};
use super::labels::{class_of, data_type_of, header_str, region_of};
use super::progress::{Progress, ProgressMode};
use super::reader::DlqReader;
use super::summary::{ReplaySummary, print_summary, times};
use super::txn::{Pending, Txn, commit_chunk, commit_failed};
use super::{CHUNK_MESSAGES, CHUNK_TIME, KAFKA_TIMEOUT, KNOWN_CLASSES, REPLAYED_FROM};
use crate::config::Config;
use crate::message::RawMessage;
use crate::ops::signals;
use crate::output::headers;

/// Per-message lines (refused, or would-be-replayed in a dry run) printed
/// before the rest is only counted.
const MAX_LINES: u64 = 20;

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

/// `govsync dlq replay` as the command line asks for it, on standard
/// output: a progress bar on a terminal, lines otherwise; `stop` (see
/// [`stop_on_signals`]) ends it after its current chunk.
pub fn replay_command(
    cfg: &Config,
    args: &crate::cli::ReplayArgs,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<ReplaySummary> {
    let progress = if std::io::stdout().is_terminal() {
        ProgressMode::Bar
    } else {
        ProgressMode::Lines
    };
    let mut opts = ReplayOptions::from_args(args, progress)?;
    opts.stop = stop;
    // Unlocked: the progress bar draws to standard output too.
    replay(cfg, &opts, &mut std::io::stdout())
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
    let txn = if opts.dry_run {
        None
    } else {
        Some(Txn::new(k, &opts.group, &dest)?)
    };
    let idle = k.transaction_timeout + Duration::from_secs(30);
    let reader = DlqReader::open(k, Some(&opts.group), idle)?;
    let dest_partitions = check_destination(&reader.consumer, &dest, opts.to.is_some())?;
    print_start(cfg, opts, &dest, &reader, out)?;
    let mut run = Run::new(cfg.max_replays, opts, reader, txn, dest, dest_partitions);
    let read_error = run.read_to_end(out)?;
    run.finish(read_error, out)
}

/// What the replay is about to do: the range, the filters, and where a
/// resumed or continued run stands.
fn print_start(
    cfg: &Config,
    opts: &ReplayOptions,
    dest: &str,
    reader: &DlqReader,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let k = &cfg.kafka;
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
    Ok(())
}

/// A replay under way: the reader, the chunk being built and what earlier
/// chunks did. Fields drop in order: the progress bar, then the consumer,
/// then the producer.
struct Run<'a> {
    opts: &'a ReplayOptions,
    max_replays: u32,
    progress: Progress,
    /// `replayed`, or `would replay` in a dry run.
    verb: &'static str,
    /// None: no `--rate`.
    limiter: Option<DefaultDirectRateLimiter>,
    clock: DefaultClock,
    reader: DlqReader,
    /// None in a dry run: nothing is sent or committed.
    txn: Option<Txn>,
    dest: String,
    dest_partitions: i32,
    /// Where this run started, per partition.
    starts: BTreeMap<i32, i64>,
    /// The group's offsets as last committed (None: this run has committed
    /// nothing yet).
    committed: Option<BTreeMap<i32, i64>>,
    /// What committed chunks did.
    done: ReplaySummary,
    /// What the open chunk did so far, and its messages (kept to re-send
    /// them when its transaction is retried).
    chunk: ReplaySummary,
    chunk_msgs: Vec<Pending>,
    chunk_started: Instant,
    /// Per-message lines printed so far (would replay, refused).
    lines: u64,
    refused_lines: u64,
}

impl<'a> Run<'a> {
    fn new(
        max_replays: u32,
        opts: &'a ReplayOptions,
        reader: DlqReader,
        txn: Option<Txn>,
        dest: String,
        dest_partitions: i32,
    ) -> Run<'a> {
        let limiter = NonZeroU32::new(opts.rate).map(|r| {
            let burst = NonZeroU32::new((r.get() / 10).max(1)).expect("at least 1");
            RateLimiter::direct(Quota::per_second(r).allow_burst(burst))
        });
        let verb = if opts.dry_run {
            "would replay"
        } else {
            "replayed"
        };
        Run {
            opts,
            max_replays,
            limiter,
            clock: DefaultClock::default(),
            verb,
            progress: Progress::new(opts.progress, reader.total()),
            done: ReplaySummary {
                dry_run: opts.dry_run,
                ..Default::default()
            },
            chunk: ReplaySummary::default(),
            chunk_msgs: Vec::new(),
            committed: None,
            chunk_started: Instant::now(),
            lines: 0,
            refused_lines: 0,
            starts: reader.start_offsets(),
            reader,
            txn,
            dest,
            dest_partitions,
        }
    }

    /// Reads, decides and sends until the end of the range, a stop request
    /// or a read error, committing chunk after chunk. Returns the read
    /// error, if one ended it.
    fn read_to_end(&mut self, out: &mut impl Write) -> anyhow::Result<Option<anyhow::Error>> {
        let mut read_error = None;
        loop {
            // On a stop request or a read error, what was handled so far is
            // committed before returning.
            let next = if self.opts.stop.load(Ordering::Relaxed) {
                self.done.interrupted = true;
                None
            } else {
                match self.reader.next_message() {
                    Ok(n) => n,
                    Err(e) => {
                        read_error = Some(e);
                        None
                    }
                }
            };
            if let Some(m) = &next {
                self.handle(m, out)?;
            }
            let full = self.chunk_msgs.len() >= CHUNK_MESSAGES
                || self.chunk_started.elapsed() >= CHUNK_TIME;
            if next.is_none() || full {
                self.commit()?;
            }
            let mut shown = self.done.clone();
            shown.add(&self.chunk);
            self.progress
                .update(self.reader.passed(), &shown, self.verb, out)?;
            if next.is_none() {
                return Ok(read_error);
            }
        }
    }

    /// Counts one dead letter by its [`Decision`], prints its line (refused,
    /// or would be replayed) and, when it is replayed, sends it.
    fn handle(&mut self, m: &RawMessage, out: &mut impl Write) -> anyhow::Result<()> {
        let class = class_of(m);
        self.chunk.read += 1;
        let counts = self.chunk.by_class.entry(class.clone()).or_default();
        match decide(m, &self.opts.filter, self.max_replays) {
            Decision::Filtered => {
                counts.skipped_by_filter += 1;
                self.chunk.skipped_by_filter += 1;
            }
            Decision::RefusedMaxReplays { count, max } => {
                counts.refused += 1;
                self.chunk.refused_max_replays += 1;
                self.refused_lines += 1;
                if self.refused_lines <= MAX_LINES {
                    self.progress.line(out, &format!(
                        "refused: partition {} offset {} ({class}, {}, region {}): replayed {} already, \
                         dlq.max_replays is {max}; it stays in the dead-letter topic",
                        m.partition, m.offset, data_type_of(m), region_of(m), times(count)
                    ))?;
                }
            }
            Decision::RefusedTruncated { original_bytes } => {
                counts.refused += 1;
                self.chunk.refused_truncated += 1;
                self.refused_lines += 1;
                if self.refused_lines <= MAX_LINES {
                    self.progress.line(out, &format!(
                        "refused: partition {} offset {} ({class}): its payload was cut from {original_bytes} bytes \
                         to the dead-letter topic's limit; the original is not in the topic",
                        m.partition, m.offset
                    ))?;
                }
            }
            Decision::Replay => {
                counts.replayed += 1;
                self.chunk.replayed += 1;
                if self.opts.dry_run {
                    self.lines += 1;
                    if self.lines <= MAX_LINES {
                        self.progress.line(
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
                    self.send(m)?;
                }
            }
        }
        Ok(())
    }

    /// Waits for the rate limit, then sends `m` in the open chunk's
    /// transaction.
    fn send(&mut self, m: &RawMessage) -> anyhow::Result<()> {
        if let Some(l) = &self.limiter {
            while let Err(not_until) = l.check() {
                std::thread::sleep(not_until.wait_time_from(self.clock.now()));
            }
        }
        let p = Pending {
            partition: original_partition(m, &self.dest, self.dest_partitions),
            key: m.key.clone(),
            value: m.value.clone(),
            headers: replay_headers(m),
        };
        if let Some(t) = self.txn.as_mut()
            && let Err(e) = t.send(&p)
        {
            commit_failed(t, &e)?;
        }
        self.chunk_msgs.push(p);
        Ok(())
    }

    /// Ends the open chunk: commits it with the group's offsets (unless a
    /// dry run, or nothing moved) and starts the next.
    fn commit(&mut self) -> anyhow::Result<()> {
        // Every message below `reader.next` has been handled: the
        // group's offsets move there (also past transaction markers at
        // a partition's end). Every partition is committed, each with
        // the end of this run's range, so that an interruption after
        // the first commit resumes exactly this range.
        let moved = match &self.committed {
            Some(c) => *c != self.reader.next,
            None => self.reader.next != self.starts,
        };
        if let Some(t) = self.txn.as_mut()
            && (moved || t.open)
        {
            let offsets: BTreeMap<i32, (i64, i64)> = self
                .reader
                .next
                .iter()
                .map(|(p, o)| (*p, (*o, self.reader.bounds[p].1)))
                .collect();
            commit_chunk(t, &self.reader, &self.chunk_msgs, &offsets)?;
            self.done.chunks += 1;
        }
        self.committed = Some(self.reader.next.clone());
        self.done.add(&self.chunk);
        self.chunk = ReplaySummary::default();
        self.chunk_msgs.clear();
        self.chunk_started = Instant::now();
        Ok(())
    }

    /// Clears the progress bar and prints the summary; a read error that
    /// ended the run becomes the result, after the summary.
    fn finish(
        self,
        read_error: Option<anyhow::Error>,
        out: &mut impl Write,
    ) -> anyhow::Result<ReplaySummary> {
        self.progress.finish();
        let group = &self.opts.group;
        if let Some(e) = read_error {
            print_summary(&self.done, self.max_replays, group, out)?;
            return Err(e.context(
                "the replay stopped early; what it did is committed: run the same command again to finish",
            ));
        }
        if self.refused_lines > MAX_LINES {
            writeln!(
                out,
                "… and {} more refused (counted below)",
                self.refused_lines - MAX_LINES
            )?;
        }
        if self.opts.dry_run && self.lines > MAX_LINES {
            writeln!(
                out,
                "… and {} more would be replayed (counted below)",
                self.lines - MAX_LINES
            )?;
        }
        if self.done.interrupted {
            writeln!(
                out,
                "interrupted: what is counted below is committed; run the same command again to finish this run"
            )?;
        }
        print_summary(&self.done, self.max_replays, group, out)?;
        Ok(self.done)
    }
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

/// A flag set by the first Ctrl-C or SIGTERM (a replay then commits what
/// it did and stops); a second signal exits at once. Needs a tokio runtime.
pub fn stop_on_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    tokio::spawn(async move {
        let mut term = signals::sigterm();
        for _ in 0..2 {
            signals::interrupt(&mut term).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::dlq::dead_letter;

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
}
