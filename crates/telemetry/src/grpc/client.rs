//! The client side: a client span whose context the callee continues, the call bounded by
//! what is left of the caller's own deadline, and counted.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::global;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::span::{Kind, call_span, record_outcome};
use super::{
    BoxFuture, Completion, DEFAULT_CALL_TIMEOUT, GRPC_TIMEOUT, current_deadline,
    format_grpc_timeout, parse_grpc_timeout, split_path, status_from_headers, transport_error_code,
};
use crate::metrics::GrpcMetrics;

/// Tower layer to wrap a `tonic::transport::Channel` before handing it to a generated client.
#[derive(Clone, Debug)]
pub struct ClientLayer {
    metrics: GrpcMetrics,
    /// `server.address`/`server.port`: above the channel, request URIs carry only the path.
    server: Arc<(String, u16)>,
}

impl ClientLayer {
    /// A layer for calls to `server_url`; `metrics` should be registered with
    /// [`crate::metrics::Side::Client`].
    pub fn new(metrics: GrpcMetrics, server_url: &http::Uri) -> Self {
        let host = server_url.host().unwrap_or_default().to_owned();
        let default_port = if server_url.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let port = server_url.port_u16().unwrap_or(default_port);
        Self {
            metrics,
            server: Arc::new((host, port)),
        }
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = ClientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientService {
            inner,
            metrics: self.metrics.clone(),
            server: self.server.clone(),
        }
    }
}

/// The service produced by [`ClientLayer`]: use `ClientService<Channel>` as the client's transport.
#[derive(Clone, Debug)]
pub struct ClientService<S> {
    inner: S,
    metrics: GrpcMetrics,
    server: Arc<(String, u16)>,
}

/// The error a [`ClientService`] call ends with: the channel's own, or
/// [`tonic::TimeoutExpired`] when the call's deadline passed first.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ClientService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = split_path(request.uri().path());
        let calls = self.metrics.method(service, method);
        let span = call_span(Kind::Client, &calls, Some(&self.server));
        // What is left of the call being served, if any: the callee gets no more time than that.
        let budget = current_deadline()
            .map_or(DEFAULT_CALL_TIMEOUT, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            })
            .min(DEFAULT_CALL_TIMEOUT);
        let budget = match request.headers().get(GRPC_TIMEOUT) {
            // The caller set one itself: it stands, and bounds the wait below too.
            Some(value) => value
                .to_str()
                .ok()
                .and_then(parse_grpc_timeout)
                .map_or(budget, |asked| asked.min(budget)),
            None => {
                if let Ok(value) = http::HeaderValue::try_from(format_grpc_timeout(budget)) {
                    request.headers_mut().insert(GRPC_TIMEOUT, value);
                }
                budget
            }
        };
        if !span.is_disabled() {
            // Inject the client span's own context: the callee becomes its child, not its sibling.
            let context = span.context();
            global::get_text_map_propagator(|p| {
                p.inject_context(
                    &context,
                    &mut crate::propagation::HeaderInjector(request.headers_mut()),
                )
            });
        }
        let completion = Completion::start(calls);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // A channel's `call` only queues the request; the call runs in the span below.
        let future = inner.call(request);
        Box::pin(
            async move {
                // The whole call, waiting for a connection included: the channel's own timeout
                // starts only once the request is on a connection, and a peer that never
                // completes the connection would hold the call forever.
                let result = match tokio::time::timeout(budget, future).await {
                    Ok(result) => result.map_err(Into::into),
                    Err(_elapsed) => Err(Box::new(tonic::TimeoutExpired(())) as BoxError),
                };
                let code = match &result {
                    Ok(response) => status_from_headers(response.headers()),
                    Err(error) => transport_error_code(error.as_ref()),
                };
                completion.finish(code);
                // The caller sees every failure of its call as one.
                record_outcome(code, code != tonic::Code::Ok);
                result
            }
            .instrument(span),
        )
    }
}
