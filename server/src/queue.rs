//! The bounded work queue: FHE work (key decompression, circuit evaluation) runs on a rayon
//! pool, never on the async workers that serve HTTP, and at most `capacity` jobs are admitted
//! (running or waiting) at once; beyond that a request is refused at once with a retry delay
//! instead of waiting without bound.
//!
//! Jobs run one at a time in arrival order, each spread over the whole pool (a sample's neurons
//! and a batch's samples are independent PBS). Handing several jobs to rayon at once gives the
//! same throughput but unfair latencies: a thread waiting inside one job's parallel loop steals
//! and runs another job, so the first cannot finish before the second (measured on 4 clients ×
//! 25 MNIST requests, 2 threads: p95 13.1 s, max 29.6 s, against a 1.7 s evaluation).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;
use tokio::sync::{oneshot, Semaphore};

/// Why a job did not run to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// The queue was full; retry after about this many seconds.
    Full {
        /// Estimated seconds until a slot frees.
        retry_after_s: u64,
    },
    /// The job panicked (a bug); its message.
    Panicked(String),
}

type Job = Box<dyn FnOnce() + Send>;

/// The queue and its pool.
pub struct WorkQueue {
    threads: usize,
    jobs: Mutex<mpsc::Sender<Job>>,
    permits: Arc<Semaphore>,
    capacity: usize,
    /// Exponential moving average of job durations, milliseconds.
    mean_job_ms: Arc<AtomicU64>,
}

impl WorkQueue {
    /// A pool of `threads` threads (all cores when `None`) admitting `capacity` jobs.
    ///
    /// # Errors
    /// The pool cannot be built (thread creation failed), or `capacity` is 0.
    pub fn new(threads: Option<usize>, capacity: usize) -> Result<Self, String> {
        if capacity == 0 {
            return Err("--max-queue must be at least 1".into());
        }
        let mut builder = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("qfhe-fhe-{i}"));
        if let Some(t) = threads {
            builder = builder.num_threads(t);
        }
        let pool = builder
            .build()
            .map_err(|e| format!("cannot start the evaluation threads: {e}"))?;
        let threads = pool.current_num_threads();
        let (jobs, arrivals) = mpsc::channel::<Job>();
        // The dispatcher ends when the queue (its sender) is dropped.
        std::thread::Builder::new()
            .name("qfhe-dispatch".into())
            .spawn(move || {
                for job in arrivals {
                    pool.install(job);
                }
            })
            .map_err(|e| format!("cannot start the dispatcher thread: {e}"))?;
        Ok(Self {
            threads,
            jobs: Mutex::new(jobs),
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            mean_job_ms: Arc::new(AtomicU64::new(1000)),
        })
    }

    /// Threads in the pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Most jobs admitted at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Jobs admitted and not finished.
    pub fn admitted(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    /// Run `job` on the pool, or refuse it at once when `capacity` jobs are admitted. A job
    /// whose caller has gone away (request timed out or disconnected) before it starts is
    /// skipped.
    ///
    /// # Errors
    /// [`JobError::Full`] when the queue is full, [`JobError::Panicked`] if the job panicked.
    pub async fn run<T, F>(&self, job: F) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            let mean_s = self.mean_job_ms.load(Ordering::Relaxed) as f64 / 1000.0;
            // Jobs run one after the other: the queue drains in about capacity × mean.
            let per_slot = mean_s * self.capacity as f64;
            JobError::Full {
                retry_after_s: per_slot.ceil().clamp(1.0, 600.0) as u64,
            }
        })?;
        let (tx, rx) = oneshot::channel();
        let mean = self.mean_job_ms.clone();
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                return;
            }
            let start = Instant::now();
            let result = std::panic::catch_unwind(AssertUnwindSafe(job));
            let ms = start.elapsed().as_millis() as u64;
            let old = mean.load(Ordering::Relaxed);
            mean.store((old * 7 + ms) / 8, Ordering::Relaxed);
            // Free the slot before answering, so that the caller finds it free.
            drop(permit);
            let _ = tx.send(result.map_err(|p| {
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into())
            }));
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job);
        if sent.is_err() {
            return Err(JobError::Panicked(
                "the dispatcher thread has stopped".into(),
            ));
        }
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(msg)) => Err(JobError::Panicked(msg)),
            Err(_) => Err(JobError::Panicked("the job was dropped".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_its_slots() {
        let q = Arc::new(WorkQueue::new(Some(1), 1).unwrap());
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let q2 = q.clone();
        let first = tokio::spawn(async move { q2.run(move || go_rx.recv().map(|_| 7)).await });
        while q.admitted() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(
            matches!(q.run(|| 1).await, Err(JobError::Full { retry_after_s }) if retry_after_s >= 1)
        );
        go_tx.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(Ok(7)));
        assert_eq!(q.run(|| 2).await, Ok(2));
        assert_eq!(q.admitted(), 0);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_pool_survives() {
        let q = WorkQueue::new(Some(1), 2).unwrap();
        let r: Result<(), _> = q.run(|| panic!("boom")).await;
        assert_eq!(r, Err(JobError::Panicked("boom".into())));
        assert_eq!(q.run(|| 3).await, Ok(3));
        assert!(WorkQueue::new(None, 0).is_err());
    }
}
