use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use testkit::otlp::OtlpCollector;
use testkit::prometheus::Prometheus;
use testkit::stack::Stack;
use verify::{Broken, Config};

use testkit::standins::{Grafana, Loki, ObservedStack, Tempo, deploy_tempo_config};

/// Everything verify talks to, on loopback.
struct Chain {
    stack: Stack,
    tempo: Tempo,
    loki: Loki,
    grafana: Grafana,
    prometheus: Prometheus,
    _collector: Arc<OtlpCollector>,
}

impl Chain {
    async fn start(prometheus_binary: &std::path::Path) -> Self {
        let ObservedStack {
            stack,
            collector,
            tempo,
            loki,
        } = ObservedStack::start().await;

        // The deploy config's jobs on this stack, plus Tempo's generator series as Tempo's
        // remote write delivers them: through tempo.yaml's relabelling.
        let deploy: serde_json::Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../deploy/prometheus/prometheus.yml"
            ))
            .unwrap(),
        )
        .unwrap();
        let mut config = testkit::prometheus::scraping(deploy, &stack);
        let relabel = deploy_tempo_config()["metrics_generator"]["storage"]["remote_write"][0]
            ["write_relabel_configs"]
            .clone();
        config["scrape_configs"]
            .as_array_mut()
            .unwrap()
            .push(json!({
                "job_name": "tempo-generator", "honor_labels": true,
                "metric_relabel_configs": relabel,
                "static_configs": [{"targets": [tempo.url.trim_start_matches("http://")]}],
            }));
        let prometheus =
            Prometheus::start(prometheus_binary, &serde_json::to_string(&config).unwrap());

        let hosts = HashMap::from([
            ("tempo", tempo.url.clone()),
            ("loki", loki.url.clone()),
            ("prometheus", prometheus.url.clone()),
        ]);
        let grafana = Grafana::start(&hosts).await;
        Self {
            stack,
            tempo,
            loki,
            grafana,
            prometheus,
            _collector: collector,
        }
    }

    /// verify's settings for this chain, each link given `timeout`.
    fn config(&self, timeout: Duration) -> Config {
        let urls = [
            ("VERIFY_GATEWAY_URL", self.stack.gateway_url.clone()),
            ("VERIFY_TEMPO_URL", self.tempo.url.clone()),
            ("VERIFY_LOKI_URL", self.loki.url.clone()),
            ("VERIFY_PROMETHEUS_URL", self.prometheus.url.clone()),
            ("VERIFY_GRAFANA_URL", self.grafana.url.clone()),
            ("VERIFY_TIMEOUT_SECONDS", timeout.as_secs().to_string()),
        ];
        Config::from_lookup(|name| {
            urls.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap()
    }

    /// Runs verify; what it printed, and how it ended.
    async fn verify(&self, config: &Config) -> (String, Result<(), Broken>) {
        let mut out = Vec::new();
        let result = verify::run(config, &mut out).await;
        (String::from_utf8(out).unwrap(), result)
    }

    /// Runs verify with a short timeout (the data of earlier links is there by now) and
    /// expects it to stop at `link` with a problem containing `says`.
    async fn broken_at(&self, config: &Config, link: &str, says: &str) {
        let (printed, result) = self.verify(config).await;
        let broken = result.expect_err(&format!("verify should stop at {link}:\n{printed}"));
        println!("verify: {broken}");
        assert_eq!(broken.link, link, "{broken}\n{printed}");
        assert!(broken.problem.contains(says), "{broken}");
        assert!(!broken.look.is_empty());
    }
}

#[tokio::test]
async fn verify_walks_the_whole_chain_and_names_the_first_broken_link() {
    let Some(binary) = testkit::tool::require("prometheus", "apt-get install prometheus") else {
        return;
    };
    let chain = Chain::start(&binary).await;
    // A request from outside with no trace context, as curl or a browser sends: its root span
    // is what Tempo's service graph draws from the invented caller.
    let email = format!("outside-{}@example.com", std::process::id());
    assert_eq!(chain.stack.signup(&email).await.status(), 201);

    // The walk-through, on a healthy stack. The first run waits for Tempo's generator series
    // and the first scrapes.
    let (printed, result) = chain.verify(&chain.config(Duration::from_secs(60))).await;
    if let Err(broken) = &result {
        panic!("{broken}\nprinted:\n{printed}");
    }
    println!("{printed}");
    for expected in [
        "ok  gateway: sign-up 201, login 200, profile read 200 in trace 00",
        "ok  Tempo: trace ",
        "every parent link intact",
        "ok  Loki: `{service=\"<service>\"} | trace_id=~\"0*",
        "ok  Prometheus: every target up (auth, gateway, tempo-generator, user)",
        "ok  Prometheus: Tempo's span metrics for auth, gateway, user",
        "auth->user, client->gateway, gateway->auth, gateway->user, user->postgresql",
        "ok  Grafana: an anonymous visitor can open Explore",
        "ok  Grafana: data source prometheus healthy",
        "ok  Grafana: data source loki healthy",
        "ok  Grafana: data source tempo healthy",
    ] {
        assert!(printed.contains(expected), "no {expected:?} in:\n{printed}");
    }
    // The database node is named by its system, whichever database the stack runs on.
    assert!(
        printed.contains("user->postgresql") || printed.contains("user->sqlite"),
        "{printed}"
    );

    let quick = chain.config(Duration::from_secs(5));

    // gateway: nothing listens there.
    let mut config = quick.clone();
    config.gateway = testkit::DeadEndpoint::reserve().url();
    chain.broken_at(&config, "gateway", "cannot reach").await;

    // Tempo: one service's spans never arrive; then a parent link is broken.
    chain.tempo.faults.lock().unwrap().drop_service = Some("user".into());
    chain.broken_at(&quick, "Tempo", "none from user").await;
    *chain.tempo.faults.lock().unwrap() = Default::default();
    chain.tempo.faults.lock().unwrap().break_parents = true;
    chain.broken_at(&quick, "Tempo", "not in the trace").await;
    *chain.tempo.faults.lock().unwrap() = Default::default();

    // Loki: the traces -> logs query as it was provisioned before, an exact match on the trace
    // id, finds nothing for Tempo's form of an id that starts with 00.
    let mut config = quick.clone();
    config.logs_query =
        r#"{service="${__span.tags["service.name"]}"} | trace_id="${__trace.traceId}""#.into();
    chain.broken_at(&config, "Loki", "no lines").await;
    // And one service's lines never arrive.
    chain.loki.faults.lock().unwrap().drop_service = Some("auth".into());
    chain.broken_at(&quick, "Loki", "{service=\"auth\"}").await;
    *chain.loki.faults.lock().unwrap() = Default::default();

    // Prometheus: the service-graph series stop; the exemplars name traces Tempo never saw;
    // a target goes down.
    chain.tempo.faults.lock().unwrap().no_edges = true;
    chain
        .broken_at(&quick, "Prometheus", "service graph lacks")
        .await;
    *chain.tempo.faults.lock().unwrap() = Default::default();
    chain.tempo.faults.lock().unwrap().bogus_exemplars = true;
    chain
        .broken_at(&quick, "Prometheus", "finds no trace in Tempo")
        .await;
    *chain.tempo.faults.lock().unwrap() = Default::default();
    chain.tempo.faults.lock().unwrap().metrics_down = true;
    chain
        .broken_at(&quick, "Prometheus", "tempo-generator")
        .await;
    *chain.tempo.faults.lock().unwrap() = Default::default();

    // Grafana: the anonymous role the first walk-through failed on; a data source it cannot
    // reach.
    chain.grafana.settings.lock().unwrap().role = "Viewer".into();
    chain
        .broken_at(&quick, "Grafana", "cannot open Explore")
        .await;
    chain.grafana.settings.lock().unwrap().role = "Editor".into();
    chain
        .grafana
        .settings
        .lock()
        .unwrap()
        .datasources
        .get_mut("loki")
        .unwrap()
        .1 = testkit::DeadEndpoint::reserve().url();
    chain.broken_at(&quick, "Grafana", "data source loki").await;
}
