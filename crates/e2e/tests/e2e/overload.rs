//! A burst of sign-ups at the production bcrypt cost: auth hashes one per core, sheds the rest
//! at once with 503 `overloaded` and `Retry-After` instead of letting every request miss its
//! deadline together, and profile reads, which hash nothing, stay fast meanwhile.

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::stack::Stack;

#[tokio::test]
async fn a_signup_burst_is_shed_quickly_while_profile_reads_go_on() {
    let stack = Stack::start_with(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            testkit::DeadEndpoint::reserve().url(),
        ),
        // bcrypt's default: a quarter of a second of one core per hash.
        ("BCRYPT_COST", "12".to_owned()),
    ])
    .await;
    assert_eq!(stack.signup("reader@example.com").await.status(), 201);
    let login = stack.login("reader@example.com").await;
    let token = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Profile reads in a loop for as long as the burst lasts.
    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = tokio::spawn({
        let (http, url, token, reading) = (
            stack.http.clone(),
            stack.gateway_url.clone(),
            token,
            reading.clone(),
        );
        async move {
            let mut latencies = Vec::new();
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let response = http
                    .get(format!("{url}/api/v1/users/me"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                latencies.push(started.elapsed());
            }
            latencies
        }
    });

    // 30 sign-ups for one email at once.
    let burst: Vec<_> = (0..30)
        .map(|_| {
            let (http, url) = (stack.http.clone(), stack.gateway_url.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let response = http
                    .post(format!("{url}/api/v1/signup"))
                    .json(&serde_json::json!({"email": "burst@example.com", "password": testkit::stack::PASSWORD, "name": "Burst"}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                let body: Value = response.json().await.unwrap();
                (status, body["code"].as_str().unwrap_or_default().to_owned(), retry_after, started.elapsed())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for request in burst {
        outcomes.push(request.await.unwrap());
    }
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut latencies = reader.await.unwrap();

    let created = outcomes.iter().filter(|o| o.0 == 201).count();
    assert_eq!(created, 1, "exactly one account: {outcomes:?}");
    let shed: Vec<_> = outcomes.iter().filter(|o| o.0 == 503).collect();
    for (status, code, retry_after, _) in &outcomes {
        match status {
            201 => {}
            409 => assert_eq!(code, "email_taken"),
            503 => {
                assert_eq!(code, "overloaded");
                assert_eq!(retry_after.as_deref(), Some("1"));
            }
            other => panic!("unexpected {other} {code}: {outcomes:?}"),
        }
    }
    assert!(
        shed.len() >= 10,
        "two cores cannot hash 30 at once: most are shed: {outcomes:?}"
    );
    // Shed, not timed out: far sooner than the 10 s deadline every request used to wait out.
    let slowest_shed = shed.iter().map(|o| o.3).max().unwrap();
    assert!(
        slowest_shed < Duration::from_secs(5),
        "shedding took {slowest_shed:?}"
    );

    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    eprintln!(
        "burst: {created} created, {} email_taken, {} overloaded (slowest answer {slowest_shed:?}); \
         /users/me meanwhile: {} reads, p99 {p99:?}",
        outcomes.iter().filter(|o| o.0 == 409).count(),
        shed.len(),
        latencies.len()
    );
    assert!(
        !latencies.is_empty(),
        "profile reads went on during the burst"
    );

    // The load is counted where operators look, and the system is ready afterwards.
    let metrics = stack.metrics(&stack.auth_metrics).await;
    assert!(
        metrics.contains(r#"grpc_code="ResourceExhausted",grpc_method="Signup""#),
        "{metrics}"
    );
    assert_eq!(stack.readyz().await.0, 200);
    assert_eq!(
        stack.login("burst@example.com").await.status(),
        200,
        "the one account works"
    );

    // Shedding is the system working as designed: no ERROR line per shed request (there was
    // one each before: a burst of 2,140 gave 2,140), but one WARN line with the count per
    // interval; the burst lasted well under one interval.
    let refused = stack
        .gateway
        .wait_for_log("a line about the shed requests", |line| {
            line["msg"] == "requests refused by design" && line["code"] == "overloaded"
        })
        .await;
    assert_eq!(refused["level"], "WARN");
    assert_eq!(refused["http.response.status_code"], 503);
    let gateway = stack.gateway.json_logs();
    let errors: Vec<_> = gateway.iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let per_request = gateway
        .iter()
        .filter(|l| {
            l["http.response.status_code"] == 503 && l["msg"] != "requests refused by design"
        })
        .count();
    assert_eq!(per_request, 0, "a line per shed request");
    let lines = gateway
        .iter()
        .filter(|l| l["msg"] == "requests refused by design")
        .count();
    assert!(lines <= 2, "{lines} lines for one burst");
}
