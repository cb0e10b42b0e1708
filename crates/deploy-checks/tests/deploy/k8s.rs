//! `k8s/`: the kind overlay renders with kubectl's kustomize, every object validates against the
//! Kubernetes schemas of the version the kind node runs, and the rendered objects keep the
//! promises the README makes (probes, limits, locked-down pods, Services that select pods,
//! addresses that resolve, NetworkPolicies that let the real calls through, ConfigMaps that are
//! the compose files byte for byte).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::OnceLock;

use deploy_checks::{env_file, read, repo_path};
use serde_json::{Value, json};

const OVERLAY: &str = "k8s/overlays/kind";
const NAMESPACE: &str = "observable-rust";
const SECRETS: [&str; 3] = ["postgres", "jwt", "grafana"];
/// The services built from this repository's Dockerfile.
const APP: [&str; 3] = ["gateway", "auth", "user"];

/// `kubectl kustomize k8s/overlays/kind`, parsed; `None` (after one SKIPPED line) without kubectl.
fn render() -> Option<&'static Vec<Value>> {
    static RENDERED: OnceLock<Option<Vec<Value>>> = OnceLock::new();
    RENDERED
        .get_or_init(|| {
            let kubectl =
                testkit::tool::require("kubectl", "https://kubernetes.io/docs/tasks/tools/")?;
            // The secrets the overlay generates come from files `make kind-up` writes (git ignores
            // them): write them the same way, once.
            for secret in SECRETS {
                let example = repo_path(&format!("{OVERLAY}/secrets/{secret}.env.example"));
                let target = repo_path(&format!("{OVERLAY}/secrets/{secret}.env"));
                let status = Command::new(repo_path("scripts/env-from-example.sh"))
                    .arg(example)
                    .arg(target)
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            // And the certificates it makes with certgen, once.
            certgen::write_missing(&repo_path(&format!("{OVERLAY}/secrets/certs"))).unwrap();
            Some(kustomize(&kubectl, &repo_path(OVERLAY)))
        })
        .as_ref()
}

/// `kubectl kustomize dir`, parsed.
fn kustomize(kubectl: &std::path::Path, dir: &std::path::Path) -> Vec<Value> {
    parse_documents(&deploy_checks::succeeds(
        Command::new(kubectl).arg("kustomize").arg(dir),
    ))
}

/// The kinds the render may hold that live outside any namespace.
const CLUSTER_SCOPED: [&str; 4] = [
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
];

/// Every namespaced object (`Kind/name`) that does not name the project's namespace.
fn outside_the_namespace(render: &[Value]) -> Vec<String> {
    render
        .iter()
        .filter(|o| !CLUSTER_SCOPED.contains(&o["kind"].as_str().unwrap()))
        .filter(|o| o["metadata"]["namespace"] != NAMESPACE)
        .map(|o| {
            let name = o["metadata"]["name"].as_str().unwrap_or("?");
            format!("{}/{name}", o["kind"].as_str().unwrap())
        })
        .collect()
}

fn parse_documents(text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| serde_json::to_value(serde_yaml_ng::Value::deserialize(doc).unwrap()).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn objects<'a>(render: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> {
    render.iter().filter(move |o| o["kind"] == kind)
}

fn named<'a>(render: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects(render, kind)
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// A ConfigMap or Secret by the name before kustomize's hash suffix.
fn generated<'a>(render: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects(render, kind)
        .find(|o| {
            o["metadata"]["name"]
                .as_str()
                .and_then(|n| n.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with('-') && !rest[1..].contains('-'))
        })
        .unwrap_or_else(|| panic!("no generated {kind} {name}"))
}

/// Every workload with a pod template: (kind, name, pod spec, pod labels, annotations).
fn workloads(render: &[Value]) -> Vec<(String, String, &Value, &Value, &Value)> {
    render
        .iter()
        .filter(|o| {
            ["Deployment", "StatefulSet", "DaemonSet", "Job"].contains(&o["kind"].as_str().unwrap())
        })
        .map(|o| {
            let template = &o["spec"]["template"];
            (
                o["kind"].as_str().unwrap().to_owned(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
                &template["spec"],
                &template["metadata"]["labels"],
                &template["metadata"]["annotations"],
            )
        })
        .collect()
}

fn pod_spec<'a>(render: &'a [Value], name: &str) -> &'a Value {
    workloads(render)
        .into_iter()
        .find(|(_, n, ..)| n == name)
        .unwrap_or_else(|| panic!("no workload {name}"))
        .2
}

/// The Kubernetes version of the kind node image, e.g. `1.34.0`.
fn kind_kubernetes_version() -> String {
    let config = deploy_checks::yaml("k8s/kind-config.yaml");
    let image = config["nodes"][0]["image"].as_str().unwrap();
    image
        .split(":v")
        .nth(1)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_owned()
}

