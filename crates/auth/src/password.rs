//! bcrypt hashing and verification on a bounded pool, off the async executor and inside their
//! own spans.
//!
//! bcrypt is deliberately slow (a quarter of a second of one core at the default cost). Run
//! unbounded, a burst of sign-ups shares the cores between all of them, so every one of them
//! finishes late, after its caller's deadline, and none succeeds (90 concurrent sign-ups on two
//! loaded cores: 70 answered 503 after 10 s, and 3 accounts were created for callers that had
//! been told they failed). The [`Hasher`] runs at most one hash per core; a request that cannot
//! get a turn within a short wait, or before its deadline, is refused at once with
//! [`AuthError::Overloaded`], which the gateway answers with 503 `overloaded` and `Retry-After`.
//!
//! Hashes run on threads of their own at a lower scheduling priority ([`HASHING_NICENESS`]):
//! with logins saturating every core, the scheduler still gives the threads serving profile
//! reads and token checks the CPU first, so those keep their latency (BENCHMARKS.md: `/users/me`
//! p99 while logins saturate the pool). When nothing else wants the CPU, hashing gets all of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::AuthError;
use crate::validation::Password;

/// How much lower than the service's other threads the hashing threads run (`nice` 10: about a
/// tenth of a core's share against a busy thread of the default priority).
pub const HASHING_NICENESS: i32 = 10;

/// A unit of hashing work for the pool.
type Job = Box<dyn FnOnce() + Send>;

/// The threads that run bcrypt, as many as hashes may run at once.
#[derive(Debug)]
struct Pool {
    /// `Sender` is `Sync`: every caller sends on it directly.
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            let started = std::thread::Builder::new()
                .name(format!("bcrypt-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only to take a job, never while running one.
                        let job = queue
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        match job {
                            Ok(job) => job(),
                            // Every Hasher is gone.
                            Err(_) => return,
                        }
                    }
                });
            if started.is_err() {
                // Fewer threads only means fewer hashes at once; the semaphore still bounds them.
                break;
            }
        }
        Self { jobs }
    }

    /// Runs `work` on a hashing thread; `None` when the pool is gone.
    async fn run<R: Send + 'static>(
        &self,
        span: tracing::Span,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(span.in_scope(work));
        });
        self.jobs.send(job).ok()?;
        result.await.ok()
    }
}

/// Makes the calling thread yield to the service's other threads ([`HASHING_NICENESS`]).
/// Best effort: where the system refuses, hashing merely competes as an equal.
fn lower_priority() {
    // On Linux the nice value is per thread, and PRIO_PROCESS with a thread id sets just that
    // thread's (elsewhere it would be the whole process's, so nothing is done there).
    #[cfg(target_os = "linux")]
    {
        let _ =
            rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASHING_NICENESS);
    }
}

/// Hashes and verifies passwords, at most `concurrency` at a time.
#[derive(Debug, Clone)]
pub struct Hasher {
    cost: u32,
    pool: Arc<Pool>,
    permits: Arc<Semaphore>,
    /// Callers waiting for a turn now; past `max_waiting` a new one is refused without waiting.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// The longest a caller waits for a turn.
    queue_timeout: Duration,
}

