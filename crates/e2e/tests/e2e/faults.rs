//! What the system does when a part fails: a collector that is dead or hangs, a service killed,
//! frozen or terminated under load. Every case runs the real binaries as separate processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use testkit::otlp::OtlpCollector;
use testkit::stack::{Stack, trace_id};

/// A signed-up user's bearer token.
async fn token(stack: &Stack, email: &str) -> String {
    assert_eq!(stack.signup(email).await.status(), 201);
    let login = stack.login(email).await;
    assert_eq!(login.status(), 200);
    login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `count` profile reads, `concurrency` at a time; every one must answer 200.
async fn read_profiles(stack: &Stack, token: &str, count: usize, concurrency: usize) {
    use futures::StreamExt as _;
    let statuses: Vec<u16> = futures::stream::iter(0..count)
        .map(|_| async { stack.me(token).await.status().as_u16() })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {count} failed: {failed:?}",
        failed.len()
    );
}

/// The gateway's `otel_spans_dropped_total` for `reason`, or for every reason with `None`.
async fn dropped(stack: &Stack, reason: Option<&str>) -> u64 {
    let text = stack
        .metrics(&format!("{}/metrics", stack.gateway_url))
        .await;
    let prefix = match reason {
        Some(reason) => format!("otel_spans_dropped_total{{reason=\"{reason}\"}} "),
        None => "otel_spans_dropped_total{".to_owned(),
    };
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

fn drop_warnings(stack: &Stack) -> usize {
    stack
        .gateway
        .json_logs()
        .iter()
        .filter(|line| {
            line["level"] == "WARN"
                && line["msg"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("spans dropped"))
        })
        .count()
}

/// A collector that refuses connections, or accepts them and never answers: requests all
/// succeed, lost spans are counted in a metric, the log says so once (not once per span), and
/// memory stays bounded by the queue.
#[tokio::test]
async fn a_dead_or_hanging_collector_costs_no_request_and_its_drops_are_counted_once() {
    let dead = testkit::DeadEndpoint::reserve();
    let hanging = testkit::HangingEndpoint::start().await;
    for (what, endpoint, reason) in [
        ("dead", dead.url(), "export_failed"),
        ("hanging", hanging.url(), "queue_full"),
    ] {
        let mut env = Stack::exporting_to(&endpoint);
        // A small queue, so that it fills within the test.
        env.push(("OTEL_BSP_MAX_QUEUE_SIZE", "64".to_owned()));
        let stack = Stack::start_with(&env).await;
        let token = token(&stack, &format!("{what}-collector@example.com")).await;
        read_profiles(&stack, &token, 300, 8).await;
        let rss_after_warmup = stack.gateway.rss_kib().unwrap();

        // The first spans lost are lost the way this fault loses them...
        testkit::eventually_async(
            &format!("{what}: otel_spans_dropped_total{{reason={reason:?}}} > 0"),
            Duration::from_secs(10),
            || async { (dropped(&stack, Some(reason)).await > 0).then_some(()) },
        )
        .await;
        // ...and once an export has failed, the exporter rests and admits only a probe's worth,
        // so later ones count as export_failed whatever the fault.
        let lost = dropped(&stack, None).await;
        testkit::eventually(
            &format!("{what}: a 'spans dropped' warning"),
            Duration::from_secs(5),
            || (drop_warnings(&stack) > 0).then_some(()),
        )
        .await;

        // Five times the traffic again: more drops, still no failed request, no more
        // warnings within the interval, and memory that does not grow with the spans lost.
        read_profiles(&stack, &token, 1500, 8).await;
        let rss_after_load = stack.gateway.rss_kib().unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            dropped(&stack, None).await > lost,
            "{what}: drops keep being counted"
        );
        assert_eq!(drop_warnings(&stack), 1, "{what}: one warning per interval");
        assert!(
            rss_after_load < rss_after_warmup + 8 * 1024,
            "{what}: gateway RSS grew from {rss_after_warmup} KiB to {rss_after_load} KiB"
        );
    }
}

