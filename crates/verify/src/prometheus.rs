//! Prometheus: every scrape target up, and what Tempo's metrics-generator writes there: span
//! metrics for all three services, the service-graph edges between them, and exemplars whose
//! `traceID` (the label Grafana's exemplar link reads) opens a trace in Tempo.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::tempo::SERVICES;
use crate::{Broken, Clients, Config, Ids};

/// The calls one request makes between the services.
pub const EDGES: [(&str, &str); 3] = [("gateway", "auth"), ("auth", "user"), ("gateway", "user")];

/// An instant query's result vector.
async fn query(clients: &Clients, prometheus: &str, promql: &str) -> Result<Vec<Value>, String> {
    let answer = crate::json(
        clients
            .http
            .get(format!("{prometheus}/api/v1/query"))
            .query(&[("query", promql)]),
    )
    .await?;
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The values of `label` across `result`.
fn label_values(result: &[Value], label: &str) -> BTreeSet<String> {
    result
        .iter()
        .filter_map(|r| r["metric"][label].as_str().map(str::to_owned))
        .collect()
}

/// Every active target, `up` or not: `(job, url, health, last error)`.
async fn targets(
    clients: &Clients,
    prometheus: &str,
) -> Result<Vec<(String, String, String, String)>, String> {
    let answer = crate::json(clients.http.get(format!("{prometheus}/api/v1/targets"))).await?;
    let field = |t: &Value, f: &str| t[f].as_str().unwrap_or("").to_owned();
    Ok(answer["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["labels"]["job"].as_str().unwrap_or("").to_owned(),
                field(t, "scrapeUrl"),
                field(t, "health"),
                field(t, "lastError"),
            )
        })
        .collect())
}

/// The trace ids of the exemplars on Tempo's span-latency histogram in the last hour, newest
/// last.
async fn exemplar_trace_ids(clients: &Clients, prometheus: &str) -> Result<Vec<String>, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let answer = crate::json(
        clients
            .http
            .get(format!("{prometheus}/api/v1/query_exemplars"))
            .query(&[
                ("query", "traces_spanmetrics_latency_bucket".to_owned()),
                ("start", (now - 3600).to_string()),
                ("end", (now + 60).to_string()),
            ]),
    )
    .await?;
    let mut found: Vec<(f64, String)> = Vec::new();
    for series in answer["data"].as_array().into_iter().flatten() {
        for exemplar in series["exemplars"].as_array().into_iter().flatten() {
            if let Some(id) = exemplar["labels"]["traceID"].as_str() {
                found.push((exemplar["timestamp"].as_f64().unwrap_or(0.0), id.to_owned()));
            }
        }
    }
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(found.into_iter().map(|(_, id)| id).collect())
}

