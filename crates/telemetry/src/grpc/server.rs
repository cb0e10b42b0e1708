//! The server side: the caller's trace continued, the call counted and logged, its deadline
//! kept for the handler.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry_http::HeaderExtractor;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::span::{Kind, call_span, record_outcome};
use super::{
    BoxFuture, Completion, DEADLINE, GRPC_TIMEOUT, HEALTH_SERVICE, is_server_error,
    parse_grpc_timeout, split_path, status_from_headers,
};
use crate::metrics::GrpcMetrics;

/// Tower layer for `tonic::transport::Server::builder().layer(...)`.
#[derive(Clone, Debug)]
pub struct ServerLayer {
    logger: slog::Logger,
    metrics: GrpcMetrics,
    /// Methods this server hosts (`service/method`); calls to any other are labelled `unknown`,
    /// so a client probing random paths cannot mint new metric series. `None` trusts every path.
    known: Option<Arc<[String]>>,
}

impl ServerLayer {
    /// `metrics` should be registered with [`crate::metrics::Side::Server`].
    pub fn new(logger: slog::Logger, metrics: GrpcMetrics) -> Self {
        Self {
            logger,
            metrics,
            known: None,
        }
    }

    /// Labels calls to anything but `service`'s `methods` (and gRPC health) as `unknown`:
    /// counted and traced under that one name, and answered by tonic as UNIMPLEMENTED, which for
    /// a method nobody hosts is the caller's mistake, not an error of ours.
    pub fn with_known_methods(mut self, service: &str, methods: &[String]) -> Self {
        let known: Vec<String> = methods
            .iter()
            .map(|method| format!("{service}/{method}"))
            .chain(["Check", "Watch"].map(|m| format!("{HEALTH_SERVICE}/{m}")))
            .collect();
        self.known = Some(known.into());
        self
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = ServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerService {
            inner,
            logger: self.logger.clone(),
            metrics: self.metrics.clone(),
            known: self.known.clone(),
        }
    }
}

/// The service produced by [`ServerLayer`].
#[derive(Clone, Debug)]
pub struct ServerService<S> {
    inner: S,
    logger: slog::Logger,
    metrics: GrpcMetrics,
    known: Option<Arc<[String]>>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ServerService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = split_path(request.uri().path());
        let hosted = self.known.as_ref().is_none_or(|known| {
            known
                .iter()
                .any(|k| k.split_once('/') == Some((service, method)))
        });
        let calls = if hosted {
            self.metrics.method(service, method)
        } else {
            self.metrics.method("unknown", "unknown")
        };
        let health = &**calls.service() == HEALTH_SERVICE;
        let span = call_span(Kind::Server, &calls, None);
        if !span.is_disabled() {
            // A malformed or absent traceparent yields an empty context: a new trace.
            let parent = crate::propagation::extract(&HeaderExtractor(request.headers()));
            let _ = span.set_parent(parent);
        }
        let deadline = request
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|timeout| Instant::now() + timeout);
        let completion = Completion::start(calls.clone());
        // Take the service that poll_ready prepared; leave a fresh clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future = span.in_scope(|| inner.call(request));
        let logger = self.logger.clone();
        Box::pin(
            async move {
                let result = match deadline {
                    Some(deadline) => DEADLINE.scope(deadline, future).await,
                    None => future.await,
                };
                let code = match &result {
                    Ok(response) => status_from_headers(response.headers()),
                    Err(_) => tonic::Code::Internal,
                };
                let elapsed = completion.finish(code);
                // A call to a method nobody hosts is the caller's mistake, however tonic codes it.
                let server_fault = hosted && is_server_error(code);
                record_outcome(code, server_fault);
                if !health {
                    info_or_error!(logger, server_fault, "grpc request handled";
                        "rpc.service" => &**calls.service(),
                        "rpc.method" => &**calls.method(),
                        "rpc.grpc.status_code" => code as i32,
                        "grpc_code" => crate::metrics::code_name(code),
                        "duration_ms" => elapsed.as_secs_f64() * 1000.0,
                    );
                }
                result
            }
            .instrument(span),
        )
    }
}
