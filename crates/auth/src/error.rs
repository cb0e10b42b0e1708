//! The auth service's errors and their one mapping to gRPC statuses.

use proto::errors;
use tonic::Code;

/// Everything that can go wrong serving an auth request.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request is malformed; `reason` is the stable machine code.
    #[error("{message}")]
    InvalidArgument {
        /// `ErrorInfo.reason`, e.g. `PASSWORD_TOO_SHORT`.
        reason: &'static str,
        /// Human-readable, safe to show the caller.
        message: String,
    },
    /// Sign-up with an email that is registered already.
    #[error("email already registered")]
    EmailTaken,
    /// Unknown email or wrong password: deliberately indistinguishable.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// A token that is not ours, malformed or tampered with.
    #[error("invalid token")]
    InvalidToken,
    /// A well-formed token past its expiry.
    #[error("token expired")]
    TokenExpired,
    /// Too many sign-ups and logins are hashing already; the caller should retry shortly.
    #[error("too many sign-ups and logins in progress")]
    Overloaded,
    /// A stored password hash bcrypt cannot read: logged, answered like a failed login.
    #[error("stored password hash unusable: {0}")]
    StoredHashUnusable(String),
    /// The user service did not answer.
    #[error("user service unavailable: {0}")]
    UserServiceUnavailable(String),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// An [`AuthError::InvalidArgument`].
    pub fn invalid(reason: &'static str, message: impl Into<String>) -> Self {
        AuthError::InvalidArgument {
            reason,
            message: message.into(),
        }
    }

    /// Interprets a failed call to the user service. `NotFound` is left to the caller, which
    /// knows whether it means "bad credentials" or a vanished user.
    pub fn from_user_service(status: tonic::Status) -> Self {
        match status.code() {
            Code::AlreadyExists => AuthError::EmailTaken,
            _ if telemetry::grpc::unreachable(&status) => {
                AuthError::UserServiceUnavailable(status.message().to_owned())
            }
            code => AuthError::Internal(format!(
                "user service answered {code:?}: {}",
                status.message()
            )),
        }
    }
}

impl service_runtime::grpc::CallError for AuthError {
    /// Ours (logged at ERROR with its cause) rather than the caller's.
    fn is_server_fault(&self) -> bool {
        matches!(
            self,
            AuthError::UserServiceUnavailable(_)
                | AuthError::Internal(_)
                | AuthError::StoredHashUnusable(_)
        )
    }
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::InvalidArgument { reason, message } => {
                errors::status(Code::InvalidArgument, reason, message)
            }
            AuthError::EmailTaken => errors::status(
                Code::AlreadyExists,
                "EMAIL_TAKEN",
                "email already registered",
            ),
            AuthError::InvalidCredentials => errors::status(
                Code::Unauthenticated,
                "INVALID_CREDENTIALS",
                "invalid email or password",
            ),
            AuthError::InvalidToken => {
                errors::status(Code::Unauthenticated, "INVALID_TOKEN", "invalid token")
            }
            AuthError::TokenExpired => {
                errors::status(Code::Unauthenticated, "TOKEN_EXPIRED", "token expired")
            }
            AuthError::UserServiceUnavailable(_) => errors::status(
                Code::Unavailable,
                "USER_SERVICE_UNAVAILABLE",
                "the user service is unavailable",
            ),
            AuthError::Overloaded => errors::status(
                Code::ResourceExhausted,
                "OVERLOADED",
                "too many sign-ups and logins in progress; retry shortly",
            ),
            AuthError::StoredHashUnusable(_) | AuthError::Internal(_) => {
                errors::status(Code::Internal, "INTERNAL", "internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_service_statuses_are_interpreted() {
        assert!(matches!(
            AuthError::from_user_service(tonic::Status::already_exists("x")),
            AuthError::EmailTaken
        ));
        assert!(matches!(
            AuthError::from_user_service(tonic::Status::unavailable("x")),
            AuthError::UserServiceUnavailable(_)
        ));
        assert!(matches!(
            AuthError::from_user_service(tonic::Status::invalid_argument("x")),
            AuthError::Internal(_)
        ));
    }

    #[test]
    fn statuses_carry_reasons_and_hide_causes() {
        let cases = [
            (
                AuthError::InvalidCredentials,
                Code::Unauthenticated,
                "INVALID_CREDENTIALS",
            ),
            (
                AuthError::InvalidToken,
                Code::Unauthenticated,
                "INVALID_TOKEN",
            ),
            (
                AuthError::TokenExpired,
                Code::Unauthenticated,
                "TOKEN_EXPIRED",
            ),
            (AuthError::EmailTaken, Code::AlreadyExists, "EMAIL_TAKEN"),
            (AuthError::Overloaded, Code::ResourceExhausted, "OVERLOADED"),
            (
                AuthError::Internal("db at 10.1.1.1".into()),
                Code::Internal,
                "INTERNAL",
            ),
        ];
        for (error, code, reason) in cases {
            let status = tonic::Status::from(error);
            assert_eq!(status.code(), code);
            assert_eq!(errors::reason(&status).as_deref(), Some(reason));
            assert!(!status.message().contains("10.1.1.1"));
        }
    }
}
