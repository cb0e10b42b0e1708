//! A gRPC service's server start-up and its clients' channels.
//!
//! [`GrpcServer`] binds the gRPC port, the `/metrics` port and an optional plain-text health
//! port up front (so port 0 works and the addresses are known before serving), then
//! [`GrpcServer::serve`] runs the service with the telemetry layers, gRPC health, mutual TLS and
//! the caller policy, and drains on shutdown. [`endpoint`], [`traced`] and [`channel`] build
//! the channels a service calls others over.

use std::future::Future;

use telemetry::grpc::{ClientLayer, ClientService, DEFAULT_CALL_TIMEOUT, ServerLayer};
use telemetry::metrics::GrpcMetrics;
use tower::{Layer as _, Service};

/// An error a gRPC service answers a call with.
pub trait CallError: std::fmt::Display + Into<tonic::Status> {
    /// Whether the fault is the service's own (logged at ERROR with its cause) rather than the
    /// caller's.
    fn is_server_fault(&self) -> bool;
}

/// The answer to a call: `result`'s response, or its error as a status. A fault of the
/// service's own is logged at ERROR with its cause first (inside the call's span, so the line
/// carries the trace id); the caller sees only the status, whose message is generic.
pub fn answer<T, E: CallError>(
    logger: &slog::Logger,
    result: Result<T, E>,
) -> Result<tonic::Response<T>, tonic::Status> {
    result.map(tonic::Response::new).map_err(|error| {
        if error.is_server_fault() {
            slog::error!(logger, "request failed"; "error" => %error);
        }
        error.into()
    })
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

/// A gRPC service's server: its listeners bound before serving (so port 0 works and the
/// addresses are known up front), and what serving them needs.
#[derive(Debug)]
pub struct GrpcServer {
    /// The process's name (`"user"`), for the ready file.
    name: &'static str,
    grpc: tokio::net::TcpListener,
    metrics: tokio::net::TcpListener,
    /// A plain-text listener serving only gRPC health, for probes that cannot do mutual TLS.
    health: Option<tokio::net::TcpListener>,
    grpc_addr: std::net::SocketAddr,
    metrics_addr: std::net::SocketAddr,
    health_addr: Option<std::net::SocketAddr>,
    /// The gRPC health service and its reporter, made at bind time so that a service can report
    /// on its own dependencies (see [`GrpcServer::health`]).
    health_reporter: tonic_health::server::HealthReporter,
    health_service:
        tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    /// Mutual TLS and who may call what, when the service speaks it.
    tls: Option<(crate::tls::InternalTls, crate::tls::CallerPolicy)>,
    ready_file: Option<crate::lifecycle::ReadyFile>,
    registry: prometheus::Registry,
    logger: slog::Logger,
}

impl GrpcServer {
    /// Binds `serving`'s addresses for service `name` (`"user"`), whose callers `policy` names
    /// (enforced with mutual TLS); metrics go to `registry`, logs to `logger`.
    pub async fn bind(
        serving: &crate::config::GrpcServing,
        name: &'static str,
        policy: crate::tls::CallerPolicy,
        registry: prometheus::Registry,
        logger: slog::Logger,
    ) -> std::io::Result<Self> {
        let grpc = tokio::net::TcpListener::bind(serving.grpc_addr).await?;
        let metrics = tokio::net::TcpListener::bind(serving.metrics_addr).await?;
        let health = match serving.health_addr {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        let health_reporter = tonic_health::server::HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health_reporter.clone()),
        );
        Ok(Self {
            name,
            grpc_addr: grpc.local_addr()?,
            metrics_addr: metrics.local_addr()?,
            health_addr: health.as_ref().map(|l| l.local_addr()).transpose()?,
            grpc,
            metrics,
            health,
            health_reporter,
            health_service,
            tls: serving.tls.clone().map(|tls| (tls, policy)),
            ready_file: serving.ready_file.clone(),
            registry,
            logger,
        })
    }

    /// The bound health-only address, if any.
    pub fn health_addr(&self) -> Option<std::net::SocketAddr> {
        self.health_addr
    }

    /// The health reporter of the server [`GrpcServer::serve`] will run: a service reports
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
    /// `/metrics` until `shutdown` completes. With mutual TLS the gRPC port enforces the caller
    /// policy (see [`crate::tls`]); the health-only port, if bound, stays plain text for probes.
    ///
    /// On shutdown the health status flips to NOT_SERVING, the server stops accepting and waits
    /// for in-flight calls to finish (what Kubernetes expects after SIGTERM), then the metrics
    /// listener stops too.
    pub async fn serve<S>(
        self,
        service: S,
        methods: &[String],
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
        let (tls, registry, logger) = (self.tls, self.registry, self.logger);
        let metrics = GrpcMetrics::register(&registry, telemetry::metrics::Side::Server)?;
        let (health_reporter, health_service) = (self.health_reporter, self.health_service);
        health_reporter.set_serving::<S>().await;

        let stop_metrics = tokio_util::sync::CancellationToken::new();
        let metrics_server = tokio::spawn(serve_metrics(
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
        if let Some(ready) = &self.ready_file {
            let mut addresses = vec![("grpc", self.grpc_addr), ("metrics", self.metrics_addr)];
            addresses.extend(self.health_addr.map(|addr| ("health", addr)));
            // The listeners are bound: connections queue until the accept loop below runs.
            ready.write(self.name, &addresses)?;
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

/// A gRPC service serving in the background of this process (the test suites' way of
/// running one), stopped when dropped.
#[derive(Debug)]
pub struct Running {
    /// The bound gRPC address.
    pub grpc_addr: std::net::SocketAddr,
    /// The bound `/metrics` address.
    pub metrics_addr: std::net::SocketAddr,
    /// The bound plain-text health address, when the settings asked for one.
    pub health_addr: Option<std::net::SocketAddr>,
    _serving: crate::lifecycle::Background,
}

impl Running {
    /// Serves the built `service`, whose server is `server(&service)`, in the background.
    pub fn start<S>(service: S, server: impl FnOnce(&S) -> &GrpcServer) -> Self
    where
        S: crate::lifecycle::Service + Send + 'static,
    {
        let bound = server(&service);
        let (grpc_addr, metrics_addr, health_addr) =
            (bound.grpc_addr, bound.metrics_addr, bound.health_addr);
        Self {
            grpc_addr,
            metrics_addr,
            health_addr,
            _serving: crate::lifecycle::Background::spawn(service),
        }
    }

    /// `http://<grpc_addr>`, for a caller's settings.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }
}

/// Why [`GrpcServer::serve`] stopped with an error.
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

/// Serves `GET /metrics` from `registry` on `listener` until `shutdown` completes.
///
/// The gRPC services use this small HTTP/1.1 listener because Prometheus cannot scrape over
/// HTTP/2-only gRPC ports.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: prometheus::Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let body = telemetry::metrics::render(&registry);
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
