//! Traces, logs and metrics that agree with each other: the one telemetry crate every service
//! links.
//!
//! A service calls [`init`] once, inside its Tokio runtime, and keeps the returned [`Guard`]
//! until it exits; dropping the guard flushes buffered spans and log lines. Everything comes
//! from the standard `OTEL_*` variables ([`config`]): `OTEL_SDK_DISABLED=true` turns tracing
//! off, no `OTEL_EXPORTER_OTLP_ENDPOINT` keeps trace ids for logs and headers but exports
//! nothing.
//!
//! | module | what it gives a service | feature |
//! |---|---|---|
//! | [`config`] | the standard `OTEL_*` environment variables, validated | |
//! | [`traces`] | the OTLP/gRPC tracer provider, its bounded queue, and the `tracing` bridge | |
//! | [`logs`] | a slog JSON logger whose every line carries the current `trace_id`/`span_id` | |
//! | [`metrics`] | one Prometheus registry per process; gRPC server and client metrics | (`tonic`) |
//! | [`propagation`] | W3C trace context in and out, invalid headers ignored as the spec says | |
//! | [`http`] | actix-web: the root span, `traceresponse`, one log line per request, actix-web-prom | `actix` |
//! | [`grpc`] | tonic: server and client tower layers (spans, propagation, metrics, deadlines) | `tonic` |
//!
//! A service compiles only the framework it uses: `telemetry = { features = ["tonic"] }`.
//! The process around it (listeners, health, TLS, shutdown) is the `service-runtime` crate's.
//!
//! Telemetry never sits on a request's critical path: spans go to a bounded queue drained by a
//! background exporter, log lines to a bounded buffer written in batches by a thread of their
//! own, and a dead collector only costs dropped spans, never a slower or failed request.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // No endpoint configured: spans get ids but nothing is exported.
//! let telemetry = telemetry::init("example").expect("valid OTEL_* settings");
//! let span = tracing::info_span!("work");
//! let ids = span.in_scope(|| {
//!     // This line carries the span's trace_id and span_id.
//!     slog::info!(telemetry.logger(), "inside a span"; "answer" => 42);
//!     telemetry::current_trace_ids()
//! });
//! assert_eq!(ids.expect("the span has ids").trace_id_hex().len(), 32);
//! assert!(!telemetry.exporting());
//! # });
//! ```

/// Logs at ERROR when `$failed`, else at INFO: slog's level must be a constant per call site.
#[cfg(any(feature = "actix", feature = "tonic"))]
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
#[cfg(feature = "tonic")]
pub mod grpc;
#[cfg(feature = "actix")]
pub mod http;
pub mod logs;
pub mod metrics;
pub mod propagation;
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
