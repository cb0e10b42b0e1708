//! Tower layers for tonic: trace-context propagation, spans and metrics for every call.
//!
//! The layers work on `http::Request`s, below tonic's codec, because a tonic interceptor sees
//! neither the response nor its status. The server layer extracts W3C `traceparent`/`tracestate`/
//! `baggage` from the request headers (gRPC metadata is HTTP/2 headers), opens the server span as
//! the remote span's child, and counts the call; the client layer opens a client span as a child
//! of the current span and injects *that* span's context, so the callee's server span hangs under
//! the caller's client span and one request stays one tree across processes.
//!
//! Deadlines travel the same way: the server layer reads the caller's `grpc-timeout` and keeps
//! it for the handler ([`current_deadline`]); the client layer sends every call the time that is
//! left of it (or [`DEFAULT_CALL_TIMEOUT`] where there is none), so a callee never starts work
//! that its caller has already given up on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use opentelemetry::global;
use opentelemetry_http::HeaderExtractor;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::metrics::{GrpcMetrics, MethodMetrics};

/// The health service is polled every few seconds by orchestrators: count it, do not trace it.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// The deadline of a call made outside any served call (the gateway's), and the longest any call
/// may take.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The gRPC metadata key carrying a call's deadline as a relative timeout.
const GRPC_TIMEOUT: &str = "grpc-timeout";

tokio::task_local! {
    /// The deadline of the call the current task is serving.
    static DEADLINE: Instant;
}