/// The Jobs make applies on demand (`make kind-load`, `make kind-verify`), outside the
/// kustomization.
fn the_jobs() -> Vec<Value> {
    ["loadgen-job.yaml", "verify-job.yaml"]
        .iter()
        .map(|file| parse_documents(&read(&format!("{OVERLAY}/{file}"))).remove(0))
        .collect()
}

#[test]
fn every_rendered_object_validates_against_the_kind_nodes_kubernetes_schemas() {
    let Some(render) = render() else { return };
    let Some(validate) =
        testkit::tool::require("kubernetes-validate", "pip install kubernetes-validate")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let jobs = the_jobs();
    for (i, object) in render.iter().chain(&jobs).enumerate() {
        let path = dir.path().join(format!("{i:02}.yaml"));
        std::fs::write(&path, serde_json::to_string(object).unwrap()).unwrap();
        files.push(path);
    }
    let version = kind_kubernetes_version();
    deploy_checks::succeeds(
        Command::new(&validate)
            .args(["--strict", "--quiet", "--kubernetes-version", &version])
            .args(&files),
    );
    assert!(render.len() >= 40, "only {} objects rendered", render.len());

    // Strict validation rejects an unknown field, or the check above proves nothing.
    let mut typo = named(render, "Deployment", "gateway").clone();
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = json!({});
    let bad = dir.path().join("typo.yaml");
    std::fs::write(&bad, serde_json::to_string(&typo).unwrap()).unwrap();
    let output = Command::new(&validate)
        .args(["--strict", "--kubernetes-version", &version])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success(), "a misspelt field was accepted");
}

#[test]
fn the_kind_config_maps_the_node_ports_of_gateway_and_grafana_to_the_host() {
    let Some(render) = render() else { return };
    let config = deploy_checks::yaml("k8s/kind-config.yaml");
    assert_eq!(config["kind"], "Cluster");
    assert_eq!(config["apiVersion"], "kind.x-k8s.io/v1alpha4");
    let mappings: BTreeMap<u64, u64> = config["nodes"][0]["extraPortMappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(
                m["listenAddress"], "127.0.0.1",
                "reachable from this machine only"
            );
            (
                m["containerPort"].as_u64().unwrap(),
                m["hostPort"].as_u64().unwrap(),
            )
        })
        .collect();
    for (service, host_port) in [("gateway", 8080), ("grafana", 3000)] {
        let spec = &named(render, "Service", service)["spec"];
        assert_eq!(spec["type"], "NodePort", "{service}");
        let node_port = spec["ports"][0]["nodePort"].as_u64().unwrap();
        assert_eq!(
            mappings.get(&node_port),
            Some(&host_port),
            "{service}'s NodePort {node_port}"
        );
    }
    // The version the schemas are checked against is one kubernetes-validate knows.
    assert!(kind_kubernetes_version().starts_with("1."));
    // Pinned by digest: kind documents that a node image must match the kind release that
    // built it, and a tag alone can move. The preflight's minimum kind is that release.
    let image = config["nodes"][0]["image"].as_str().unwrap();
    let digest = image.split_once("@sha256:").map(|(_, d)| d).unwrap_or("");
    assert!(
        digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "{image} is not pinned by digest"
    );
    assert!(
        read("scripts/preflight.sh").contains("MIN_KIND=0.30.0"),
        "kindest/node:v1.34.0 is kind 0.30's image"
    );
    assert!(!read("k8s/kind-config.yaml").contains("KIND_K8S_VERSION"));
}

