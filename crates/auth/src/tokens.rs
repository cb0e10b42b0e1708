//! Access tokens: HS256-signed JWTs with an expiry, issued at login and checked on every call.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::AuthError;

/// The `iss` claim: tokens from elsewhere signed with a leaked key of another system are refused.
const ISSUER: &str = "auth";
/// Clock skew tolerated between services, in seconds.
const LEEWAY_SECONDS: u64 = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    iat: i64,
    exp: i64,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The user the token was issued to.
    pub user_id: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: i64,
}

/// Issues and validates tokens with one secret. `Debug` never shows the keys.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_seconds: i64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Signs with `secret`; tokens live `ttl_seconds`.
    pub fn new(secret: &SecretString, ttl_seconds: i64) -> Self {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            ttl_seconds,
        }
    }

    /// Seconds a new token lives.
    pub fn ttl_seconds(&self) -> i64 {
        self.ttl_seconds
    }

    /// A token for `user_id` issued now.
    pub fn issue(&self, user_id: &str) -> Result<String, AuthError> {
        self.issue_at(user_id, chrono::Utc::now().timestamp())
    }

    /// A token for `user_id` as if issued at `issued_at` (seconds since the epoch); tests use it
    /// to mint expired tokens.
    pub fn issue_at(&self, user_id: &str, issued_at: i64) -> Result<String, AuthError> {
        let claims = Claims {
            sub: user_id.to_owned(),
            iss: ISSUER.to_owned(),
            iat: issued_at,
            exp: issued_at + self.ttl_seconds,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Internal(format!("cannot sign token: {e}")))
    }

    /// Checks signature, issuer and expiry.
    pub fn validate(&self, token: &str) -> Result<Validated, AuthError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(Validated {
                user_id: data.claims.sub,
                expires_at: data.claims.exp,
            }),
            Err(error) if matches!(error.kind(), ErrorKind::ExpiredSignature) => {
                Err(AuthError::TokenExpired)
            }
            Err(_) => Err(AuthError::InvalidToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str) -> Tokens {
        Tokens::new(&SecretString::from(secret.to_owned()), 3600)
    }

    #[test]
    fn issued_tokens_validate() {
        let tokens = tokens("a-secret-of-at-least-32-bytes-long!!");
        let token = tokens.issue("user-1").unwrap();
        let validated = tokens.validate(&token).unwrap();
        assert_eq!(validated.user_id, "user-1");
        assert!(validated.expires_at > chrono::Utc::now().timestamp());
    }

    #[test]
    fn expired_tokens_are_told_apart() {
        let tokens = tokens("a-secret-of-at-least-32-bytes-long!!");
        let token = tokens
            .issue_at("user-1", chrono::Utc::now().timestamp() - 7200)
            .unwrap();
        assert!(matches!(
            tokens.validate(&token),
            Err(AuthError::TokenExpired)
        ));
    }

    #[test]
    fn tampered_foreign_and_garbage_tokens_are_invalid() {
        let ours = tokens("a-secret-of-at-least-32-bytes-long!!");
        let theirs = tokens("another-secret-of-at-least-32-bytes!");
        let token = ours.issue("user-1").unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        for bad in [
            parts.join("."),
            theirs.issue("user-1").unwrap(),
            "garbage".to_owned(),
            String::new(),
        ] {
            assert!(
                matches!(ours.validate(&bad), Err(AuthError::InvalidToken)),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_hides_the_keys() {
        let printed = format!("{:?}", tokens("a-secret-of-at-least-32-bytes-long!!"));
        assert!(!printed.contains("secret-of"));
    }
}
