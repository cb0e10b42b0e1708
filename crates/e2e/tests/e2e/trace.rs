use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use testkit::otlp::{CollectedSpan, OtlpCollector};

use testkit::stack::{JWT_SECRET, PASSWORD, Stack, trace_id};

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const INTERNAL: i32 = 1;

/// The one span in `spans` matching `service`, `kind` and `name` whose parent is `parent`.
fn child<'a>(
    spans: &'a [CollectedSpan],
    parent: &CollectedSpan,
    service: &str,
    kind: i32,
    name: &str,
) -> &'a CollectedSpan {
    let matches: Vec<&CollectedSpan> = spans
        .iter()
        .filter(|s| {
            s.service == service
                && s.kind == kind
                && s.name == name
                && s.parent_span_id == parent.span_id
        })
        .collect();
    assert_eq!(
        matches.len(),
        1,
        "expected one {service} span {name:?} (kind {kind}) under {:?} ({}); trace: {spans:#?}",
        parent.name,
        parent.service
    );
    matches[0]
}

/// The root span of a trace: the gateway's server span, with no parent.
fn root<'a>(spans: &'a [CollectedSpan], name: &str) -> &'a CollectedSpan {
    let roots: Vec<&CollectedSpan> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1, "one root per trace: {spans:#?}");
    let root = roots[0];
    assert_eq!(
        (root.service.as_str(), root.kind, root.name.as_str()),
        ("gateway", SERVER, name),
        "{root:#?}"
    );
    root
}

async fn wait_for_trace(
    collector: &OtlpCollector,
    trace_id: &str,
    expected_spans: usize,
) -> Vec<CollectedSpan> {
    testkit::eventually(
        &format!("{expected_spans} spans of trace {trace_id}"),
        Duration::from_secs(20),
        || {
            let spans = collector.trace(trace_id);
            (spans.len() >= expected_spans).then_some(spans)
        },
    )
    .await
}

/// Each service logged at least one line with this trace's id, and every such line's span id
/// names a span of that service in the trace.
async fn assert_logs_correlate(stack: &Stack, trace_id: &str, spans: &[CollectedSpan]) {
    for service in [&stack.gateway, &stack.auth, &stack.user] {
        // Lines are written in batches and pass a pipe: wait for them rather than race them.
        let lines = testkit::eventually(
            &format!("{} log lines of {trace_id}", service.name),
            Duration::from_secs(10),
            || {
                let lines: Vec<Value> = service
                    .json_logs()
                    .into_iter()
                    .filter(|l| l["trace_id"] == trace_id)
                    .collect();
                (!lines.is_empty()).then_some(lines)
            },
        )
        .await;
        for line in &lines {
            for key in ["ts", "level", "msg"] {
                assert!(
                    line[key].is_string(),
                    "{}: {key} missing in {line}",
                    service.name
                );
            }
            assert_eq!(line["service"], service.name.as_str());
            let span_id = line["span_id"].as_str().expect("span_id beside trace_id");
            assert!(
                spans
                    .iter()
                    .any(|s| s.span_id == span_id && s.service == service.name),
                "{}: log line names span {span_id}, which is not one of its spans in the trace: {line}",
                service.name
            );
        }
    }
}

