//! `govsync validate`: the processor's verdict for each line of JSON
//! (one event per line). The governance team runs it in CI before
//! publishing, so it calls the same [`crate::event::decode_and_check`] the
//! processor calls.

use std::io::{BufRead, BufReader, Write};

use anyhow::Context;

use crate::config::Config;
use crate::event::{self, Disposition, RuleSet};

/// Counts of a validation run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub total: usize,
    pub ok: usize,
    /// Valid, but sent to review instead of (or besides) being applied.
    pub review: usize,
    pub invalid: usize,
}

/// The verdict of one line, as printed.
pub fn verdict(line: &[u8], max_bytes: usize, rules: &RuleSet) -> (bool, String) {
    match event::decode_and_check(line, max_bytes, rules) {
        Ok(c) => match c.disposition {
            Disposition::Apply => (true, "ok".into()),
            Disposition::Flag(reasons) => (
                true,
                format!("ok, flagged for review: {}", reasons.join("; ")),
            ),
            Disposition::Hold(reasons) => (
                true,
                format!("ok, held for review (not applied): {}", reasons.join("; ")),
            ),
        },
        Err(r) => (
            false,
            format!("invalid {}: {}", r.rejection.class(), r.rejection),
        ),
    }
}

/// Validates every line of `input`, printing `line N: verdict` and a
/// summary to `out`. Blank lines are skipped.
pub fn run(
    input: impl BufRead,
    out: &mut impl Write,
    max_bytes: usize,
    rules: &RuleSet,
) -> std::io::Result<Summary> {
    let mut s = Summary::default();
    for (i, line) in input.split(b'\n').enumerate() {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        s.total += 1;
        let (ok, text) = verdict(&line, max_bytes, rules);
        if ok {
            s.ok += 1;
            if text != "ok" {
                s.review += 1;
            }
        } else {
            s.invalid += 1;
        }
        writeln!(
            out,
            "line {}: {}",
            i + 1,
            crate::telemetry::mask::digits_in(&text)
        )?;
    }
    writeln!(
        out,
        "{} events: {} ok ({} for review), {} invalid",
        s.total, s.ok, s.review, s.invalid
    )?;
    Ok(s)
}

/// `govsync validate`: [`run`] on `file` (`-`: standard input) with the
/// configured message size limit and rules.
pub fn run_file(cfg: &Config, file: &str, out: &mut impl Write) -> anyhow::Result<Summary> {
    let input: Box<dyn BufRead> = if file == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening {file}"))?,
        ))
    };
    Ok(run(input, out, cfg.kafka.max_message_bytes, &cfg.rules)?)
}
