//! actix-web pieces: the root span (semantic-convention names), W3C `traceresponse`, one log
//! line per request, and actix-web-prom metrics on the shared registry.
//!
//! Wrap order matters: `App::new().wrap(prometheus).wrap(RequestTelemetry::new(logger)).wrap(TracingLogger::<HttpSpan>::new())`.
//! actix applies the last `wrap` outermost, so [`RequestTelemetry`] runs *inside* the root span
//! that tracing-actix-web opens and sees its ids, and so does the `/metrics` endpoint that
//! actix-web-prom answers itself.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{Error, HttpMessage as _};
use opentelemetry::propagation::Extractor;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::logs::current_trace_ids;

use crate::traces::UNTRACED_PATHS;

/// W3C Trace Context Level 2 response header naming the trace that served the request.
pub const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");
/// The bare trace id, for humans copying it into Grafana's search box.
pub const X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");

/// Reads W3C headers from actix's header map (it is not `http::HeaderMap`).
struct ActixHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for ActixHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Root span builder for tracing-actix-web using current HTTP semantic-convention names
/// (`http.request.method`, `http.route`, `http.response.status_code`, `url.path`, ...), which
/// the crate's default builder predates.
pub struct HttpSpan;

/// The longest request path put in a span, a log line or an error message, in bytes.
pub const MAX_LOGGED_PATH_BYTES: usize = 256;

/// `path`, cut to [`MAX_LOGGED_PATH_BYTES`] (at a character boundary, marked with `…`): a 20 KB
/// path from a scanner must not become a 20 KB attribute, log line or response.
pub fn truncated_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= MAX_LOGGED_PATH_BYTES {
        return path.into();
    }
    let mut end = MAX_LOGGED_PATH_BYTES;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end]).into()
}

/// The proxies whose `X-Forwarded-For` is believed, as app data
/// (`App::new().app_data(TrustedProxies::new(...))`). Without it, or empty, the client is the
/// socket's peer and `X-Forwarded-For` is ignored: any client can write that header.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// Trusts the proxies in `networks` (single addresses are /32 or /128 networks).
    pub fn new(networks: Vec<ipnet::IpNet>) -> Self {
        Self(networks)
    }

    /// Parses a comma-separated list of addresses and CIDR networks; empty trusts none.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<ipnet::IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{item:?} is neither an IP address nor a CIDR network"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(&ip))
    }
}

/// The address of the client that sent `request`: the socket's peer, or, when the peer is a
/// trusted proxy, the nearest address in `X-Forwarded-For` that is not one of ours (read from
/// the right, since a client can prepend anything it likes).
pub fn client_ip(request: &actix_web::HttpRequest) -> Option<std::net::IpAddr> {
    let peer = request.peer_addr()?.ip();
    let Some(trusted) = request
        .app_data::<TrustedProxies>()
        .filter(|trusted| trusted.trusts(peer))
    else {
        return Some(peer);
    };
    let forwarded: Vec<std::net::IpAddr> = request
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|item| item.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .iter()
            .rev()
            .copied()
            .find(|ip| !trusted.trusts(*ip))
            .or_else(|| forwarded.first().copied())
            .unwrap_or(peer),
    )
}

/// The method a request really carried when [`fold_unknown_methods`] replaced it.
#[derive(Debug, Clone)]
pub struct OriginalMethod(pub String);

/// The methods of RFC 9110 and PATCH (RFC 5789); everything else is folded.
fn is_known_method(method: &actix_web::http::Method) -> bool {
    use actix_web::http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ]
    .contains(method)
}

/// Middleware (`App::wrap(actix_web::middleware::from_fn(fold_unknown_methods))`, outermost):
/// a method outside the standard set becomes `_OTHER`, as the HTTP semantic conventions ask,
/// before spans, logs and metrics see it. Without it, each made-up method a scanner sends mints
/// new metric series and span names. The original is kept in [`OriginalMethod`] (and on the
/// span as `http.request.method_original`).
pub async fn fold_unknown_methods(
    mut request: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if !is_known_method(request.method()) {
        let original = request.method().as_str().to_owned();
        request.extensions_mut().insert(OriginalMethod(original));
        request.head_mut().method =
            actix_web::http::Method::from_bytes(b"_OTHER").expect("a valid method token");
    }
    next.call(request).await
}

