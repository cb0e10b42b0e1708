//! Grafana's provisioning: data sources with fixed uids, links between them that resolve, and
//! dashboards that load from where compose mounts them.

use std::collections::BTreeSet;

use deploy_checks::{Compose, read, yaml};
use serde_json::Value;

const DATASOURCES: &str = "deploy/grafana/provisioning/datasources/datasources.yaml";
const DASHBOARDS_DIR: &str = "deploy/grafana/dashboards";

/// Every dashboard JSON file: (file name, parsed).
pub fn dashboards() -> Vec<(String, Value)> {
    let dir = deploy_checks::repo_path(DASHBOARDS_DIR);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect()
}

/// Every value of `key` anywhere inside `value`.
fn all_values<'a>(value: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    out.push(v);
                }
                all_values(v, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| all_values(v, key, out)),
        _ => {}
    }
}

fn datasource_uids() -> BTreeSet<String> {
    yaml(DATASOURCES)["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["uid"]
                .as_str()
                .expect("every data source has a fixed uid")
                .to_owned()
        })
        .collect()
}

#[test]
fn datasources_have_fixed_uids_urls_in_compose_and_links_that_resolve() {
    let compose = Compose::load();
    let provisioning = yaml(DATASOURCES);
    let sources = provisioning["datasources"].as_array().unwrap();
    let uids = datasource_uids();
    assert_eq!(
        uids,
        BTreeSet::from(["loki", "prometheus", "tempo"].map(String::from))
    );
    assert_eq!(uids.len(), sources.len(), "uids are unique");
    for source in sources {
        let uid = source["uid"].as_str().unwrap();
        let url = source["url"].as_str().unwrap();
        assert_eq!(compose.resolve("grafana", url).unwrap(), uid, "{uid}'s url");
    }
    let mut links = Vec::new();
    all_values(&provisioning, "datasourceUid", &mut links);
    assert!(
        links.len() >= 6,
        "trace->logs, trace->metrics, service map, exemplars, derived field: {links:?}"
    );
    for link in links {
        assert!(
            uids.contains(link.as_str().unwrap()),
            "a link to unknown data source {link}"
        );
    }

    let by_uid = |uid: &str| sources.iter().find(|s| s["uid"] == uid).unwrap()["jsonData"].clone();
    let tempo = by_uid("tempo");
    assert_eq!(tempo["tracesToLogsV2"]["datasourceUid"], "loki");
    assert_eq!(tempo["tracesToMetrics"]["datasourceUid"], "prometheus");
    assert_eq!(tempo["serviceMap"]["datasourceUid"], "prometheus");
    assert_eq!(tempo["nodeGraph"]["enabled"], true);
    // service.name on spans is the `service` label on log streams (set by Alloy).
    assert_eq!(
        tempo["tracesToLogsV2"]["tags"][0],
        serde_json::json!({"key": "service.name", "value": "service"})
    );
    let logs_query = tempo["tracesToLogsV2"]["query"].as_str().unwrap();
    assert!(
        logs_query.contains(r#"| trace_id=~"0*$${__trace.traceId}""#),
        "trace_id is structured metadata, never a label, and Tempo's ids may have lost their \
         leading zeros: {logs_query}"
    );

    // Tempo's generator writes exemplars with the trace id under `traceID`.
    let exemplars = &by_uid("prometheus")["exemplarTraceIdDestinations"][0];
    assert_eq!(exemplars["name"], "traceID");
    assert_eq!(exemplars["datasourceUid"], "tempo");
    let derived = &by_uid("loki")["derivedFields"][0];
    assert_eq!(derived["datasourceUid"], "tempo");
    assert!(
        derived["matcherRegex"]
            .as_str()
            .unwrap()
            .contains("trace_id")
    );

    assert!(
        !read(DATASOURCES).to_lowercase().contains("password"),
        "no secrets in provisioning"
    );
}

#[test]
fn dashboards_load_from_the_mounted_folder_with_stable_uids_and_known_datasources() {
    let compose = Compose::load();
    let provider = yaml("deploy/grafana/provisioning/dashboards/dashboards.yaml");
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let grafana = compose.service("grafana")["volumes"].to_string();
    assert!(
        grafana.contains(&format!("./grafana/dashboards:{path}:ro")),
        "{path} is not where compose mounts the dashboards"
    );
    assert!(grafana.contains("./grafana/provisioning:/etc/grafana/provisioning:ro"));
    let home = &compose.env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"];
    let home_file = home
        .strip_prefix(&format!("{path}/"))
        .expect("the home dashboard is a provisioned one");

    let uids = datasource_uids();
    let dashboards = dashboards();
    let names: Vec<&str> = dashboards.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&home_file), "{home_file} not in {names:?}");
    let dashboard_uids: BTreeSet<&str> = dashboards
        .iter()
        .map(|(_, d)| d["uid"].as_str().unwrap())
        .collect();
    assert_eq!(
        dashboard_uids,
        BTreeSet::from([
            "observable-rust-logs",
            "observable-rust-overview",
            "observable-rust-spans"
        ]),
        "dashboard uids are links people bookmark: keep them stable"
    );
    for (name, dashboard) in &dashboards {
        assert!(
            dashboard["id"].is_null(),
            "{name}: id must be null for provisioning"
        );
        assert!(
            !dashboard.to_string().contains("${DS_"),
            "{name}: import placeholders do not resolve when provisioned"
        );
        let mut refs = Vec::new();
        all_values(dashboard, "datasource", &mut refs);
        assert!(!refs.is_empty(), "{name}");
        for reference in refs {
            let uid = reference["uid"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: data source by name: {reference}"));
            assert!(
                uids.contains(uid) || uid.starts_with("-- "),
                "{name}: unknown data source {uid}"
            );
        }
        let panels = dashboard["panels"].as_array().unwrap();
        for panel in panels
            .iter()
            .filter(|p| p["type"] != "row" && p["type"] != "text")
        {
            let targets = panel["targets"].as_array().map_or(0, Vec::len);
            assert!(
                targets > 0,
                "{name}: panel {:?} queries nothing",
                panel["title"]
            );
        }
    }
    // The walk-through needs these: span-metrics latency with exemplars, and a logs panel.
    let overview = &dashboards
        .iter()
        .find(|(n, _)| n == "overview.json")
        .unwrap()
        .1;
    let text = overview.to_string();
    assert!(
        text.contains("traces_spanmetrics_latency_bucket") && text.contains(r#""exemplar":true"#)
    );
    assert!(
        overview["panels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["type"] == "logs")
    );
}

/// Whether Grafana's settings let a visitor who has not signed in use Explore: anonymous access
/// off (the README then starts with signing in), or on with a role that holds
/// `datasources:explore`. Grafana 12 removed `viewers_can_edit`, and its access control grants
/// `datasources:explore` (the fixed role `fixed:datasources:explorer`) to Editor and above only
/// (pkg/api/accesscontrol.go), so an anonymous Viewer can open dashboards but not Explore, where
/// every step of the walk-through happens.
fn anonymous_can_explore(
    settings: &std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    let enabled = settings
        .get("GF_AUTH_ANONYMOUS_ENABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !enabled {
        return Ok(());
    }
    match settings
        .get("GF_AUTH_ANONYMOUS_ORG_ROLE")
        .map(String::as_str)
    {
        Some("Editor" | "Admin") => Ok(()),
        other => Err(format!(
            "anonymous users get role {other:?} (Grafana's default is Viewer), which has no Explore"
        )),
    }
}

#[test]
fn an_anonymous_visitor_can_follow_the_walk_through_in_explore() {
    let settings = deploy_checks::env_file(&read("deploy/grafana/grafana.env"));
    anonymous_can_explore(&settings).unwrap();
    // The README says what the visitor is.
    assert!(read("README.md").contains("anonymous editor"));

    // The mutations: the role the first walk-through failed on, and no role at all.
    let mut viewer = settings.clone();
    viewer.insert("GF_AUTH_ANONYMOUS_ORG_ROLE".into(), "Viewer".into());
    assert!(
        anonymous_can_explore(&viewer)
            .unwrap_err()
            .contains("Viewer")
    );
    let mut unset = settings.clone();
    unset.remove("GF_AUTH_ANONYMOUS_ORG_ROLE");
    assert!(anonymous_can_explore(&unset).is_err());
    // Signing in first is the other honest choice.
    let mut off = viewer;
    off.insert("GF_AUTH_ANONYMOUS_ENABLED".into(), "false".into());
    assert!(anonymous_can_explore(&off).is_ok());
}

#[test]
fn every_recent_traces_panel_asks_tempo_for_the_most_recent() {
    // Without the hint Tempo 3.0 returns whatever traces it finds first (a "recent" panel once
    // showed a 611 s old trace as its newest).
    let mut found = 0;
    for (name, dashboard) in dashboards() {
        let mut targets = Vec::new();
        all_values(&dashboard, "targets", &mut targets);
        for target in targets
            .iter()
            .flat_map(|t| t.as_array().into_iter().flatten())
        {
            if target["queryType"] == "traceql" {
                let query = target["query"].as_str().unwrap();
                assert!(
                    query.ends_with("with (most_recent=true)"),
                    "{name}: {query}"
                );
                found += 1;
            }
        }
    }
    assert!(found >= 2, "the two Recent ... panels");
}

#[test]
fn every_loki_query_on_a_trace_id_matches_it_with_or_without_leading_zeros() {
    // Tempo writes trace ids without their leading zeros (search results, exemplars, its JSON);
    // the services log all 32 digits. A substring line filter or `=~"0*<id>"` finds both; an
    // exact label match finds one trace in sixteen not at all.
    let matches_both = |query: &str| -> bool {
        let exact = regex::Regex::new(r#"trace_id\s*=\s*""#).unwrap();
        !exact.is_match(query)
            && (query.contains(r#"|= "$trace_id""#) || query.contains(r#"trace_id=~"0*"#))
    };
    let mut queries: Vec<String> = Vec::new();
    for (name, dashboard) in dashboards() {
        let mut exprs = Vec::new();
        all_values(&dashboard, "expr", &mut exprs);
        queries.extend(
            exprs
                .into_iter()
                .filter_map(Value::as_str)
                .filter(|e| e.contains("trace_id"))
                .map(|e| format!("{name}: {e}")),
        );
    }
    let provisioning = yaml(DATASOURCES);
    let mut links = Vec::new();
    all_values(&provisioning, "query", &mut links);
    queries.extend(
        links
            .into_iter()
            .filter_map(Value::as_str)
            .filter(|q| q.contains("trace_id"))
            .map(|q| format!("datasources.yaml: {}", q.replace("$$", "$"))),
    );
    assert!(queries.len() >= 6, "{queries:#?}");
    for query in &queries {
        assert!(matches_both(query), "{query}");
    }
    // The mutation: the traces -> logs query as it was.
    assert!(!matches_both(
        r#"{service="auth"} | trace_id="${__trace.traceId}""#
    ));
}