/// The Prometheus link: a line per check, or the broken link.
pub async fn check(config: &Config, clients: &Clients, ids: &Ids) -> Result<Vec<String>, Broken> {
    let url = &config.prometheus;
    let broken = |problem: String, look: &str| Broken {
        link: "Prometheus",
        problem: format!("after {:?}: {problem}", config.timeout),
        look: look.to_owned(),
    };
    let mut lines = Vec::new();

    let up = crate::eventually(config.timeout, || async {
        let all = targets(clients, url).await?;
        if all.is_empty() {
            return Err("no active targets".to_owned());
        }
        let down: Vec<String> = all
            .iter()
            .filter(|(.., health, _)| health != "up")
            .map(|(job, scrape, health, error)| format!("{job} {scrape} is {health}: {error}"))
            .collect();
        if down.is_empty() {
            Ok(label_set(all.iter().map(|t| t.0.clone())))
        } else {
            Err(down.join("; "))
        }
    })
    .await
    .map_err(|e| {
        broken(
            e,
            &format!("{url}/targets shows each target and its last error"),
        )
    })?;
    lines.push(format!("Prometheus: every target up ({up})"));

    let spanmetrics = crate::eventually(config.timeout, || async {
        let result = query(
            clients,
            url,
            "sum by (service) (traces_spanmetrics_calls_total)",
        )
        .await?;
        let services = label_values(&result, "service");
        let missing: Vec<&str> = SERVICES
            .into_iter()
            .filter(|s| !services.contains(*s))
            .collect();
        if missing.is_empty() {
            Ok(services)
        } else {
            Err(format!(
                "traces_spanmetrics_calls_total has no series for {missing:?} (has {services:?})"
            ))
        }
    })
    .await
    .map_err(|e| {
        broken(
            e,
            "make logs SERVICE=tempo (remote write errors?); Prometheus needs \
             --web.enable-remote-write-receiver",
        )
    })?;
    lines.push(format!(
        "Prometheus: Tempo's span metrics for {}",
        label_set(spanmetrics.into_iter())
    ));

    let edges = crate::eventually(config.timeout, || async {
        let result = query(
            clients,
            url,
            "sum by (client, server) (traces_service_graph_request_total)",
        )
        .await?;
        let edges: BTreeSet<(String, String)> = result
            .iter()
            .filter_map(|r| {
                Some((
                    r["metric"]["client"].as_str()?.to_owned(),
                    r["metric"]["server"].as_str()?.to_owned(),
                ))
            })
            .collect();
        match graph_problem(&edges) {
            None => Ok(edges),
            Some(problem) => Err(problem),
        }
    })
    .await
    .map_err(|e| {
        broken(
            e,
            "Grafana > Explore > Tempo > Service Graph; tempo.yaml must enable the \
             service-graphs processor",
        )
    })?;
    let edges: Vec<String> = edges.iter().map(|(c, s)| format!("{c}->{s}")).collect();
    lines.push(format!("Prometheus: service graph {}", edges.join(", ")));

    let (exemplar, spans) = crate::eventually(config.timeout, || async {
        let all = exemplar_trace_ids(clients, url).await?;
        if all.is_empty() {
            return Err(
                "no exemplars with a traceID on traces_spanmetrics_latency_bucket".to_owned(),
            );
        }
        // This request's own exemplar if it has one, else the newest few.
        let ours = all.iter().find(|id| id.as_str() == ids.tempo_form());
        let candidates: Vec<&String> = match ours {
            Some(id) => vec![id],
            None => all.iter().rev().take(5).collect(),
        };
        let mut last = String::new();
        for id in candidates {
            let spans = crate::tempo::trace(clients, &config.tempo, id).await?;
            if spans.is_empty() {
                last = format!("exemplar traceID {id} finds no trace in Tempo");
            } else {
                return Ok((id.clone(), spans.len()));
            }
        }
        Err(last)
    })
    .await
    .map_err(|e| {
        broken(
            e,
            "Prometheus needs --enable-feature=exemplar-storage and Tempo send_exemplars: true; \
             Grafana's exemplar link reads the label traceID",
        )
    })?;
    lines.push(format!(
        "Prometheus: exemplar traceID {exemplar} opens a trace of {spans} spans in Tempo"
    ));
    Ok(lines)
}

/// What is wrong with the service graph's `(client, server)` edges, if anything: an edge of
/// [`EDGES`] missing, or the outside world drawn as the user service (Tempo names the unknown
/// caller of a root span `user`; tempo.yaml relabels it `client`).
pub fn graph_problem(edges: &BTreeSet<(String, String)>) -> Option<String> {
    let has = |c: &str, s: &str| edges.contains(&(c.to_owned(), s.to_owned()));
    let missing: Vec<String> = EDGES
        .iter()
        .filter(|(c, s)| !has(c, s))
        .map(|(c, s)| format!("{c}->{s}"))
        .collect();
    if !missing.is_empty() {
        return Some(format!("service graph lacks {missing:?} (has {edges:?})"));
    }
    if has("user", "gateway") {
        return Some(
            "service graph has user->gateway: Tempo's invented caller of root spans is named \
             like the user service (relabel it: write_relabel_configs in tempo.yaml)"
                .to_owned(),
        );
    }
    None
}

/// `a, b, c` of the distinct values.
fn label_set(values: impl Iterator<Item = String>) -> String {
    values
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        list.iter()
            .map(|(c, s)| ((*c).to_owned(), (*s).to_owned()))
            .collect()
    }

    #[test]
    fn the_graph_needs_every_call_and_no_merged_user_node() {
        let good = [
            ("client", "gateway"),
            ("gateway", "auth"),
            ("auth", "user"),
            ("gateway", "user"),
            ("user", "postgresql"),
        ];
        assert_eq!(graph_problem(&edges(&good)), None);
        let missing = graph_problem(&edges(&good[..3])).unwrap();
        assert!(missing.contains("gateway->user"), "{missing}");
        let mut merged = good.to_vec();
        merged[0] = ("user", "gateway");
        assert!(
            graph_problem(&edges(&merged))
                .unwrap()
                .contains("user->gateway")
        );
    }
}