#[test]
fn every_pod_is_probed_bounded_and_locked_down() {
    let Some(render) = render() else { return };
    let jobs = the_jobs();
    let all: Vec<_> = workloads(render)
        .into_iter()
        .chain(workloads(&jobs))
        .collect();
    assert_eq!(
        all.len(),
        11,
        "{:?}",
        all.iter().map(|w| &w.1).collect::<Vec<_>>()
    );
    for (kind, name, spec, ..) in &all {
        let pod = &spec["securityContext"];
        assert_eq!(pod["runAsNonRoot"], true, "{name}");
        assert!(
            pod["runAsUser"].as_u64().is_some_and(|uid| uid > 0),
            "{name}: a numeric non-root uid"
        );
        assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        for container in spec["containers"].as_array().unwrap() {
            let c = &container["securityContext"];
            assert_eq!(c["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(c["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(c["capabilities"]["drop"], json!(["ALL"]), "{name}");
            for bound in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        container["resources"][bound][resource].is_string(),
                        "{name}: {bound}.{resource}"
                    );
                }
            }
            if kind != "Job" {
                for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                    assert!(container[probe].is_object(), "{name} has no {probe}");
                }
            }
        }
    }
    // The services: native probes of their own health endpoints, and a drain that fits.
    let probe = |name: &str, which: &str| pod_spec(render, name)["containers"][0][which].clone();
    assert_eq!(
        probe("gateway", "readinessProbe")["httpGet"]["path"],
        "/readyz"
    );
    assert_eq!(
        probe("gateway", "livenessProbe")["httpGet"]["path"],
        "/healthz"
    );
    // Probes cannot do mutual TLS: they use the plain-text health-only port.
    assert_eq!(probe("auth", "readinessProbe")["grpc"]["port"], 50061);
    assert_eq!(probe("user", "livenessProbe")["grpc"]["port"], 50062);
    for name in ["auth", "user"] {
        let env = container_env(render, &pod_spec(render, name)["containers"][0]);
        let health = deploy_checks::addr_port(&env["HEALTH_ADDR"]).map(u64::from);
        assert_eq!(
            health,
            probe(name, "startupProbe")["grpc"]["port"].as_u64(),
            "{name}"
        );
    }
    // Each service mounts its own certificate Secret, holding only its own key.
    for name in APP {
        let spec = pod_spec(render, name);
        let secret = spec["volumes"][0]["secret"]["secretName"].as_str().unwrap();
        assert_eq!(secret, format!("certs-{name}"));
        let data = named(render, "Secret", secret)["data"].as_object().unwrap();
        let keys: BTreeSet<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["ca.pem", "cert.pem", "key.pem"]),
            "{name}"
        );
        let env = container_env(render, &spec["containers"][0]);
        assert_eq!(env["TLS_KEY_FILE"], "/certs/key.pem");
        // The key in the Secret is this service's own: its certificate names it.
        let cert = base64_decode(data["cert.pem"].as_str().unwrap());
        let der = x509_der(&cert);
        assert_eq!(
            service_runtime::tls::identity_of(&der).as_deref(),
            Some(name)
        );
    }
    for name in APP {
        let spec = pod_spec(render, name);
        let sleep = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap();
        let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
        // preStop, then the drain and the span flush (which gives up after 5 s).
        assert!(
            grace >= sleep + 20,
            "{name}: grace {grace}s after a {sleep}s preStop"
        );
        assert_eq!(
            spec["automountServiceAccountToken"], false,
            "{name} needs no API access"
        );
    }
    let namespace = named(render, "Namespace", "observable-rust");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn images_are_the_ones_make_kind_up_builds_or_the_compose_pins() {
    let Some(render) = render() else { return };
    let script = read("scripts/kind-up.sh");
    let built = regex::Regex::new(r"(?m)^IMAGE=(\S+)")
        .unwrap()
        .captures(&script)
        .unwrap()[1]
        .to_owned();
    let compose = deploy_checks::Compose::load();
    let pinned: BTreeSet<String> = compose
        .services()
        .values()
        .filter(|s| s.get("build").is_none())
        .map(|s| s["image"].as_str().unwrap().to_owned())
        .collect();
    let jobs = the_jobs();
    for (_, name, spec, ..) in workloads(render).into_iter().chain(workloads(&jobs)) {
        for container in spec["containers"].as_array().unwrap() {
            let image = container["image"].as_str().unwrap();
            if image == built {
                assert_eq!(
                    container["imagePullPolicy"], "Never",
                    "{name}: the image is loaded, never pulled"
                );
            } else {
                assert!(
                    pinned.contains(image),
                    "{name}: {image} is neither built by make kind-up nor pinned in compose"
                );
            }
        }
    }
    for name in APP {
        assert_eq!(
            pod_spec(render, name)["containers"][0]["image"],
            built.as_str()
        );
    }
}

/// Service name -> (selector, port number by name and number).
fn services(render: &[Value]) -> BTreeMap<String, (&Value, BTreeSet<u64>)> {
    objects(render, "Service")
        .map(|s| {
            let ports = s["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["port"].as_u64().unwrap())
                .collect();
            (
                s["metadata"]["name"].as_str().unwrap().to_owned(),
                (&s["spec"]["selector"], ports),
            )
        })
        .collect()
}

fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| &labels[k] == v)
}

