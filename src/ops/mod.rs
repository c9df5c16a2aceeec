//! Operator commands. Each writes through `&mut impl Write`, so tests read
//! exactly what a person sees.

pub mod check;
pub mod dlq;
mod signals;
pub mod validate;

use std::io::Write;

use crate::sink::LedgerEntry;
use crate::sink::protocol::RollbackReport;

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