/// Decrements the waiting count however the wait ends (turn, timeout, or the caller dropped).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hasher {
    /// `concurrency` hashes at once (one per core is all the CPU there is); up to twice as many
    /// callers wait, each for at most `queue_timeout`.
    pub fn new(cost: u32, concurrency: usize, queue_timeout: Duration) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            cost,
            pool: Arc::new(Pool::new(concurrency)),
            permits: Arc::new(Semaphore::new(concurrency)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: concurrency * 2,
            queue_timeout,
        }
    }

    /// The bcrypt cost new hashes get.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// A turn on the pool, or [`AuthError::Overloaded`] when none comes soon enough.
    async fn turn(&self) -> Result<OwnedSemaphorePermit, AuthError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _waiting = Waiting(self.waiting.clone());
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            return Err(AuthError::Overloaded);
        }
        // Never wait past the caller's deadline: work it has given up on is not worth starting.
        let budget = telemetry::grpc::current_deadline().map_or(self.queue_timeout, |deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .min(self.queue_timeout)
        });
        match tokio::time::timeout(budget, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(AuthError::Internal("hashing pool closed".into())),
            Err(_elapsed) => Err(AuthError::Overloaded),
        }
    }

    /// Hashes `password` on a hashing thread, inside a `bcrypt.hash` span.
    pub async fn hash(&self, password: Password) -> Result<String, AuthError> {
        let turn = self.turn().await?;
        let cost = self.cost;
        // Made here, on the caller's task, so that its parent is the request's span.
        let span = tracing::info_span!("bcrypt.hash", otel.kind = "internal", bcrypt.cost = cost);
        self.pool
            .run(span, move || {
                // The turn is held until the hash is done, even if the caller stops waiting:
                // the bound is on CPU work, not on callers.
                let _turn = turn;
                bcrypt::hash(password.expose(), cost)
            })
            .await
            .ok_or_else(|| AuthError::Internal("the hashing pool is gone".into()))?
            .map_err(|e| AuthError::Internal(format!("bcrypt failed: {e}")))
    }

    /// Checks `password` against `hash` on a hashing thread, inside a `bcrypt.verify` span.
    ///
    /// A malformed stored hash is [`AuthError::StoredHashUnusable`], never a match.
    pub async fn verify(&self, password: Password, hash: String) -> Result<bool, AuthError> {
        let turn = self.turn().await?;
        let span = tracing::info_span!("bcrypt.verify", otel.kind = "internal");
        self.pool
            .run(span, move || {
                let _turn = turn;
                bcrypt::verify(password.expose(), &hash)
            })
            .await
            .ok_or_else(|| AuthError::Internal("the hashing pool is gone".into()))?
            .map_err(|e| AuthError::StoredHashUnusable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> Hasher {
        Hasher::new(4, 2, Duration::from_millis(500))
    }

    #[tokio::test]
    async fn hashes_verify_only_the_right_password() {
        let hasher = hasher();
        let hashed = hasher
            .hash(Password::parse_new("correct horse".into()).unwrap())
            .await
            .unwrap();
        assert!(hashed.starts_with("$2"));
        assert!(!hashed.contains("correct horse"));
        assert!(
            hasher
                .verify(Password::offered("correct horse".into()), hashed.clone())
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(Password::offered("wrong horse".into()), hashed)
                .await
                .unwrap()
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_below_the_service_s_priority() {
        let niceness = hasher()
            .pool
            .run(tracing::Span::none(), || {
                rustix::process::getpriority_process(Some(rustix::thread::gettid()))
            })
            .await
            .expect("a hashing thread")
            .unwrap();
        let ours = rustix::process::getpriority_process(None).unwrap();
        assert_eq!(niceness, (ours + HASHING_NICENESS).min(19));
    }

    #[tokio::test]
    async fn malformed_hashes_are_errors_not_matches() {
        let error = hasher()
            .verify(Password::offered("x".into()), "not-a-hash".into())
            .await
            .unwrap_err();
        assert!(
            matches!(error, AuthError::StoredHashUnusable(_)),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_full_pool_refuses_rather_than_queueing_without_bound() {
        // One turn, held; two may wait; the fourth caller is refused at once.
        let hasher = Hasher::new(4, 1, Duration::from_secs(60));
        let held = hasher.turn().await.unwrap();
        let first = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.turn().await.map(drop) }
        });
        let second = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.turn().await.map(drop) }
        });
        while hasher.waiting.load(Ordering::Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(hasher.turn().await, Err(AuthError::Overloaded)));
        drop(held);
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        assert_eq!(
            hasher.waiting.load(Ordering::Relaxed),
            0,
            "every wait is accounted for"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gets_no_turn_in_time_is_refused() {
        let hasher = Hasher::new(4, 1, Duration::from_millis(500));
        let _held = hasher.turn().await.unwrap();
        // Paused time: the wait ends by the clock, not by a sleep in the test.
        assert!(matches!(hasher.turn().await, Err(AuthError::Overloaded)));
    }
}
