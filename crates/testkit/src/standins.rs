//! Stand-ins for the HTTP APIs of Tempo, Loki and Grafana, which cannot run here: each answers
//! the requests verify (and, for Grafana, the stand-in Grafana) makes, in the documented shape,
//! from real data: the spans the three services exported over OTLP and the JSON lines they
//! wrote. Each has faults a test switches on to break its link.
//!
//! What each mirrors of the real program (read at the pinned tags):
//! - Tempo 3.0.0: `/api/v2/traces/<id>` accepts ids with or without leading zeros and answers
//!   gogo-jsonpb OTLP (`trace.resourceSpans[].scopeSpans[].spans[]`, base64 ids, `SPAN_KIND_*`),
//!   200 with an empty `trace` when unknown; the metrics-generator's series, computed from the
//!   spans as its processors do: span metrics with exemplars whose `traceID` has lost its
//!   leading zeros, service-graph edges between client and server spans, the invented caller
//!   `user` (connection_type `virtual_node`) of a root server span, and a database edge named by
//!   peer.service, server.address, network.peer.address or tempo.yaml's
//!   `database_name_attributes`, in that order.
//! - Loki 3.7: `query_range` over stream labels `service` and `level` (what Alloy sets) with
//!   `trace_id`/`span_id` as structured metadata, label filters on either, anchored regexes,
//!   and the `categorize-labels` encoding Grafana asks for.
//! - Grafana 13: `/api/health`, `/explore` refused (a redirect) to a role without
//!   `datasources:explore`, data-source health checks, and `/api/ds/query` for Prometheus,
//!   Loki and Tempo (trace-id queries) with the provisioned URLs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::otlp::{CollectedSpan, OtlpCollector};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

/// A JSON answer.
fn json_answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The decoded `name=value` pairs of a query string.
fn query_pairs(query: Option<String>) -> HashMap<String, String> {
    let url = reqwest::Url::parse(&format!("http://x/?{}", query.unwrap_or_default())).unwrap();
    url.query_pairs().into_owned().collect()
}

/// Serves `router` on a free loopback port; `http://127.0.0.1:<port>`.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}

/// OTLP's span kind number as Tempo's JSON names it.
fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "SPAN_KIND_INTERNAL",
        2 => "SPAN_KIND_SERVER",
        3 => "SPAN_KIND_CLIENT",
        4 => "SPAN_KIND_PRODUCER",
        5 => "SPAN_KIND_CONSUMER",
        _ => "SPAN_KIND_UNSPECIFIED",
    }
}

/// What a test can break in the Tempo stand-in.
#[derive(Debug, Clone, Default)]
pub struct TempoFaults {
    /// Spans of this service never arrive.
    pub drop_service: Option<String>,
    /// user's server spans point at a parent nobody sent.
    pub break_parents: bool,
    /// `/metrics` answers 503 (the generator's series stop).
    pub metrics_down: bool,
    /// No service-graph series.
    pub no_edges: bool,
    /// Exemplars carry trace ids Tempo has never seen.
    pub bogus_exemplars: bool,
}

/// The Tempo stand-in.
pub struct Tempo {
    /// Its base URL.
    pub url: String,
    /// Switched by tests.
    pub faults: Arc<Mutex<TempoFaults>>,
}

#[derive(Clone)]
struct TempoState {
    collector: Arc<OtlpCollector>,
    faults: Arc<Mutex<TempoFaults>>,
    database_name_attributes: Arc<Vec<String>>,
}

