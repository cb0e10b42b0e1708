//! bcrypt hashing and verification, off the async executor and inside their own spans.
//!
//! bcrypt is deliberately slow (tens to hundreds of milliseconds at production cost); run on an
//! async worker it would stall every other request on that thread.

use crate::error::AuthError;
use crate::validation::Password;

/// Hashes `password` at `cost` on the blocking pool, inside a `bcrypt.hash` span.
pub async fn hash(password: Password, cost: u32) -> Result<String, AuthError> {
    let span = tracing::info_span!("bcrypt.hash", otel.kind = "internal", bcrypt.cost = cost);
    telemetry::spawn_blocking_in(span, move || bcrypt::hash(password.expose(), cost))
        .await
        .map_err(|e| AuthError::Internal(format!("hash task failed: {e}")))?
        .map_err(|e| AuthError::Internal(format!("bcrypt failed: {e}")))
}

/// Checks `password` against `hash` on the blocking pool, inside a `bcrypt.verify` span.
///
/// A malformed stored hash counts as a mismatch (and is reported), never as a match.
pub async fn verify(password: Password, hash: String) -> Result<bool, AuthError> {
    let span = tracing::info_span!("bcrypt.verify", otel.kind = "internal");
    telemetry::spawn_blocking_in(span, move || bcrypt::verify(password.expose(), &hash))
        .await
        .map_err(|e| AuthError::Internal(format!("verify task failed: {e}")))?
        .map_err(|e| AuthError::Internal(format!("stored hash unusable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_only_the_right_password() {
        let hashed = hash(Password::parse_new("correct horse".into()).unwrap(), 4)
            .await
            .unwrap();
        assert!(hashed.starts_with("$2"));
        assert!(!hashed.contains("correct horse"));
        assert!(
            verify(Password::offered("correct horse".into()), hashed.clone())
                .await
                .unwrap()
        );
        assert!(
            !verify(Password::offered("wrong horse".into()), hashed)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn malformed_hashes_are_errors_not_matches() {
        assert!(
            verify(Password::offered("x".into()), "not-a-hash".into())
                .await
                .is_err()
        );
    }
}
