//! An in-test OTLP collector: a real tonic server implementing
//! `opentelemetry.proto.collector.trace.v1.TraceService`, so exporters are tested over the wire
//! exactly as they talk to Tempo or an OpenTelemetry Collector.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tokio_stream::wrappers::TcpListenerStream;

/// One received span, flattened with its resource's `service.name`.
#[derive(Debug, Clone)]
pub struct CollectedSpan {
    /// `service.name` of the resource that sent it.
    pub service: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    /// The span name, e.g. `POST /api/v1/signup`.
    pub name: String,
    /// OTLP span kind: 1 internal, 2 server, 3 client.
    pub kind: i32,
    /// Attributes rendered as strings.
    pub attributes: HashMap<String, String>,
    /// Resource attributes rendered as strings.
    pub resource: HashMap<String, String>,
    /// The W3C `tracestate` the span carries.
    pub trace_state: String,
    /// OTLP span flags: the W3C trace flags in the low byte.
    pub flags: u32,
    /// Start, Unix nanoseconds.
    pub start_unix_nano: u64,
    /// End, Unix nanoseconds.
    pub end_unix_nano: u64,
}

impl CollectedSpan {
    /// An attribute's value, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A running collector. Dropping it stops the server.
pub struct OtlpCollector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<CollectedSpan>>>,
    raw: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicU64>,
    _server: tokio::task::JoinHandle<()>,
}

impl OtlpCollector {
    /// Starts a collector on a free loopback port that keeps every span, for tests to inspect.
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    /// Starts a collector that decodes every export and counts its spans, keeping none: what a
    /// benchmark needs, where keeping millions of spans would measure the collector's memory.
    pub async fn start_counting() -> Self {
        Self::start_with(false).await
    }

    async fn start_with(keep: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind collector");
        let addr = listener.local_addr().expect("collector address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let service = Receiver {
            spans: spans.clone(),
            raw: raw.clone(),
            count: count.clone(),
            keep,
        };
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(service))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Self {
            addr,
            spans,
            raw,
            count,
            _server: server,
        }
    }

    /// How many spans have arrived, kept or not.
    pub fn span_count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// `http://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.spans.lock().expect("collector lock").clone()
    }

    /// Every export request received, in full (`Debug`): events, status messages, links and all,
    /// for searching what [`CollectedSpan`] does not keep.
    pub fn raw_requests(&self) -> String {
        self.raw.lock().expect("collector lock").join("\n")
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<CollectedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }
}

struct Receiver {
    spans: Arc<Mutex<Vec<CollectedSpan>>>,
    raw: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicU64>,
    /// Whether spans are kept for [`OtlpCollector::spans`], or only counted.
    keep: bool,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum();
        self.count.fetch_add(spans as u64, Ordering::Relaxed);
        if !self.keep {
            return Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }));
        }
        self.raw
            .lock()
            .expect("collector lock")
            .push(format!("{request:?}"));
        let mut received = Vec::new();
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    received.push(CollectedSpan {
                        service: service.clone(),
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        attributes: attributes(&span.attributes),
                        resource: resource.clone(),
                        trace_state: span.trace_state,
                        flags: span.flags,
                        start_unix_nano: span.start_time_unix_nano,
                        end_unix_nano: span.end_time_unix_nano,
                    });
                }
            }
        }
        self.spans.lock().expect("collector lock").extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attributes(pairs: &[KeyValue]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(render).unwrap_or_default(),
            )
        })
        .collect()
}

fn render(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
