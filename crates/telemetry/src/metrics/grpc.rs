//! The go-grpc-prometheus metric set, on either side of a call, each method's series resolved
//! once.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

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
    /// Each method's series, resolved on its first call (see [`MethodMetrics`]).
    methods: Arc<RwLock<MethodTable>>,
}

/// Resolved series by service, then method.
type MethodTable = HashMap<Arc<str>, HashMap<Arc<str>, Arc<MethodMetrics>>>;

/// At most this many methods keep resolved series; calls to others look their labels up each
/// time. Servers fold unknown methods into one name, so only a misuse would reach it.
const MAX_RESOLVED_METHODS: usize = 256;

/// One method's series, looked up once: a labelled lookup hashes every label value under a lock,
/// three times per call.
#[derive(Debug)]
pub struct MethodMetrics {
    service: Arc<str>,
    method: Arc<str>,
    started: IntCounter,
    handling_seconds: Histogram,
    /// By `tonic::Code as usize`, resolved on the first call ending with that code.
    handled: [OnceLock<IntCounter>; 17],
    handled_vec: IntCounterVec,
}

impl MethodMetrics {
    /// `package.Service`.
    pub fn service(&self) -> &Arc<str> {
        &self.service
    }

    /// `Method`.
    pub fn method(&self) -> &Arc<str> {
        &self.method
    }

    /// A call started.
    pub fn started(&self) {
        self.started.inc();
    }

    /// A call ended with `code` after `seconds`.
    pub fn handled(&self, code: tonic::Code, seconds: f64) {
        let counter = self.handled[(code as usize).min(16)].get_or_init(|| {
            self.handled_vec.with_label_values(&[
                "unary",
                &self.service,
                &self.method,
                code_name(code),
            ])
        });
        counter.inc();
        self.handling_seconds.observe(seconds);
    }
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
            methods: Arc::default(),
        })
    }

    /// The series of `service`/`method`, resolved once and kept.
    pub fn method(&self, service: &str, method: &str) -> Arc<MethodMetrics> {
        // Poisoning only means a panic elsewhere; the map itself is always whole.
        let methods = self.methods.read().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = methods.get(service).and_then(|methods| methods.get(method)) {
            return found.clone();
        }
        let full = methods.values().map(HashMap::len).sum::<usize>() >= MAX_RESOLVED_METHODS;
        drop(methods);
        let (service, method): (Arc<str>, Arc<str>) = (service.into(), method.into());
        let resolved = Arc::new(MethodMetrics {
            started: self
                .started
                .with_label_values(&["unary", &service, &method]),
            handling_seconds: self
                .handling_seconds
                .with_label_values(&["unary", &service, &method]),
            handled: Default::default(),
            handled_vec: self.handled.clone(),
            service: service.clone(),
            method: method.clone(),
        });
        if full {
            return resolved;
        }
        let mut methods = self.methods.write().unwrap_or_else(|e| e.into_inner());
        methods
            .entry(service)
            .or_default()
            .entry(method)
            .or_insert(resolved)
            .clone()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::render;

    #[test]
    fn grpc_metrics_use_go_grpc_prometheus_names() {
        let registry = Registry::new();
        let metrics = GrpcMetrics::register(&registry, Side::Server).unwrap();
        let method = metrics.method("user.v1.UserService", "GetUser");
        method.started();
        method.handled(tonic::Code::NotFound, 0.01);
        assert!(
            Arc::ptr_eq(&method, &metrics.method("user.v1.UserService", "GetUser")),
            "resolved once"
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
