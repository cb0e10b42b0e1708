//! Tempo, Loki, Alloy and Prometheus configs, parsed and cross-checked with compose.

use std::collections::BTreeSet;
use std::process::Command;

use deploy_checks::{Compose, read, repo_path, yaml};

const ALLOY_FILE: &str = "deploy/alloy/config.alloy";

#[test]
fn promtool_accepts_the_prometheus_config() {
    let Some(promtool) = testkit::tool::require("promtool", "apt-get install prometheus") else {
        return;
    };
    deploy_checks::succeeds(
        Command::new(promtool)
            .args(["check", "config"])
            .arg(repo_path("deploy/prometheus/prometheus.yml")),
    );
}

/// Job name -> `host:port` targets of `deploy/prometheus/prometheus.yml`.
pub fn scrape_jobs() -> Vec<(String, Vec<String>)> {
    let config = yaml("deploy/prometheus/prometheus.yml");
    config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| {
            let targets = job["static_configs"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| {
                    c["targets"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_owned())
                })
                .collect();
            (job["job_name"].as_str().unwrap().to_owned(), targets)
        })
        .collect()
}

#[test]
fn prometheus_scrapes_every_service_on_its_metrics_port_and_every_target_resolves() {
    let compose = Compose::load();
    let jobs = scrape_jobs();
    for (job, targets) in &jobs {
        for target in targets {
            compose
                .resolve("prometheus", target)
                .unwrap_or_else(|e| panic!("job {job}: {e}"));
        }
    }
    let target_of = |job: &str| -> String {
        let (_, targets) = jobs
            .iter()
            .find(|(name, _)| name == job)
            .unwrap_or_else(|| panic!("no job {job}"));
        assert_eq!(targets.len(), 1, "{job}");
        targets[0].clone()
    };
    let port_of = |service: &str, variable: &str| {
        deploy_checks::addr_port(&compose.env(service)[variable]).unwrap()
    };
    assert_eq!(
        target_of("gateway"),
        format!("gateway:{}", port_of("gateway", "HTTP_ADDR"))
    );
    assert_eq!(
        target_of("auth"),
        format!("auth:{}", port_of("auth", "METRICS_ADDR"))
    );
    assert_eq!(
        target_of("user"),
        format!("user:{}", port_of("user", "METRICS_ADDR"))
    );
    for backend in ["tempo", "loki", "alloy", "prometheus"] {
        target_of(backend);
    }
    let config = yaml("deploy/prometheus/prometheus.yml");
    assert_eq!(config["global"]["scrape_interval"], "15s");

    // Tempo's generator remote-writes with exemplars: both must be switched on.
    let command = compose.command("prometheus").join(" ");
    assert!(
        command.contains("--web.enable-remote-write-receiver"),
        "{command}"
    );
    assert!(
        command.contains("--enable-feature=exemplar-storage"),
        "{command}"
    );
}

#[test]
fn tempo_receives_otlp_on_every_interface_and_feeds_prometheus_with_exemplars() {
    let compose = Compose::load();
    let tempo = yaml("deploy/tempo/tempo.yaml");
    let protocols = &tempo["distributor"]["receivers"]["otlp"]["protocols"];
    assert_eq!(
        protocols["grpc"]["endpoint"], "0.0.0.0:4317",
        "Tempo >= 2.7 binds localhost unless told"
    );
    assert_eq!(protocols["http"]["endpoint"], "0.0.0.0:4318");
    assert_eq!(tempo["server"]["http_listen_port"], 3200);
    assert_eq!(
        tempo["stream_over_http_enabled"], true,
        "Grafana streams TraceQL search over HTTP"
    );

    let writes = tempo["metrics_generator"]["storage"]["remote_write"]
        .as_array()
        .unwrap();
    assert_eq!(writes.len(), 1);
    let url = writes[0]["url"].as_str().unwrap();
    assert_eq!(compose.resolve("tempo", url).unwrap(), "prometheus");
    assert!(url.ends_with("/api/v1/write"), "{url}");
    assert_eq!(writes[0]["send_exemplars"], true);

    let processors: BTreeSet<&str> =
        tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
    assert_eq!(
        processors,
        BTreeSet::from(["service-graphs", "span-metrics"])
    );

    // Everything Tempo writes is on its volume.
    assert!(
        compose.service("tempo")["volumes"]
            .to_string()
            .contains("tempo-data:/var/tempo")
    );
    for path in [
        &tempo["storage"]["trace"]["wal"]["path"],
        &tempo["storage"]["trace"]["local"]["path"],
        &tempo["metrics_generator"]["storage"]["path"],
        &tempo["live_store"]["wal"]["path"],
    ] {
        assert!(path.as_str().unwrap().starts_with("/var/tempo/"), "{path}");
    }
    // Searches see the newest traces: Tempo 3.0's 30 s default cutoff is for Kafka-fed
    // live-stores, not this single binary.
    assert_eq!(tempo["query_frontend"]["query_end_cutoff"], "0s");
    // The service map names database nodes by their system, not by a SQLite file's path.
    assert_eq!(
        tempo["metrics_generator"]["processor"]["service_graphs"]["database_name_attributes"],
        serde_json::json!(["db.system.name"])
    );
    // Tempo 3 rejects the 2.x blocks (-config.verify).
    for removed in [
        "ingester",
        "compactor",
        "ingester_client",
        "metrics_generator_client",
    ] {
        assert!(tempo.get(removed).is_none(), "{removed} is a Tempo 2 block");
    }
}

