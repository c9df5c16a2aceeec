//! Giving freed memory back to the operating system (glibc).
//!
//! Records are decoded on the consumer thread, batches are planned and
//! applied on the runtime's worker threads, and every thread allocates from
//! its own glibc arena. glibc keeps what a thread frees in that thread's
//! arena, so without help the resident set creeps up, batch after batch,
//! to the sum of every arena's high-water mark rather than what is live:
//! measured over a million-event backlog with the defaults (tests/flow,
//! `memory`), 218–247 MiB without the two measures below, 166–170 MiB with
//! them.
//!
//! - Allocations of 128 KiB and more (a batch's record vectors, bind
//!   arrays, query buffers) get their own mappings, returned when freed,
//!   instead of glibc's adaptive threshold that moves them into the arenas
//!   after the first free.
//! - After a batch completes, at most once a second, `malloc_trim` returns
//!   the arenas' free pages (on a blocking thread). It walks every arena and
//!   the pages it returns fault back in when reused: every 250 ms it cost 9%
//!   of the demo's CPU samples (perf, 100,000 events), once a second 4%.
//!
//! Both are no-ops on other C libraries.

use std::time::{Duration, Instant};

/// Fixed mmap threshold (glibc's default starts here but adapts upwards).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Least time between two trims.
const TRIM_EVERY: Duration = Duration::from_millis(1000);

/// Called once when the pipeline starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; any value is valid
    // for M_MMAP_THRESHOLD up to HEAP_MAX_SIZE / 2.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Trims after a batch completed, unless the last trim is recent.
#[derive(Debug, Default)]
pub struct Trimmer {
    last: Option<Instant>,
}

impl Trimmer {
    /// Returns free memory to the operating system now (tests, and
    /// [`Trimmer::after_batch`]).
    pub fn trim_now() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    pub fn after_batch(&mut self) {
        if self.last.is_some_and(|t| t.elapsed() < TRIM_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        tokio::task::spawn_blocking(Trimmer::trim_now);
    }
}
