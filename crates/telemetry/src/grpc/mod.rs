//! Tower layers for tonic: trace-context propagation, spans and metrics for every call.
//!
//! | file | what |
//! |---|---|
//! | [`server`] | [`ServerLayer`]: extracts the caller's context, opens the server span, counts the call |
//! | [`client`] | [`ClientLayer`]: opens the client span, injects its context, bounds the call |
//! | `span` | the one span builder both use, for their two kinds |
//! | this file | deadlines (`grpc-timeout`), status reading, and the count of each call |
//!
//! The layers work on `http::Request`s, below tonic's codec, because a tonic interceptor sees
//! neither the response nor its status. The server layer extracts W3C `traceparent`/`tracestate`/
//! `baggage` from the request headers (gRPC metadata is HTTP/2 headers), opens the server span as
//! the remote span's child, and counts the call; the client layer opens a client span as a child
//! of the current span and injects *that* span's context, so the callee's server span hangs under
//! the caller's client span and one request stays one tree across processes.
//!
//! Deadlines travel the same way: the server layer reads the caller's `grpc-timeout` and keeps
//! it for the handler ([`current_deadline`]); the client layer sends every call the time that is
//! left of it (or [`DEFAULT_CALL_TIMEOUT`] where there is none), so a callee never starts work
//! that its caller has already given up on.

mod client;
mod server;
mod span;
#[cfg(test)]
mod tests;

pub use client::{BoxError, ClientLayer, ClientService};
pub use server::{ServerLayer, ServerService};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::MethodMetrics;

/// The health service is polled every few seconds by orchestrators: count it, do not trace it.
pub(crate) const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// The deadline of a call made outside any served call (the gateway's), and the longest any call
/// may take.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The gRPC metadata key carrying a call's deadline as a relative timeout.
pub(crate) const GRPC_TIMEOUT: &str = "grpc-timeout";

tokio::task_local! {
    /// The deadline of the call the current task is serving.
    pub(crate) static DEADLINE: Instant;
}

/// The deadline of the gRPC call being served by the current task, when its caller sent one
/// (`grpc-timeout`). Work that cannot finish before it is not worth starting.
pub fn current_deadline() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub(crate) fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let digits = value.get(..value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match &value[digits.len()..] {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Formats `timeout` for `grpc-timeout`, in milliseconds (rounded up, so a tiny remainder is not
/// sent as "no time at all" by rounding).
pub(crate) fn format_grpc_timeout(timeout: Duration) -> String {
    let millis = timeout.as_nanos().div_ceil(1_000_000).min(99_999_999);
    format!("{millis}m")
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Splits `/package.Service/Method` into (`package.Service`, `Method`).
pub fn split_path(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

/// The gRPC status of a response whose headers we have seen.
///
/// Errors from unary handlers travel as "trailers-only" responses, with `grpc-status` in the
/// headers; a response without it is a successful unary call whose `grpc-status: 0` follows in
/// the trailers.
pub fn status_from_headers(headers: &http::HeaderMap) -> tonic::Code {
    match headers.get("grpc-status") {
        None => tonic::Code::Ok,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
            .map_or(tonic::Code::Unknown, tonic::Code::from_i32),
    }
}

/// The status a tonic client reports for a transport failure: `Cancelled` when the channel's
/// timeout expired (tonic's own mapping), `Unavailable` otherwise (connection refused, reset).
pub(crate) fn transport_error_code(error: &(dyn std::error::Error + 'static)) -> tonic::Code {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<tonic::TimeoutExpired>() {
            return tonic::Code::Cancelled;
        }
        source = error.source();
    }
    tonic::Code::Unavailable
}

/// Whether a failed call says nothing about the request, only that the callee could not be
/// reached or did not answer in time: `Unavailable`, `DeadlineExceeded`, `Cancelled`, or any
/// status tonic made itself from a transport failure. A connection closed or reset mid-call (a
/// callee shutting down, say) comes back as `Unknown` or `Internal`; such a status carries its
/// cause as `source()`, which a status the callee sent never does. Callers answer all of these
/// "unavailable, try again", never "internal error".
pub fn unreachable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    ) || std::error::Error::source(status).is_some()
}

/// Server-side failures mark the span as an error; client mistakes (4xx-like codes) do not,
/// following the OpenTelemetry gRPC semantic conventions for servers.
pub(crate) fn is_server_error(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// Counts a call as handled exactly once: with its status when it completes, or as `Canceled`
/// when its future is dropped first (the caller gave up or the connection closed), so
/// `started_total - handled_total` really is the number of calls in flight.
pub(crate) struct Completion {
    calls: Arc<MethodMetrics>,
    started: Instant,
    finished: bool,
}

impl Completion {
    pub(crate) fn start(calls: Arc<MethodMetrics>) -> Self {
        calls.started();
        Self {
            calls,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Records `code`; returns how long the call took.
    pub(crate) fn finish(mut self, code: tonic::Code) -> std::time::Duration {
        let elapsed = self.started.elapsed();
        self.calls.handled(code, elapsed.as_secs_f64());
        self.finished = true;
        elapsed
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.finished {
            let elapsed = self.started.elapsed().as_secs_f64();
            self.calls.handled(tonic::Code::Cancelled, elapsed);
        }
    }
}
