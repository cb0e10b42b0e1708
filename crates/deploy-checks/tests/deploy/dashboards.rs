//! Every PromQL expression Grafana is provisioned with, evaluated by a real Prometheus that
//! scrapes the three real services (started as processes) with the deploy config's job names.
//!
//! Tempo's metrics-generator cannot run here, so its series come from a small exposition endpoint
//! serving Tempo-shaped span-metrics and service-graph series, exemplars included (what Tempo
//! remote-writes into the compose Prometheus). This keeps the dashboards honest: a panel whose
//! query does not parse, or names a metric or label nobody exports, fails here.

use std::io::{BufRead as _, BufReader, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::prometheus::Prometheus;
use testkit::stack::{Stack, trace_id};

/// Grafana's macros and template variables, as the checks substitute them: variables only ever
/// stand inside `=~"..."` matchers, where `.+` is what "All" means.
pub fn substitute(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m");
    regex::Regex::new(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
        .unwrap()
        .replace_all(&expr, ".+")
        .into_owned()
}

/// (metric, label) for every label matcher of every `metric{...}` selector in `promql`.
fn selector_labels(promql: &str) -> Vec<(String, String)> {
    let selector = regex::Regex::new(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}").unwrap();
    let matcher =
        regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*""#)
            .unwrap();
    let mut pairs = Vec::new();
    for caps in selector.captures_iter(promql) {
        let metric = &caps[1];
        let matchers: Vec<String> = matcher
            .captures_iter(&caps[2])
            .map(|m| m[1].to_owned())
            .collect();
        pairs.push((metric.to_owned(), "__name__".to_owned()));
        pairs.extend(matchers.into_iter().map(|label| (metric.to_owned(), label)));
    }
    pairs
}

/// (where, PromQL) of every Prometheus query in the dashboards and data source links.
fn promql_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for (file, dashboard) in crate::grafana::dashboards() {
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let datasource = if target["datasource"].is_object() {
                    &target["datasource"]
                } else {
                    &panel["datasource"]
                };
                if datasource["uid"] == "prometheus" {
                    let expr = target["expr"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{file}: {:?} has no expr", panel["title"]));
                    queries.push((format!("{file}: {}", panel["title"]), substitute(expr)));
                }
            }
        }
    }
    // Trace -> metrics links: Grafana fills `$__tags` from the span's service.name and
    // `${__span.name}` from its name. The provisioning file writes `$` as `$$`.
    let sources = deploy_checks::yaml("deploy/grafana/provisioning/datasources/datasources.yaml");
    let tempo = sources["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["uid"] == "tempo")
        .unwrap();
    for link in tempo["jsonData"]["tracesToMetrics"]["queries"]
        .as_array()
        .unwrap()
    {
        let query = link["query"]
            .as_str()
            .unwrap()
            .replace("$$", "$")
            .replace("$__tags", r#"service="gateway""#)
            .replace("${__span.name}", "GET /api/v1/users/me");
        queries.push((
            format!("Tempo trace->metrics {:?}", link["name"]),
            substitute(&query),
        ));
    }
    queries
}

/// Serves Tempo-generator-shaped series in the OpenMetrics format (the one that carries
/// exemplars); the counters grow with every scrape, as a busy system's would.
fn serve_tempo_shaped_series() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let scrapes = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = tempo_exposition(scrapes.fetch_add(1, Ordering::Relaxed) + 1);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr.to_string()
}

/// What Tempo's span-metrics and service-graphs processors produce for this system after `n`
/// rounds of traffic (label names and values as Tempo writes them).
fn tempo_exposition(n: u64) -> String {
    let spans = [
        (
            "gateway",
            "GET /api/v1/users/me",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_UNSET",
        ),
        (
            "gateway",
            "POST /api/v1/login",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_UNSET",
        ),
        (
            "gateway",
            "auth.v1.AuthService/ValidateToken",
            "SPAN_KIND_CLIENT",
            "STATUS_CODE_UNSET",
        ),
        (
            "auth",
            "auth.v1.AuthService/ValidateToken",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_UNSET",
        ),
        (
            "auth",
            "auth.v1.AuthService/Login",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_ERROR",
        ),
        (
            "auth",
            "user.v1.UserService/GetCredential",
            "SPAN_KIND_CLIENT",
            "STATUS_CODE_UNSET",
        ),
        (
            "user",
            "user.v1.UserService/GetUser",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_UNSET",
        ),
        (
            "user",
            "SELECT users",
            "SPAN_KIND_CLIENT",
            "STATUS_CODE_UNSET",
        ),
    ];
    // (client, server, connection_type) as Tempo's service-graph processor writes them: the
    // three calls between our services, the invented caller of every root server span (always
    // named `user`, the name our user service has too), and the database named by
    // tempo.yaml's database_name_attributes (`db.system.name`).
    let edges = [
        ("gateway", "auth", ""),
        ("gateway", "user", ""),
        ("auth", "user", ""),
        ("user", "gateway", "virtual_node"),
        ("user", "postgresql", "database"),
    ];
    let buckets = [
        "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128", "+Inf",
    ];
    let histogram = |out: &mut String, name: &str, labels: &str, n: u64| {
        for (i, le) in buckets.iter().enumerate() {
            let count = n * (i as u64 + 1);
            out.push_str(&format!("{name}_bucket{{{labels},le=\"{le}\"}} {count}"));
            if i == 3 {
                // Tempo writes exemplar trace ids without their leading zeros.
                out.push_str(&format!(
                    " # {{traceID=\"{}\"}} 0.012",
                    stripped_trace_id(n)
                ));
            }
            out.push('\n');
        }
        out.push_str(&format!("{name}_sum{{{labels}}} {}\n", n as f64 * 0.05));
        out.push_str(&format!(
            "{name}_count{{{labels}}} {}\n",
            n * buckets.len() as u64
        ));
    };
    let mut out = String::new();
    // One family of counters: its TYPE line, then `value` for each set of labels.
    let counters = |out: &mut String, family: &str, labels: &[String], value: u64| {
        out.push_str(&format!("# TYPE {family} counter\n"));
        for labels in labels {
            out.push_str(&format!("{family}_total{{{labels}}} {value}\n"));
        }
    };
    let span_labels = |(service, name, kind, status): &(&str, &str, &str, &str)| {
        format!(
            r#"source="tempo",service="{service}",span_name="{name}",span_kind="{kind}",status_code="{status}""#
        )
    };
    let all_spans: Vec<String> = spans.iter().map(span_labels).collect();
    counters(&mut out, "traces_spanmetrics_calls", &all_spans, n * 10);
    out.push_str("# TYPE traces_spanmetrics_latency histogram\n");
    for span in &spans {
        histogram(
            &mut out,
            "traces_spanmetrics_latency",
            &span_labels(span),
            n,
        );
    }
    let edge_labels = |(client, server, connection): &(&str, &str, &str)| {
        format!(
            r#"source="tempo",client="{client}",server="{server}",connection_type="{connection}""#
        )
    };
    let all_edges: Vec<String> = edges.iter().map(edge_labels).collect();
    counters(&mut out, "traces_service_graph_request", &all_edges, n * 10);
    counters(
        &mut out,
        "traces_service_graph_request_failed",
        &all_edges[2..3],
        n,
    );
    for side in ["server", "client"] {
        out.push_str(&format!(
            "# TYPE traces_service_graph_request_{side}_seconds histogram\n"
        ));
        for edge in &edges {
            histogram(
                &mut out,
                &format!("traces_service_graph_request_{side}_seconds"),
                &edge_labels(edge),
                n,
            );
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The `n`th exemplar's trace id as Tempo writes it: a 32-digit id that starts with `00`, less
/// its leading zeros.
fn stripped_trace_id(n: u64) -> String {
    let id = format!("00{:014x}{:016x}", n, n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    id.trim_start_matches('0').to_owned()
}

/// Requests of every kind the dashboards plot, errors included.
async fn traffic(stack: &Stack, round: u32) {
    let email = format!("dash-{round}-{}@example.com", std::process::id());
    assert_eq!(stack.signup(&email).await.status(), 201);
    let login = stack.login(&email).await;
    assert_eq!(login.status(), 200);
    let token = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        assert_eq!(stack.me(&token).await.status(), 200);
    }
    let wrong = stack
        .post(
            "/api/v1/login",
            json!({"email": email, "password": "wrong-password"}),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(stack.me("garbage").await.status(), 401);
    assert_eq!(stack.signup(&email).await.status(), 409);
    let _ = trace_id(&wrong);
}

#[tokio::test]
async fn every_dashboard_query_runs_on_a_real_prometheus_and_returns_data() {
    let Some(binary) = testkit::tool::require("prometheus", "apt-get install prometheus") else {
        return;
    };
    let stack = Stack::start(&testkit::DeadEndpoint::reserve().url()).await;
    let tempo = serve_tempo_shaped_series();

    // The deploy config's job names and settings, with the targets moved to where this test's
    // processes listen, and a 1 s interval so `rate(...[1m])` has samples within seconds.
    let mut config = testkit::prometheus::scraping(
        deploy_checks::yaml("deploy/prometheus/prometheus.yml"),
        &stack,
    );
    let mut jobs = config["scrape_configs"].as_array().unwrap().clone();
    // Tempo remote-writes through the relabelling tempo.yaml gives it; scraped here, the same
    // rules run as metric_relabel_configs (one relabel engine, Prometheus' own).
    let relabel = deploy_checks::yaml("deploy/tempo/tempo.yaml")["metrics_generator"]["storage"]
        ["remote_write"][0]["write_relabel_configs"]
        .clone();
    jobs.push(json!({"job_name": "tempo-generator", "honor_labels": true,
        "metric_relabel_configs": relabel, "static_configs": [{"targets": [tempo]}]}));
    config["scrape_configs"] = Value::Array(jobs);
    let prometheus = Prometheus::start(&binary, &serde_json::to_string(&config).unwrap());

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    testkit::eventually_async("all four targets up", Duration::from_secs(60), || async {
        let up = prometheus.try_query(&http, "count(up == 1)").await.ok()?;
        (up["data"]["result"][0]["value"][1] == "4").then_some(())
    })
    .await;
    // Traffic between scrapes, twice, so every counter and bucket has grown within the window.
    for round in 0..3 {
        traffic(&stack, round).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    let queries = promql_queries();
    assert!(queries.len() >= 20, "found only {} queries", queries.len());
    let mut failures = Vec::new();
    for (panel, promql) in &queries {
        let answer = prometheus.query(&http, promql).await;
        if answer["status"] != "success" {
            failures.push(format!("{panel}: {promql}\n  -> {}", answer["error"]));
        } else if answer["data"]["result"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            failures.push(format!("{panel}: {promql}\n  -> no data"));
        }
    }
    // An `(errors or total * 0)` ratio returns data even when the errors half names a metric
    // or label nobody exports, so each selector is also checked on its own: the metric must
    // exist with every label a matcher names.
    let mut pairs = std::collections::BTreeSet::new();
    for (panel, promql) in &queries {
        for (metric, label) in selector_labels(promql) {
            pairs.insert((metric, label, panel.clone()));
        }
    }
    assert!(
        pairs.len() >= 20,
        "found only {} metric/label pairs",
        pairs.len()
    );
    for (metric, label, panel) in &pairs {
        let probe = format!(r#"count({{__name__="{metric}", {label}!=""}})"#);
        let answer = prometheus.query(&http, &probe).await;
        if answer["data"]["result"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            failures.push(format!("{panel}: no {metric} series has a {label:?} label"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries failed:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );

    // Exemplars keep Tempo's `traceID` label, which Grafana's exemplar link is set to read.
    let exemplars: Value = http
        .get(format!("{}/api/v1/query_exemplars", prometheus.url))
        .query(&[
            ("query", "traces_spanmetrics_latency_bucket"),
            ("start", "0"),
            ("end", "9999999999"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = exemplars["data"][0]["exemplars"][0]["labels"]["traceID"]
        .as_str()
        .unwrap_or_else(|| panic!("{exemplars}"));
    assert!(
        first.len() < 32 && !first.starts_with('0'),
        "Tempo's ids, zeros stripped: {first}"
    );

    // The service map: exactly client -> gateway -> auth -> user -> postgresql, and gateway ->
    // user; the outside world is not merged with the user service.
    let graph = prometheus
        .query(
            &http,
            "sum by (client, server) (traces_service_graph_request_total)",
        )
        .await;
    let edges: std::collections::BTreeSet<(String, String)> = graph["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let label = |name: &str| r["metric"][name].as_str().unwrap().to_owned();
            (label("client"), label("server"))
        })
        .collect();
    let expected = [
        ("client", "gateway"),
        ("gateway", "auth"),
        ("gateway", "user"),
        ("auth", "user"),
        ("user", "postgresql"),
    ]
    .map(|(c, s)| (c.to_owned(), s.to_owned()));
    assert_eq!(edges, std::collections::BTreeSet::from(expected));
}