impl RootSpanBuilder for HttpSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        // No subscriber (`OTEL_SDK_DISABLED=true`): nothing would record the span or its
        // attributes, so none of them is worked out.
        if tracing::level_filters::LevelFilter::current()
            == tracing::level_filters::LevelFilter::OFF
        {
            return Span::none();
        }
        let path = truncated_path(request.path());
        let method = request.method().as_str();
        // The route template, never the raw path: bounded cardinality, no ids in span names.
        let route = request.match_pattern();
        let name = match &route {
            Some(route) => format!("{method} {route}"),
            None => method.to_owned(),
        };
        let connection = request.connection_info();
        let user_agent = request
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let client = client_ip(request.request()).map(|ip| ip.to_string());
        let span = tracing::info_span!(
            "http.server",
            otel.name = name.as_str(),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = method,
            http.request.method_original = tracing::field::Empty,
            http.route = route.as_deref().unwrap_or(""),
            http.response.status_code = tracing::field::Empty,
            url.path = path.as_ref(),
            url.scheme = connection.scheme(),
            server.address = connection.host(),
            client.address = client.as_deref().unwrap_or(""),
            user_agent.original = user_agent,
            network.protocol.version = protocol_version(request.version()),
            error.type = tracing::field::Empty,
        );
        drop(connection);
        if let Some(OriginalMethod(original)) = request.extensions().get::<OriginalMethod>() {
            // Bounded like the path: the method token itself can be long.
            span.record(
                "http.request.method_original",
                truncated_path(original).as_ref(),
            );
        }
        // Honour the caller's traceparent; a malformed one extracts as empty: a new trace starts.
        let parent = crate::propagation::extract(&ActixHeaders(request.headers()));
        let _ = span.set_parent(parent);
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let status = match outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("http.response.status_code", status.as_u16());
        // Per the HTTP semantic conventions, a 4xx is the client's fault, not the server span's.
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", status.as_str());
        }
    }
}

/// The semantic-convention form of the HTTP version: `1.1`, `2`, not `HTTP/1.1`.
fn protocol_version(version: actix_web::http::Version) -> &'static str {
    use actix_web::http::Version;
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Put on a response (its extensions) that the system gave by design under pressure: load
/// shed (`overloaded`) or a rate limit hit (`rate_limited`). Nobody has to act on one, and any
/// client can cause thousands, so they are not logged one line each: [`RequestTelemetry`]
/// counts them and writes one WARN line per code per [`REFUSAL_LOG_INTERVAL`], with the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub &'static str);

/// How often at most one code's refusals are logged (the first at once, then the count since).
pub const REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Refusals counted per code since each code's last line, shared by every worker.
#[derive(Debug, Default)]
struct RefusalLog {
    /// code -> (refusals since the last line, when that line was written).
    counts: std::sync::Mutex<std::collections::HashMap<&'static str, (u64, Option<Instant>)>>,
}

impl RefusalLog {
    /// Counts one refusal of `code`; the count to log now, if a line is due.
    fn count(&self, code: &'static str, now: Instant) -> Option<u64> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (count, last) = counts.entry(code).or_insert((0, None));
        *count += 1;
        let due = last.is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_INTERVAL);
        due.then(|| {
            *last = Some(now);
            std::mem::take(count)
        })
    }
}

/// Middleware adding `traceresponse`/`x-trace-id` headers and one JSON log line per request
/// (refusals by design aside: see [`Refusal`]).
#[derive(Clone)]
pub struct RequestTelemetry {
    logger: slog::Logger,
    refusals: std::sync::Arc<RefusalLog>,
}

impl RequestTelemetry {
    /// Logs through `logger`.
    pub fn new(logger: slog::Logger) -> Self {
        Self {
            logger,
            refusals: std::sync::Arc::default(),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestTelemetry
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestTelemetryService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestTelemetryService {
            inner: Rc::new(service),
            logger: self.logger.clone(),
            refusals: self.refusals.clone(),
        }))
    }
}

/// The service produced by [`RequestTelemetry`].
pub struct RequestTelemetryService<S> {
    inner: Rc<S>,
    logger: slog::Logger,
    refusals: std::sync::Arc<RefusalLog>,
}

