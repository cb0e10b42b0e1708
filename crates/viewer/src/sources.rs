//! Where `trace` (`make trace`) reads a trace and its log lines, chosen by `TRACE_SOURCE`:
//!
//! | source | spans | log lines | the stack |
//! |---|---|---|---|
//! | `viewer` (default) | this viewer's `/api/traces/<id>` | `LOG_DIR/*.log` (`data/logs`) | `make run` |
//! | `tempo` | Tempo's `/api/v2/traces/<id>` | Loki's `query_range` | `make up`, and kind through `make kind-trace` |

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::store::{Event, Span};
use crate::tree::LogLine;

/// Which backend.
pub const TRACE_SOURCE: &str = "TRACE_SOURCE";
/// The viewer's base URL.
pub const VIEWER_URL: &str = "VIEWER_URL";
/// Where `make run` writes each service's lines.
pub const LOG_DIR: &str = "LOG_DIR";
/// Tempo's HTTP API.
pub const TEMPO_URL: &str = "TEMPO_URL";
/// Loki's HTTP API.
pub const LOKI_URL: &str = "LOKI_URL";

/// Default for [`VIEWER_URL`].
pub const DEFAULT_VIEWER_URL: &str = "http://127.0.0.1:16686";
/// Default for [`LOG_DIR`].
pub const DEFAULT_LOG_DIR: &str = "data/logs";
/// Default for [`TEMPO_URL`]: what `make up` publishes.
pub const DEFAULT_TEMPO_URL: &str = "http://localhost:3200";
/// Default for [`LOKI_URL`].
pub const DEFAULT_LOKI_URL: &str = "http://localhost:3100";

/// How far back "the last minutes" go when no id is given.
const RECENT_SECONDS: u64 = 15 * 60;

/// A trace backend and the log lines beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The embedded viewer and `make run`'s log files.
    Viewer {
        /// Its base URL.
        url: String,
        /// The folder of `<service>.log` files.
        log_dir: std::path::PathBuf,
    },
    /// Tempo and Loki.
    Tempo {
        /// Tempo's base URL.
        tempo: String,
        /// Loki's base URL.
        loki: String,
    },
}

