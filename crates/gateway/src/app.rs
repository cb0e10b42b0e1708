//! Wiring: the actix-web server with tracing, request logs, metrics and the routes.

use std::net::{SocketAddr, TcpListener};

use actix_web::http::{Method, StatusCode};
use actix_web::{App, HttpServer, web};
use telemetry::http::{HttpSpan, RequestTelemetry};
use tracing_actix_web::TracingLogger;

use service_runtime::lifecycle::{Service, ShutdownSignal};

use crate::clients::Endpoints;
use crate::config::Config;
use crate::error::{ApiError, json_error};
use crate::routes::{api, health, meta};

/// A gateway with its listener bound, ready to [`run`](Self::run).
pub struct Application {
    server: actix_web::dev::Server,
    addr: SocketAddr,
    logger: slog::Logger,
    limits: web::Data<crate::limits::Limits>,
    draining: web::Data<health::Draining>,
    shutdown_delay: std::time::Duration,
    ready_file: Option<service_runtime::lifecycle::ReadyFile>,
}

impl Application {
    /// Binds the listener (port 0 picks a free port) and builds the server.
    pub fn bind(
        config: Config,
        logger: slog::Logger,
        registry: prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let endpoints = Endpoints::new(
            &config.auth_url,
            &config.user_url,
            config.tls.as_ref(),
            &registry,
        )?;
        let limits = web::Data::new(crate::limits::Limits::new(config.limits));
        let draining = web::Data::new(health::Draining::default());
        let app_draining = draining.clone();
        let trusted_proxies = config.trusted_proxies.clone();
        let app_limits = limits.clone();
        let body_read_timeout = config.body_read_timeout;
        let prometheus =
            telemetry::http::prometheus_metrics(&registry).map_err(|e| anyhow::anyhow!(e))?;
        let listener = TcpListener::bind(config.http_addr)?;
        let addr = listener.local_addr()?;
        let max_body = config.max_body_bytes;
        let request_logger = logger.clone();
        let mut server = HttpServer::new(move || {
            let json = web::JsonConfig::default()
                .limit(max_body)
                .error_handler(|error, _request| json_error(error).into());
            // actix runs the last `wrap` first: the root span encloses everything, so even
            // `/metrics` (answered by the prometheus middleware itself) names its trace.
            App::new()
                // Per worker: its calls run on its own thread (see `Clients`).
                .app_data(web::Data::new(endpoints.connect()))
                .app_data(app_limits.clone())
                .app_data(app_draining.clone())
                .app_data(trusted_proxies.clone())
                .app_data(json)
                .wrap(actix_web::middleware::from_fn(move |request, next| {
                    body_deadline(request, next, body_read_timeout)
                }))
                .wrap(prometheus.clone())
                .wrap(RequestTelemetry::new(request_logger.clone()))
                .wrap(TracingLogger::<HttpSpan>::new())
                // Outermost: made-up methods are `_OTHER` before spans and metrics see them.
                .wrap(actix_web::middleware::from_fn(
                    telemetry::http::fold_unknown_methods,
                ))
                .service(resource("/", Method::GET, web::to(meta::index)))
                .service(resource("/healthz", Method::GET, web::to(health::healthz)))
                .service(resource("/readyz", Method::GET, web::to(health::readyz)))
                // actix-web-prom answers `GET /metrics` before routing; the resource is here so
                // that other methods get 405 with `Allow`, like every other path.
                .service(resource("/metrics", Method::GET, web::to(not_found)))
                .service(
                    web::scope("/api/v1")
                        .service(resource("/signup", Method::POST, web::to(api::signup)))
                        .service(resource("/login", Method::POST, web::to(api::login)))
                        .service(resource("/users/me", Method::GET, web::to(api::me)))
                        .service(resource(
                            "/openapi.json",
                            Method::GET,
                            web::to(meta::openapi),
                        )),
                )
                .default_service(web::to(not_found))
        })
        // Signals are ours to handle (see `run`), so tests and main shut down the same way.
        .disable_signals()
        .shutdown_timeout(30)
        .listen(listener)?;
        if config.workers > 0 {
            server = server.workers(config.workers);
        }
        Ok(Self {
            server: server.run(),
            addr,
            logger,
            limits,
            draining,
            shutdown_delay: config.shutdown_delay,
            ready_file: config.ready_file,
        })
    }

