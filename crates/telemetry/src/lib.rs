//! The one telemetry crate every service links: traces, logs and metrics that agree with each other.
//!
//! A service calls [`init`] once, inside its Tokio runtime, and keeps the returned [`Guard`] until
//! it exits; dropping the guard flushes buffered spans and shuts the exporter down.
//!
//! | module | what it gives a service |
//! |---|---|
//! | [`config`] | the standard `OTEL_*` environment variables, validated |
//! | [`traces`] | the OTLP/gRPC tracer provider and the `tracing` subscriber bridging into it |
//! | [`logs`] | a slog JSON logger whose every line carries the current `trace_id`/`span_id` |
//! | [`metrics`] | one Prometheus registry per process, gRPC server/client metrics, a `/metrics` listener |
//! | [`http`] | actix-web pieces: the root span builder, `traceresponse` header, request log, actix-web-prom |
//! | [`grpc`] | tower layers for tonic: the server extracts W3C context, the client injects it |
//! | [`propagation`] | extraction of the caller's W3C trace context, invalid headers ignored as the spec says |
//! | [`tls`] | mutual TLS between the services and the per-method caller policy |
//!
//! Telemetry never sits on a request's critical path: spans go to a bounded queue drained by a
//! background exporter, logs go to a bounded buffer written in batches by a thread of their own, and a dead collector only costs dropped
//! spans, never a slower or failed request.

/// Logs at ERROR when `$failed`, else at INFO: slog's level must be a constant per call site.
macro_rules! info_or_error {
    ($logger:expr, $failed:expr, $($rest:tt)*) => {
        if $failed {
            slog::error!($logger, $($rest)*)
        } else {
            slog::info!($logger, $($rest)*)
        }
    };
}

pub mod config;
pub mod grpc;
pub mod http;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod propagation;
pub mod tls;
pub mod traces;

pub use config::{ConfigError, TelemetryConfig};
pub use logs::{TraceIds, current_trace_ids};

use std::time::Duration;

/// How long shutdown waits for the last batch of spans before giving up, so a dead collector
/// cannot hold a terminating pod past its grace period.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// At most one "spans dropped" warning per this interval, however many spans are lost.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Error returned by [`init`]: a bad `OTEL_*` value or an exporter that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// An environment variable holds a value we refuse to guess about.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The OTLP exporter could not be built (for example an unparsable endpoint URL).
    #[error("could not build the OTLP span exporter: {0}")]
    Exporter(String),
    /// A global `tracing` subscriber was already installed in this process.
    #[error("a global tracing subscriber is already installed")]
    SubscriberAlreadySet,
}

/// Everything [`init`] set up. Keep it alive for the life of the process.
///
/// Dropping it flushes pending spans (bounded by a timeout) and the buffered log lines.
pub struct Guard {
    /// The JSON logger, already tagged with `service`; clone it into application state.
    logger: slog::Logger,
    /// The process-wide Prometheus registry that HTTP and gRPC metrics share.
    registry: prometheus::Registry,
    /// `None` when the SDK is disabled; spans then carry no ids and nothing is exported.
    tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    /// Whether the provider has an OTLP exporter behind it.
    exporting: bool,
    /// The export queue's drop accounting, summed up in the last log line.
    drops: Option<std::sync::Arc<traces::queue::Drops>>,
    /// Writes the buffered log lines when dropped; kept last so shutdown messages still print.
    _log_guard: Option<logs::LogGuard>,
}

impl Guard {
    /// The service's JSON logger.
    pub fn logger(&self) -> &slog::Logger {
        &self.logger
    }

    /// The process-wide Prometheus registry.
    pub fn registry(&self) -> &prometheus::Registry {
        &self.registry
    }

    /// Whether spans are exported over OTLP (an endpoint is configured and the SDK is enabled).
    pub fn exporting(&self) -> bool {
        self.exporting
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            slog::warn!(self.logger, "span exporter shutdown did not complete"; "error" => %error);
        }
        if let Some((queue_full, export_failed)) = self.drops.as_ref().map(|d| d.totals())
            && queue_full + export_failed > 0
        {
            slog::warn!(self.logger, "spans dropped during this run";
                "otel.spans_dropped.queue_full" => queue_full,
                "otel.spans_dropped.export_failed" => export_failed);
        }
    }
}

/// Sets up traces, logs and metrics for `service_name` from the standard `OTEL_*` variables.
///
/// Call it once, from inside the main multi-threaded Tokio runtime (the tonic exporter spawns its
/// connection task there). `OTEL_SERVICE_NAME` overrides `service_name`. With
/// `OTEL_SDK_DISABLED=true` no tracer is installed at all; with no `OTEL_EXPORTER_OTLP_ENDPOINT`
/// spans still get ids (so logs and the `traceresponse` header correlate) but nothing is exported.
pub fn init(service_name: &'static str) -> Result<Guard, InitError> {
    let config = TelemetryConfig::from_env(service_name)?;
    init_with(config)
}

/// [`init`] with an explicit configuration, for callers that assemble it themselves.
pub fn init_with(config: TelemetryConfig) -> Result<Guard, InitError> {
    let (logger, log_guard) = logs::stdout_logger(&config);
    let registry = metrics::registry();
    let installed = traces::install(&config, Some(&registry))?;
    let drops = installed.as_ref().and_then(|i| i.drops.clone());
    let exporting = drops.is_some();
    if let Some(drops) = &drops {
        tokio::spawn(traces::queue::report_drops(
            drops.clone(),
            logger.clone(),
            DROP_REPORT_INTERVAL,
        ));
    }
    let tracer_provider = installed.map(|i| i.provider);
    slog::info!(logger, "telemetry initialised";
        "otel.exporting" => exporting,
        "otel.sdk_disabled" => config.sdk_disabled,
        "otel.endpoint" => config.otlp_endpoint.as_deref().map_or_else(|| "none".to_owned(), config::redact_userinfo),
    );
    Ok(Guard {
        logger,
        registry,
        tracer_provider,
        exporting,
        drops,
        _log_guard: Some(log_guard),
    })
}

/// Runs blocking `work` (diesel, bcrypt) on Tokio's blocking pool inside `span`.
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