#[test]
fn loki_keeps_structured_metadata_on_its_volume() {
    let compose = Compose::load();
    let loki = yaml("deploy/loki/loki.yaml");
    assert_eq!(loki["limits_config"]["allow_structured_metadata"], true);
    assert_eq!(
        loki["pattern_ingester"]["enabled"], true,
        "Grafana's logs app shows no patterns without it"
    );
    assert_eq!(
        loki["auth_enabled"], false,
        "Alloy and Grafana send no tenant header"
    );
    let schemas = loki["schema_config"]["configs"].as_array().unwrap();
    assert!(
        schemas
            .iter()
            .all(|s| s["schema"] == "v13" && s["store"] == "tsdb"),
        "structured metadata needs v13 + tsdb"
    );
    assert_eq!(loki["common"]["path_prefix"], "/loki");
    assert!(
        compose.service("loki")["volumes"]
            .to_string()
            .contains("loki-data:/loki")
    );
    let port = loki["server"]["http_listen_port"].as_u64().unwrap();
    assert!(
        compose.service("loki")["ports"]
            .to_string()
            .contains(&format!(":{port}\""))
    );
}

/// Alloy's config language, enough of it: blocks `kind.name "label" {`, `key = value`.
struct Alloy {
    text: String,
}

impl Alloy {
    fn load() -> Self {
        // Comments out, so a URL or a brace in one cannot fool the checks (a comment starts a
        // line or follows a space; the `//` of `http://` does neither).
        let comment = regex::Regex::new(r"(?m)(^|\s)//.*$").unwrap();
        Self {
            text: comment.replace_all(&read(ALLOY_FILE), "").into_owned(),
        }
    }

    /// `kind "label"` of every top-level component.
    fn components(&self) -> BTreeSet<(String, String)> {
        let block =
            regex::Regex::new(r#"(?m)^([a-z_]+(?:\.[a-z_]+)+)\s+"([A-Za-z0-9_]+)"\s*\{"#).unwrap();
        block
            .captures_iter(&self.text)
            .map(|c| (c[1].to_owned(), c[2].to_owned()))
            .collect()
    }

    /// The body of the first block `kind {` or `kind "label" {` (a line of its own).
    fn block(&self, kind: &str) -> &str {
        let header = format!(r#"(?m)^\s*{}(\s+"[^"]*")?\s*\{{\s*$"#, regex::escape(kind));
        let found = regex::Regex::new(&header).unwrap().find(&self.text);
        let start = found.unwrap_or_else(|| panic!("no {kind} block")).start();
        let open = start + self.text[start..].find('{').unwrap();
        let mut depth = 0;
        for (i, c) in self.text[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return &self.text[open + 1..open + i];
                    }
                }
                _ => {}
            }
        }
        panic!("{kind} is not closed")
    }
}

/// Whether `body` sets `key = "value"` (any spacing).
fn assigns(body: &str, key: &str, value: &str) -> bool {
    let pattern = format!(r#"\b{key}\s*=\s*"{}""#, regex::escape(value));
    regex::Regex::new(&pattern).unwrap().is_match(body)
}

#[test]
fn alloy_ships_our_containers_json_logs_to_loki_with_ids_as_metadata_not_labels() {
    let alloy = Alloy::load();
    let mut depth = 0i32;
    for c in alloy.text.chars() {
        depth += match c {
            '{' | '[' | '(' => 1,
            '}' | ']' | ')' => -1,
            _ => 0,
        };
        assert!(
            depth >= 0,
            "{ALLOY_FILE}: a closing bracket without an opening one"
        );
    }
    assert_eq!(depth, 0, "{ALLOY_FILE}: unbalanced brackets");

    // Every `kind.name.label.export` reference names a component defined here.
    let components = alloy.components();
    let reference = regex::Regex::new(
        r"\b((?:discovery|loki)\.[a-z_]+)\.([A-Za-z0-9_]+)\.(targets|output|receiver)\b",
    )
    .unwrap();
    let mut references = 0;
    for c in reference.captures_iter(&alloy.text) {
        assert!(
            components.contains(&(c[1].to_owned(), c[2].to_owned())),
            "{} refers to an undefined component",
            &c[0]
        );
        references += 1;
    }
    assert!(
        references >= 4,
        "the pipeline is wired by reference: found {references}"
    );

    // The push URL is compose's Loki.
    let compose = Compose::load();
    let url = regex::Regex::new(r#"url\s*=\s*"([^"]+)""#).unwrap();
    let write = alloy.block("loki.write");
    let push = &url.captures(write).expect("loki.write has a url")[1];
    assert_eq!(compose.resolve("alloy", push).unwrap(), "loki");
    assert!(push.ends_with("/loki/api/v1/push"), "{push}");

    // Only our three services, selected by compose's own labels.
    let relabel = alloy.block("discovery.relabel");
    assert!(
        relabel.contains(&format!("\"{}\"", compose.doc["name"].as_str().unwrap())),
        "filters on the project name"
    );
    assert!(assigns(relabel, "regex", "gateway|auth|user"));
    assert!(assigns(relabel, "target_label", "service"));

    // trace_id and span_id are structured metadata; labels stay few.
    let labels = alloy.block("stage.labels");
    let metadata = alloy.block("stage.structured_metadata");
    for id in ["trace_id", "span_id"] {
        assert!(
            !labels.contains(id),
            "{id} as a Loki label would make one stream per request"
        );
        assert!(
            metadata.contains(id),
            "{id} is not kept as structured metadata"
        );
    }
    assert!(labels.contains("level"));
    assert!(
        alloy.block("stage.json").contains("drop_malformed = false"),
        "a panic's plain-text line must still be shipped"
    );
    assert!(assigns(alloy.block("stage.timestamp"), "source", "ts"));

    // Alloy reaches Docker through the socket and listens where Prometheus scrapes it.
    assert!(
        alloy
            .block("discovery.docker")
            .contains("unix:///var/run/docker.sock")
    );
    assert_eq!(compose.listening("alloy"), BTreeSet::from([12345]));
}