#[test]
fn every_service_selects_pods_and_targets_ports_they_declare() {
    let Some(render) = render() else { return };
    let workloads = workloads(render);
    for service in objects(render, "Service") {
        let name = service["metadata"]["name"].as_str().unwrap();
        let selector = &service["spec"]["selector"];
        let pods: Vec<_> = workloads
            .iter()
            .filter(|w| selects(selector, w.3))
            .collect();
        assert_eq!(
            pods.len(),
            1,
            "Service {name} selects {} workloads",
            pods.len()
        );
        let declared: Vec<&Value> = pods[0].2["containers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["ports"].as_array().unwrap())
            .collect();
        for port in service["spec"]["ports"].as_array().unwrap() {
            let target = &port["targetPort"];
            let found = declared
                .iter()
                .any(|p| &p["name"] == target || &p["containerPort"] == target);
            assert!(
                found,
                "Service {name} targets {target}, which its pods do not declare"
            );
        }
    }
}

/// A container's environment with `envFrom` ConfigMaps and Secrets expanded (secret values are
/// the generated ones) and `$(VAR)` references substituted, as the kubelet does.
fn container_env(render: &[Value], container: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let data = |kind: &str, name: &str, key: Option<&str>| -> Vec<(String, String)> {
        let object = objects(render, kind)
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"));
        object["data"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| key.is_none_or(|key| key == k.as_str()))
            .map(|(k, v)| {
                let v = v.as_str().unwrap();
                let v = if kind == "Secret" {
                    String::from_utf8(base64_decode(v)).unwrap()
                } else {
                    v.to_owned()
                };
                (k.clone(), v)
            })
            .collect()
    };
    for source in container["envFrom"].as_array().into_iter().flatten() {
        if let Some(name) = source["configMapRef"]["name"].as_str() {
            env.extend(data("ConfigMap", name, None));
        }
        if let Some(name) = source["secretRef"]["name"].as_str() {
            env.extend(data("Secret", name, None));
        }
    }
    let reference = regex::Regex::new(r"\$\(([A-Z0-9_]+)\)").unwrap();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = if let Some(value) = var["value"].as_str() {
            reference
                .replace_all(value, |c: &regex::Captures<'_>| {
                    env.get(&c[1])
                        .cloned()
                        .unwrap_or_else(|| panic!("$({}) is not defined before {name}", &c[1]))
                })
                .into_owned()
        } else if let Some(secret) = var["valueFrom"]["secretKeyRef"].as_object() {
            data(
                "Secret",
                secret["name"].as_str().unwrap(),
                secret["key"].as_str(),
            )
            .pop()
            .unwrap_or_else(|| panic!("{name}: no such key"))
            .1
        } else if let Some(field) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            format!("<{field}>")
        } else {
            panic!("{name}: an env source this check does not know")
        };
        env.insert(name, value);
    }
    env
}

/// The DER of the first certificate in PEM text.
fn x509_der(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(pem.to_vec()).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64_decode(&body)
}

/// A Secret's value: base64, which kustomize wraps over several lines.
fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let text: String = text.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

/// The Service and port a URL names, checked against the render.
fn resolve(render: &[Value], from: &str, url: &str) -> (String, u64) {
    let parsed = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{from}: {url}: {e}"));
    let host = parsed.host_str().unwrap().to_owned();
    let port = u64::from(parsed.port_or_known_default().unwrap_or(5432));
    let services = services(render);
    let (_, ports) = services
        .get(&host)
        .unwrap_or_else(|| panic!("{from}: {url} names {host}, which is not a Service"));
    assert!(
        ports.contains(&port),
        "{from}: {url}: Service {host} has no port {port} ({ports:?})"
    );
    (host, port)
}

/// Who calls whom, from the services' own settings: (caller, callee, port).
fn calls(render: &[Value]) -> Vec<(String, String, u64)> {
    let mut calls = Vec::new();
    for name in APP {
        let env = container_env(render, &pod_spec(render, name)["containers"][0]);
        for (variable, value) in &env {
            if variable.ends_with("_URL") || variable == "OTEL_EXPORTER_OTLP_ENDPOINT" {
                let (service, port) = resolve(render, &format!("{name} {variable}"), value);
                calls.push((name.to_owned(), service, port));
            }
        }
    }
    calls
}

