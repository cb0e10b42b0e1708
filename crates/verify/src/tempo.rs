//! Tempo: the request is one trace with spans from all three services, every parent link intact.
//!
//! Asked as Grafana asks: `GET /api/v2/traces/<id>` (what Grafana's Tempo data source calls for
//! a trace-id query), first with the id as Tempo itself writes it in search results and
//! exemplars (no leading zeros), then with all 32 digits as a person pastes it from
//! `x-trace-id`. Tempo answers in its JSON form of OTLP: `trace.resourceSpans[].scopeSpans[].
//! spans[]`, ids in base64 (gogo's jsonpb), kinds as `SPAN_KIND_*` names.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde_json::Value;

use crate::{Broken, Clients, Config, Ids};

/// The services one request crosses.
pub const SERVICES: [&str; 3] = ["gateway", "auth", "user"];

/// One span of a trace, as much of it as the checks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The resource's `service.name`.
    pub service: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root.
    pub parent_span_id: String,
    /// The span name.
    pub name: String,
    /// `SPAN_KIND_SERVER`, `SPAN_KIND_CLIENT`, ...
    pub kind: String,
}

/// An id in Tempo's JSON as hex: base64 (what Tempo writes) or already hex (OTLP/JSON's form).
fn hex_id(value: &Value, hex_len: usize) -> String {
    let text = value.as_str().unwrap_or("");
    if text.len() == hex_len && text.chars().all(|c| c.is_ascii_hexdigit()) {
        return text.to_ascii_lowercase();
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

/// The spans of Tempo's answer to `/api/v2/traces/<id>`.
pub fn spans(answer: &Value) -> Vec<Span> {
    let mut spans = Vec::new();
    let batches = answer["trace"]["resourceSpans"].as_array();
    for batch in batches.into_iter().flatten() {
        let service = batch["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or("")
            .to_owned();
        let scopes = batch["scopeSpans"].as_array().into_iter().flatten();
        for span in scopes.flat_map(|s| s["spans"].as_array().into_iter().flatten()) {
            spans.push(Span {
                service: service.clone(),
                span_id: hex_id(&span["spanId"], 16),
                parent_span_id: hex_id(&span["parentSpanId"], 16),
                name: span["name"].as_str().unwrap_or("").to_owned(),
                kind: span["kind"].as_str().unwrap_or("").to_owned(),
            });
        }
    }
    spans
}

/// The trace `id` (either form) as Tempo answers it; empty when Tempo has none (Tempo's v2
/// API answers 200 with an empty trace, v1 404: both mean "not yet").
pub async fn trace(clients: &Clients, tempo: &str, id: &str) -> Result<Vec<Span>, String> {
    let answer = crate::json(clients.http.get(format!("{tempo}/api/v2/traces/{id}"))).await;
    match answer {
        Ok(answer) => Ok(spans(&answer)),
        Err(error) if error.contains(" 404 ") => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

/// Whether `spans` are one whole trace of the three requests whose remote parents are
/// `parents`: spans from every service, each request's server span under its `traceparent`,
/// every other parent a span of the trace, and each call into auth and user under a client
/// span of its caller.
pub fn whole(spans: &[Span], parents: &[String]) -> Result<(), String> {
    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    let missing: Vec<&str> = SERVICES
        .into_iter()
        .filter(|s| !services.contains(s))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} spans, none from {} (services seen: {services:?})",
            spans.len(),
            missing.join(", ")
        ));
    }
    let by_id: BTreeMap<&str, &Span> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for parent in parents {
        if !spans
            .iter()
            .any(|s| s.service == "gateway" && &s.parent_span_id == parent)
        {
            return Err(format!(
                "no gateway span under the traceparent parent {parent}: the request's span is \
                 missing or started a new trace"
            ));
        }
    }
    for span in spans {
        let parent = span.parent_span_id.as_str();
        if parents.iter().any(|p| p == parent) {
            continue;
        }
        let Some(parent_span) = by_id.get(parent) else {
            return Err(format!(
                "{} span {:?} has parent {parent:?}, which is not in the trace (a broken link)",
                span.service, span.name
            ));
        };
        let crosses = span.kind == "SPAN_KIND_SERVER" && span.service != "gateway";
        if crosses
            && (parent_span.kind != "SPAN_KIND_CLIENT" || parent_span.service == span.service)
        {
            return Err(format!(
                "{} server span {:?} hangs under {} {} span {:?}, not under its caller's \
                 client span",
                span.service, span.name, parent_span.service, parent_span.kind, parent_span.name
            ));
        }
    }
    Ok(())
}

/// The Tempo link: the line to print, or the broken link.
pub async fn check(config: &Config, clients: &Clients, ids: &Ids) -> Result<String, Broken> {
    let broken = |problem: String| Broken {
        link: "Tempo",
        problem,
        look: format!(
            "curl -s {}/api/v2/traces/{} | jq; make logs SERVICE=tempo; the services' \
             OTEL_EXPORTER_OTLP_ENDPOINT must reach Tempo's 4317",
            config.tempo, ids.trace_id
        ),
    };
    let short = ids.tempo_form();
    let spans = crate::eventually(config.timeout, || async {
        let spans = trace(clients, &config.tempo, short).await?;
        whole(&spans, &ids.parents)?;
        Ok(spans)
    })
    .await
    .map_err(|e| broken(format!("trace {short} after {:?}: {e}", config.timeout)))?;
    // The 32-digit form, as pasted from x-trace-id, names the same trace.
    let full = trace(clients, &config.tempo, &ids.trace_id)
        .await
        .map_err(&broken)?;
    if full.len() != spans.len() {
        return Err(broken(format!(
            "{} answers {} spans, {short} answers {}",
            ids.trace_id,
            full.len(),
            spans.len()
        )));
    }
    let per_service: Vec<String> = SERVICES
        .iter()
        .map(|s| format!("{s} {}", spans.iter().filter(|x| x.service == *s).count()))
        .collect();
    Ok(format!(
        "Tempo: trace {short} (and its 32-digit form): {} spans ({}), every parent link intact",
        spans.len(),
        per_service.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn span(service: &str, id: &str, parent: &str, kind: &str) -> Span {
        Span {
            service: service.into(),
            span_id: id.into(),
            parent_span_id: parent.into(),
            name: format!("{service} {kind}"),
            kind: format!("SPAN_KIND_{kind}"),
        }
    }

    #[test]
    fn tempo_base64_ids_become_hex() {
        let answer = json!({"trace": {"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "auth"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "AAqz7oW2IVUkRAtmQ0t1sQ==", "spanId": "ASNFZ4mrze8=",
                "parentSpanId": "", "name": "x", "kind": "SPAN_KIND_SERVER"}]}]}]}});
        let spans = spans(&answer);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].span_id, "0123456789abcdef");
        assert_eq!(spans[0].parent_span_id, "");
        assert_eq!(spans[0].service, "auth");
    }

    #[test]
    fn a_whole_trace_passes_and_each_kind_of_break_is_named() {
        let parents = vec!["00000000000000aa".to_owned()];
        let good = vec![
            span("gateway", "1", "00000000000000aa", "SERVER"),
            span("gateway", "2", "1", "CLIENT"),
            span("auth", "3", "2", "SERVER"),
            span("auth", "4", "3", "CLIENT"),
            span("user", "5", "4", "SERVER"),
            span("user", "6", "5", "CLIENT"),
        ];
        whole(&good, &parents).unwrap();

        let mut no_user = good.clone();
        no_user.retain(|s| s.service != "user");
        assert!(
            whole(&no_user, &parents)
                .unwrap_err()
                .contains("none from user")
        );

        let mut orphan = good.clone();
        orphan[4].parent_span_id = "ffffffffffffffff".into();
        assert!(
            whole(&orphan, &parents)
                .unwrap_err()
                .contains("not in the trace")
        );

        let mut new_root = good.clone();
        new_root[0].parent_span_id = String::new();
        assert!(
            whole(&new_root, &parents)
                .unwrap_err()
                .contains("traceparent")
        );

        let mut skipped_client = good;
        skipped_client[4].parent_span_id = "3".into();
        assert!(
            whole(&skipped_client, &parents)
                .unwrap_err()
                .contains("not under its caller's client span")
        );
    }
}
