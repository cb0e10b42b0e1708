//! Prometheus metrics: one registry per process, shared by HTTP (actix-web-prom) and gRPC layers.
//!
//! gRPC metric names and labels follow go-grpc-prometheus (`grpc_server_started_total`,
//! `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`,
//! `grpc_server_handling_seconds`), which the standard Grafana gRPC dashboards query.

use prometheus::{Encoder as _, Registry, TextEncoder};

#[cfg(feature = "tonic")]
mod grpc;
#[cfg(feature = "tonic")]
pub use grpc::{GrpcMetrics, MethodMetrics, Side, code_name};

/// A fresh registry with the process collector (CPU, memory, fds) registered where supported.
pub fn registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        // Only fails if registered twice, which a fresh registry rules out.
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    registry
}

/// Renders `registry` in the Prometheus text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buffer);
    String::from_utf8(buffer).unwrap_or_default()
}