#[test]
fn every_address_a_service_is_given_resolves_to_a_service_and_port() {
    let Some(render) = render() else { return };
    let calls = calls(render);
    for expected in [
        ("gateway", "auth", 50051),
        ("gateway", "user", 50052),
        ("auth", "user", 50052),
        ("user", "postgres", 5432),
        ("gateway", "tempo", 4317),
        ("auth", "tempo", 4317),
        ("user", "tempo", 4317),
    ] {
        let expected = (expected.0.to_owned(), expected.1.to_owned(), expected.2);
        assert!(calls.contains(&expected), "{expected:?} not in {calls:?}");
    }
    // The configs the observability pods read name Services too.
    let datasources = deploy_checks::parse_yaml(
        generated(render, "ConfigMap", "grafana-datasources")["data"]["datasources.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    for source in datasources["datasources"].as_array().unwrap() {
        resolve(render, "grafana", source["url"].as_str().unwrap());
    }
    let tempo = deploy_checks::parse_yaml(
        generated(render, "ConfigMap", "tempo-config")["data"]["tempo.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let write = tempo["metrics_generator"]["storage"]["remote_write"][0]["url"]
        .as_str()
        .unwrap();
    assert_eq!(
        resolve(render, "tempo", write),
        ("prometheus".to_owned(), 9090)
    );
    let alloy = generated(render, "ConfigMap", "alloy-config")["data"]["config.alloy"]
        .as_str()
        .unwrap();
    let push = regex::Regex::new(r#"url\s*=\s*"([^"]+)""#)
        .unwrap()
        .captures(alloy)
        .unwrap()[1]
        .to_owned();
    assert_eq!(resolve(render, "alloy", &push), ("loki".to_owned(), 3100));
}

#[test]
fn network_policies_deny_by_default_and_let_every_real_call_through() {
    let Some(render) = render() else { return };
    let jobs = the_jobs();
    let labels_of = |name: &str| {
        workloads(render)
            .into_iter()
            .chain(workloads(&jobs))
            .find(|w| w.1 == name)
            .unwrap_or_else(|| panic!("no workload {name}"))
            .3
    };
    let policies: Vec<&Value> = objects(render, "NetworkPolicy").collect();
    assert!(
        policies
            .iter()
            .any(|p| p["spec"]["podSelector"] == json!({}) && p["spec"]["ingress"].is_null()),
        "no default-deny policy"
    );
    let selector_matches = |selector: &Value, labels: &Value| -> bool {
        let by_labels = selector["matchLabels"]
            .as_object()
            .is_none_or(|m| m.iter().all(|(k, v)| &labels[k] == v));
        let by_expressions = selector["matchExpressions"].as_array().is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let values = e["values"].as_array().unwrap();
                e["operator"] == "In" && values.contains(&labels[e["key"].as_str().unwrap()])
            })
        });
        by_labels && by_expressions
    };
    // Does some policy let `from` reach `to` on `port`?
    let allowed = |from: &str, to: &str, port: u64| -> bool {
        policies.iter().any(|policy| {
            selector_matches(&policy["spec"]["podSelector"], labels_of(to))
                && policy["spec"]["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|rule| {
                        let peers_ok = rule["from"].as_array().is_none_or(|peers| {
                            peers.iter().any(|peer| {
                                peer["podSelector"].is_object()
                                    && selector_matches(&peer["podSelector"], labels_of(from))
                            })
                        });
                        let port_ok = rule["ports"]
                            .as_array()
                            .is_none_or(|ports| ports.iter().any(|p| p["port"] == port));
                        peers_ok && port_ok
                    })
        })
    };
    // Every call the services' settings make, and the ones the observability stack makes.
    let mut needed = calls(render);
    for (from, to, port) in [
        ("prometheus", "gateway", 8080),
        ("prometheus", "auth", 9101),
        ("prometheus", "user", 9102),
        ("tempo", "prometheus", 9090),
        ("grafana", "prometheus", 9090),
        ("grafana", "tempo", 3200),
        ("grafana", "loki", 3100),
        ("alloy", "loki", 3100),
    ] {
        needed.push((from.to_owned(), to.to_owned(), port));
    }
    // And the calls of `make kind-verify`'s Job, from its settings.
    let verify = &workloads(&jobs)
        .into_iter()
        .find(|w| w.1 == "verify")
        .unwrap()
        .2["containers"][0];
    let mut verified = BTreeSet::new();
    for (variable, value) in container_env(render, verify) {
        if variable.ends_with("_URL") {
            let (service, port) = resolve(render, &format!("verify {variable}"), &value);
            verified.insert(service.clone());
            needed.push(("verify".to_owned(), service, port));
        }
    }
    assert_eq!(
        verified,
        BTreeSet::from(["gateway", "tempo", "loki", "prometheus", "grafana"].map(String::from))
    );
    for (from, to, port) in &needed {
        assert!(
            allowed(from, to, *port),
            "no NetworkPolicy lets {from} reach {to}:{port}"
        );
    }
    // And what must stay shut.
    for (from, to, port) in [
        ("gateway", "postgres", 5432),
        ("auth", "postgres", 5432),
        ("grafana", "auth", 50051),
        ("user", "auth", 50051),
    ] {
        assert!(!allowed(from, to, port), "{from} may reach {to}:{port}");
    }
}