impl Source {
    /// From `lookup` (the environment); an unknown `TRACE_SOURCE` is an error line.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str, default: &str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_owned())
                .trim_end_matches('/')
                .to_owned()
        };
        match var(TRACE_SOURCE, "viewer").as_str() {
            "viewer" => Ok(Self::Viewer {
                url: var(VIEWER_URL, DEFAULT_VIEWER_URL),
                log_dir: var(LOG_DIR, DEFAULT_LOG_DIR).into(),
            }),
            "tempo" => Ok(Self::Tempo {
                tempo: var(TEMPO_URL, DEFAULT_TEMPO_URL),
                loki: var(LOKI_URL, DEFAULT_LOKI_URL),
            }),
            other => Err(format!(
                "invalid {TRACE_SOURCE}: {other:?} (viewer for make run, tempo for make up and kind)"
            )),
        }
    }

    /// Where the spans come from, for messages.
    fn describe(&self) -> String {
        match self {
            Self::Viewer { url, .. } => format!("the viewer at {url} (is `make run` going?)"),
            Self::Tempo { tempo, .. } => format!("Tempo at {tempo} (is `make up` going?)"),
        }
    }

    /// The spans of `id`, ordered by start; an error line when the backend cannot be reached
    /// or has no such trace.
    pub async fn spans(&self, http: &reqwest::Client, id: &str) -> Result<Vec<Span>, String> {
        let (url, from_answer): (String, fn(&Value) -> Vec<Span>) = match self {
            Self::Viewer { url, .. } => (format!("{url}/api/traces/{id}"), viewer_spans),
            Self::Tempo { tempo, .. } => (format!("{tempo}/api/v2/traces/{id}"), tempo_spans),
        };
        let response = http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.describe()))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status == 404 {
            return Err(format!("no trace {id} in {}", self.describe()));
        }
        if !status.is_success() {
            return Err(format!("{url} answered {status}: {answer}"));
        }
        let mut spans = from_answer(&answer);
        if spans.is_empty() {
            return Err(format!("no trace {id} in {}", self.describe()));
        }
        spans.sort_by_key(|s| s.start_unix_nano);
        Ok(spans)
    }

    /// The log lines of trace `id` from every service.
    pub async fn logs(&self, http: &reqwest::Client, id: &str) -> Result<Vec<LogLine>, String> {
        match self {
            Self::Viewer { log_dir, .. } => {
                let mut lines = Vec::new();
                let entries = std::fs::read_dir(log_dir).map_err(|e| {
                    format!("cannot read the log files in {}: {e}", log_dir.display())
                })?;
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "log") {
                        let text = std::fs::read_to_string(&path).unwrap_or_default();
                        lines.extend(text.lines().filter_map(|l| LogLine::parse(l, id)));
                    }
                }
                Ok(lines)
            }
            Self::Tempo { loki, .. } => {
                let now = now_nanos();
                // A substring filter finds the id with or without its leading zeros.
                let query = format!(
                    r#"{{service=~"gateway|auth|user"}} |= "{}""#,
                    id.trim_start_matches('0')
                );
                let answer: Value = http
                    .get(format!("{loki}/loki/api/v1/query_range"))
                    .query(&[
                        ("query", query),
                        (
                            "start",
                            (now - u128::from(RECENT_SECONDS) * 4 * 1_000_000_000).to_string(),
                        ),
                        ("end", (now + 60_000_000_000).to_string()),
                        ("limit", "1000".to_owned()),
                    ])
                    .send()
                    .await
                    .map_err(|e| format!("cannot reach Loki at {loki}: {e}"))?
                    .json()
                    .await
                    .map_err(|e| format!("Loki at {loki}: {e}"))?;
                Ok(answer["data"]["result"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
                    .filter_map(|v| v[1].as_str().and_then(|l| LogLine::parse(l, id)))
                    .collect())
            }
        }
    }

    /// Without an id: the slowest trace and the most recent failed one of the last minutes,
    /// as `(what, trace id)`.
    pub async fn notable(&self, http: &reqwest::Client) -> Result<Vec<(String, String)>, String> {
        let cutoff = now_nanos() - u128::from(RECENT_SECONDS) * 1_000_000_000;
        let mut found = Vec::new();
        match self {
            Self::Viewer { url, .. } => {
                let answer: Value = http
                    .get(format!("{url}/api/traces?limit=1000"))
                    .send()
                    .await
                    .map_err(|e| format!("cannot reach {}: {e}", self.describe()))?
                    .json()
                    .await
                    .map_err(|e| format!("{url}: {e}"))?;
                let recent: Vec<&Value> = answer["traces"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| u128::from(t["start_unix_nano"].as_u64().unwrap_or(0)) >= cutoff)
                    .collect();
                if let Some(slowest) = recent.iter().max_by_key(|t| t["duration_ns"].as_u64()) {
                    found.push(("slowest".to_owned(), text(slowest, "trace_id")));
                }
                // Newest first already.
                if let Some(failed) = recent.iter().find(|t| t["error"] == true) {
                    found.push(("most recent failed".to_owned(), text(failed, "trace_id")));
                }
            }
            Self::Tempo { tempo, .. } => {
                let search = |q: &str| {
                    let now = now_nanos() / 1_000_000_000;
                    http.get(format!("{tempo}/api/search"))
                        .query(&[
                            ("q", q.to_owned()),
                            ("start", (now - u128::from(RECENT_SECONDS)).to_string()),
                            ("end", now.to_string()),
                            ("limit", "200".to_owned()),
                        ])
                        .send()
                };
                let all: Value = search("{ }")
                    .await
                    .map_err(|e| format!("cannot reach {}: {e}", self.describe()))?
                    .json()
                    .await
                    .map_err(|e| format!("{tempo}: {e}"))?;
                let traces = all["traces"].as_array().cloned().unwrap_or_default();
                if let Some(slowest) = traces.iter().max_by_key(|t| t["durationMs"].as_u64()) {
                    found.push(("slowest".to_owned(), text(slowest, "traceID")));
                }
                let failed: Value = search("{ status = error } with (most_recent=true)")
                    .await
                    .map_err(|e| format!("cannot reach {}: {e}", self.describe()))?
                    .json()
                    .await
                    .map_err(|e| format!("{tempo}: {e}"))?;
                if let Some(latest) = failed["traces"].as_array().and_then(|t| {
                    t.iter().max_by_key(|t| {
                        t["startTimeUnixNano"]
                            .as_str()
                            .and_then(|s| s.parse::<u128>().ok())
                    })
                }) {
                    found.push(("most recent failed".to_owned(), text(latest, "traceID")));
                }
            }
        }
        Ok(found)
    }
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or("").to_owned()
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// The viewer's JSON answer as spans.
fn viewer_spans(answer: &Value) -> Vec<Span> {
    let pairs = |v: &Value| -> Vec<(String, String)> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
            .collect()
    };
    answer["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| Span {
            span_id: text(s, "span_id"),
            parent_span_id: text(s, "parent_span_id"),
            service: text(s, "service"),
            name: text(s, "name"),
            kind: kind(s["kind"].as_str().unwrap_or("")),
            start_unix_nano: s["start_unix_nano"].as_u64().unwrap_or(0),
            end_unix_nano: s["end_unix_nano"].as_u64().unwrap_or(0),
            status: status(s["status"]["code"].as_str().unwrap_or("")),
            status_message: text(&s["status"], "message"),
            attributes: pairs(&s["attributes"]),
            events: s["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| Event {
                    name: text(e, "name"),
                    time_unix_nano: e["time_unix_nano"].as_u64().unwrap_or(0),
                    attributes: pairs(&e["attributes"]),
                })
                .collect(),
        })
        .collect()
}

