//! Input parsed into types at the edge: once a value is an [`Email`] or a [`Password`], it is valid.

use secrecy::{ExposeSecret as _, SecretString};

use crate::error::AuthError;

/// bcrypt reads at most 72 bytes; a longer password would be silently truncated, so two
/// passwords sharing their first 72 bytes would both log in. We refuse instead.
pub const MAX_PASSWORD_BYTES: usize = 72;
/// NIST SP 800-63B's minimum for user-chosen secrets.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// RFC 5321's limit on a forward path.
const MAX_EMAIL_BYTES: usize = 254;

/// A syntactically valid, trimmed, lower-cased email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses `raw`, or says why not (`INVALID_EMAIL`).
    pub fn parse(raw: &str) -> Result<Self, AuthError> {
        let email = raw.trim().to_lowercase();
        let invalid = || {
            AuthError::invalid(
                "INVALID_EMAIL",
                "email must be a valid address like name@example.com",
            )
        };
        if email.is_empty()
            || email.len() > MAX_EMAIL_BYTES
            || email.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(email))
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
        if raw.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AuthError::invalid(
                "PASSWORD_TOO_SHORT",
                format!("password must be at least {MIN_PASSWORD_CHARS} characters"),
            ));
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::invalid(
                "PASSWORD_TOO_LONG",
                format!("password must be at most {MAX_PASSWORD_BYTES} bytes"),
            ));
        }
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

/// A display name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// Parses `raw` (`INVALID_NAME`).
    pub fn parse(raw: &str) -> Result<Self, AuthError> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(AuthError::invalid(
                "INVALID_NAME",
                format!("name must be 1 to {MAX_NAME_CHARS} characters"),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The trimmed name.
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
