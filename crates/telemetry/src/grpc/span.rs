//! The one span a gRPC call gets, on either side: OpenTelemetry's RPC semantic conventions
//! (`rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`), and for a client the
//! server it calls (`server.address`, `server.port`), which Tempo's service graph joins on.

use tracing::Span;

use super::HEALTH_SERVICE;
use crate::metrics::MethodMetrics;

/// Which end of the call the span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The callee: its span continues the caller's trace.
    Server,
    /// The caller: its span is the parent of the callee's.
    Client,
}

/// The span of a call to `calls`' method; `peer` is the server a client calls. Health checks
/// get none: orchestrators poll them every few seconds, and each would start a trace.
pub(crate) fn call_span(kind: Kind, calls: &MethodMetrics, peer: Option<&(String, u16)>) -> Span {
    if &**calls.service() == HEALTH_SERVICE {
        return Span::none();
    }
    tracing::info_span!(
        "grpc",
        otel.name = %format_args!("{}/{}", calls.service(), calls.method()),
        otel.kind = match kind {
            Kind::Server => "server",
            Kind::Client => "client",
        },
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = &**calls.service(),
        rpc.method = &**calls.method(),
        rpc.grpc.status_code = tracing::field::Empty,
        server.address = peer.map(|(address, _)| address.as_str()),
        server.port = peer.map(|(_, port)| *port),
    )
}

/// Records how the call ended on the current span (the call's): its status code, and ERROR when
/// `failed` (each side decides what counts as its failure).
pub(crate) fn record_outcome(code: tonic::Code, failed: bool) {
    let current = Span::current();
    if current.is_disabled() {
        return;
    }
    current.record("rpc.grpc.status_code", code as i64);
    if failed {
        current.record("otel.status_code", "ERROR");
    }
}
