//! Loki: the trace's log lines, from all three services, found by the query Grafana's "Logs for
//! this span" runs: the provisioned traces -> logs query of the Tempo data source, filled in
//! with a service and the trace id as Tempo writes it (no leading zeros), and asked the way
//! Grafana's Loki data source asks (`query_range`, structured metadata categorised).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Broken, Clients, Config, Ids};

/// Grafana's traces -> logs `template` with its two variables filled in.
pub fn logs_query(template: &str, service: &str, trace_id: &str) -> String {
    template
        .replace(r#"${__span.tags["service.name"]}"#, service)
        .replace("${__trace.traceId}", trace_id)
}

/// How many lines `query` finds in the last hour.
pub async fn count_lines(clients: &Clients, loki: &str, query: &str) -> Result<usize, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let hour = 3_600_000_000_000u128;
    let answer = crate::json(
        clients
            .http
            .get(format!("{loki}/loki/api/v1/query_range"))
            // What Grafana's Loki data source sends: structured metadata apart from labels.
            .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
            .query(&[
                ("query", query.to_owned()),
                ("start", (now - hour).to_string()),
                ("end", (now + hour / 60).to_string()),
                ("limit", "100".to_owned()),
                ("direction", "backward".to_owned()),
            ]),
    )
    .await?;
    if answer["status"] != "success" {
        return Err(format!("{query}: {answer}"));
    }
    Ok(answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|stream| stream["values"].as_array().map_or(0, Vec::len))
        .sum())
}

/// The Loki link: the line to print, or the broken link.
pub async fn check(config: &Config, clients: &Clients, ids: &Ids) -> Result<String, Broken> {
    let id = ids.tempo_form();
    let query = |service: &str| logs_query(&config.logs_query, service, id);
    let counts = crate::eventually(config.timeout, || async {
        let mut counts = Vec::new();
        for service in crate::tempo::SERVICES {
            let query = query(service);
            match count_lines(clients, &config.loki, &query).await? {
                0 => return Err(format!("no lines for `{query}`")),
                n => counts.push(format!("{service} {n}")),
            }
        }
        Ok(counts)
    })
    .await
    .map_err(|problem| Broken {
        link: "Loki",
        problem: format!("after {:?}: {problem}", config.timeout),
        look: format!(
            "Grafana > Explore > Loki: {}; make logs SERVICE=alloy (is it shipping the \
             services' lines?); the lines must carry trace_id as structured metadata",
            query("gateway")
        ),
    })?;
    Ok(format!(
        "Loki: `{}` (Grafana's traces -> logs query, Tempo's form of the id) finds lines: {}",
        query("<service>"),
        counts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_template_is_filled_in_as_grafana_does() {
        let template =
            r#"{service="${__span.tags["service.name"]}"} | trace_id=~"0*${__trace.traceId}""#;
        assert_eq!(
            super::logs_query(template, "auth", "abc"),
            r#"{service="auth"} | trace_id=~"0*abc""#
        );
    }
}