/// The deadline of the gRPC call being served by the current task, when its caller sent one
/// (`grpc-timeout`). Work that cannot finish before it is not worth starting.
pub fn current_deadline() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let digits = value.get(..value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match &value[digits.len()..] {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Formats `timeout` for `grpc-timeout`, in milliseconds (rounded up, so a tiny remainder is not
/// sent as "no time at all" by rounding).
fn format_grpc_timeout(timeout: Duration) -> String {
    let millis = timeout.as_nanos().div_ceil(1_000_000).min(99_999_999);
    format!("{millis}m")
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Splits `/package.Service/Method` into (`package.Service`, `Method`).
pub fn split_path(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

/// The gRPC status of a response whose headers we have seen.
///
/// Errors from unary handlers travel as "trailers-only" responses, with `grpc-status` in the
/// headers; a response without it is a successful unary call whose `grpc-status: 0` follows in
/// the trailers.
pub fn status_from_headers(headers: &http::HeaderMap) -> tonic::Code {
    match headers.get("grpc-status") {
        None => tonic::Code::Ok,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
            .map_or(tonic::Code::Unknown, tonic::Code::from_i32),
    }
}

/// The status a tonic client reports for a transport failure: `Cancelled` when the channel's
/// timeout expired (tonic's own mapping), `Unavailable` otherwise (connection refused, reset).
fn transport_error_code(error: &(dyn std::error::Error + 'static)) -> tonic::Code {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<tonic::TimeoutExpired>() {
            return tonic::Code::Cancelled;
        }
        source = error.source();
    }
    tonic::Code::Unavailable
}

/// Whether a failed call says nothing about the request, only that the callee could not be
/// reached or did not answer in time: `Unavailable`, `DeadlineExceeded`, `Cancelled`, or any
/// status tonic made itself from a transport failure. A connection closed or reset mid-call (a
/// callee shutting down, say) comes back as `Unknown` or `Internal`; such a status carries its
/// cause as `source()`, which a status the callee sent never does. Callers answer all of these
/// "unavailable, try again", never "internal error".
pub fn unreachable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    ) || std::error::Error::source(status).is_some()
}

/// Server-side failures mark the span as an error; client mistakes (4xx-like codes) do not,
/// following the OpenTelemetry gRPC semantic conventions for servers.
fn is_server_error(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

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
        let span = if health {
            tracing::Span::none()
        } else {
            let span = tracing::info_span!(
                "grpc.server",
                otel.name = %format_args!("{}/{}", calls.service(), calls.method()),
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = &**calls.service(),
                rpc.method = &**calls.method(),
                rpc.grpc.status_code = tracing::field::Empty,
            );
            if !span.is_disabled() {
                // A malformed or absent traceparent yields an empty context: a new trace.
                let parent = crate::propagation::extract(&HeaderExtractor(request.headers()));
                let _ = span.set_parent(parent);
            }
            span
        };
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
                let current = tracing::Span::current();
                if !current.is_disabled() {
                    current.record("rpc.grpc.status_code", code as i64);
                    if server_fault {
                        current.record("otel.status_code", "ERROR");
                    }
                }
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

/// Counts a call as handled exactly once: with its status when it completes, or as `Canceled`
/// when its future is dropped first (the caller gave up or the connection closed), so
/// `started_total - handled_total` really is the number of calls in flight.
struct Completion {
    calls: Arc<MethodMetrics>,
    started: Instant,
    finished: bool,
}

impl Completion {
    fn start(calls: Arc<MethodMetrics>) -> Self {
        calls.started();
        Self {
            calls,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Records `code`; returns how long the call took.
    fn finish(mut self, code: tonic::Code) -> std::time::Duration {
        let elapsed = self.started.elapsed();
        self.calls.handled(code, elapsed.as_secs_f64());
        self.finished = true;
        elapsed
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.finished {
            let elapsed = self.started.elapsed().as_secs_f64();
            self.calls.handled(tonic::Code::Cancelled, elapsed);
        }
    }
}

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
        let (server_address, server_port) = &*self.server;
        let span = if &**calls.service() == HEALTH_SERVICE {
            // Readiness probes: counted, not traced (they would each start a trace of their own).
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "grpc.client",
                otel.name = %format_args!("{}/{}", calls.service(), calls.method()),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = &**calls.service(),
                rpc.method = &**calls.method(),
                rpc.grpc.status_code = tracing::field::Empty,
                server.address = server_address.as_str(),
                server.port = server_port,
            )
        };
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
                let current = tracing::Span::current();
                if !current.is_disabled() {
                    current.record("rpc.grpc.status_code", code as i64);
                    if code != tonic::Code::Ok {
                        current.record("otel.status_code", "ERROR");
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

/// A lazily connecting channel to `url` wrapped in the [`ClientLayer`], over mutual TLS when
/// `tls` is given (then `url` must be `https://`).
///
/// Lazy, so a service starts even while its dependency is still coming up (readiness reports
/// it); bounded connect and request timeouts, so a hung dependency fails a call instead of
/// holding it forever.
pub fn channel(
    url: &str,
    metrics: GrpcMetrics,
    tls: Option<&crate::tls::InternalTls>,
) -> Result<ClientService<tonic::transport::Channel>, tonic::transport::Error> {
    Ok(traced(&endpoint(url, tls)?, metrics))
}

/// The endpoint [`channel`] connects to: `url` with bounded connect and request timeouts, over
/// mutual TLS when `tls` is given. Build it once; [`traced`] makes channels from it.
pub fn endpoint(
    url: &str,
    tls: Option<&crate::tls::InternalTls>,
) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(DEFAULT_CALL_TIMEOUT);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.client())?;
    }
    Ok(endpoint)
}

/// A lazily connecting channel to `endpoint`, wrapped in the [`ClientLayer`].
///
/// The channel's tasks (its queue and its HTTP/2 connection) run on the Tokio runtime this is
/// called on, and every call crosses to that runtime and back: a server whose handlers run on
/// runtimes of their own (actix-web's workers) should make one channel per worker, on it.
pub fn traced(
    endpoint: &tonic::transport::Endpoint,
    metrics: GrpcMetrics,
) -> ClientService<tonic::transport::Channel> {
    ClientLayer::new(metrics, endpoint.uri()).layer(endpoint.connect_lazy())
}

/// The two listeners of a gRPC service, its gRPC port and its `/metrics` port, bound before
/// serving so that port 0 works and the addresses are known up front (tests rely on both).
#[derive(Debug)]
pub struct Listeners {
    grpc: tokio::net::TcpListener,
    metrics: tokio::net::TcpListener,
    /// A plain-text listener serving only gRPC health, for probes that cannot do mutual TLS.
    health: Option<tokio::net::TcpListener>,
    grpc_addr: std::net::SocketAddr,
    metrics_addr: std::net::SocketAddr,
    health_addr: Option<std::net::SocketAddr>,
    /// The gRPC health service and its reporter, made at bind time so that a service can report
    /// on its own dependencies (see [`Listeners::health`]).
    health_reporter: tonic_health::server::HealthReporter,
    health_service:
        tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    /// Written with the bound addresses once serving starts, naming the service.
    ready_file: Option<(crate::lifecycle::ReadyFile, &'static str)>,
}

impl Listeners {
    /// Binds the gRPC and metrics addresses, and the health-only one when given.
    pub async fn bind(
        grpc: std::net::SocketAddr,
        metrics: std::net::SocketAddr,
        health: Option<std::net::SocketAddr>,
    ) -> std::io::Result<Self> {
        let grpc = tokio::net::TcpListener::bind(grpc).await?;
        let metrics = tokio::net::TcpListener::bind(metrics).await?;
        let health = match health {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        let health_reporter = tonic_health::server::HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health_reporter.clone()),
        );
        Ok(Self {
            grpc_addr: grpc.local_addr()?,
            metrics_addr: metrics.local_addr()?,
            health_addr: health.as_ref().map(|l| l.local_addr()).transpose()?,
            grpc,
            metrics,
            health,
            health_reporter,
            health_service,
            ready_file: None,
        })
    }

    /// Has [`Listeners::serve`] write the bound addresses of `service` (`"user"`) to
    /// `ready_file` once it serves.
    pub fn announce_to(
        mut self,
        ready_file: Option<crate::lifecycle::ReadyFile>,
        service: &'static str,
    ) -> Self {
        self.ready_file = ready_file.map(|file| (file, service));
        self
    }

    /// The bound health-only address, if any.
    pub fn health_addr(&self) -> Option<std::net::SocketAddr> {
        self.health_addr
    }

    /// The health reporter of the server [`Listeners::serve`] will run: a service reports
    /// NOT_SERVING through it when a dependency it cannot work without is down.
    pub fn health(&self) -> tonic_health::server::HealthReporter {
        self.health_reporter.clone()
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.grpc_addr
    }

    /// The bound `/metrics` address.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.metrics_addr
    }

    /// Serves `service` (whose methods are `methods`) with the [`ServerLayer`], gRPC health and
    /// `/metrics` from `registry` until `shutdown` completes. With `tls`, the gRPC port speaks
    /// mutual TLS and enforces the caller policy (see [`crate::tls`]); the health-only port, if
    /// bound, stays plain text for probes.
    ///
    /// On shutdown the health status flips to NOT_SERVING, the server stops accepting and waits
    /// for in-flight calls to finish (what Kubernetes expects after SIGTERM), then the metrics
    /// listener stops too.
    pub async fn serve<S>(
        self,
        service: S,
        methods: &[String],
        tls: Option<(crate::tls::InternalTls, crate::tls::CallerPolicy)>,
        registry: prometheus::Registry,
        logger: slog::Logger,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError>
    where
        S: Service<http::Request<tonic::body::Body>, Error = std::convert::Infallible>
            + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        let metrics = GrpcMetrics::register(&registry, crate::metrics::Side::Server)?;
        let (health_reporter, health_service) = (self.health_reporter, self.health_service);
        health_reporter.set_serving::<S>().await;

        let stop_metrics = tokio_util::sync::CancellationToken::new();
        let metrics_server = tokio::spawn(crate::metrics::serve(
            self.metrics,
            registry,
            stop_metrics.clone().cancelled_owned(),
        ));
        let stop_health = tokio_util::sync::CancellationToken::new();
        let health_server = self.health.map(|listener| {
            let server = tonic::transport::Server::builder()
                .add_service(health_service.clone())
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop_health.clone().cancelled_owned(),
                );
            tokio::spawn(server)
        });
        slog::info!(logger, "grpc server listening";
            "rpc.service" => S::NAME,
            "grpc.addr" => %self.grpc_addr,
            "metrics.addr" => %self.metrics_addr,
            "health.addr" => self.health_addr.map(|a| a.to_string()),
            "tls" => tls.is_some(),
        );
        if tls.is_none() {
            slog::warn!(
                logger,
                "internal calls are not authenticated: set TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE for mutual TLS"
            );
        }
        if let Some((ready, name)) = &self.ready_file {
            let mut addresses = vec![("grpc", self.grpc_addr), ("metrics", self.metrics_addr)];
            addresses.extend(self.health_addr.map(|addr| ("health", addr)));
            // The listeners are bound: connections queue until the accept loop below runs.
            ready.write(name, &addresses)?;
        }

        let drain = {
            let logger = logger.clone();
            async move {
                shutdown.await;
                slog::info!(logger, "shutting down: draining in-flight calls");
                health_reporter.set_not_serving::<S>().await;
                // The whole server (service ""), which Kubernetes' gRPC probes and
                // `--health-check` ask about by default, is draining too.
                health_reporter
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            }
        };
        let mut builder = tonic::transport::Server::builder();
        let authorize = match tls {
            Some((tls, policy)) => {
                builder = builder.tls_config(tls.server())?;
                Some(crate::tls::AuthorizeLayer::new(policy))
            }
            None => None,
        };
        // The telemetry layer outside the policy: refused calls are counted and logged too.
        let result = builder
            .layer(ServerLayer::new(logger, metrics).with_known_methods(S::NAME, methods))
            .layer(tower::util::option_layer(authorize))
            .add_service(health_service)
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(self.grpc),
                drain,
            )
            .await;
        stop_metrics.cancel();
        stop_health.cancel();
        let _ = metrics_server.await;
        if let Some(health_server) = health_server {
            let _ = health_server.await;
        }
        result.map_err(ServeError::Transport)
    }
}

