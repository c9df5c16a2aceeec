//! The blocking pool: the `oracle` crate is synchronous, so every Oracle
//! call runs on tokio's blocking threads, never on the async workers, and
//! at most `database.pool_size` of them at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::sink::error::Transient;
use crate::sink::{SinkError, SinkResult};

/// Runs the synchronous Oracle calls on tokio's blocking threads, at most
/// `size` at once.
#[derive(Debug, Clone)]
pub struct BlockingPool {
    /// One permit per database session in use. A transaction holds one for
    /// its whole life (its calls run one after another), a one-off call for
    /// the call. So both the sessions checked out of the Oracle pool and the
    /// blocking threads busy with Oracle are bounded by `size`, and a session
    /// is never requested from the Oracle pool while all are out (which would
    /// park a blocking thread in the pool's wait).
    slots: Arc<Semaphore>,
    size: usize,
    /// How long a caller waits for a free slot (`database.connect_timeout`)
    /// before the batch fails with a retryable timeout.
    wait: Duration,
}

impl BlockingPool {
    pub fn new(size: usize, wait: Duration) -> Self {
        let size = size.max(1);
        BlockingPool {
            slots: Arc::new(Semaphore::new(size)),
            size,
            wait,
        }
    }

    /// Waits for a free slot.
    pub async fn slot(&self) -> SinkResult<OwnedSemaphorePermit> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(SinkError::Fatal("the Oracle session pool is closed".into())),
            Err(_) => Err(SinkError::transient(
                Transient::Timeout,
                format!(
                    "all {} Oracle sessions (database.pool_size) stayed busy for {:?}",
                    self.size, self.wait
                ),
            )),
        }
    }

    /// Runs one job on a blocking thread, holding a slot while it runs.
    pub async fn run<T, F>(&self, f: F) -> SinkResult<T>
    where
        F: FnOnce() -> SinkResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.slot().await?;
        blocking(move || {
            let _permit = permit;
            f()
        })
        .await
    }

    /// Refuses new jobs; running ones finish.
    pub fn close(&self) {
        self.slots.close();
    }
}

/// Runs `f` on a blocking thread. Callers hold a slot (see [`BlockingPool`]).
pub(super) async fn blocking<T, F>(f: F) -> SinkResult<T>
where
    F: FnOnce() -> SinkResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SinkError::Fatal(format!("an Oracle call did not complete: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_blocking_pool_never_runs_more_than_its_size() {
        const SIZE: usize = 3;
        const JOBS: usize = SIZE + 5;
        let pool = BlockingPool::new(SIZE, Duration::from_secs(30));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..JOBS)
            .map(|i| {
                let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(40));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(i)
                    })
                    .await
                })
            })
            .collect();
        let mut done = Vec::new();
        for j in jobs {
            done.push(j.await.unwrap().unwrap());
        }
        done.sort();
        assert_eq!(done, (0..JOBS).collect::<Vec<_>>());
        assert_eq!(
            peak.load(Ordering::SeqCst),
            SIZE,
            "jobs ran beyond the bound"
        );
    }

    #[tokio::test]
    async fn a_held_slot_blocks_jobs_until_the_wait_runs_out() {
        let pool = BlockingPool::new(1, Duration::from_millis(50));
        let held = pool.slot().await.unwrap();
        let err = pool.run(|| Ok(())).await.unwrap_err();
        assert_eq!(err.class(), "timeout");
        drop(held);
        pool.run(|| Ok(())).await.unwrap();
        pool.close();
        assert_eq!(pool.run(|| Ok(())).await.unwrap_err().class(), "fatal");
    }
}