impl Tempo {
    /// Serves the spans `collector` receives.
    pub async fn start(collector: Arc<OtlpCollector>) -> Self {
        let config = deploy_tempo_config();
        let database_name_attributes =
            config["metrics_generator"]["processor"]["service_graphs"]["database_name_attributes"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                // Tempo 3.0's default.
                .unwrap_or_else(|| {
                    vec!["db.namespace".into(), "db.name".into(), "db.system".into()]
                });
        let faults = Arc::new(Mutex::new(TempoFaults::default()));
        let state = TempoState {
            collector,
            faults: faults.clone(),
            database_name_attributes: Arc::new(database_name_attributes),
        };
        let router = Router::new()
            .route("/api/v2/traces/{id}", get(tempo_trace))
            .route("/api/echo", get(|| async { "echo" }))
            .route("/metrics", get(tempo_metrics))
            .with_state(state);
        Self {
            url: serve(router).await,
            faults,
        }
    }
}

/// deploy/tempo/tempo.yaml, parsed.
pub fn deploy_tempo_config() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/tempo/tempo.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

impl TempoState {
    /// The spans as this Tempo holds them, faults applied.
    fn spans(&self) -> Vec<CollectedSpan> {
        let faults = self.faults.lock().unwrap().clone();
        let mut spans = self.collector.spans();
        if let Some(service) = &faults.drop_service {
            spans.retain(|s| &s.service != service);
        }
        if faults.break_parents {
            for span in spans.iter_mut() {
                if span.service == "user" && span.kind == 2 {
                    span.parent_span_id = "ffffffffffffffff".into();
                }
            }
        }
        spans
    }
}

async fn tempo_trace(State(state): State<TempoState>, Path(id): Path<String>) -> Response {
    if id.is_empty() || id.len() > 32 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return json_answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid trace id"}),
        );
    }
    // Tempo left-pads a short id to 16 bytes.
    let id = format!("{id:0>32}").to_ascii_lowercase();
    let spans: Vec<CollectedSpan> = state
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == id)
        .collect();
    let b64 = |hex: &str| -> Value {
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        json!(base64::engine::general_purpose::STANDARD.encode(bytes))
    };
    let mut by_service: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for span in &spans {
        // jsonpb: uint64 as a string, attributes as OTLP's key/value pairs.
        let mut attributes: Vec<(&String, &String)> = span.attributes.iter().collect();
        attributes.sort();
        let mut out = json!({
            "traceId": b64(&span.trace_id),
            "spanId": b64(&span.span_id),
            "name": span.name,
            "kind": kind_name(span.kind),
            "startTimeUnixNano": span.start_unix_nano.to_string(),
            "endTimeUnixNano": span.end_unix_nano.to_string(),
            "attributes": attributes.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>(),
        });
        // jsonpb leaves out empty fields: a root span has no parentSpanId.
        if !span.parent_span_id.is_empty() {
            out["parentSpanId"] = b64(&span.parent_span_id);
        }
        by_service
            .entry(span.service.clone())
            .or_default()
            .push(out);
    }
    let batches: Vec<Value> = by_service
        .into_iter()
        .map(|(service, spans)| {
            json!({
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"scope": {"name": "tracing-opentelemetry"}, "spans": spans}],
            })
        })
        .collect();
    let trace = if batches.is_empty() {
        json!({})
    } else {
        json!({"resourceSpans": batches})
    };
    json_answer(
        StatusCode::OK,
        json!({"trace": trace, "metrics": {"inspectedBytes": "0"}}),
    )
}