/// A kind, from the viewer's (`server`) or Tempo's (`SPAN_KIND_SERVER`) spelling.
fn kind(text: &str) -> &'static str {
    match text
        .trim_start_matches("SPAN_KIND_")
        .to_ascii_lowercase()
        .as_str()
    {
        "server" => "server",
        "client" => "client",
        "internal" => "internal",
        "producer" => "producer",
        "consumer" => "consumer",
        _ => "unspecified",
    }
}

/// A status, from the viewer's (`error`) or Tempo's (`STATUS_CODE_ERROR`) spelling.
fn status(text: &str) -> &'static str {
    match text
        .trim_start_matches("STATUS_CODE_")
        .to_ascii_lowercase()
        .as_str()
    {
        "ok" => "ok",
        "error" => "error",
        _ => "unset",
    }
}

/// An id in Tempo's JSON (base64, as gogo's jsonpb writes bytes; or hex) as hex.
fn tempo_id(value: &Value) -> String {
    use base64::Engine as _;
    let text = value.as_str().unwrap_or("");
    if matches!(text.len(), 16 | 32) && text.chars().all(|c| c.is_ascii_hexdigit()) {
        return text.to_ascii_lowercase();
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(hex::encode)
        .unwrap_or_default()
}

/// An OTLP/JSON attribute value (Tempo's encoding) as text.
fn any_value(value: &Value) -> String {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return String::new();
    };
    match kind.as_str() {
        "arrayValue" => {
            let items: Vec<String> = inner["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(any_value)
                .collect();
            format!("[{}]", items.join(", "))
        }
        _ => inner
            .as_str()
            .map_or_else(|| inner.to_string(), str::to_owned),
    }
}

/// Tempo's answer to `/api/v2/traces/<id>` as spans.
fn tempo_spans(answer: &Value) -> Vec<Span> {
    let pairs = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|kv| (text(kv, "key"), any_value(&kv["value"])))
            .collect()
    };
    let nanos = |v: &Value| -> u64 {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| v.as_u64())
            .unwrap_or(0)
    };
    let mut spans = Vec::new();
    for batch in answer["trace"]["resourceSpans"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let service = pairs(&batch["resource"]["attributes"])
            .into_iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v)
            .unwrap_or_default();
        let scopes = batch["scopeSpans"].as_array().into_iter().flatten();
        for span in scopes.flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default()) {
            spans.push(Span {
                span_id: tempo_id(&span["spanId"]),
                parent_span_id: tempo_id(&span["parentSpanId"]),
                service: service.clone(),
                name: text(&span, "name"),
                kind: kind(span["kind"].as_str().unwrap_or("")),
                start_unix_nano: nanos(&span["startTimeUnixNano"]),
                end_unix_nano: nanos(&span["endTimeUnixNano"]),
                status: status(span["status"]["code"].as_str().unwrap_or("")),
                status_message: text(&span["status"], "message"),
                attributes: pairs(&span["attributes"]),
                events: span["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| Event {
                        name: text(e, "name"),
                        time_unix_nano: nanos(&e["timeUnixNano"]),
                        attributes: pairs(&e["attributes"]),
                    })
                    .collect(),
            });
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_source_is_chosen_by_one_variable() {
        assert!(matches!(
            Source::from_lookup(|_| None).unwrap(),
            Source::Viewer { .. }
        ));
        let tempo = Source::from_lookup(|n| (n == TRACE_SOURCE).then(|| "tempo".into())).unwrap();
        assert_eq!(
            tempo,
            Source::Tempo {
                tempo: DEFAULT_TEMPO_URL.into(),
                loki: DEFAULT_LOKI_URL.into()
            }
        );
        let bad = Source::from_lookup(|n| (n == TRACE_SOURCE).then(|| "jaeger".into()));
        assert!(bad.unwrap_err().contains("TRACE_SOURCE"));
    }

    #[test]
    fn tempos_json_becomes_spans() {
        let answer = json!({"trace": {"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "user"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "AAqz7oW2IVUkRAtmQ0t1sQ==", "spanId": "ASNFZ4mrze8=", "parentSpanId": "/v7+/v7+/v4=",
                "name": "GetUser", "kind": "SPAN_KIND_SERVER",
                "startTimeUnixNano": "1000", "endTimeUnixNano": "3000",
                "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                "attributes": [{"key": "rpc.grpc.status_code", "value": {"intValue": "5"}}],
                "events": [{"name": "exception", "timeUnixNano": "2000", "attributes": []}]}]}]}]}});
        let spans = tempo_spans(&answer);
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.span_id, "0123456789abcdef");
        assert_eq!(s.parent_span_id, "fefefefefefefefe");
        assert_eq!(
            (s.kind, s.status, s.duration_ns()),
            ("server", "error", 2000)
        );
        assert_eq!(
            s.attributes,
            [("rpc.grpc.status_code".to_owned(), "5".to_owned())]
        );
        assert_eq!(s.events[0].name, "exception");
    }
}
