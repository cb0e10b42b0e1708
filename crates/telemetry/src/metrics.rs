//! Prometheus metrics: one registry per process, shared by HTTP (actix-web-prom) and gRPC layers.
//!
//! gRPC metric names and labels follow go-grpc-prometheus (`grpc_server_started_total`,
//! `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`,
//! `grpc_server_handling_seconds`), which the standard Grafana gRPC dashboards query.

use std::future::Future;

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

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

/// Which side of a call a [`GrpcMetrics`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `grpc_server_*`: calls this process served.
    Server,
    /// `grpc_client_*`: calls this process made.
    Client,
}

/// The go-grpc-prometheus metric set for one side.
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    started: IntCounterVec,
    handled: IntCounterVec,
    handling_seconds: HistogramVec,
}

impl GrpcMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry, side: Side) -> Result<Self, prometheus::Error> {
        let (prefix, verb) = match side {
            Side::Server => ("grpc_server", "started on the server"),
            Side::Client => ("grpc_client", "started by the client"),
        };
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let started = IntCounterVec::new(
            Opts::new(
                format!("{prefix}_started_total"),
                format!("Total number of RPCs {verb}."),
            ),
            &labels,
        )?;
        let handled = IntCounterVec::new(
            Opts::new(
                format!("{prefix}_handled_total"),
                "Total number of RPCs completed, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        let handling_seconds = HistogramVec::new(
            HistogramOpts::new(
                format!("{prefix}_handling_seconds"),
                "Histogram of response latency (seconds) of gRPC until it is finished.",
            ),
            &labels,
        )?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(handled.clone()))?;
        registry.register(Box::new(handling_seconds.clone()))?;
        Ok(Self {
            started,
            handled,
            handling_seconds,
        })
    }

    pub(crate) fn started(&self, service: &str, method: &str) {
        self.started
            .with_label_values(&["unary", service, method])
            .inc();
    }

    pub(crate) fn handled(&self, service: &str, method: &str, code: tonic::Code, seconds: f64) {
        self.handled
            .with_label_values(&["unary", service, method, code_name(code)])
            .inc();
        self.handling_seconds
            .with_label_values(&["unary", service, method])
            .observe(seconds);
    }
}

/// The canonical gRPC code names, as grpc-go spells them and dashboards filter on.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Serves `GET /metrics` from `registry` on `listener` until `shutdown` completes.
///
/// The gRPC services use this small HTTP/1.1 listener because Prometheus cannot scrape over
/// HTTP/2-only gRPC ports.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let body = render(&registry);
            async move {
                (
                    [(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                    body,
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_metrics_use_go_grpc_prometheus_names() {
        let registry = Registry::new();
        let metrics = GrpcMetrics::register(&registry, Side::Server).unwrap();
        metrics.started("user.v1.UserService", "GetUser");
        metrics.handled(
            "user.v1.UserService",
            "GetUser",
            tonic::Code::NotFound,
            0.01,
        );
        let text = render(&registry);
        assert!(text.contains(
            r#"grpc_server_started_total{grpc_method="GetUser",grpc_service="user.v1.UserService",grpc_type="unary"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"grpc_server_handled_total{grpc_code="NotFound",grpc_method="GetUser",grpc_service="user.v1.UserService",grpc_type="unary"} 1"#
        ), "{text}");
        assert!(
            text.contains("grpc_server_handling_seconds_bucket{"),
            "{text}"
        );
    }

    #[test]
    fn client_side_registers_beside_server_side() {
        let registry = Registry::new();
        GrpcMetrics::register(&registry, Side::Server).unwrap();
        GrpcMetrics::register(&registry, Side::Client).unwrap();
        assert!(
            GrpcMetrics::register(&registry, Side::Client).is_err(),
            "a second registration is refused"
        );
    }
}
