//! The trace viewer `make run` starts beside the three services, so a person sees a request as
//! one trace with nothing but `cargo`: an OTLP receiver (gRPC on 4317, HTTP/protobuf on 4318)
//! that keeps the most recent traces in memory within a fixed budget, and a web page that lists
//! them and draws one as a waterfall across the services. And `trace`, the terminal's view of
//! one trace with its log lines, from this viewer or from Tempo and Loki.
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | the settings, from `VIEWER_*` variables |
//! | [`store`] | the traces, oldest evicted first when the budget of traces or bytes is exceeded |
//! | [`receive`] | the OTLP/gRPC service and the OTLP/HTTP handler |
//! | [`web`] | the page, its JSON API and `/metrics` |
//! | [`tree`] | a trace as an indented tree with duration bars, and its log lines |
//! | [`sources`] | where `trace` reads a trace and its lines: this viewer and log files, or Tempo and Loki |

use std::sync::Mutex;

pub mod config;
pub mod receive;
pub mod sources;
pub mod store;
pub mod tree;
pub mod web;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub use config::Config;
use store::{Budget, Store};

/// The viewer's state: the store and the metrics that describe it.
pub struct Viewer {
    store: Mutex<Store>,
    metrics: Metrics,
}

/// The viewer's own Prometheus metrics.
struct Metrics {
    registry: Registry,
    spans_received: IntCounter,
    spans_rejected: IntCounter,
    requests_rejected: IntCounterVec,
    traces_evicted: IntCounter,
    spans_evicted: IntCounter,
    traces: IntGauge,
    bytes: IntGauge,
}

impl Metrics {
    fn new(budget: Budget) -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("a valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("a valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let requests_rejected = IntCounterVec::new(
            Opts::new(
                "viewer_requests_rejected_total",
                "OTLP requests refused whole, by reason (malformed, too_large, unsupported_media_type)",
            ),
            &["reason"],
        )
        .expect("a valid metric");
        registry
            .register(Box::new(requests_rejected.clone()))
            .expect("registered once");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("registered once");
        gauge(
            "viewer_budget_traces",
            "Traces the viewer keeps at most (VIEWER_MAX_TRACES)",
        )
        .set(i64::try_from(budget.traces).unwrap_or(i64::MAX));
        gauge(
            "viewer_budget_bytes",
            "Estimated bytes the viewer keeps at most (VIEWER_MAX_BYTES)",
        )
        .set(i64::try_from(budget.bytes).unwrap_or(i64::MAX));
        Self {
            spans_received: counter("viewer_spans_received_total", "Spans received"),
            spans_rejected: counter(
                "viewer_spans_rejected_total",
                "Spans dropped for an invalid trace or span id",
            ),
            traces_evicted: counter(
                "viewer_traces_evicted_total",
                "Traces evicted, oldest first, to stay within the budget",
            ),
            spans_evicted: counter(
                "viewer_spans_evicted_total",
                "Spans held by the evicted traces",
            ),
            traces: gauge("viewer_traces", "Traces held now"),
            bytes: gauge("viewer_store_bytes", "Estimated bytes held now"),
            requests_rejected,
            registry,
        }
    }
}

impl Viewer {
    /// An empty viewer within `budget`.
    pub fn new(budget: Budget) -> Self {
        Self {
            store: Mutex::new(Store::new(budget)),
            metrics: Metrics::new(budget),
        }
    }

    /// The store, locked.
    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores one export request and counts what came and went.
    pub fn insert(
        &self,
        request: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    ) {
        let mut store = self.store();
        let before = store.counts();
        let rejected = store.insert(request);
        let after = store.counts();
        let m = &self.metrics;
        m.spans_received
            .inc_by(after.spans_received - before.spans_received);
        m.spans_rejected.inc_by(rejected as u64);
        m.traces_evicted
            .inc_by(after.traces_evicted - before.traces_evicted);
        m.spans_evicted
            .inc_by(after.spans_evicted - before.spans_evicted);
        m.traces.set(i64::try_from(store.len()).unwrap_or(i64::MAX));
        m.bytes
            .set(i64::try_from(store.bytes()).unwrap_or(i64::MAX));
    }

    /// Counts a request refused whole for `reason`.
    pub fn reject(&self, reason: &str) {
        self.metrics
            .requests_rejected
            .with_label_values(&[reason])
            .inc();
    }

    /// `/metrics` in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        let families = self.metrics.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }
}