async fn tempo_metrics(State(state): State<TempoState>) -> Response {
    let faults = state.faults.lock().unwrap().clone();
    if faults.metrics_down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let spans = state.spans();
    let by_id: HashMap<(&str, &str), &CollectedSpan> = spans
        .iter()
        .map(|s| ((s.trace_id.as_str(), s.span_id.as_str()), s))
        .collect();

    // Span metrics: calls and a latency histogram per (service, name, kind), each with the
    // newest span's trace as exemplar.
    let mut calls: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for span in &spans {
        let labels = format!(
            r#"service="{}",span_name="{}",span_kind="{}",status_code="STATUS_CODE_UNSET""#,
            span.service,
            span.name,
            kind_name(span.kind)
        );
        let exemplar = if faults.bogus_exemplars {
            "deadbeefdeadbeefdeadbeefdeadbeef".to_owned()
        } else {
            span.trace_id.trim_start_matches('0').to_owned()
        };
        let entry = calls.entry(labels).or_insert((0, String::new()));
        entry.0 += 1;
        entry.1 = exemplar;
    }
    // Service graph: client -> server edges, the invented caller of root server spans, and
    // database calls.
    let mut edges: BTreeMap<(String, String, &str), u64> = BTreeMap::new();
    for span in &spans {
        let attribute = |key: &str| {
            span.attributes
                .get(key)
                .or_else(|| span.resource.get(key))
                .cloned()
        };
        match span.kind {
            2 if span.parent_span_id.is_empty() => {
                *edges
                    .entry(("user".into(), span.service.clone(), "virtual_node"))
                    .or_default() += 1;
            }
            2 => {
                if let Some(parent) =
                    by_id.get(&(span.trace_id.as_str(), span.parent_span_id.as_str()))
                    && parent.kind == 3
                {
                    *edges
                        .entry((parent.service.clone(), span.service.clone(), ""))
                        .or_default() += 1;
                }
            }
            3 => {
                let database = state
                    .database_name_attributes
                    .iter()
                    .find_map(|key| attribute(key));
                if let Some(database) = database {
                    let server = ["peer.service", "server.address", "network.peer.address"]
                        .into_iter()
                        .find_map(attribute)
                        .unwrap_or(database);
                    *edges
                        .entry((span.service.clone(), server, "database"))
                        .or_default() += 1;
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    out.push_str("# TYPE traces_spanmetrics_calls counter\n");
    for (labels, (count, _)) in &calls {
        out.push_str(&format!(
            "traces_spanmetrics_calls_total{{{labels}}} {count}\n"
        ));
    }
    out.push_str("# TYPE traces_spanmetrics_latency histogram\n");
    for (labels, (count, exemplar)) in &calls {
        let name = "traces_spanmetrics_latency";
        out.push_str(&format!("{name}_bucket{{{labels},le=\"0.1\"}} {count}\n"));
        out.push_str(&format!(
            "{name}_bucket{{{labels},le=\"+Inf\"}} {count} # {{traceID=\"{exemplar}\"}} 0.01\n"
        ));
        out.push_str(&format!(
            "{name}_sum{{{labels}}} {}\n",
            *count as f64 * 0.01
        ));
        out.push_str(&format!("{name}_count{{{labels}}} {count}\n"));
    }
    if !faults.no_edges {
        out.push_str("# TYPE traces_service_graph_request counter\n");
        for ((client, server, connection), count) in &edges {
            out.push_str(&format!(
                "traces_service_graph_request_total{{client=\"{client}\",server=\"{server}\",connection_type=\"{connection}\"}} {count}\n"
            ));
        }
    }
    out.push_str("# EOF\n");
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// What a test can break in the Loki stand-in.
#[derive(Debug, Clone, Default)]
pub struct LokiFaults {
    /// This service's lines never arrive.
    pub drop_service: Option<String>,
}

/// The Loki stand-in.
pub struct Loki {
    /// Its base URL.
    pub url: String,
    /// Switched by tests.
    pub faults: Arc<Mutex<LokiFaults>>,
}

#[derive(Clone)]
struct LokiState {
    files: Arc<Vec<std::path::PathBuf>>,
    faults: Arc<Mutex<LokiFaults>>,
}

impl Loki {
    /// Serves the JSON lines in `files` (the services' stdout, as Alloy ships it).
    pub async fn start(files: Vec<std::path::PathBuf>) -> Self {
        let faults = Arc::new(Mutex::new(LokiFaults::default()));
        let state = LokiState {
            files: Arc::new(files),
            faults: faults.clone(),
        };
        let router = Router::new()
            .route("/loki/api/v1/query_range", get(loki_query_range))
            .route(
                "/loki/api/v1/labels",
                get(|| async {
                    json_answer(
                        StatusCode::OK,
                        json!({"status": "success", "data": ["level", "service"]}),
                    )
                }),
            )
            .with_state(state);
        Self {
            url: serve(router).await,
            faults,
        }
    }
}

/// One stage or matcher of the LogQL subset: `name op "value"`.
struct Matcher {
    name: String,
    op: String,
    value: String,
}

impl Matcher {
    fn matches(&self, actual: Option<&str>) -> bool {
        let actual = actual.unwrap_or("");
        // Loki anchors regular expressions at both ends.
        let regex = || regex::Regex::new(&format!("^(?:{})$", self.value)).unwrap();
        match self.op.as_str() {
            "=" => actual == self.value,
            "!=" => actual != self.value,
            "=~" => regex().is_match(actual),
            "!~" => !regex().is_match(actual),
            _ => false,
        }
    }
}

/// A LogQL log query in the subset Grafana's provisioning uses.
struct LogQuery {
    /// The stream selector's matchers.
    selector: Vec<Matcher>,
    /// `| name op "value"` label filters (stream labels or structured metadata).
    filters: Vec<Matcher>,
    /// `|= "text"` line filters.
    contains: Vec<String>,
}

/// `query` parsed; an error for anything outside the subset, as Loki's parser would give.
fn parse_logql(query: &str) -> Result<LogQuery, String> {
    let whole = regex::Regex::new(r"^\s*\{([^}]*)\}(.*)$").unwrap();
    let pair = regex::Regex::new(r#"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*$"#)
        .unwrap();
    let caps = whole
        .captures(query)
        .ok_or_else(|| format!("parse error: {query}"))?;
    let matcher = |text: &str| -> Result<Matcher, String> {
        let c = pair
            .captures(text)
            .ok_or_else(|| format!("parse error at {text:?}"))?;
        Ok(Matcher {
            name: c[1].to_owned(),
            op: c[2].to_owned(),
            value: c[3].to_owned(),
        })
    };
    let selector = caps[1]
        .split(',')
        .filter(|m| !m.trim().is_empty())
        .map(matcher)
        .collect::<Result<Vec<_>, _>>()?;
    let mut filters = Vec::new();
    let mut contains = Vec::new();
    let stage = regex::Regex::new(r#"\|=\s*"([^"]*)"|\|\s*json\b|\|([^|]+)"#).unwrap();
    for c in stage.captures_iter(&caps[2]) {
        if let Some(text) = c.get(1) {
            contains.push(text.as_str().to_owned());
        } else if let Some(filter) = c.get(2) {
            filters.push(matcher(filter.as_str())?);
        }
    }
    Ok(LogQuery {
        selector,
        filters,
        contains,
    })
}

async fn loki_query_range(
    State(state): State<LokiState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = query_pairs(query);
    let Some(query) = params.get("query") else {
        return json_answer(
            StatusCode::BAD_REQUEST,
            json!({"status": "error", "error": "query is required"}),
        );
    };
    let LogQuery {
        selector,
        filters,
        contains,
    } = match parse_logql(query) {
        Ok(parsed) => parsed,
        Err(error) => {
            return json_answer(
                StatusCode::BAD_REQUEST,
                json!({"status": "error", "error": error}),
            );
        }
    };
    let drop = state.faults.lock().unwrap().drop_service.clone();
    let categorize = headers
        .get("X-Loki-Response-Encoding-Flags")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("categorize-labels"));
    let mut streams: BTreeMap<Vec<(String, String)>, Vec<Value>> = BTreeMap::new();
    for file in state.files.iter() {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let Ok(fields) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let field = |k: &str| fields[k].as_str().map(str::to_owned);
            let labels: BTreeMap<&str, Option<String>> =
                [("service", field("service")), ("level", field("level"))].into();
            let metadata: BTreeMap<&str, Option<String>> = [
                ("trace_id", field("trace_id")),
                ("span_id", field("span_id")),
            ]
            .into();
            if drop.is_some() && labels["service"] == drop {
                continue;
            }
            let label = |name: &str| labels.get(name).or(metadata.get(name)).cloned().flatten();
            let keep = selector.iter().all(|m| {
                labels.contains_key(m.name.as_str()) && m.matches(label(&m.name).as_deref())
            }) && filters.iter().all(|m| m.matches(label(&m.name).as_deref()))
                && contains.iter().all(|c| line.contains(c.as_str()));
            if !keep {
                continue;
            }
            let stream: Vec<(String, String)> = labels
                .iter()
                .filter_map(|(k, v)| v.clone().map(|v| ((*k).to_owned(), v)))
                .collect();
            let structured: BTreeMap<&str, String> = metadata
                .iter()
                .filter_map(|(k, v)| v.clone().map(|v| (*k, v)))
                .collect();
            let ts = format!("{}", 1_700_000_000_000_000_000u128 + n as u128);
            let value = if categorize {
                json!([ts, line, {"structuredMetadata": structured}])
            } else {
                json!([ts, line])
            };
            // Without the flag, structured metadata is folded into the stream's labels.
            let mut key = stream;
            if !categorize {
                key.extend(structured.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            }
            streams.entry(key).or_default().push(value);
        }
    }
    let result: Vec<Value> = streams
        .into_iter()
        .map(|(labels, values)| {
            let labels: serde_json::Map<String, Value> =
                labels.into_iter().map(|(k, v)| (k, json!(v))).collect();
            json!({"stream": labels, "values": values})
        })
        .collect();
    let mut data = json!({"resultType": "streams", "result": result});
    if categorize {
        data["encodingFlags"] = json!(["categorize-labels"]);
    }
    json_answer(StatusCode::OK, json!({"status": "success", "data": data}))
}

/// What a test can change in the Grafana stand-in.
#[derive(Debug, Clone)]
pub struct GrafanaSettings {
    /// `GF_AUTH_ANONYMOUS_ENABLED`.
    pub anonymous: bool,
    /// `GF_AUTH_ANONYMOUS_ORG_ROLE`.
    pub role: String,
    /// uid -> (type, URL it reaches the data source at).
    pub datasources: BTreeMap<String, (String, String)>,
}

/// The Grafana stand-in.
pub struct Grafana {
    /// Its base URL.
    pub url: String,
    /// Switched by tests.
    pub settings: Arc<Mutex<GrafanaSettings>>,
}

impl Grafana {
    /// Configured as compose configures the real one: deploy/grafana/grafana.env and the
    /// data-source provisioning, each URL's host (`tempo`, `loki`, `prometheus`) mapped to
    /// where this test serves it.
    pub async fn start(hosts: &HashMap<&str, String>) -> Self {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let env = std::fs::read_to_string(format!("{root}/deploy/grafana/grafana.env")).unwrap();
        let setting = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        let provisioning: Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(format!(
                "{root}/deploy/grafana/provisioning/datasources/datasources.yaml"
            ))
            .unwrap(),
        )
        .unwrap();
        let datasources = provisioning["datasources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let url = reqwest::Url::parse(d["url"].as_str().unwrap()).unwrap();
                let base = hosts[url.host_str().unwrap()].clone();
                (
                    d["uid"].as_str().unwrap().to_owned(),
                    (d["type"].as_str().unwrap().to_owned(), base),
                )
            })
            .collect();
        let settings = Arc::new(Mutex::new(GrafanaSettings {
            anonymous: setting("GF_AUTH_ANONYMOUS_ENABLED") == "true",
            role: match setting("GF_AUTH_ANONYMOUS_ORG_ROLE").as_str() {
                "" => "Viewer".to_owned(),
                role => role.to_owned(),
            },
            datasources,
        }));
        let router = Router::new()
            .route(
                "/api/health",
                get(|| async {
                    json_answer(
                        StatusCode::OK,
                        json!({"database": "ok", "version": "13.1.2", "commit": "stand-in"}),
                    )
                }),
            )
            .route("/explore", get(grafana_explore))
            .route("/api/datasources/uid/{uid}/health", get(grafana_health))
            .route("/api/ds/query", post(grafana_query))
            .with_state(settings.clone());
        Self {
            url: serve(router).await,
            settings,
        }
    }
}

type GrafanaState = Arc<Mutex<GrafanaSettings>>;

async fn grafana_explore(State(settings): State<GrafanaState>) -> Response {
    let settings = settings.lock().unwrap().clone();
    if !settings.anonymous {
        return (StatusCode::FOUND, [(header::LOCATION, "/login")]).into_response();
    }
    // datasources:explore: Editor and Admin (Grafana 12+, no viewers_can_edit).
    if ["Editor", "Admin"].contains(&settings.role.as_str()) {
        (StatusCode::OK, "<!doctype html><title>Explore</title>").into_response()
    } else {
        (StatusCode::FOUND, [(header::LOCATION, "/")]).into_response()
    }
}

/// The data source's type and URL, if Grafana has it.
fn datasource(settings: &GrafanaState, uid: &str) -> Option<(String, String)> {
    settings.lock().unwrap().datasources.get(uid).cloned()
}

/// Grafana's answer for an unknown data source uid.
fn no_datasource() -> Response {
    json_answer(
        StatusCode::NOT_FOUND,
        json!({"message": "Data source not found"}),
    )
}

async fn grafana_health(State(settings): State<GrafanaState>, Path(uid): Path<String>) -> Response {
    let Some((kind, base)) = datasource(&settings, &uid) else {
        return no_datasource();
    };
    let probe = match kind.as_str() {
        "prometheus" => format!("{base}/api/v1/query?query=1%2B1"),
        "loki" => format!("{base}/loki/api/v1/labels"),
        _ => format!("{base}/api/echo"),
    };
    match reqwest::get(&probe).await.map(|r| r.status()) {
        Ok(status) if status.is_success() => json_answer(
            StatusCode::OK,
            json!({"status": "OK", "message": "Data source is working"}),
        ),
        other => json_answer(
            StatusCode::BAD_REQUEST,
            json!({"status": "ERROR", "message": format!("{probe}: {other:?}")}),
        ),
    }
}

/// One `/api/ds/query` query, run against the data source: its frames.
async fn run_query(kind: &str, base: &str, query: &Value) -> Result<Vec<Value>, String> {
    let http = reqwest::Client::new();
    let fetch = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{status}: {body}"))
        }
    };
    match kind {
        "prometheus" => {
            let expr = query["expr"].as_str().unwrap_or("");
            let answer = fetch(
                http.get(format!("{base}/api/v1/query"))
                    .query(&[("query", expr)]),
            )
            .await?;
            Ok(answer["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|series| {
                    json!({"schema": {"fields": [{"name": "Time"}, {"name": "Value", "labels": series["metric"]}]},
                           "data": {"values": [[series["value"][0]], [series["value"][1]]]}})
                })
                .collect())
        }
        "loki" => {
            let expr = query["expr"].as_str().unwrap_or("");
            let answer = fetch(
                http.get(format!("{base}/loki/api/v1/query_range"))
                    .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
                    .query(&[("query", expr)]),
            )
            .await?;
            let (mut labels, mut times, mut lines) = (Vec::new(), Vec::new(), Vec::new());
            for stream in answer["data"]["result"].as_array().into_iter().flatten() {
                for value in stream["values"].as_array().into_iter().flatten() {
                    labels.push(stream["stream"].clone());
                    times.push(value[0].clone());
                    lines.push(value[1].clone());
                }
            }
            Ok(vec![
                json!({"schema": {"fields": [{"name": "labels"}, {"name": "Time"}, {"name": "Line"}]},
                           "data": {"values": [labels, times, lines]}}),
            ])
        }
        "tempo" if query["queryType"] == "traceId" => {
            let id = query["query"].as_str().unwrap_or("");
            let answer = fetch(http.get(format!("{base}/api/v2/traces/{id}"))).await?;
            // Grafana's backend writes each row's traceID with all 32 digits, spanID in hex.
            let padded = format!("{id:0>32}");
            let span_ids: Vec<String> = answer["trace"]["resourceSpans"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|b| b["scopeSpans"].as_array().cloned().unwrap_or_default())
                .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
                .map(|span| {
                    let id = base64::engine::general_purpose::STANDARD
                        .decode(span["spanId"].as_str().unwrap_or(""))
                        .unwrap_or_default();
                    hex::encode(id)
                })
                .collect();
            Ok(vec![json!({
                "schema": {"fields": [{"name": "traceID"}, {"name": "spanID"}]},
                "data": {"values": [vec![padded; span_ids.len()], span_ids]},
            })])
        }
        other => Err(format!(
            "query type {} of {other} is not supported",
            query["queryType"]
        )),
    }
}

async fn grafana_query(State(settings): State<GrafanaState>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return json_answer(
            StatusCode::BAD_REQUEST,
            json!({"message": "bad request data"}),
        );
    };
    let mut results = serde_json::Map::new();
    let mut failed = false;
    for query in request["queries"].as_array().into_iter().flatten() {
        let ref_id = query["refId"].as_str().unwrap_or("A").to_owned();
        let uid = query["datasource"]["uid"].as_str().unwrap_or("");
        let Some((kind, base)) = datasource(&settings, uid) else {
            return no_datasource();
        };
        let result = match run_query(&kind, &base, query).await {
            Ok(frames) => json!({"status": 200, "frames": frames}),
            Err(error) => {
                failed = true;
                json!({"status": 400, "error": error, "errorSource": "downstream"})
            }
        };
        results.insert(ref_id, result);
    }
    let status = if failed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    json_answer(status, json!({"results": results}))
}