#[tokio::test]
async fn one_request_is_one_trace_across_three_processes_with_matching_logs_and_metrics() {
    let collector = OtlpCollector::start().await;
    let stack = Stack::start(&collector.endpoint()).await;

    // Arrange/act: sign up, log in, read the profile.
    let signup = stack.signup("e2e@example.com").await;
    assert_eq!(signup.status(), 201);
    let signup_trace = trace_id(&signup);
    let user: Value = signup.json().await.unwrap();

    let login = stack.login("e2e@example.com").await;
    assert_eq!(login.status(), 200);
    let login_trace = trace_id(&login);
    let token = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let me = stack.me(&token).await;
    assert_eq!(me.status(), 200);
    let me_trace = trace_id(&me);
    assert_eq!(me.json::<Value>().await.unwrap()["id"], user["id"]);

    // Signup: gateway HTTP -> gateway client -> auth server -> (bcrypt, auth client -> user server -> db).
    let spans = wait_for_trace(&collector, &signup_trace, 7).await;
    let http = root(&spans, "POST /api/v1/signup");
    assert_eq!(http.attr("http.request.method"), Some("POST"));
    assert_eq!(http.attr("http.route"), Some("/api/v1/signup"));
    assert_eq!(http.attr("http.response.status_code"), Some("201"));
    assert_eq!(http.attr("network.protocol.version"), Some("1.1"));
    let call = child(
        &spans,
        http,
        "gateway",
        CLIENT,
        "auth.v1.AuthService/Signup",
    );
    assert_eq!(call.attr("rpc.system"), Some("grpc"));
    let auth = child(&spans, call, "auth", SERVER, "auth.v1.AuthService/Signup");
    assert_eq!(auth.attr("rpc.service"), Some("auth.v1.AuthService"));
    assert_eq!(auth.attr("rpc.method"), Some("Signup"));
    assert_eq!(auth.attr("rpc.grpc.status_code"), Some("0"));
    child(&spans, auth, "auth", INTERNAL, "bcrypt.hash");
    let create = child(
        &spans,
        auth,
        "auth",
        CLIENT,
        "user.v1.UserService/CreateUser",
    );
    let user_server = child(
        &spans,
        create,
        "user",
        SERVER,
        "user.v1.UserService/CreateUser",
    );
    let insert = child(&spans, user_server, "user", CLIENT, "INSERT users");
    assert_eq!(insert.attr("db.operation.name"), Some("INSERT"));
    assert_eq!(insert.attr("db.collection.name"), Some("users"));
    assert!(
        matches!(insert.attr("db.system"), Some("postgresql" | "sqlite")),
        "{insert:#?}"
    );
    for span in &spans {
        assert_eq!(
            span.resource.get("service.version").map(String::as_str),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            span.resource
                .get("deployment.environment")
                .map(String::as_str),
            Some("e2e")
        );
    }
    assert_logs_correlate(&stack, &signup_trace, &spans).await;

    // Login: the same shape, with the credential lookup and bcrypt.verify.
    let spans = wait_for_trace(&collector, &login_trace, 7).await;
    let http = root(&spans, "POST /api/v1/login");
    let call = child(&spans, http, "gateway", CLIENT, "auth.v1.AuthService/Login");
    let auth = child(&spans, call, "auth", SERVER, "auth.v1.AuthService/Login");
    child(&spans, auth, "auth", INTERNAL, "bcrypt.verify");
    let lookup = child(
        &spans,
        auth,
        "auth",
        CLIENT,
        "user.v1.UserService/GetCredential",
    );
    let user_server = child(
        &spans,
        lookup,
        "user",
        SERVER,
        "user.v1.UserService/GetCredential",
    );
    child(&spans, user_server, "user", CLIENT, "SELECT users");
    assert_logs_correlate(&stack, &login_trace, &spans).await;

    // Me: the gateway calls auth (token) and then user (profile), both under its one root.
    let spans = wait_for_trace(&collector, &me_trace, 6).await;
    let http = root(&spans, "GET /api/v1/users/me");
    let validate = child(
        &spans,
        http,
        "gateway",
        CLIENT,
        "auth.v1.AuthService/ValidateToken",
    );
    child(
        &spans,
        validate,
        "auth",
        SERVER,
        "auth.v1.AuthService/ValidateToken",
    );
    let get = child(
        &spans,
        http,
        "gateway",
        CLIENT,
        "user.v1.UserService/GetUser",
    );
    let user_server = child(&spans, get, "user", SERVER, "user.v1.UserService/GetUser");
    child(&spans, user_server, "user", CLIENT, "SELECT users");
    assert_logs_correlate(&stack, &me_trace, &spans).await;

    // Exactly one trace per request, and nothing else traced (probes and start-up are not).
    tokio::time::sleep(Duration::from_millis(500)).await; // let any straggler batch arrive
    let traces: BTreeSet<String> = collector.spans().into_iter().map(|s| s.trace_id).collect();
    let expected: BTreeSet<String> = [signup_trace, login_trace, me_trace].into_iter().collect();
    assert_eq!(traces, expected, "one trace per request and no others");

    // Metrics: each process counted its part with the right labels.
    let gateway = stack
        .metrics(&format!("{}/metrics", stack.gateway_url))
        .await;
    for series in [
        r#"http_requests_total{endpoint="/api/v1/signup",method="POST",status="201"} 1"#,
        r#"http_requests_total{endpoint="/api/v1/login",method="POST",status="200"} 1"#,
        r#"http_requests_total{endpoint="/api/v1/users/me",method="GET",status="200"} 1"#,
        r#"grpc_client_handled_total{grpc_code="OK",grpc_method="Signup",grpc_service="auth.v1.AuthService",grpc_type="unary"} 1"#,
    ] {
        assert!(
            gateway.contains(series),
            "gateway lacks {series}:\n{gateway}"
        );
    }
    let auth = stack.metrics(&stack.auth_metrics).await;
    for series in [
        r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Signup",grpc_service="auth.v1.AuthService",grpc_type="unary"} 1"#,
        r#"grpc_server_started_total{grpc_method="Login",grpc_service="auth.v1.AuthService",grpc_type="unary"} 1"#,
        r#"grpc_client_handled_total{grpc_code="OK",grpc_method="CreateUser",grpc_service="user.v1.UserService",grpc_type="unary"} 1"#,
    ] {
        assert!(auth.contains(series), "auth lacks {series}:\n{auth}");
    }
    assert!(
        auth.contains("grpc_server_handling_seconds_bucket{"),
        "{auth}"
    );
    let user_metrics = stack.metrics(&stack.user_metrics).await;
    for series in [
        r#"grpc_server_handled_total{grpc_code="OK",grpc_method="CreateUser",grpc_service="user.v1.UserService",grpc_type="unary"} 1"#,
        r#"grpc_server_handled_total{grpc_code="OK",grpc_method="GetUser",grpc_service="user.v1.UserService",grpc_type="unary"} 1"#,
    ] {
        assert!(
            user_metrics.contains(series),
            "user lacks {series}:\n{user_metrics}"
        );
    }
    #[cfg(target_os = "linux")] // the prometheus crate's process collector is Linux-only
    assert!(
        user_metrics.contains("process_cpu_seconds_total"),
        "{user_metrics}"
    );

    // Secrets: no password, hash, token or signing key in any log line or span.
    let output = stack.all_output().join("\n");
    let spans = collector.raw_requests();
    for (what, secret) in [
        ("password", PASSWORD),
        ("token", token.as_str()),
        ("JWT secret", JWT_SECRET),
        ("bcrypt hash", "$2b$"),
    ] {
        assert!(!output.contains(secret), "the {what} appears in a log line");
        assert!(!spans.contains(secret), "the {what} appears in a span");
    }
}

