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

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::AuthError;
use crate::validation::Password;

/// Hashes and verifies passwords, at most `concurrency` at a time.
#[derive(Debug, Clone)]
pub struct Hasher {
    cost: u32,
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

    /// Hashes `password` on the blocking pool, inside a `bcrypt.hash` span.
    pub async fn hash(&self, password: Password) -> Result<String, AuthError> {
        let turn = self.turn().await?;
        let cost = self.cost;
        let span = tracing::info_span!("bcrypt.hash", otel.kind = "internal", bcrypt.cost = cost);
        telemetry::spawn_blocking_in(span, move || {
            // The turn is held until the hash is done, even if the caller stops waiting: the
            // bound is on CPU work, not on callers.
            let _turn = turn;
            bcrypt::hash(password.expose(), cost)
        })
        .await
        .map_err(|e| AuthError::Internal(format!("hash task failed: {e}")))?
        .map_err(|e| AuthError::Internal(format!("bcrypt failed: {e}")))
    }

    /// Checks `password` against `hash` on the blocking pool, inside a `bcrypt.verify` span.
    ///
    /// A malformed stored hash is [`AuthError::StoredHashUnusable`], never a match.
    pub async fn verify(&self, password: Password, hash: String) -> Result<bool, AuthError> {
        let turn = self.turn().await?;
        let span = tracing::info_span!("bcrypt.verify", otel.kind = "internal");
        telemetry::spawn_blocking_in(span, move || {
            let _turn = turn;
            bcrypt::verify(password.expose(), &hash)
        })
        .await
        .map_err(|e| AuthError::Internal(format!("verify task failed: {e}")))?
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
