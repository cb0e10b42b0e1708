//! Grafana: up, open to the anonymous visitor the README describes (Explore included), and
//! reaching Tempo, Loki and Prometheus through its own provisioned data sources: each data
//! source's health check, then one query each through `/api/ds/query`, the API Grafana's own
//! panels and Explore use. So the provisioned URLs, uids and the traces -> logs query are
//! exercised by Grafana itself, not only by verify.

use serde_json::{Value, json};

use crate::{Broken, Clients, Config, Ids};

/// The data-source provisioning, as Grafana reads it (compose and kind mount this file).
const PROVISIONING: &str =
    include_str!("../../../deploy/grafana/provisioning/datasources/datasources.yaml");

/// The provisioned data sources: `(uid, type)`.
pub fn provisioned() -> Vec<(String, String)> {
    let doc: Value = serde_yaml_ng::from_str(PROVISIONING).expect("the embedded provisioning");
    doc["datasources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let field = |f: &str| d[f].as_str().unwrap_or("").to_owned();
            (field("uid"), field("type"))
        })
        .collect()
}

/// The Tempo data source's traces -> logs query, as Grafana holds it after expanding the
/// provisioning file (where `$$` stands for a literal `$`).
pub fn provisioned_logs_query() -> String {
    let doc: Value = serde_yaml_ng::from_str(PROVISIONING).expect("the embedded provisioning");
    doc["datasources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["type"] == "tempo")
        .and_then(|d| d["jsonData"]["tracesToLogsV2"]["query"].as_str())
        .expect("the Tempo data source has a traces -> logs query")
        .replace("$$", "$")
}

/// Rows in a `/api/ds/query` answer for ref `A`, or its error.
fn rows(answer: &Value) -> Result<usize, String> {
    let result = &answer["results"]["A"];
    if let Some(error) = result["error"].as_str() {
        return Err(error.to_owned());
    }
    Ok(result["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|frame| frame["data"]["values"][0].as_array().map_or(0, Vec::len))
        .sum())
}

/// The Grafana link: a line per check, or the broken link.
pub async fn check(config: &Config, clients: &Clients, ids: &Ids) -> Result<Vec<String>, Broken> {
    let grafana = &config.grafana;
    let broken = |problem: String, look: String| Broken {
        link: "Grafana",
        problem,
        look,
    };
    let logs = format!("make logs SERVICE=grafana; {grafana}/connections/datasources");
    let mut lines = Vec::new();

    let health = crate::json(clients.http.get(format!("{grafana}/api/health")))
        .await
        .map_err(|e| broken(e, logs.clone()))?;
    if health["database"] != "ok" {
        return Err(broken(format!("/api/health: {health}"), logs));
    }
    lines.push(format!(
        "Grafana: healthy (version {})",
        health["version"].as_str().unwrap_or("hidden")
    ));

    // Explore is what the walk-through uses; Grafana answers a page its visitor may not see
    // with a redirect (to the login page or home).
    let explore = clients
        .no_redirects
        .get(format!("{grafana}/explore"))
        .send()
        .await
        .map_err(|e| broken(format!("{grafana}/explore: {e}"), logs.clone()))?;
    if explore.status() != 200 {
        let to = explore
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or("")
            .to_owned();
        return Err(broken(
            format!(
                "an anonymous visitor cannot open Explore ({} {to}): Grafana 12+ gives Explore \
                 to Editor and Admin only",
                explore.status()
            ),
            "GF_AUTH_ANONYMOUS_ORG_ROLE=Editor in deploy/grafana/grafana.env (or sign in as \
             admin, password in deploy/.env)"
                .to_owned(),
        ));
    }
    lines.push("Grafana: an anonymous visitor can open Explore".to_owned());

    let id = ids.tempo_form();
    for (uid, kind) in provisioned() {
        let look = format!("{grafana}/connections/datasources/edit/{uid} > Save & test; {logs}");
        let health = clients
            .http
            .get(format!("{grafana}/api/datasources/uid/{uid}/health"))
            .send()
            .await
            .map_err(|e| broken(format!("{uid} health: {e}"), look.clone()))?;
        let status = health.status();
        let body: Value = health.json().await.unwrap_or(Value::Null);
        if status != 200 || body["status"] != "OK" {
            return Err(broken(
                format!("data source {uid}: health check answered {status}: {body}"),
                look,
            ));
        }
        let query = match kind.as_str() {
            "prometheus" => json!({"expr": "up", "instant": true, "range": false}),
            "loki" => json!({
                "expr": crate::loki::logs_query(&config.logs_query, "gateway", id),
                "queryType": "range",
            }),
            "tempo" => json!({"queryType": "traceId", "query": id}),
            other => {
                return Err(broken(
                    format!("data source {uid} has type {other}, which verify cannot query"),
                    look,
                ));
            }
        };
        let mut query = query;
        query["refId"] = json!("A");
        query["datasource"] = json!({"uid": uid});
        let body = json!({"from": "now-1h", "to": "now", "queries": [query]});
        let request = clients
            .http
            .post(format!("{grafana}/api/ds/query"))
            .json(&body);
        let answer = crate::json(request).await;
        // A per-query failure comes back as a 4xx with the error in the body.
        let found = match answer {
            Ok(answer) => rows(&answer),
            Err(error) => Err(error),
        }
        .map_err(|e| {
            broken(
                format!("data source {uid}: query {query}: {e}"),
                look.clone(),
            )
        })?;
        if found == 0 {
            return Err(broken(
                format!("data source {uid}: query {query} found nothing"),
                look,
            ));
        }
        lines.push(format!(
            "Grafana: data source {uid} healthy; a {kind} query through Grafana found {found} rows"
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_provisioning_is_read_as_grafana_reads_it() {
        let uids: Vec<String> = super::provisioned().into_iter().map(|(u, _)| u).collect();
        assert_eq!(uids, ["prometheus", "loki", "tempo"]);
        let query = super::provisioned_logs_query();
        assert!(query.contains("${__trace.traceId}"), "{query}");
        assert!(!query.contains("$$"), "{query}");
    }
}