/// `OTEL_SDK_DISABLED=true` turns tracing off and nothing else: every answer is the same, only
/// without trace ids (no `traceresponse`, `trace_id: null` in error bodies, none in log lines),
/// and nothing is sent to the collector even when one is configured.
#[tokio::test]
async fn with_the_sdk_disabled_the_system_works_the_same_without_trace_ids() {
    let collector = OtlpCollector::start().await;
    let mut env = Stack::exporting_to(&collector.endpoint());
    env.push(("OTEL_SDK_DISABLED", "true".to_owned()));
    let stack = Stack::start_with(&env).await;

    assert_eq!(stack.signup("disabled@example.com").await.status(), 201);
    let login = stack.login("disabled@example.com").await;
    assert_eq!(login.status(), 200);
    assert!(login.headers().get("traceresponse").is_none());
    assert!(login.headers().get("x-trace-id").is_none());
    let token: Value = login.json().await.unwrap();
    let me = stack.me(token["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200);
    assert_eq!(
        me.json::<Value>().await.unwrap()["email"],
        "disabled@example.com"
    );
    let refused = stack.me("not-a-token").await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "invalid_token", "{body}");
    assert!(body["trace_id"].is_null(), "{body}");

    // Lines are written in batches: wait for the last request's before reading them all.
    stack
        .gateway
        .wait_for_log("the line for the 401", |line| {
            line["http.response.status_code"] == 401
        })
        .await;
    for service in [&stack.gateway, &stack.auth, &stack.user] {
        let logs = service.json_logs();
        assert!(logs.len() > 2, "{}: {logs:?}", service.name);
        assert!(
            logs.iter().all(|line| line.get("trace_id").is_none()),
            "{}: a trace id with tracing off",
            service.name
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(collector.spans().is_empty(), "nothing exported");
}
