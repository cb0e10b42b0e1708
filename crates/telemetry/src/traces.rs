//! The tracer provider: OTLP/gRPC batch export behind a bounded queue, and the `tracing` bridge.
//!
//! Services instrument with `tracing` spans (tracing-actix-web already does for HTTP);
//! tracing-opentelemetry turns them into OpenTelemetry spans with W3C ids. The batch processor
//! runs on its own thread with a bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`, 8192 by default) and an
//! export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s): when the collector is down or hangs, spans
//! beyond the queue are dropped and counted ([`queue`]), and requests never wait on the exporter.

pub mod queue;

use std::sync::Arc;

use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{Link, SpanKind, TraceContextExt as _, TraceId};
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::BaggagePropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingDecision, SamplingResult,
    SdkTracerProvider, ShouldSample,
};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::InitError;
use crate::config::{Propagator, TelemetryConfig};

/// Installs the global propagator, tracer provider and `tracing` subscriber.
///
/// Returns `None` when `OTEL_SDK_DISABLED=true`. Without an endpoint the provider has no
/// exporter but still assigns ids, so log lines and response headers correlate locally. With
/// one, spans that never reach it are counted in `registry` (see [`queue`]).
pub fn install(
    config: &TelemetryConfig,
    registry: Option<&prometheus::Registry>,
) -> Result<Option<Installed>, InitError> {
    install_propagator(&config.propagators);
    if config.sdk_disabled {
        // A subscriber that wants nothing, rather than none at all: with no global subscriber
        // set, every span of every library (h2, tonic, ...) falls back to the `log` crate on
        // creation, entry and exit, which cost the gateway about 8% of its instructions per
        // request for nothing (callgrind).
        tracing::dispatcher::set_global_default(tracing::Dispatch::none())
            .map_err(|_| InitError::SubscriberAlreadySet)?;
        return Ok(None);
    }
    let drops = config
        .otlp_endpoint
        .is_some()
        .then(|| queue::Drops::new(config.span_queue_size, registry));
    let provider = provider(config, drops.clone())?;
    let tracer = provider.tracer(config.service_name.clone());
    global::set_tracer_provider(provider.clone());
    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // busy_ns/idle_ns cost two clock reads per poll of every instrumented future,
                // and thread ids say little on a work-stealing runtime: both off.
                .with_tracked_inactivity(false)
                .with_threads(false)
                // Entering a span would also make its context OpenTelemetry's current one, on
                // every poll of every instrumented future. Nothing here reads that: ids and
                // propagation come from the `tracing` span itself (`OpenTelemetrySpanExt`).
                .with_context_activation(false)
                // Four attributes per span (source file, module, line, target) that no Tempo
                // query, span metric or dashboard reads, encoded into every export.
                .with_location(false)
                .with_target(false)
                .with_filter(span_filter()),
        )
        .try_init()
        .map_err(|_| InitError::SubscriberAlreadySet)?;
    Ok(Some(Installed { provider, drops }))
}

/// What [`install`] set up.
pub struct Installed {
    /// The global tracer provider; shut it down to flush.
    pub provider: SdkTracerProvider,
    /// The export queue's drop accounting, when spans are exported.
    pub drops: Option<Arc<queue::Drops>>,
}

/// Builds the tracer provider without installing anything globally.
///
/// The sampler comes from `OTEL_TRACES_SAMPLER`/`_ARG` (validated in [`TelemetryConfig`]),
/// wrapped so that probe and scrape requests are never exported; batch limits from `OTEL_BSP_*`.
/// With an endpoint, `drops` (or a private one) accounts for the export queue.
pub fn provider(
    config: &TelemetryConfig,
    drops: Option<Arc<queue::Drops>>,
) -> Result<SdkTracerProvider, InitError> {
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource(config))
        .with_sampler(SkipProbes(sampler(&config.sampler, config.sampler_ratio)));
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| InitError::Exporter(e.to_string()))?;
        let drops = drops.unwrap_or_else(|| queue::Drops::new(config.span_queue_size, None));
        // The processor's queue is exactly the admitted spans' room, so it never drops silently.
        let batch =
            BatchSpanProcessor::builder(queue::CountingExporter::new(exporter, drops.clone()))
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_max_queue_size(config.span_queue_size.max(1))
                        .with_max_export_batch_size(config.span_batch_size.max(1))
                        .build(),
                )
                .build();
        builder = builder.with_span_processor(queue::Counted::new(batch, drops));
    }
    Ok(builder.build())
}