/// Why [`Listeners::serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The metrics could not be registered (registered twice in one registry).
    #[error("metrics registration failed: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A listener had no local address.
    #[error("listener error: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_and_format_as_the_spec_says() {
        assert_eq!(parse_grpc_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "S", "10", "10s", "123456789S", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
        assert_eq!(format_grpc_timeout(Duration::from_secs(10)), "10000m");
        assert_eq!(
            format_grpc_timeout(Duration::from_micros(1)),
            "1m",
            "rounded up"
        );
        assert_eq!(
            format_grpc_timeout(Duration::from_secs(10 * 86_400 * 365)),
            "99999999m"
        );
    }
    use opentelemetry::baggage::BaggageExt as _;

    use opentelemetry::trace::TracerProvider as _;
    use std::sync::Mutex;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// A subscriber with ids but no exporter, and the W3C propagators installed.
    fn tracing_for_test() -> tracing::subscriber::DefaultGuard {
        crate::traces::install_propagator(&[
            crate::config::Propagator::TraceContext,
            crate::config::Propagator::Baggage,
        ]);
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::set_default(subscriber)
    }

    fn metrics(side: crate::metrics::Side) -> (prometheus::Registry, GrpcMetrics) {
        let registry = prometheus::Registry::new();
        let metrics = GrpcMetrics::register(&registry, side).unwrap();
        (registry, metrics)
    }

    fn request(headers: &[(&'static str, &str)]) -> http::Request<()> {
        let mut builder = http::Request::builder().uri("/user.v1.UserService/GetUser");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[tokio::test]
    async fn the_client_injects_its_own_span_as_the_parent_with_baggage() {
        let _tracing = tracing_for_test();
        let seen = Arc::new(Mutex::new(http::HeaderMap::new()));
        let captured = seen.clone();
        let inner = tower::service_fn(move |request: http::Request<()>| {
            *captured.lock().unwrap() = request.headers().clone();
            async { Ok::<_, std::convert::Infallible>(http::Response::new(())) }
        });
        let (_registry, metrics) = metrics(crate::metrics::Side::Client);
        let mut client =
            ClientLayer::new(metrics, &"http://user:50052".parse().unwrap()).layer(inner);

        let parent = tracing::info_span!("caller");
        let baggage = opentelemetry::Context::current()
            .with_baggage([opentelemetry::KeyValue::new("tenant", "acme")]);
        let _ = parent.set_parent(baggage);
        let parent_ids = parent.in_scope(|| crate::current_trace_ids().unwrap());
        // As in a handler: the call is made while the caller's span is current.
        let call = parent.in_scope(|| client.call(request(&[])));
        call.instrument(parent).await.unwrap();

        let headers = seen.lock().unwrap().clone();
        let traceparent = headers["traceparent"].to_str().unwrap().to_owned();
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts[1], parent_ids.trace_id_hex(), "same trace");
        assert_ne!(
            parts[2],
            parent_ids.span_id_hex(),
            "the client span, not the caller, is the parent"
        );
        assert_eq!(headers["baggage"].to_str().unwrap(), "tenant=acme");
    }

    #[tokio::test]
    async fn a_deadline_received_is_passed_on_shortened_and_a_call_without_one_gets_the_default() {
        // A server whose handler calls onwards, as auth calls user.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let captured = seen.clone();
        let downstream = tower::service_fn(move |request: http::Request<()>| {
            let timeout = request.headers().get("grpc-timeout").cloned();
            captured.lock().unwrap().push(timeout);
            async { Ok::<_, std::convert::Infallible>(http::Response::new(())) }
        });
        let (_registry, client_metrics) = metrics(crate::metrics::Side::Client);
        let client = ClientLayer::new(client_metrics, &"http://user:50052".parse().unwrap())
            .layer(downstream);
        let handler = tower::service_fn(move |_request: http::Request<()>| {
            let mut client = client.clone();
            async move {
                assert!(
                    current_deadline().is_some(),
                    "the handler sees its deadline"
                );
                client.call(request(&[])).await
            }
        });
        let (_registry, server_metrics) = metrics(crate::metrics::Side::Server);
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut server = ServerLayer::new(logger, server_metrics).layer(handler);

        server
            .call(request(&[("grpc-timeout", "2S")]))
            .await
            .unwrap();
        let sent = seen
            .lock()
            .unwrap()
            .pop()
            .flatten()
            .expect("a grpc-timeout sent on");
        let sent = parse_grpc_timeout(sent.to_str().unwrap()).unwrap();
        assert!(
            sent <= Duration::from_secs(2) && sent > Duration::ZERO,
            "{sent:?}"
        );

        // Outside any served call (the gateway's calls): the default deadline.
        assert!(current_deadline().is_none());
        let (_registry, metrics) = metrics(crate::metrics::Side::Client);
        let direct = Arc::new(Mutex::new(None));
        let captured = direct.clone();
        let inner = tower::service_fn(move |request: http::Request<()>| {
            *captured.lock().unwrap() = request.headers().get("grpc-timeout").cloned();
            async { Ok::<_, std::convert::Infallible>(http::Response::new(())) }
        });
        let mut client =
            ClientLayer::new(metrics, &"http://auth:50051".parse().unwrap()).layer(inner);
        client.call(request(&[])).await.unwrap();
        assert_eq!(direct.lock().unwrap().take().unwrap(), "10000m");
    }

    #[tokio::test]
    async fn the_server_continues_a_valid_traceparent_and_restarts_on_a_malformed_one() {
        let _tracing = tracing_for_test();
        let seen = Arc::new(Mutex::new(None));
        let captured = seen.clone();
        let inner = tower::service_fn(move |_request: http::Request<()>| {
            *captured.lock().unwrap() = crate::current_trace_ids();
            async { Ok::<_, std::convert::Infallible>(http::Response::new(())) }
        });
        let (_registry, metrics) = metrics(crate::metrics::Side::Server);
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut server = ServerLayer::new(logger, metrics).layer(inner);

        let caller = "4bf92f3577b34da6a3ce929d0e0e4736";
        server
            .call(request(&[(
                "traceparent",
                &format!("00-{caller}-00f067aa0ba902b7-01"),
            )]))
            .await
            .unwrap();
        let ids = seen
            .lock()
            .unwrap()
            .take()
            .expect("the handler runs inside the server span");
        assert_eq!(ids.trace_id_hex(), caller);
        assert_ne!(ids.span_id_hex(), "00f067aa0ba902b7");

        for malformed in [
            "garbage",
            &format!("00-{caller}-0000000000000000-01"),
            &format!("ff-{caller}-00f067aa0ba902b7-01"),
            &format!("00-{}-00f067aa0ba902b7-01", &caller[1..]),
            &format!("00-{}-00f067aa0ba902b7-01", caller.to_uppercase()),
        ] {
            server
                .call(request(&[("traceparent", malformed)]))
                .await
                .unwrap();
            let ids = seen
                .lock()
                .unwrap()
                .take()
                .expect("a span even without a parent");
            assert_ne!(ids.trace_id_hex(), caller, "{malformed}: a new trace");
        }
    }

    #[tokio::test]
    async fn calls_to_services_not_hosted_here_are_labelled_unknown() {
        let (registry, metrics) = metrics(crate::metrics::Side::Server);
        let inner = tower::service_fn(|_request: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut server = ServerLayer::new(logger, metrics)
            .with_known_methods("auth.v1.AuthService", &["Login".to_owned()])
            .layer(inner);
        server.call(request(&[])).await.unwrap();
        let text = crate::metrics::render(&registry);
        assert!(text.contains(r#"grpc_service="unknown""#), "{text}");
        assert!(!text.contains("user.v1.UserService"), "{text}");
    }

    /// A slog drain that keeps the level of every record.
    #[derive(Clone, Default)]
    struct Levels(Arc<Mutex<Vec<slog::Level>>>);

    impl slog::Drain for Levels {
        type Ok = ();
        type Err = slog::Never;
        fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
            self.0.lock().unwrap().push(record.level());
            Ok(())
        }
    }

    #[tokio::test]
    async fn made_up_methods_of_a_hosted_service_are_unknown_and_not_our_error() {
        let (registry, metrics) = metrics(crate::metrics::Side::Server);
        // What tonic answers for a method its router does not know.
        let inner = tower::service_fn(|_request: http::Request<()>| async {
            let mut response = http::Response::new(());
            response
                .headers_mut()
                .insert("grpc-status", "12".parse().unwrap());
            Ok::<_, std::convert::Infallible>(response)
        });
        let levels = Levels::default();
        let logger = slog::Logger::root(levels.clone(), slog::o!());
        let mut server = ServerLayer::new(logger, metrics)
            .with_known_methods("user.v1.UserService", &["GetUser".to_owned()])
            .layer(inner);
        for i in 0..20 {
            let request = http::Request::builder()
                .uri(format!("/user.v1.UserService/Probe{i}"))
                .body(())
                .unwrap();
            server.call(request).await.unwrap();
        }
        let text = crate::metrics::render(&registry);
        assert!(
            !text.contains("Probe"),
            "made-up methods became label values: {text}"
        );
        assert!(
            text.contains(r#"grpc_server_handled_total{grpc_code="Unimplemented",grpc_method="unknown",grpc_service="unknown",grpc_type="unary"} 20"#),
            "{text}"
        );
        let levels = levels.0.lock().unwrap();
        assert_eq!(levels.len(), 20);
        assert!(
            levels.iter().all(|l| *l == slog::Level::Info),
            "no ERROR line per probe: {levels:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_gets_an_answer_ends_at_its_deadline_as_cancelled() {
        // A channel whose connection never comes up (a frozen peer mid-handshake).
        let inner = tower::service_fn(|_request: http::Request<()>| {
            std::future::pending::<Result<http::Response<()>, std::convert::Infallible>>()
        });
        let (registry, metrics) = metrics(crate::metrics::Side::Client);
        let mut client =
            ClientLayer::new(metrics, &"http://user:50052".parse().unwrap()).layer(inner);
        let error = client
            .call(request(&[("grpc-timeout", "300m")]))
            .await
            .unwrap_err();
        assert!(error.is::<tonic::TimeoutExpired>(), "{error}");
        assert_eq!(
            tonic::Status::from_error(error).code(),
            tonic::Code::Cancelled
        );
        let text = crate::metrics::render(&registry);
        assert!(text.contains(r#"grpc_client_handled_total{grpc_code="Canceled",grpc_method="GetUser",grpc_service="user.v1.UserService",grpc_type="unary"} 1"#), "{text}");
    }

    #[test]
    fn transport_timeouts_are_cancelled_and_other_failures_unavailable() {
        let timeout: Box<dyn std::error::Error> = Box::new(tonic::TimeoutExpired(()));
        assert_eq!(
            transport_error_code(timeout.as_ref()),
            tonic::Code::Cancelled
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(transport_error_code(&refused), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn a_call_dropped_before_completion_is_counted_as_canceled() {
        let (registry, metrics) = metrics(crate::metrics::Side::Server);
        let inner = tower::service_fn(|_request: http::Request<()>| {
            std::future::pending::<Result<http::Response<()>, std::convert::Infallible>>()
        });
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut server = ServerLayer::new(logger, metrics).layer(inner);
        let call = server.call(request(&[]));
        drop(call);
        let text = crate::metrics::render(&registry);
        assert!(text.contains(r#"grpc_server_handled_total{grpc_code="Canceled",grpc_method="GetUser",grpc_service="user.v1.UserService",grpc_type="unary"} 1"#), "{text}");
    }

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/user.v1.UserService/GetUser"),
            ("user.v1.UserService", "GetUser")
        );
        assert_eq!(split_path("/odd"), ("odd", ""));
    }

    #[test]
    fn status_comes_from_trailers_only_headers_or_defaults_to_ok() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_from_headers(&headers), tonic::Code::Ok);
        headers.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(status_from_headers(&headers), tonic::Code::NotFound);
        headers.insert("grpc-status", http::HeaderValue::from_static("junk"));
        assert_eq!(status_from_headers(&headers), tonic::Code::Unknown);
    }

    #[test]
    fn only_server_faults_are_span_errors() {
        assert!(is_server_error(tonic::Code::Internal));
        assert!(!is_server_error(tonic::Code::InvalidArgument));
        assert!(!is_server_error(tonic::Code::Unauthenticated));
    }

    #[test]
    fn transport_failures_are_unreachable_statuses_a_callee_sent_are_not() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let made_by_tonic = tonic::Status::from_error(Box::new(reset));
        assert_eq!(made_by_tonic.code(), tonic::Code::Unknown);
        assert!(unreachable(&made_by_tonic));
        assert!(unreachable(&tonic::Status::unavailable("down")));
        assert!(unreachable(&tonic::Status::deadline_exceeded("slow")));
        assert!(!unreachable(&tonic::Status::internal(
            "a bug in the callee"
        )));
        assert!(!unreachable(&tonic::Status::unknown("sent by the callee")));
        assert!(!unreachable(&tonic::Status::not_found("no such user")));
    }
}
