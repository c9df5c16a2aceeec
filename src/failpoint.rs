//! Crash points for the crash-recovery tests.
//!
//! `GOVSYNC_CRASH_AT=<point>:<n>` makes the process kill itself with SIGKILL
//! the `n`-th time it reaches `<point>` (no destructors, no flush: the same
//! as `kill -9` or a power cut at that instant). Points:
//! `db_before_commit`, `db_after_commit`, `kafka_mid_txn`,
//! `kafka_after_commit`. Unset (always, in production) this costs one
//! relaxed atomic load per batch.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    point: String,
    remaining: AtomicU64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

fn armed() -> &'static Option<Armed> {
    ARMED.get_or_init(|| {
        let spec = std::env::var("GOVSYNC_CRASH_AT").ok()?;
        let (point, n) = spec.split_once(':').unwrap_or((spec.as_str(), "1"));
        Some(Armed {
            point: point.to_string(),
            remaining: AtomicU64::new(n.parse().unwrap_or(1)),
        })
    })
}

/// Marks that execution reached `point`.
pub fn hit(point: &str) {
    let Some(a) = armed() else { return };
    if a.point != point {
        return;
    }
    if a.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
        eprintln!("govsync: crash point {point} reached, killing the process (GOVSYNC_CRASH_AT)");
        // SAFETY: raise(2) with a valid signal number has no preconditions.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}