    /// The bound HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Service for Application {
    type Config = Config;

    async fn build(
        config: Config,
        logger: slog::Logger,
        registry: prometheus::Registry,
    ) -> anyhow::Result<Self> {
        Self::bind(config, logger, registry)
    }

    /// Serves until `shutdown` completes; then `/readyz` fails at once, requests are still served
    /// for the configured delay, and the listener closes and in-flight requests drain.
    async fn run(self, shutdown: ShutdownSignal) -> anyhow::Result<()> {
        slog::info!(self.logger, "gateway listening"; "http.addr" => %self.addr, "url" => format!("http://{}", self.addr));
        if let Some(ready) = &self.ready_file {
            // Bound already: connections queue until the server below accepts them.
            ready.write("gateway", &[("http", self.addr)])?;
        }
        // Keys whose limits have refilled are forgotten, so the tables hold one period's traffic.
        let limits = self.limits.clone();
        let forget = tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every.tick().await;
                limits.forget_idle();
            }
        });
        let handle = self.server.handle();
        let logger = self.logger.clone();
        let (draining, delay) = (self.draining.clone(), self.shutdown_delay);
        tokio::spawn(async move {
            shutdown.await;
            draining.start();
            if !delay.is_zero() {
                slog::info!(logger, "shutting down: unready, still serving"; "shutdown.delay_ms" => delay.as_millis() as u64);
                tokio::time::sleep(delay).await;
            }
            slog::info!(logger, "shutting down: draining in-flight requests");
            handle.stop(true).await;
        });
        let served = self.server.await;
        forget.abort();
        served?;
        Ok(())
    }
}

/// A resource answering `method` with `handler`; any other method gets a JSON 405 with the
/// `Allow` header RFC 9110 requires, not actix's empty one.
fn resource(path: &str, method: Method, handler: actix_web::Route) -> actix_web::Resource {
    let allow = method.clone();
    web::resource(path)
        .route(handler.method(method))
        .default_service(web::to(move |request: actix_web::HttpRequest| {
            let allow = allow.clone();
            async move { method_not_allowed(&request, &allow) }
        }))
}

fn method_not_allowed(request: &actix_web::HttpRequest, allow: &Method) -> actix_web::HttpResponse {
    use actix_web::ResponseError as _;
    let error = ApiError::client(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            telemetry::http::truncated_path(request.path())
        ),
    );
    let mut response = error.error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allow.as_str()) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

async fn not_found(request: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::client(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route for {} {}",
            request.method(),
            telemetry::http::truncated_path(request.path())
        ),
    ))
}

/// Middleware: the request body must arrive within `timeout`, or reading it fails with a
/// `TimedOut` error that the JSON extractor turns into 408 `request_timeout`. actix bounds the
/// time to receive the headers (5 s), not the body: without this, a client sending one byte a
/// second holds a worker's request open for as long as it likes.
async fn body_deadline(
    mut request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
    timeout: std::time::Duration,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::HttpMessage as _;
    use actix_web::dev::Payload;
    use actix_web::error::PayloadError;
    use futures::StreamExt as _;

    let body = request.take_payload();
    let deadline = Box::pin(tokio::time::sleep(timeout));
    let guarded = futures::stream::unfold(
        (body, deadline, false),
        |(mut body, mut deadline, expired)| async move {
            if expired {
                return None;
            }
            tokio::select! {
                chunk = body.next() => chunk.map(|chunk| (chunk, (body, deadline, false))),
                () = &mut deadline => {
                    let error = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request body not received in time",
                    );
                    Some((Err(PayloadError::Io(error)), (body, deadline, true)))
                }
            }
        },
    );
    request.set_payload(Payload::Stream {
        payload: Box::pin(guarded),
    });
    next.call(request).await
}
