//! The user service's errors and their one mapping to gRPC statuses.

use proto::errors;
use tonic::Code;

/// Everything that can go wrong serving a user request.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The request itself is wrong; `reason` is the stable machine code.
    #[error("{message}")]
    InvalidArgument {
        /// `ErrorInfo.reason`, e.g. `INVALID_EMAIL`.
        reason: &'static str,
        /// Human-readable, safe to show the caller.
        message: String,
    },
    /// No user with that id or email.
    #[error("user not found")]
    NotFound,
    /// The email is registered already.
    #[error("email already registered")]
    EmailTaken,
    /// The database cannot be reached or the pool is exhausted.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refuses to store data: its disk is full, or its file or directory is
    /// read-only. Reads still work; an operator must act.
    #[error("the database cannot store data: {0}")]
    Storage(String),
    /// A bug or an unexpected database failure.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How SQLite (`SQLITE_FULL`, `SQLITE_READONLY`, `SQLITE_IOERR`) and PostgreSQL (`53100
/// disk_full`) word a write the storage refused.
const STORAGE_FAILURES: &[&str] = &[
    "database or disk is full",
    "readonly database",
    "read-only",
    "no space left on device",
    "disk i/o error",
];

impl From<diesel::result::Error> for UserError {
    fn from(error: diesel::result::Error) -> Self {
        if let diesel::result::Error::DatabaseError(kind, info) = &error {
            // The connection was lost mid-query (the database restarted or is unreachable):
            // the request was fine and may succeed once the pool reconnects.
            if matches!(kind, diesel::result::DatabaseErrorKind::ClosedConnection) {
                return UserError::Unavailable(info.message().to_owned());
            }
            let message = info.message().to_ascii_lowercase();
            if STORAGE_FAILURES.iter().any(|m| message.contains(m)) {
                return UserError::Storage(info.message().to_owned());
            }
        }
        UserError::Internal(error.to_string())
    }
}

impl service_runtime::grpc::CallError for UserError {
    /// Ours (logged at ERROR with its cause) rather than the caller's.
    fn is_server_fault(&self) -> bool {
        matches!(
            self,
            UserError::Unavailable(_) | UserError::Storage(_) | UserError::Internal(_)
        )
    }
}

impl From<UserError> for tonic::Status {
    fn from(error: UserError) -> Self {
        match error {
            UserError::InvalidArgument { reason, message } => {
                errors::status(Code::InvalidArgument, reason, message)
            }
            UserError::NotFound => {
                errors::status(Code::NotFound, "USER_NOT_FOUND", "user not found")
            }
            UserError::EmailTaken => errors::status(
                Code::AlreadyExists,
                "EMAIL_TAKEN",
                "email already registered",
            ),
            // The cause stays in our logs; the caller learns only the kind of failure.
            UserError::Unavailable(_) => errors::status(
                Code::Unavailable,
                "DATABASE_UNAVAILABLE",
                "the user database is unavailable",
            ),
            // Unavailable, not Internal: the request was fine and may succeed elsewhere or later.
            UserError::Storage(_) => errors::status(
                Code::Unavailable,
                "STORAGE_UNAVAILABLE",
                "the user database cannot store data right now",
            ),
            UserError::Internal(_) => errors::status(Code::Internal, "INTERNAL", "internal error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_code_and_reason_but_not_internal_detail() {
        let cases = [
            (UserError::NotFound, Code::NotFound, "USER_NOT_FOUND"),
            (UserError::EmailTaken, Code::AlreadyExists, "EMAIL_TAKEN"),
            (
                UserError::InvalidArgument {
                    reason: "INVALID_EMAIL",
                    message: "bad".into(),
                },
                Code::InvalidArgument,
                "INVALID_EMAIL",
            ),
            (
                UserError::Unavailable("pg down at 10.0.0.1".into()),
                Code::Unavailable,
                "DATABASE_UNAVAILABLE",
            ),
            (
                UserError::Storage("/secret/users.db: database or disk is full".into()),
                Code::Unavailable,
                "STORAGE_UNAVAILABLE",
            ),
            (
                UserError::Internal("secret detail".into()),
                Code::Internal,
                "INTERNAL",
            ),
        ];
        for (error, code, reason) in cases {
            let status = tonic::Status::from(error);
            assert_eq!(status.code(), code);
            assert_eq!(errors::reason(&status).as_deref(), Some(reason));
            assert!(!status.message().contains("secret") && !status.message().contains("10.0.0.1"));
        }
    }

    #[test]
    fn a_connection_lost_mid_query_is_unavailable_not_internal() {
        use diesel::result::{DatabaseErrorKind, Error};
        let lost = Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection unexpectedly".to_owned()),
        );
        assert!(matches!(UserError::from(lost), UserError::Unavailable(_)));
        let other = Error::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("syntax error".to_owned()),
        );
        assert!(matches!(UserError::from(other), UserError::Internal(_)));
    }
}
