//! The layers, server and client, against tower services standing in for tonic.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower::{Layer as _, Service as _};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::*;
use crate::metrics::GrpcMetrics;

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
    let mut client = ClientLayer::new(metrics, &"http://user:50052".parse().unwrap()).layer(inner);

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
    let client =
        ClientLayer::new(client_metrics, &"http://user:50052".parse().unwrap()).layer(downstream);
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
    let mut client = ClientLayer::new(metrics, &"http://auth:50051".parse().unwrap()).layer(inner);
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
    let mut client = ClientLayer::new(metrics, &"http://user:50052".parse().unwrap()).layer(inner);
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
