//! The gateway's one error type, mapped in one place to an HTTP status and a JSON body
//! `{"code": "snake_case", "message": "...", "trace_id": "..."}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// The error body every failed request gets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable, snake_case: clients branch on this, never on `message`.
    #[schema(example = "email_taken")]
    pub code: String,
    /// Human-readable explanation. Never contains secrets or internal details.
    pub message: String,
    /// The trace that served this request: search it in Grafana/Tempo.
    #[schema(example = "4bf92f3577b34da6a3ce929d0e0e4736")]
    pub trace_id: Option<String>,
}

/// An error the gateway answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client's request is wrong: the status and code say how.
    #[error("{message}")]
    Client {
        /// 4xx status.
        status: StatusCode,
        /// Stable snake_case code.
        code: String,
        /// Safe to show.
        message: String,
    },
    /// A dependency (auth, user) is down or timing out.
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// auth sheds load: sign-ups and logins are hashing at capacity. 503 with `Retry-After`.
    #[error("overloaded")]
    Overloaded,
    /// The client (or the account) has used up its rate limit. 429 with `Retry-After`.
    #[error("rate limited for {retry_after} s")]
    RateLimited {
        /// Seconds until a retry gets through.
        retry_after: u64,
    },
    /// Our fault; the cause is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A client error with `status`, `code` and `message`.
    pub fn client(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError::Client {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The stable code this error is reported with.
    pub fn code(&self) -> &str {
        match self {
            ApiError::Client { code, .. } => code,
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Overloaded => "overloaded",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

/// Maps a gRPC failure from auth or user to what the HTTP client sees.
///
/// The services put a stable reason (`EMAIL_TAKEN`, `TOKEN_EXPIRED`, ...) in a
/// `google.rpc.ErrorInfo`; for client mistakes it becomes the `code`, lower-cased, and the gRPC
/// code picks the HTTP status. Server-side failures keep their detail out of the response.
impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let client_status = match status.code() {
            Code::InvalidArgument => Some(StatusCode::UNPROCESSABLE_ENTITY),
            Code::AlreadyExists => Some(StatusCode::CONFLICT),
            Code::Unauthenticated => Some(StatusCode::UNAUTHORIZED),
            Code::PermissionDenied => Some(StatusCode::FORBIDDEN),
            Code::NotFound => Some(StatusCode::NOT_FOUND),
            _ => None,
        };
        match (client_status, proto::errors::reason(&status)) {
            (None, Some(reason))
                if status.code() == Code::ResourceExhausted && reason == "OVERLOADED" =>
            {
                ApiError::Overloaded
            }
            // Refused by a service's caller policy (mutual TLS): our misconfiguration, not the
            // client's; such refusals carry no reason, every business refusal does.
            (Some(_), None)
                if matches!(
                    status.code(),
                    Code::Unauthenticated | Code::PermissionDenied
                ) =>
            {
                ApiError::Internal(format!(
                    "internal call refused: {:?}: {}",
                    status.code(),
                    status.message()
                ))
            }
            (Some(http), Some(reason)) => {
                ApiError::client(http, &reason.to_lowercase(), status.message())
            }
            (Some(http), None) => ApiError::client(http, "invalid_request", status.message()),
            (None, _) if telemetry::grpc::unreachable(&status) => {
                ApiError::Unavailable(format!("{:?}: {}", status.code(), status.message()))
            }
            (None, _) => ApiError::Internal(format!("{:?}: {}", status.code(), status.message())),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Client { status, .. } => *status,
            ApiError::Unavailable(_) | ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Client { message, .. } => message.clone(),
            ApiError::Unavailable(_) => {
                "a backing service is unavailable; try again shortly".to_owned()
            }
            ApiError::Overloaded => {
                "too many sign-ups and logins in progress; retry after a second".to_owned()
            }
            ApiError::RateLimited { retry_after } => {
                format!("too many attempts; retry in {retry_after} s")
            }
            ApiError::Internal(_) => "internal error".to_owned(),
        };
        // Called inside the request's root span, so these are the ids in the response headers.
        let trace_id = telemetry::current_trace_ids().map(|ids| ids.trace_id_hex());
        let mut response = HttpResponse::build(self.status_code());
        let retry_after = match self {
            // The hashing pool frees a turn every few hundred milliseconds.
            ApiError::Overloaded => Some(1),
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()));
        }
        let mut response = response.json(ErrorBody {
            code: self.code().to_owned(),
            message,
            trace_id,
        });
        // Shedding and rate limits are the system working as designed: counted and logged at
        // WARN once per interval, never one ERROR line per request (see telemetry::http).
        let refusal = match self {
            ApiError::Overloaded => Some("overloaded"),
            ApiError::RateLimited { .. } => Some("rate_limited"),
            _ => None,
        };
        if let Some(code) = refusal {
            response
                .extensions_mut()
                .insert(telemetry::http::Refusal(code));
        }
        response
    }
}