/// user (then auth) killed mid-run: the gateway answers 503 `service_unavailable` at once,
/// `/readyz` names the dependency, and when it comes back the gateway's channels reconnect by
/// themselves.
#[tokio::test]
async fn a_killed_service_gives_503_and_unready_then_recovers_without_a_gateway_restart() {
    let mut stack = Stack::start_with(&[]).await;
    let token = token(&stack, "killed@example.com").await;

    for dependency in ["user", "auth"] {
        let process = match dependency {
            "user" => &mut stack.user,
            _ => &mut stack.auth,
        };
        process.stop_with(Signal::SIGKILL).await;

        let started = Instant::now();
        let response = match dependency {
            "user" => stack.me(&token).await,
            _ => stack.login("killed@example.com").await,
        };
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 503, "{dependency} down");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "service_unavailable", "{body}");
        assert!(
            elapsed < Duration::from_secs(5),
            "{dependency} down: answered after {elapsed:?}"
        );
        // The operator's view: the failed calls counted, the cause logged.
        let metrics = stack
            .metrics(&format!("{}/metrics", stack.gateway_url))
            .await;
        assert!(
            metrics.contains(r#"grpc_client_handled_total{grpc_code="Unavailable""#),
            "{dependency} down: no Unavailable calls counted"
        );
        stack
            .gateway
            .wait_for_log(&format!("{dependency} down: an ERROR line"), |line| {
                line["level"] == "ERROR" && line["http.response.status_code"] == 503
            })
            .await;

        let (status, ready) = stack.readyz().await;
        assert_eq!(status, 503);
        assert_eq!(ready["status"], "not_ready", "{ready}");
        assert_ne!(ready["checks"][dependency], "serving", "{ready}");
        let other = if dependency == "user" { "auth" } else { "user" };
        assert_eq!(ready["checks"][other], "serving", "{ready}");

        stack.restart(dependency).await;
        assert_eq!(
            stack.me(&token).await.status(),
            200,
            "after {dependency} came back"
        );
        assert_eq!(stack.login("killed@example.com").await.status(), 200);
    }
}

