//! What telemetry costs: the same request against three copies of the system, measured in one run.
//!
//! `make bench` builds the release binaries and runs this. Three stacks (user, auth, gateway as
//! separate processes) run side by side:
//!
//! - **off**: `OTEL_SDK_DISABLED=true`, no tracer at all (the baseline);
//! - **on**: spans exported over OTLP/gRPC to an in-process collector, logs and metrics as in
//!   production;
//! - **on, collector down**: the exporter points at a closed port, which must cost nothing extra.
//!
//! Each round sends `BENCH_REQUESTS` authenticated `GET /api/v1/users/me` (gateway -> auth ->
//! user -> database: two gRPC hops and a query) with `BENCH_CONCURRENCY` clients to each stack
//! in turn; rounds alternate so drift on a shared machine hits all three alike. It prints
//! throughput and latency per stack and the ratios against the baseline, from the median round.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use testkit::otlp::OtlpCollector;
use testkit::stack::Stack;

struct Scenario {
    name: &'static str,
    stack: Stack,
    token: String,
    rounds: Vec<Round>,
}

#[derive(Clone, Copy)]
struct Round {
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn setting(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {value:?}")),
        Err(_) => default,
    }
}

async fn token(stack: &Stack) -> String {
    assert_eq!(stack.signup("bench@example.com").await.status(), 201);
    let login: serde_json::Value = stack
        .login("bench@example.com")
        .await
        .json()
        .await
        .expect("login body");
    login["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// Sends `requests` profile requests with `concurrency` clients; every one must succeed.
async fn round(stack: &Stack, token: &str, requests: usize, concurrency: usize) -> Round {
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/api/v1/users/me", stack.gateway_url);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, url, token, http) = (
                next.clone(),
                url.clone(),
                token.to_owned(),
                stack.http.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let sent = Instant::now();
                    let response = http
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .await
                        .expect("request");
                    assert_eq!(
                        response.status(),
                        200,
                        "every benchmark request must succeed"
                    );
                    response.bytes().await.expect("body");
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    Round {
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
    }
}

fn median(rounds: &[Round]) -> Round {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
    sorted[sorted.len() / 2]
}

#[tokio::main]
async fn main() {
    let requests = setting("BENCH_REQUESTS", 2000);
    let rounds = setting("BENCH_ROUNDS", 5);
    let concurrency = setting("BENCH_CONCURRENCY", 16);

    let collector = OtlpCollector::start().await;
    let dead = testkit::DeadEndpoint::reserve();
    let stacks = [
        (
            "telemetry off",
            vec![("OTEL_SDK_DISABLED", "true".to_owned())],
        ),
        (
            "telemetry on",
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())],
        ),
        (
            "on, collector down",
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", dead.url())],
        ),
    ];
    let mut scenarios = Vec::new();
    for (name, env) in stacks {
        let stack = Stack::start_with(&env).await;
        let token = token(&stack).await;
        scenarios.push(Scenario {
            name,
            stack,
            token,
            rounds: Vec::new(),
        });
    }

    eprintln!("warming up...");
    for scenario in &scenarios {
        round(
            &scenario.stack,
            &scenario.token,
            requests / 10 + 1,
            concurrency,
        )
        .await;
    }
    for n in 0..rounds {
        eprintln!("round {}/{rounds}", n + 1);
        // Rotate the order each round so no stack always runs first or last.
        for i in 0..scenarios.len() {
            let scenario = &mut scenarios[(i + n) % 3];
            let result = round(&scenario.stack, &scenario.token, requests, concurrency).await;
            scenario.rounds.push(result);
        }
    }

    let baseline = median(&scenarios[0].rounds);
    println!();
    println!(
        "GET /api/v1/users/me, {requests} requests x {rounds} rounds, {concurrency} clients (median round)"
    );
    println!(
        "{:<20} {:>10} {:>9} {:>9} {:>12} {:>10}",
        "stack", "req/s", "p50 ms", "p99 ms", "throughput", "p50"
    );
    for scenario in &scenarios {
        let m = median(&scenario.rounds);
        println!(
            "{:<20} {:>10.0} {:>9.2} {:>9.2} {:>11.2}x {:>9.2}x",
            scenario.name,
            m.throughput,
            m.p50_ms,
            m.p99_ms,
            m.throughput / baseline.throughput,
            m.p50_ms / baseline.p50_ms,
        );
    }
    let exported = collector.spans().len();
    println!("spans received by the collector from the 'on' stack: {exported}");
    assert!(
        exported > 0,
        "the 'on' stack exported nothing: the comparison would be meaningless"
    );
    // Let the OS reclaim the stacks before the summary is read.
    tokio::time::sleep(Duration::from_millis(100)).await;
}