/// Maps actix's JSON extractor failures; registered as the `JsonConfig` error handler.
///
/// serde's messages for type errors quote the offending value, which may be a password: only
/// the missing-field message (which names a field, not a value) is passed through.
pub fn json_error(error: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match error {
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => ApiError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        ),
        E::ContentType => ApiError::client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        E::Deserialize(error) => {
            let position = format!("line {} column {}", error.line(), error.column());
            match error.classify() {
                serde_json::error::Category::Data => {
                    let text = error.to_string();
                    let message = match text.split(" at line ").next() {
                        Some(missing) if missing.starts_with("missing field") => missing.to_owned(),
                        _ => format!("a field has the wrong type or value ({position})"),
                    };
                    ApiError::client(StatusCode::BAD_REQUEST, "invalid_request", message)
                }
                _ => ApiError::client(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("request body is not valid JSON ({position})"),
                ),
            }
        }
        E::Payload(actix_web::error::PayloadError::Io(error))
            if error.kind() == std::io::ErrorKind::TimedOut =>
        {
            ApiError::client(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            )
        }
        other => ApiError::client(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("unreadable body: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody as _;

    fn body(error: &ApiError) -> serde_json::Value {
        let bytes = error.error_response().into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn grpc_reasons_become_codes_with_matching_statuses() {
        let cases = [
            (
                tonic::Code::AlreadyExists,
                "EMAIL_TAKEN",
                409,
                "email_taken",
            ),
            (
                tonic::Code::Unauthenticated,
                "TOKEN_EXPIRED",
                401,
                "token_expired",
            ),
            (
                tonic::Code::InvalidArgument,
                "PASSWORD_TOO_SHORT",
                422,
                "password_too_short",
            ),
            (
                tonic::Code::NotFound,
                "USER_NOT_FOUND",
                404,
                "user_not_found",
            ),
        ];
        for (code, reason, http, expected) in cases {
            let error = ApiError::from(proto::errors::status(code, reason, "msg"));
            assert_eq!(error.status_code().as_u16(), http);
            assert_eq!(body(&error)["code"], expected);
            assert_eq!(body(&error)["message"], "msg");
        }
    }

    #[test]
    fn an_overloaded_auth_is_503_overloaded_with_retry_after() {
        let error = ApiError::from(proto::errors::status(
            tonic::Code::ResourceExhausted,
            "OVERLOADED",
            "busy",
        ));
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get("retry-after").unwrap(), "1");
        assert_eq!(body(&error)["code"], "overloaded");
    }

    #[test]
    fn an_internal_call_refused_by_policy_is_our_500_not_the_clients_401() {
        for status in [
            tonic::Status::permission_denied(
                "gateway may not call /user.v1.UserService/GetCredential",
            ),
            tonic::Status::unauthenticated("a client certificate is required"),
        ] {
            let error = ApiError::from(status);
            assert_eq!(error.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!body(&error).to_string().contains("GetCredential"));
        }
    }

    #[test]
    fn server_failures_hide_their_cause() {
        let unavailable =
            ApiError::from(tonic::Status::unavailable("tcp connect 10.0.0.7 refused"));
        assert_eq!(unavailable.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        let internal = ApiError::from(tonic::Status::internal("panic at db.rs:10"));
        assert_eq!(internal.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        for error in [unavailable, internal] {
            let body = body(&error).to_string();
            assert!(
                !body.contains("10.0.0.7") && !body.contains("db.rs"),
                "{body}"
            );
        }
    }

    #[test]
    fn json_errors_never_echo_values() {
        let parse = |raw: &str| {
            serde_json::from_str::<std::collections::HashMap<String, String>>(raw)
                .map(|_| ())
                .unwrap_err()
        };
        let wrong_type = json_error(actix_web::error::JsonPayloadError::Deserialize(parse(
            r#"{"password": 12345678}"#,
        )));
        assert_eq!(wrong_type.code(), "invalid_request");
        assert!(!wrong_type.to_string().contains("12345678"), "{wrong_type}");
        let malformed = json_error(actix_web::error::JsonPayloadError::Deserialize(parse(
            "{\"a\": ",
        )));
        assert_eq!(malformed.code(), "malformed_json");
    }
}