#[test]
fn generated_config_maps_are_the_files_compose_uses() {
    let Some(render) = render() else { return };
    let data = |name: &str| generated(render, "ConfigMap", name)["data"].clone();
    for (map, key, file) in [
        ("tempo-config", "tempo.yaml", "deploy/tempo/tempo.yaml"),
        ("loki-config", "loki.yaml", "deploy/loki/loki.yaml"),
        (
            "grafana-datasources",
            "datasources.yaml",
            "deploy/grafana/provisioning/datasources/datasources.yaml",
        ),
        (
            "grafana-dashboard-provider",
            "dashboards.yaml",
            "deploy/grafana/provisioning/dashboards/dashboards.yaml",
        ),
    ] {
        assert_eq!(
            data(map)[key].as_str(),
            Some(read(file).as_str()),
            "{map} differs from {file}"
        );
    }
    let dashboards = data("grafana-dashboards");
    let files: Vec<_> = std::fs::read_dir(repo_path("deploy/grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        dashboards.as_object().unwrap().len(),
        files.len(),
        "every dashboard file is in the ConfigMap"
    );
    for file in files {
        assert_eq!(
            dashboards[&file].as_str(),
            Some(read(&format!("deploy/grafana/dashboards/{file}")).as_str()),
            "{file}"
        );
    }
    for (map, file) in [
        ("telemetry-env", "deploy/env/telemetry.env"),
        ("gateway-env", "deploy/env/gateway.env"),
        ("auth-env", "deploy/env/auth.env"),
        ("user-env", "deploy/env/user.env"),
        ("grafana-env", "deploy/grafana/grafana.env"),
    ] {
        let expected: serde_json::Map<String, Value> = env_file(&read(file))
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        assert_eq!(
            data(map),
            Value::Object(expected),
            "{map} differs from {file}"
        );
    }
    // Alloy's discovery differs between Docker and Kubernetes; what it does with a line must not.
    let process = |text: &str| -> String {
        let start = text
            .find("loki.process \"app\" {")
            .expect("a loki.process \"app\" block");
        let end = start + text[start..].find("\n}\n").unwrap();
        text[start..end].to_owned()
    };
    assert_eq!(
        process(data("alloy-config")["config.alloy"].as_str().unwrap()),
        process(&read("deploy/alloy/config.alloy")),
        "the log pipeline differs between k8s/base/observability/config.alloy and deploy/alloy/config.alloy"
    );
}

#[test]
fn prometheus_finds_every_pod_by_annotation_and_names_jobs_as_compose_does() {
    let Some(render) = render() else { return };
    let config_text = generated(render, "ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = deploy_checks::parse_yaml(&config_text).unwrap();
    let relabel = config["scrape_configs"][0]["relabel_configs"].to_string();
    assert!(relabel.contains(r#""source_labels":["__meta_kubernetes_pod_label_app_kubernetes_io_name"],"target_label":"job""#), "{relabel}");
    assert_eq!(
        config["global"]["scrape_interval"], "15s",
        "Grafana's data source assumes 15 s"
    );

    // Every scraped pod declares the annotated port, and the services' is their metrics port.
    for (_, name, spec, _, annotations) in workloads(render) {
        if annotations["prometheus.io/scrape"] != "true" {
            continue;
        }
        let port: u64 = annotations["prometheus.io/port"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let declared = spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["ports"].as_array().unwrap())
            .any(|p| p["containerPort"] == port);
        assert!(
            declared,
            "{name} is scraped on {port}, which it does not declare"
        );
        if APP.contains(&name.as_str()) {
            let env = container_env(render, &spec["containers"][0]);
            let metrics = env.get("METRICS_ADDR").or(env.get("HTTP_ADDR")).unwrap();
            assert_eq!(
                deploy_checks::addr_port(metrics).map(u64::from),
                Some(port),
                "{name}"
            );
        }
    }
    let scraped: BTreeSet<String> = workloads(render)
        .into_iter()
        .filter(|w| w.4["prometheus.io/scrape"] == "true")
        .map(|w| w.1)
        .collect();
    for name in [
        "gateway",
        "auth",
        "user",
        "tempo",
        "loki",
        "alloy",
        "prometheus",
        "grafana",
    ] {
        assert!(scraped.contains(name), "{name} is not scraped");
    }

    // RBAC: exactly what service discovery and log tailing need, in this namespace only.
    assert!(
        objects(render, "ClusterRole").next().is_none(),
        "no cluster-wide permissions"
    );
    let rules = |name: &str| named(render, "Role", name)["rules"].to_string();
    assert!(rules("prometheus").contains(r#""resources":["pods"]"#));
    assert!(rules("alloy").contains(r#""resources":["pods/log"]"#));
    assert_eq!(
        objects(render, "DaemonSet").next().unwrap()["metadata"]["name"],
        "alloy"
    );
}

#[test]
fn spans_carry_the_pod_namespace_and_node_from_the_downward_api() {
    let Some(render) = render() else { return };
    for name in APP {
        let container = &pod_spec(render, name)["containers"][0];
        let env = container_env(render, container);
        let attributes: BTreeMap<&str, &str> = env["OTEL_RESOURCE_ATTRIBUTES"]
            .split(',')
            .filter_map(|p| p.split_once('='))
            .collect();
        assert_eq!(attributes["k8s.pod.name"], "<metadata.name>", "{name}");
        assert_eq!(
            attributes["k8s.namespace.name"], "<metadata.namespace>",
            "{name}"
        );
        assert_eq!(attributes["k8s.node.name"], "<spec.nodeName>", "{name}");
        assert_eq!(
            attributes["service.instance.id"], "<metadata.uid>",
            "{name}: unique per pod"
        );
    }
}

/// The manifest's `OTEL_RESOURCE_ATTRIBUTES`, as the kubelet expands it for one pod, reaches the
/// spans every service exports: what the Tempo search by `k8s.pod.name` relies on.
#[tokio::test]
async fn the_manifests_resource_attributes_reach_the_exported_spans() {
    let Some(render) = render() else { return };
    let container = &pod_spec(render, "gateway")["containers"][0];
    let template = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "OTEL_RESOURCE_ATTRIBUTES")
        .unwrap()["value"]
        .as_str()
        .unwrap();
    let pod_values = [
        ("K8S_POD_NAME", "gateway-7c9d6b5f4-x2x9q"),
        ("K8S_NAMESPACE_NAME", "observable-rust"),
        ("K8S_NODE_NAME", "observable-rust-control-plane"),
        ("K8S_POD_UID", "0d2c3b9e-4f1a-4c56-9a7e-3f1f2b1d5e6a"),
    ];
    let mut attributes = template.to_owned();
    for (variable, value) in pod_values {
        attributes = attributes.replace(&format!("$({variable})"), value);
    }
    let collector = testkit::otlp::OtlpCollector::start().await;
    let stack = testkit::stack::Stack::start_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_RESOURCE_ATTRIBUTES", attributes),
    ])
    .await;
    let response = stack.signup("k8s-attributes@example.com").await;
    assert_eq!(response.status(), 201);
    let trace = testkit::stack::trace_id(&response);
    let spans = testkit::eventually(
        "spans from all three services",
        std::time::Duration::from_secs(20),
        || {
            let spans: Vec<_> = collector
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace)
                .collect();
            let services: BTreeSet<_> = spans.iter().map(|s| s.service.clone()).collect();
            (services.len() == 3).then_some(spans)
        },
    )
    .await;
    for span in spans {
        let resource = |key: &str| span.resource.get(key).map(String::as_str);
        assert_eq!(
            resource("k8s.pod.name"),
            Some("gateway-7c9d6b5f4-x2x9q"),
            "{}",
            span.service
        );
        assert_eq!(resource("k8s.namespace.name"), Some("observable-rust"));
        assert_eq!(
            resource("k8s.node.name"),
            Some("observable-rust-control-plane")
        );
        assert_eq!(
            resource("service.instance.id"),
            Some("0d2c3b9e-4f1a-4c56-9a7e-3f1f2b1d5e6a")
        );
        assert_eq!(resource("deployment.environment.name"), Some("kubernetes"));
    }
}

/// Debian's Prometheus is built without Kubernetes service discovery, so the pods are handed to
/// a real Prometheus through file discovery instead, with the `__meta_kubernetes_*` labels the
/// API would give them: the relabelling under test is the manifest's own, unchanged. The real
/// services are the pods; the scrape must find them under the job names the dashboards use.
#[tokio::test]
async fn prometheus_relabels_kubernetes_pods_into_the_dashboards_job_names() {
    let Some(promtool) = testkit::tool::require("promtool", "apt-get install prometheus") else {
        return;
    };
    let Some(binary) = testkit::tool::require("prometheus", "apt-get install prometheus") else {
        return;
    };
    let stack = testkit::stack::Stack::start(&testkit::DeadEndpoint::reserve().url()).await;
    let dir = tempfile::tempdir().unwrap();
    let pods_file = dir.path().join("pods.json");

    let port = |url: &str| {
        url.trim_start_matches("http://")
            .split(['/', ':'])
            .nth(1)
            .unwrap()
            .to_owned()
    };
    let pod = |app: &str, port: &str, scrape: &str, phase: &str| {
        json!({"targets": ["discovered-by-kubernetes:1"], "labels": {
            "__meta_kubernetes_namespace": "observable-rust",
            "__meta_kubernetes_pod_name": format!("{app}-5d8f7c6b9-abcde"),
            "__meta_kubernetes_pod_ip": "127.0.0.1",
            "__meta_kubernetes_pod_phase": phase,
            "__meta_kubernetes_pod_node_name": "observable-rust-control-plane",
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": app,
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": scrape,
            "__meta_kubernetes_pod_annotation_prometheus_io_port": port,
        }})
    };
    let pods = json!([
        pod("gateway", &port(&stack.gateway_url), "true", "Running"),
        pod("auth", &port(&stack.auth_metrics), "true", "Running"),
        pod("user", &port(&stack.user_metrics), "true", "Running"),
        // Not annotated, and finished: neither may become a target.
        pod("postgres", "5432", "false", "Running"),
        pod("loadgen", &port(&stack.gateway_url), "true", "Succeeded"),
    ]);
    std::fs::write(&pods_file, pods.to_string()).unwrap();

    let mut config = deploy_checks::yaml("k8s/base/observability/prometheus.yml");
    config["global"]["scrape_interval"] = json!("1s");
    let job = &mut config["scrape_configs"][0];
    assert!(job["kubernetes_sd_configs"].is_array());
    job.as_object_mut().unwrap().remove("kubernetes_sd_configs");
    job["file_sd_configs"] = json!([{"files": [pods_file.display().to_string()]}]);
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(&config_file, serde_json::to_string(&config).unwrap()).unwrap();
    deploy_checks::succeeds(
        Command::new(promtool)
            .args(["check", "config"])
            .arg(&config_file),
    );

    let prometheus =
        testkit::prometheus::Prometheus::start(&binary, &serde_json::to_string(&config).unwrap());
    let http = reqwest::Client::new();
    let up = testkit::eventually_async(
        "three targets scraped",
        std::time::Duration::from_secs(60),
        || async {
            let answer = prometheus.try_query(&http, "up == 1").await.ok()?;
            let targets: BTreeSet<(String, String)> = answer["data"]["result"]
                .as_array()?
                .iter()
                .map(|r| {
                    (
                        r["metric"]["job"].as_str().unwrap().to_owned(),
                        r["metric"]["instance"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (targets.len() >= 3).then_some(targets)
        },
    )
    .await;
    let expected: BTreeSet<(String, String)> = APP
        .iter()
        .map(|app| (app.to_string(), format!("{app}-5d8f7c6b9-abcde")))
        .collect();
    assert_eq!(
        up, expected,
        "jobs are the app names, instances the pods; postgres and the finished Job are not scraped"
    );
    let all = prometheus.query(&http, "count(up)").await;
    assert_eq!(all["data"]["result"][0]["value"][1], "3", "{all}");
}

#[test]
fn every_namespaced_object_the_overlay_renders_is_in_the_projects_namespace() {
    let Some(render) = render() else { return };
    assert_eq!(outside_the_namespace(render), Vec::<String>::new());
    assert!(
        named(render, "Secret", "certs-user")["metadata"]["namespace"] == NAMESPACE,
        "the Secrets the overlay generates are the ones that went astray once"
    );

    // The mutation: the overlay without its own `namespace:`, as the first `make kind-up` had
    // it. A copy of k8s/ and deploy/ (the base reads ../../deploy) with that one line removed.
    let kubectl = testkit::tool::require("kubectl", "").unwrap();
    let copy = tempfile::tempdir().unwrap();
    for tree in ["k8s", "deploy"] {
        deploy_checks::succeeds(
            Command::new("cp")
                .arg("-r")
                .arg(repo_path(tree))
                .arg(copy.path()),
        );
    }
    let kustomization = copy.path().join(OVERLAY).join("kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).unwrap();
    let line = format!("namespace: {NAMESPACE}\n");
    assert!(text.contains(&line));
    std::fs::write(&kustomization, text.replace(&line, "")).unwrap();
    let strayed: BTreeSet<String> =
        outside_the_namespace(&kustomize(&kubectl, &copy.path().join(OVERLAY)))
            .into_iter()
            .collect();
    assert_eq!(
        strayed,
        BTreeSet::from(
            [
                "Secret/postgres-credentials",
                "Secret/jwt-secret",
                "Secret/grafana-admin",
                "Secret/certs-gateway",
                "Secret/certs-auth",
                "Secret/certs-user",
            ]
            .map(str::to_owned)
        ),
        "without the overlay's namespace line, its generated Secrets leave the namespace"
    );
}

#[test]
fn every_pod_carries_the_part_of_label_the_log_pipeline_reads() {
    let Some(render) = render() else { return };
    let alloy = read("k8s/base/observability/config.alloy");
    assert!(alloy.contains("__meta_kubernetes_pod_label_app_kubernetes_io_part_of"));
    for (kind, name, _, labels, _) in workloads(render) {
        assert_eq!(
            labels["app.kubernetes.io/part-of"], NAMESPACE,
            "{kind}/{name}: its pod template lacks the label (kustomize `labels:` needs \
             includeTemplates: true)"
        );
    }
}
