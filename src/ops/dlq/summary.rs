//! What a replay did (or, dry run, would do): the counts, and the summary
//! printed at its end.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

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
    pub(super) fn add(&mut self, o: &ReplaySummary) {
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

pub(super) fn times(n: u32) -> String {
    if n == 1 {
        "1 time".into()
    } else {
        format!("{n} times")
    }
}

pub(super) fn print_summary(
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