/// A frozen user service (SIGSTOP: connections stay open, nothing answers): the gateway's
/// deadline answers 503 instead of hanging, readiness says `timeout`, and SIGCONT recovers.
#[tokio::test]
async fn a_frozen_dependency_is_cut_off_by_the_deadline_and_recovers_when_it_thaws() {
    let stack = Stack::start_with(&[]).await;
    let token = token(&stack, "frozen@example.com").await;

    // The stack's client gives up after 10 s: this one waits for the gateway's answer.
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Frozen mid-life: the gateway worker that serves this keep-alive connection has already
    // reached user (each actix worker has its own channels), so the call below meets an open
    // connection that answers nothing, and only the deadline ends it. (A channel that never
    // connected would give up sooner, at the TLS handshake's 2 s.)
    let warm = patient
        .get(format!("{}/api/v1/users/me", stack.gateway_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    stack.user.signal(Signal::SIGSTOP);
    let started = Instant::now();
    let response = patient
        .get(format!("{}/api/v1/users/me", stack.gateway_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let (_, ready) = stack.readyz().await;
    stack.user.signal(Signal::SIGCONT);

    assert_eq!(response.status(), 503);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "service_unavailable"
    );
    let deadline = telemetry::grpc::DEFAULT_CALL_TIMEOUT;
    assert!(
        elapsed >= deadline && elapsed < deadline + Duration::from_secs(3),
        "answered after {elapsed:?}, deadline {deadline:?}"
    );
    assert_eq!(ready["checks"]["user"], "timeout", "{ready}");
    assert_eq!(stack.me(&token).await.status(), 200, "after SIGCONT");
}

/// SIGTERM to user while sign-ups stream in: it drains and exits 0, callers meanwhile get 201
/// or 503 (never a 500), and every sign-up that was acknowledged is still there after it
/// comes back.
#[tokio::test]
async fn no_acknowledged_signup_is_lost_across_a_sigterm_of_the_user_service() {
    let mut stack = Stack::start_with(&[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let stack_ref = &stack;
    let writers = (0..4).map(|writer| {
        let stop = stop.clone();
        async move {
            let mut outcomes = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let email = format!("sigterm-{writer}-{n}@example.com");
                n += 1;
                let status = stack_ref.signup(&email).await.status().as_u16();
                outcomes.push((email, status));
            }
            outcomes
        }
    });
    let load = futures::future::join_all(writers);
    let chaos = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        stack_ref.user.signal(Signal::SIGTERM);
        // Sign-ups go on while user drains and after it has gone.
        tokio::time::sleep(Duration::from_millis(600)).await;
        stop.store(true, Ordering::Relaxed);
    };
    let (outcomes, _) = tokio::join!(load, chaos);
    let code = stack.user.wait().await;
    assert_eq!(
        code,
        Some(0),
        "user's exit code; stderr {:?}",
        stack.user.stderr()
    );
    stack.restart("user").await;

    let outcomes: Vec<(String, u16)> = outcomes.into_iter().flatten().collect();
    let acknowledged: Vec<&String> = outcomes
        .iter()
        .filter(|(_, status)| *status == 201)
        .map(|(email, _)| email)
        .collect();
    let others: Vec<u16> = outcomes
        .iter()
        .map(|(_, status)| *status)
        .filter(|status| *status != 201)
        .collect();
    assert!(
        !acknowledged.is_empty(),
        "no sign-up got through: {others:?}"
    );
    let errors: Vec<String> = stack
        .all_output()
        .into_iter()
        .filter(|line| line.contains(r#""level":"ERROR""#) && !line.contains("503"))
        .collect();
    assert!(
        others.iter().all(|status| *status == 503),
        "only 201 or 503 while user drains: {others:?}\n{errors:#?}"
    );
    for email in acknowledged {
        assert_eq!(
            stack.login(email).await.status(),
            200,
            "{email} was acknowledged with 201 but cannot log in"
        );
    }
}

/// SIGTERM to the gateway under load: readiness fails first while requests are still served
/// (`SHUTDOWN_DELAY_MS`), then new connections are refused, requests in flight finish with 200,
/// the spans of the last requests are flushed, and it exits 0 within the grace period.
#[tokio::test]
async fn sigterm_under_load_fails_readiness_first_finishes_in_flight_requests_and_flushes() {
    let collector = OtlpCollector::start().await;
    let mut env = Stack::exporting_to(&collector.endpoint());
    env.push(("SHUTDOWN_DELAY_MS", "1500".to_owned()));
    let mut stack = Stack::start_with(&env).await;
    let token = token(&stack, "sigterm-gateway@example.com").await;

    let stop = Arc::new(AtomicBool::new(false));
    let stack_ref = &stack;
    let readers = (0..6).map(|_| {
        let stop = stop.clone();
        let token = token.clone();
        async move {
            let mut answered = Vec::new();
            let mut refused = 0;
            while !stop.load(Ordering::Relaxed) {
                let sent = stack_ref
                    .http
                    .get(format!("{}/api/v1/users/me", stack_ref.gateway_url))
                    .bearer_auth(&token)
                    .send()
                    .await;
                match sent {
                    Ok(response) => {
                        answered.push((response.status().as_u16(), trace_id(&response)))
                    }
                    Err(error) => {
                        assert!(error.is_connect() || error.is_request(), "{error:?}");
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (answered, refused)
        }
    });
    let load = futures::future::join_all(readers);
    let terminate = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        stack_ref.gateway.signal(Signal::SIGTERM);
        let sent = Instant::now();
        // Unready first, on a new connection, while a request on another is still served.
        let fresh = || {
            reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap()
        };
        let ready: Value =
            testkit::eventually_async("/readyz says draining", Duration::from_secs(2), || async {
                let response = fresh()
                    .get(format!("{}/readyz", stack_ref.gateway_url))
                    .send()
                    .await
                    .ok()?;
                (response.status() == 503).then_some(())?;
                response.json::<Value>().await.ok()
            })
            .await;
        assert_eq!(ready["status"], "draining", "{ready}");
        let served = fresh()
            .get(format!("{}/api/v1/users/me", stack_ref.gateway_url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("still accepting during the shutdown delay");
        assert_eq!(served.status(), 200);
        // Until the listener is gone, then a little longer so refused connections are seen.
        testkit::eventually_async(
            "the gateway's listener closes",
            Duration::from_secs(10),
            || async {
                let refused = tokio::net::TcpStream::connect(
                    stack_ref.gateway_url.trim_start_matches("http://"),
                )
                .await
                .is_err();
                refused.then_some(())
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        sent
    };
    let (results, sigterm_at) = tokio::join!(load, terminate);
    let code = stack.gateway.wait().await;
    let took = sigterm_at.elapsed();
    assert_eq!(code, Some(0), "stderr {:?}", stack.gateway.stderr());
    assert!(
        took < Duration::from_secs(30),
        "exit took {took:?}, grace is 30 s"
    );

    let answered: Vec<(u16, String)> = results.iter().flat_map(|(a, _)| a.clone()).collect();
    let refused: usize = results.iter().map(|(_, r)| r).sum();
    assert!(answered.len() > 20, "{} answered", answered.len());
    assert!(refused > 0, "new connections after SIGTERM are refused");
    let failed: Vec<u16> = answered
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| *s != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "every answered request succeeds: {failed:?}"
    );
    // The last answers were served during the drain: their spans left in the shutdown flush.
    for (_, trace) in answered.iter().rev().take(6) {
        let spans = collector.trace(trace);
        assert!(
            spans.iter().any(|s| s.service == "gateway"),
            "trace {trace}: gateway spans were not flushed before exit"
        );
    }
}

/// SIGTERM to auth while a sign-up is hashing: health turns NOT_SERVING at once (so probes and
/// the gateway's `/readyz` see the drain), the sign-up still completes, and auth exits 0.
#[tokio::test]
async fn a_draining_service_reports_not_serving_while_its_in_flight_call_completes() {
    use tonic_health::pb::health_check_response::ServingStatus;
    // A slow hash (about a second) keeps the sign-up in flight while auth drains.
    let mut stack = Stack::start_with(&[("BCRYPT_COST", "14".to_owned())]).await;
    assert_eq!(
        testkit::health_status(&stack.auth_health).await,
        Some(ServingStatus::Serving)
    );

    let stack_ref = &stack;
    let signup = async {
        let started = Instant::now();
        let response = stack_ref.signup("draining@example.com").await;
        (response.status().as_u16(), started.elapsed())
    };
    let drain = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stack_ref.auth.signal(Signal::SIGTERM);
        testkit::eventually_async("auth NOT_SERVING", Duration::from_secs(5), || async {
            let status = testkit::health_status(&stack_ref.auth_health).await?;
            (status == ServingStatus::NotServing).then_some(())
        })
        .await;
        stack_ref.readyz().await.1
    };
    let ((status, took), ready) = tokio::join!(signup, drain);
    assert_eq!(
        status, 201,
        "the in-flight sign-up completes (after {took:?})"
    );
    // The draining server refuses new calls on its gRPC port, so the gateway sees an error
    // rather than the health port's NOT_SERVING: either way, not ready and auth named.
    assert_eq!(ready["status"], "not_ready", "{ready}");
    assert_ne!(ready["checks"]["auth"], "serving", "{ready}");
    assert_eq!(stack.auth.wait().await, Some(0));
}
