//! `make load`'s generator against the real stack: every answer as expected, errors visible in
//! the gateway's metrics, a summary a person can act on.

use testkit::process::Service;
use testkit::stack::Stack;

#[tokio::test]
async fn the_load_generator_drives_every_operation_and_summarises_the_run() {
    let stack = Stack::start(&testkit::DeadEndpoint::reserve().url()).await;

    let mut load = Service::spawn(
        "loadgen",
        &[
            ("LOAD_TARGET", stack.gateway_url.clone()),
            ("LOAD_USERS", "3".to_owned()),
            ("LOAD_DURATION_SECONDS", "3".to_owned()),
            ("LOAD_THINK_MS", "10".to_owned()),
            ("LOAD_BAD_PERCENT", "30".to_owned()),
        ],
    );
    let code = load.wait().await;
    let stdout = load.stdout().join("\n");
    assert_eq!(
        code,
        Some(0),
        "stdout: {stdout}\nstderr: {:?}",
        load.stderr()
    );

    assert!(stdout.contains(", 0 unexpected"), "{stdout}");
    for (operation, status) in [
        ("signup", 201),
        ("login", 200),
        ("users/me", 200),
        ("login, wrong password", 401),
        ("users/me, bad token", 401),
        ("signup, malformed JSON", 400),
    ] {
        let row = stdout.lines().find(|line| {
            line.trim_start()
                .starts_with(&format!("{operation:<24} {status:>6} "))
        });
        assert!(row.is_some(), "no {operation} {status} row in:\n{stdout}");
    }
    assert!(stdout.contains("latency ms: p50 "), "{stdout}");
    let trace = stdout
        .split("trace_id ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no slowest trace id in:\n{stdout}"));
    assert_eq!(trace.len(), 32, "{trace}");

    // The deliberate mistakes are what the error panels plot.
    let metrics = stack
        .metrics(&format!("{}/metrics", stack.gateway_url))
        .await;
    for series in [
        r#"http_requests_total{endpoint="/api/v1/login",method="POST",status="401"}"#,
        r#"http_requests_total{endpoint="/api/v1/users/me",method="GET",status="401"}"#,
        r#"http_requests_total{endpoint="/api/v1/signup",method="POST",status="400"}"#,
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_load_against_nothing_fails_and_says_so() {
    let dead = testkit::DeadEndpoint::reserve();
    let mut load = Service::spawn(
        "loadgen",
        &[
            ("LOAD_TARGET", dead.url()),
            ("LOAD_USERS", "1".to_owned()),
            ("LOAD_DURATION_SECONDS", "1".to_owned()),
        ],
    );
    assert_eq!(load.wait().await, Some(1));
    let stdout = load.stdout().join("\n");
    assert!(
        stdout.contains("none") && stdout.contains("<- unexpected"),
        "{stdout}"
    );
}
