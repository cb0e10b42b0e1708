//! What every service here runs on, below its own logic: the process lifecycle, the listeners
//! and the gRPC server start-up with health, mutual TLS between the services, channels to
//! the other services, and the settings helpers. Telemetry is the `telemetry` crate's; this
//! one wires it into the processes.
//!
//! | module | what it gives a service |
//! |---|---|
//! | [`lifecycle`] | `main` in one call ([`lifecycle::run_service`]): settings, telemetry, SIGTERM drain, exit codes, `--health-check`, the ready file |
//! | [`grpc`] | [`grpc::Listeners`]: bind, then serve with telemetry layers, health, TLS and the caller policy; channels to other services |
//! | [`tls`] | mutual TLS between the services and the per-method caller policy |
//! | [`config`] | peer URLs, the health port rule, default addresses; `parse_var` for the rest |
//!
//! [`spawn_blocking_in`] carries the caller's span into blocking work (diesel).

pub mod config;
pub mod grpc;
pub mod lifecycle;
pub mod tls;

/// Runs blocking `work` (diesel) on Tokio's blocking pool inside `span`.
///
/// The blocking pool's threads know nothing of the caller's span; without this the work's span
/// would start a trace of its own and its log lines would carry no trace id. Create `span` on the
/// calling task (so its parent is the current request span) and pass it in.
pub fn spawn_blocking_in<F, R>(span: tracing::Span, work: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(move || span.in_scope(work))
}
