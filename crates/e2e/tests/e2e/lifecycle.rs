use testkit::process::Service;

use testkit::stack::{Stack, trace_id};

/// An address no one listens on.
fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn a_dead_collector_never_fails_a_request_and_sigterm_drains_cleanly() {
    let mut stack = Stack::start(&dead_endpoint()).await;

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

    // SIGTERM, as Kubernetes sends it: each process drains, flushes and exits 0.
    for service in [&mut stack.gateway, &mut stack.auth, &mut stack.user] {
        let code = service.terminate().await;
        assert_eq!(
            code,
            Some(0),
            "{} exit code; stderr: {:?}",
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