impl<S, B> Service<ServiceRequest> for RequestTelemetryService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    actix_web::dev::forward_ready!(inner);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let inner = Rc::clone(&self.inner);
        let logger = self.logger.clone();
        let refusals = self.refusals.clone();
        Box::pin(async move {
            let started = Instant::now();
            let mut response = inner.call(request).await?;
            if let Some(ids) = current_trace_ids() {
                let headers = response.headers_mut();
                if let Ok(value) = HeaderValue::try_from(ids.traceparent()) {
                    headers.insert(TRACERESPONSE, value);
                }
                if let Ok(value) = HeaderValue::try_from(ids.trace_id_hex()) {
                    headers.insert(X_TRACE_ID, value);
                }
            }
            let status = response.status().as_u16();
            let refusal = response.response().extensions().get::<Refusal>().copied();
            if let Some(Refusal(code)) = refusal {
                if let Some(count) = refusals.count(code, Instant::now()) {
                    slog::warn!(logger, "requests refused by design";
                        "code" => code,
                        "http.response.status_code" => status,
                        "count" => count,
                        "interval_s" => REFUSAL_LOG_INTERVAL.as_secs(),
                    );
                }
                return Ok(response);
            }
            let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            // A server fault's cause goes to the log (never to the client, whose body is generic).
            let fault = response
                .response()
                .error()
                .filter(|_| status >= 500)
                .map(ToString::to_string);
            // Read back from the request the response carries: nothing is copied up front.
            let request = response.request();
            let path = truncated_path(request.path());
            if fault.is_none() && UNTRACED_PATHS.contains(&path.as_ref()) {
                return Ok(response);
            }
            let method = request.method().as_str();
            let route = request.match_pattern();
            let route = route.as_deref().unwrap_or("unmatched");
            if let Some(cause) = fault {
                slog::error!(logger, "http request failed";
                    "http.request.method" => method,
                    "http.route" => route,
                    "url.path" => path.as_ref(),
                    "http.response.status_code" => status,
                    "duration_ms" => duration_ms,
                    "error" => cause,
                );
            } else {
                info_or_error!(logger, status >= 500, "http request handled";
                    "http.request.method" => method,
                    "http.route" => route,
                    "url.path" => path.as_ref(),
                    "http.response.status_code" => status,
                    "duration_ms" => duration_ms,
                );
            }
            Ok(response)
        })
    }
}

/// actix-web-prom on the shared registry: `http_requests_total` and
/// `http_requests_duration_seconds` by `method`, route pattern (`endpoint`) and `status`,
/// served at `/metrics`. Unmatched paths are folded into one `UNKNOWN` series so that a scanner
/// probing random URLs cannot explode the series count.
pub fn prometheus_metrics(
    registry: &prometheus::Registry,
) -> Result<actix_web_prom::PrometheusMetrics, Box<dyn std::error::Error + Send + Sync>> {
    actix_web_prom::PrometheusMetricsBuilder::new("")
        .registry(registry.clone())
        .endpoint("/metrics")
        .mask_unmatched_patterns("UNKNOWN")
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request(peer: &str, forwarded: Option<&str>, trusted: &str) -> actix_web::HttpRequest {
        let mut request = TestRequest::default()
            .peer_addr(format!("{peer}:40000").parse().unwrap())
            .app_data(TrustedProxies::parse(trusted).unwrap());
        if let Some(forwarded) = forwarded {
            request = request.insert_header(("x-forwarded-for", forwarded));
        }
        request.to_http_request()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        // Anyone can write the header: from an untrusted peer it is ignored.
        assert_eq!(
            client_ip(&request("203.0.113.9", Some("1.2.3.4"), "")),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(&request("203.0.113.9", Some("1.2.3.4"), "10.0.0.0/8")),
            ip("203.0.113.9")
        );
        // From our proxy: the nearest address that is not ours, read from the right, so a
        // client prepending a fake address gains nothing.
        assert_eq!(
            client_ip(&request(
                "10.0.0.2",
                Some("6.6.6.6, 198.51.100.7"),
                "10.0.0.0/8"
            )),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(&request(
                "10.0.0.2",
                Some("198.51.100.7, 10.0.0.3"),
                "10.0.0.0/8"
            )),
            ip("198.51.100.7"),
            "a chain of our own proxies is skipped"
        );
        assert_eq!(
            client_ip(&request("10.0.0.2", Some("garbage"), "10.0.0.0/8")),
            ip("10.0.0.2"),
            "nothing usable: the proxy itself"
        );
        assert!(TrustedProxies::parse("10.0.0.1, fd00::/8").is_ok());
        assert!(TrustedProxies::parse("proxy.local").is_err());
    }

    #[test]
    fn long_paths_are_cut_at_a_character_boundary() {
        assert_eq!(truncated_path("/api/v1/users/me"), "/api/v1/users/me");
        let long = format!("/{}", "é".repeat(20_000));
        let cut = truncated_path(&long);
        assert!(
            cut.len() <= MAX_LOGGED_PATH_BYTES + '…'.len_utf8(),
            "{}",
            cut.len()
        );
        assert!(cut.ends_with('…'));
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_per_interval_with_their_count() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        // The first at once; then nothing within the interval, per code.
        assert_eq!(log.count("overloaded", t0), Some(1));
        for i in 1..=999 {
            let at = t0 + REFUSAL_LOG_INTERVAL * i / 1000;
            assert_eq!(log.count("overloaded", at), None);
        }
        assert_eq!(log.count("rate_limited", t0), Some(1));
        // Then one line with everything since, and the count starts again.
        assert_eq!(
            log.count("overloaded", t0 + REFUSAL_LOG_INTERVAL),
            Some(1000)
        );
        assert_eq!(
            log.count("overloaded", t0 + REFUSAL_LOG_INTERVAL * 2),
            Some(1)
        );
    }
}