/// The spec's sampler for `name` (already validated) and `ratio`.
fn sampler(name: &str, ratio: f64) -> Sampler {
    match name {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
        _ => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
    }
}

/// Paths polled by orchestrators and Prometheus: counted in metrics, given trace ids, but never
/// exported (the sampler drops them) nor logged per request.
pub(crate) const UNTRACED_PATHS: &[&str] = &["/metrics", "/healthz", "/readyz"];

/// Drops spans of liveness/readiness probes and metric scrapes before they are recorded.
///
/// A dropped span still has valid ids (flags `00`), so the probe's response names its trace in
/// `traceresponse` like every other response, but Tempo is not flooded with a trace every few
/// seconds per probe.
#[derive(Debug, Clone)]
struct SkipProbes(Sampler);

impl ShouldSample for SkipProbes {
    fn should_sample(
        &self,
        parent_context: Option<&opentelemetry::Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let probe = attributes.iter().any(|kv| {
            kv.key.as_str() == "url.path" && UNTRACED_PATHS.contains(&kv.value.as_str().as_ref())
        });
        if probe {
            return SamplingResult {
                decision: SamplingDecision::Drop,
                attributes: Vec::new(),
                trace_state: parent_context
                    .map(|cx| cx.span().span_context().trace_state().clone())
                    .unwrap_or_default(),
            };
        }
        self.0
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// The resource every span carries: who emitted it, which build, where.
pub fn resource(config: &TelemetryConfig) -> Resource {
    use opentelemetry_semantic_conventions::resource as semconv;
    let mut attributes = vec![
        KeyValue::new(semconv::SERVICE_VERSION, config.service_version),
        // `deployment.environment` is what Grafana's and Tempo's views still key on;
        // `deployment.environment.name` is its current semantic-convention name.
        KeyValue::new(
            "deployment.environment",
            config.deployment_environment.clone(),
        ),
        KeyValue::new(
            "deployment.environment.name",
            config.deployment_environment.clone(),
        ),
        KeyValue::new(semconv::PROCESS_PID, i64::from(std::process::id())),
        KeyValue::new(semconv::PROCESS_RUNTIME_NAME, "rust"),
        KeyValue::new(semconv::OS_TYPE, std::env::consts::OS),
    ];
    if let Ok(host) = hostname::get() {
        attributes.push(KeyValue::new(
            semconv::HOST_NAME,
            host.to_string_lossy().into_owned(),
        ));
    }
    if let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    {
        attributes.push(KeyValue::new(semconv::PROCESS_EXECUTABLE_NAME, exe));
    }
    // `Resource::builder` also applies OTEL_RESOURCE_ATTRIBUTES; the service name is set last
    // so that OTEL_SERVICE_NAME (already folded into `config`) wins over both.
    Resource::builder()
        .with_attributes(attributes)
        .with_service_name(config.service_name.clone())
        .build()
}

/// Installs the propagators named by `OTEL_PROPAGATORS` as the global text-map propagator.
pub fn install_propagator(propagators: &[Propagator]) {
    let propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = propagators
        .iter()
        .map(|p| -> Box<dyn TextMapPropagator + Send + Sync> {
            match p {
                Propagator::TraceContext => Box::new(crate::propagation::TraceContextLevel2::new()),
                Propagator::Baggage => Box::new(BaggagePropagator::new()),
            }
        })
        .collect();
    global::set_text_map_propagator(TextMapCompositePropagator::new(propagators));
}

/// Which `tracing` spans become OpenTelemetry spans: ours at INFO, never the transport's.
///
/// The exporter talks gRPC through tonic/h2/hyper; if their spans were exported, every export
/// would produce spans to export, and a trace view would drown in connection plumbing.
fn span_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(sampler: &SkipProbes, path: &str) -> SamplingDecision {
        sampler
            .should_sample(
                None,
                TraceId::from(1u128),
                "GET",
                &SpanKind::Server,
                &[KeyValue::new("url.path", path.to_owned())],
                &[],
            )
            .decision
    }

    #[test]
    fn probes_and_scrapes_are_dropped_everything_else_follows_the_sampler() {
        let on = SkipProbes(sampler("parentbased_always_on", 1.0));
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(decide(&on, path), SamplingDecision::Drop, "{path}");
        }
        assert_eq!(
            decide(&on, "/api/v1/signup"),
            SamplingDecision::RecordAndSample
        );
        let off = SkipProbes(sampler("always_off", 1.0));
        assert_eq!(decide(&off, "/api/v1/signup"), SamplingDecision::Drop);
    }
}