/// The three services exporting to an in-test collector and logging to files, with the Tempo
/// and Loki stand-ins in front of what they exported and wrote: `make up`'s layout, without the
/// containers.
pub struct ObservedStack {
    /// The services.
    pub stack: crate::stack::Stack,
    /// Where their spans go.
    pub collector: Arc<OtlpCollector>,
    /// Tempo's API over the collector's spans.
    pub tempo: Tempo,
    /// Loki's API over the services' log files.
    pub loki: Loki,
}

impl ObservedStack {
    /// Starts it all and waits until the gateway is ready.
    pub async fn start() -> Self {
        let collector = Arc::new(OtlpCollector::start().await);
        // Logs to files, as a container runtime keeps them, for the Loki stand-in to read.
        let stack = crate::stack::Stack::start_with_options(
            &crate::stack::Stack::exporting_to(&collector.endpoint()),
            crate::stack::Options {
                logs: crate::stack::Logs::Files,
                ..crate::stack::Options::default()
            },
        )
        .await;
        let tempo = Tempo::start(collector.clone()).await;
        let files = [&stack.gateway, &stack.auth, &stack.user]
            .iter()
            .map(|s| s.log_file().expect("logs to a file").to_owned())
            .collect();
        let loki = Loki::start(files).await;
        Self {
            stack,
            collector,
            tempo,
            loki,
        }
    }
}
