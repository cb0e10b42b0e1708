use std::time::Duration;

use testkit::otlp::OtlpCollector;
use testkit::process::Service;

use testkit::stack::{Stack, trace_id};

#[tokio::test]
async fn a_dead_collector_never_fails_a_request_and_signals_stop_cleanly() {
    let dead = testkit::DeadEndpoint::reserve();
    let mut stack = Stack::start(&dead.url()).await;

    let signup = stack.signup("dead-collector@example.com").await;
    assert_eq!(signup.status(), 201);
    assert_eq!(trace_id(&signup).len(), 32, "ids are still assigned");
    let login = stack.login("dead-collector@example.com").await;
    assert_eq!(login.status(), 200);
    let token = login.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(stack.me(&token).await.status(), 200);

    // SIGTERM, as Kubernetes sends it, and SIGINT, as Ctrl-C does: each process drains,
    // flushes and exits 0.
    use nix::sys::signal::Signal;
    for (service, signal) in [
        (&mut stack.gateway, Signal::SIGTERM),
        (&mut stack.auth, Signal::SIGTERM),
        (&mut stack.user, Signal::SIGINT),
    ] {
        let code = service.stop_with(signal).await;
        assert_eq!(
            code,
            Some(0),
            "{} exit code after {signal}; stderr: {:?}",
            service.name,
            service.stderr()
        );
        let logs = service.json_logs();
        assert!(
            logs.iter()
                .any(|l| l["msg"].as_str().is_some_and(|m| m.ends_with("stopped"))),
            "{}: no shutdown line in {logs:?}",
            service.name
        );
    }
}

#[tokio::test]
async fn a_bad_setting_prints_one_line_naming_it_and_exits_64() {
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let cases: [Case; 4] = [
        ("user", &[("GRPC_ADDR", "not-an-address")], "GRPC_ADDR"),
        ("auth", &[], "JWT_SECRET"),
        (
            "gateway",
            &[("OTEL_TRACES_SAMPLER", "sometimes")],
            "OTEL_TRACES_SAMPLER",
        ),
        ("gateway", &[("AUTH_URL", "auth:50051")], "AUTH_URL"),
    ];
    for (binary, env, variable) in cases {
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let mut service = Service::spawn(binary, &env);
        assert_eq!(
            service.wait().await,
            Some(64),
            "{binary} with bad {variable}"
        );
        // Give the reader task a moment to drain the closed pipe.
        let stderr = testkit::eventually("stderr line", std::time::Duration::from_secs(5), || {
            let lines = service.stderr();
            (!lines.is_empty()).then_some(lines)
        })
        .await;
        assert_eq!(stderr.len(), 1, "{binary}: one line, got {stderr:?}");
        assert!(stderr[0].contains(variable), "{binary}: {stderr:?}");
    }
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_and_flushes_its_spans() {
    let collector = OtlpCollector::start().await;
    let mut stack = Stack::start_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        // Nothing is exported on a schedule within the test: spans arrive only by the final flush.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000".to_owned()),
        // A slow login (bcrypt at cost 13) keeps the request in flight while SIGTERM arrives.
        ("BCRYPT_COST", "13".to_owned()),
    ])
    .await;
    assert_eq!(stack.signup("drain@example.com").await.status(), 201);

    let http = stack.http.clone();
    let url = format!("{}/api/v1/login", stack.gateway_url);
    let login = tokio::spawn(async move {
        http.post(url)
            .json(&serde_json::json!({"email": "drain@example.com", "password": testkit::stack::PASSWORD}))
            .send()
            .await
    });
    // In flight for sure: auth has started the Login call (and bcrypt takes a while).
    let started = r#"grpc_server_started_total{grpc_method="Login",grpc_service="auth.v1.AuthService",grpc_type="unary"} 1"#;
    testkit::eventually_async(
        "the login reaching auth",
        Duration::from_secs(20),
        || async {
            let body = stack.metrics(&stack.auth_metrics).await;
            body.contains(started).then_some(())
        },
    )
    .await;

    let code = stack.gateway.terminate().await;
    let response = login
        .await
        .unwrap()
        .expect("the in-flight request is answered, not cut off");
    assert_eq!(response.status(), 200);
    let trace_id = trace_id(&response);
    assert_eq!(
        code,
        Some(0),
        "gateway exit code; stderr: {:?}",
        stack.gateway.stderr()
    );

    // The gateway's spans of that request were flushed on the way out.
    let spans = collector.trace(&trace_id);
    assert!(
        spans
            .iter()
            .any(|s| s.service == "gateway" && s.name == "POST /api/v1/login"),
        "the gateway flushed its spans at shutdown: {spans:#?}"
    );
}

/// Runs `binary --health-check` with `env` and returns its exit code and stderr.
async fn health_check(binary: &str, env: &[(&'static str, String)]) -> (Option<i32>, Vec<String>) {
    let mut probe = Service::spawn_with_args(binary, &["--health-check"], env);
    let code = probe.wait().await;
    (code, probe.stderr())
}

#[tokio::test]
async fn each_binary_probes_its_running_copy_for_container_healthchecks() {
    let mut stack = Stack::start(&testkit::DeadEndpoint::reserve().url()).await;
    let gateway_addr = stack.gateway_url.trim_start_matches("http://").to_owned();
    let gateway_env = [("HTTP_ADDR", gateway_addr)];
    let auth_env = [
        ("HEALTH_ADDR", stack.auth_health.clone()),
        ("JWT_SECRET", testkit::stack::JWT_SECRET.to_owned()),
    ];
    let user_env = [("HEALTH_ADDR", stack.user_health.clone())];

    for (binary, env) in [
        ("gateway", &gateway_env[..]),
        ("auth", &auth_env[..]),
        ("user", &user_env[..]),
    ] {
        let (code, stderr) = health_check(binary, env).await;
        assert_eq!(code, Some(0), "{binary} --health-check: {stderr:?}");
        assert!(
            stderr.is_empty(),
            "{binary}: a healthy probe is silent: {stderr:?}"
        );
    }

    // The stack runs as deployed: mutual TLS on both gRPC servers, nothing left in plain text.
    for service in [&stack.auth, &stack.user] {
        let logs = service.json_logs();
        let listening = logs
            .iter()
            .find(|l| l["msg"] == "grpc server listening")
            .unwrap();
        assert_eq!(listening["tls"], true, "{}: {listening}", service.name);
        assert!(
            !logs.iter().any(|l| l["msg"]
                .as_str()
                .is_some_and(|m| m.contains("not authenticated"))),
            "{}",
            service.name
        );
    }

    // user gone: its probe fails with a reason, and the gateway's (its /readyz) fails too.
    assert_eq!(stack.user.terminate().await, Some(0));
    for (binary, env, reason) in [
        ("user", &user_env[..], "cannot connect"),
        ("gateway", &gateway_env[..], "503"),
    ] {
        let (code, stderr) = health_check(binary, env).await;
        assert_eq!(code, Some(1), "{binary} --health-check with user down");
        assert_eq!(stderr.len(), 1, "{binary}: one line: {stderr:?}");
        assert!(
            stderr[0].starts_with(&format!("{binary}: unhealthy: ")) && stderr[0].contains(reason),
            "{binary}: {stderr:?}"
        );
    }

    // A bad setting is still a usage error, not "unhealthy".
    let (code, _) = health_check("auth", &[("HEALTH_ADDR", stack.auth_health.clone())]).await;
    assert_eq!(code, Some(64), "auth --health-check without JWT_SECRET");
}
