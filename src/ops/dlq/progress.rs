//! How a replay shows its progress: an indicatif bar on a terminal, a
//! plain line every second elsewhere.

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::summary::ReplaySummary;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar on standard output (a terminal).
    Bar,
    /// A plain line every second through `out` (logs, pipes, tests).
    Lines,
}

/// Shows progress as a bar (terminal) or as plain lines.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    pub(super) fn new(mode: ProgressMode, total: u64) -> Progress {
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

    pub(super) fn update(
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
    pub(super) fn line(&self, out: &mut impl Write, text: &str) -> std::io::Result<()> {
        match &self.bar {
            Some(b) => b.suspend(|| writeln!(out, "{text}")),
            None => writeln!(out, "{text}"),
        }
    }

    pub(super) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
