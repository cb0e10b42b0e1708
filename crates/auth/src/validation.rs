//! Input parsed into types at the edge: once a value is an [`Email`] or a [`Password`], it is
//! valid. The rules themselves are `proto::validation`'s, shared with the user service.

use proto::validation::{self, Violation};
use secrecy::{ExposeSecret as _, SecretString};

use crate::error::AuthError;

pub use proto::validation::{MAX_NAME_CHARS, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};

impl From<Violation> for AuthError {
    fn from(violation: Violation) -> Self {
        AuthError::invalid(violation.reason, violation.message)
    }
}

/// A valid, trimmed, lower-cased ASCII email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses `raw`, or says why not (`INVALID_EMAIL`).
    pub fn parse(raw: &str) -> Result<Self, AuthError> {
        Ok(Self(validation::email(raw)?))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that bcrypt can hash without truncation. Never printed: `Debug` is redacted.
#[derive(Debug)]
pub struct Password(SecretString);

impl Password {
    /// Checks length limits (`PASSWORD_TOO_SHORT`, `PASSWORD_TOO_LONG`) for a new password.
    pub fn parse_new(raw: String) -> Result<Self, AuthError> {
        validation::password(&raw)?;
        Ok(Self(SecretString::from(raw)))
    }

    /// Wraps a password offered at login; length rules apply only to new passwords.
    pub fn offered(raw: String) -> Self {
        Self(SecretString::from(raw))
    }

    /// The secret, for bcrypt only.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A display name: trimmed, NFC-normalised, 1 to [`MAX_NAME_CHARS`] characters, nothing
/// invisible (see `proto::validation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// Parses `raw` (`INVALID_NAME`).
    pub fn parse(raw: &str) -> Result<Self, AuthError> {
        Ok(Self(validation::name(raw)?))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<impl std::fmt::Debug, AuthError>) -> &'static str {
        match result {
            Err(AuthError::InvalidArgument { reason, .. }) => reason,
            other => panic!("expected an invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for raw in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "a@b@c.com",
            "ann@-x.com",
            "ann@x..com",
        ] {
            assert_eq!(reason(Email::parse(raw)), "INVALID_EMAIL", "{raw:?}");
        }
        assert_eq!(
            reason(Email::parse(&format!("{}@example.com", "a".repeat(65)))),
            "INVALID_EMAIL"
        );
    }

    #[test]
    fn password_limits_follow_bcrypt() {
        assert_eq!(
            reason(Password::parse_new("short".into())),
            "PASSWORD_TOO_SHORT"
        );
        assert!(Password::parse_new("x".repeat(72)).is_ok());
        assert_eq!(
            reason(Password::parse_new("x".repeat(73))),
            "PASSWORD_TOO_LONG"
        );
        // 72 bytes is the limit, not 72 characters: 37 two-byte characters are 74 bytes.
        assert_eq!(
            reason(Password::parse_new("é".repeat(37))),
            "PASSWORD_TOO_LONG"
        );
    }

    #[test]
    fn passwords_never_print() {
        let password = Password::parse_new("correct horse battery".into()).unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse("  Ann  ").unwrap().as_str(), "Ann");
        assert_eq!(reason(Name::parse("   ")), "INVALID_NAME");
        assert_eq!(reason(Name::parse(&"x".repeat(101))), "INVALID_NAME");
    }
}
