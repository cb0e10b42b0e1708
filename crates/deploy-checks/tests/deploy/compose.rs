//! `deploy/compose.yaml`: valid Compose, pinned images, and every address it or a config mounted
//! into it names is a service listening on that port.

use std::process::Command;

use deploy_checks::{COMPOSE_FILE, Compose, ENV_EXAMPLE, env_file, read, repo_path, yaml};
use serde_json::{Value, json};

/// The services built from this repository's Dockerfile.
const APP_SERVICES: [&str; 3] = ["gateway", "auth", "user"];

fn check_jsonschema(file: &std::path::Path) -> Option<std::process::Output> {
    let tool = testkit::tool::require("check-jsonschema", "pip install check-jsonschema")?;
    Some(
        Command::new(tool)
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(file)
            .output()
            .expect("run check-jsonschema"),
    )
}

#[test]
fn the_compose_file_validates_against_the_compose_specification() {
    let Some(valid) = check_jsonschema(&repo_path(COMPOSE_FILE)) else {
        return;
    };
    assert!(
        valid.status.success(),
        "{}{}",
        String::from_utf8_lossy(&valid.stdout),
        String::from_utf8_lossy(&valid.stderr)
    );

    // The schema must be strict enough to catch a typo, or the check above proves nothing.
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("compose.yaml");
    let text = read(COMPOSE_FILE).replacen("    healthcheck:", "    healthchek:", 1);
    std::fs::write(&typo, text).unwrap();
    let invalid = check_jsonschema(&typo).expect("found above");
    assert!(!invalid.status.success(), "a misspelt key was accepted");
}

#[test]
fn every_image_is_pinned_and_listed_in_the_readme() {
    let compose = Compose::load();
    let readme = read("README.md");
    let mut pulled = 0;
    for (name, service) in compose.services() {
        let image = service["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no image"));
        if service.get("build").is_some() {
            // Built from this repository's Dockerfile, not pulled (see dockerfile.rs).
            continue;
        }
        let (_, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{name}: {image} has no tag"));
        assert!(
            tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
            "{name}: {image} is not pinned to a version"
        );
        assert!(
            readme.contains(&format!("`{image}`")),
            "{image} is missing from the README's versions table"
        );
        pulled += 1;
    }
    assert!(
        pulled >= 6,
        "postgres, tempo, prometheus, loki, alloy, grafana"
    );
}

#[test]
fn every_address_a_service_is_given_is_a_service_listening_there() {
    let compose = Compose::load();
    let mut checked = 0;
    for name in compose.services().keys() {
        for (variable, value) in compose.env(name) {
            let names_a_peer = variable.ends_with("_URL")
                || variable == "OTEL_EXPORTER_OTLP_ENDPOINT"
                || variable == "LOAD_TARGET";
            if names_a_peer {
                compose
                    .resolve(name, &value)
                    .unwrap_or_else(|e| panic!("{variable}: {e}"));
                checked += 1;
            }
        }
    }
    // gateway AUTH_URL, USER_URL; auth USER_URL; user DATABASE_URL; three OTLP endpoints; loadgen.
    assert!(
        checked >= 8,
        "only {checked} addresses found: did the variable names change?"
    );

    let expected = [
        ("gateway", "AUTH_URL", "auth"),
        ("gateway", "USER_URL", "user"),
        ("auth", "USER_URL", "user"),
        ("user", "DATABASE_URL", "postgres"),
        ("loadgen", "LOAD_TARGET", "gateway"),
        ("verify", "VERIFY_GATEWAY_URL", "gateway"),
        ("verify", "VERIFY_TEMPO_URL", "tempo"),
        ("verify", "VERIFY_LOKI_URL", "loki"),
        ("verify", "VERIFY_PROMETHEUS_URL", "prometheus"),
        ("verify", "VERIFY_GRAFANA_URL", "grafana"),
    ];
    for (service, variable, peer) in expected {
        let value = &compose.env(service)[variable];
        assert_eq!(
            compose.resolve(service, value).unwrap(),
            peer,
            "{service} {variable}"
        );
    }
    for service in APP_SERVICES {
        let endpoint = &compose.env(service)["OTEL_EXPORTER_OTLP_ENDPOINT"];
        assert_eq!(
            compose.resolve(service, endpoint).unwrap(),
            "tempo",
            "{service}"
        );
        assert!(
            endpoint.ends_with(":4317"),
            "{service}: the exporter speaks OTLP/gRPC: {endpoint}"
        );
    }
}

#[test]
fn published_ports_are_listened_on_and_only_bound_to_localhost() {
    let compose = Compose::load();
    for (name, service) in compose.services() {
        for port in service["ports"].as_array().into_iter().flatten() {
            let port = port
                .as_str()
                .unwrap_or_else(|| panic!("{name}: ports in short form"));
            let parts: Vec<&str> = port.split(':').collect();
            assert_eq!(
                parts.len(),
                3,
                "{name}: {port} should be host_ip:host:container"
            );
            assert_eq!(
                parts[0], "127.0.0.1",
                "{name}: {port} would be reachable from the network"
            );
            let container: u16 = parts[2].parse().unwrap();
            assert!(
                compose.listening(name).contains(&container),
                "{name} does not listen on {container}"
            );
        }
    }
    let published = |name: &str| compose.service(name)["ports"].to_string();
    for (service, port) in [
        ("gateway", ":8080\""),
        ("grafana", ":3000\""),
        ("tempo", ":4317\""),
    ] {
        assert!(
            published(service).contains(port),
            "{service} should publish {port}"
        );
    }
}

#[test]
fn the_services_start_in_order_and_report_health_with_their_own_binaries() {
    let compose = Compose::load();
    let services = compose.services();
    for (name, service) in services {
        for (dependency, condition) in service["depends_on"].as_object().into_iter().flatten() {
            let target = services
                .get(dependency)
                .unwrap_or_else(|| panic!("{name} depends on unknown {dependency}"));
            match condition["condition"].as_str() {
                Some("service_healthy") => assert!(
                    target.get("healthcheck").is_some(),
                    "{name} waits for {dependency} to be healthy, which has no healthcheck"
                ),
                Some("service_completed_successfully") => assert!(
                    target.get("restart").is_none_or(|r| r == "no"),
                    "{dependency} is a one-shot: it must not restart"
                ),
                Some("service_started") => {}
                other => panic!("{name} -> {dependency}: condition {other:?}"),
            }
        }
    }
    let healthy_deps = |name: &str| -> Vec<String> {
        compose.service(name)["depends_on"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, c)| c["condition"] == "service_healthy")
            .map(|(d, _)| d.clone())
            .collect()
    };
    assert_eq!(healthy_deps("gateway"), ["auth", "user"]);
    assert_eq!(healthy_deps("auth"), ["user"]);
    assert_eq!(healthy_deps("user"), ["postgres"]);
    assert_eq!(compose.command("certs"), ["certgen", "/certs"]);

    let image_binaries = crate::dockerfile::image_binaries();
    for name in APP_SERVICES.iter().chain(&["loadgen", "verify"]) {
        let command = compose.command(name);
        assert_eq!(command, [*name], "{name} runs its own binary");
        assert!(
            image_binaries.contains(&command[0]),
            "{name}: the image has no {}",
            command[0]
        );
    }
    for name in APP_SERVICES {
        let test: Vec<&str> = compose.service(name)["healthcheck"]["test"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            test,
            ["CMD", &format!("/usr/local/bin/{name}"), "--health-check"]
        );
    }
}

#[test]
fn the_services_speak_mutual_tls_with_certificates_the_certs_job_writes() {
    let compose = Compose::load();
    let certs = compose.service("certs");
    assert_eq!(compose.command("certs"), ["certgen", "/certs"]);
    assert!(
        certs["volumes"].to_string().contains(r#""certs:/certs""#),
        "certgen writes the volume"
    );
    assert!(crate::dockerfile::image_binaries().contains(&"certgen".to_owned()));
    for name in APP_SERVICES {
        let service = compose.service(name);
        let mounts = service["volumes"].as_array().unwrap();
        let certs = mounts
            .iter()
            .find(|m| m["source"] == "certs")
            .unwrap_or_else(|| panic!("{name} mounts no certificates"));
        assert_eq!(certs["target"], "/certs");
        assert_eq!(certs["read_only"], true);
        assert_eq!(
            certs["volume"]["subpath"], *name,
            "{name} mounts its own folder only, not the others' keys"
        );
        assert_eq!(
            service["depends_on"]["certs"]["condition"], "service_completed_successfully",
            "{name} starts once they exist"
        );
        let env = compose.env(name);
        for (variable, file) in [
            ("TLS_CA_FILE", "/certs/ca.pem".to_owned()),
            ("TLS_CERT_FILE", "/certs/cert.pem".to_owned()),
            ("TLS_KEY_FILE", "/certs/key.pem".to_owned()),
        ] {
            assert_eq!(env.get(variable), Some(&file), "{name} {variable}");
        }
    }
    // Calls between them are https://, and the services' probes have their plain-text port.
    for (name, variable) in [
        ("gateway", "AUTH_URL"),
        ("gateway", "USER_URL"),
        ("auth", "USER_URL"),
    ] {
        assert!(
            compose.env(name)[variable].starts_with("https://"),
            "{name} {variable}"
        );
    }
    for name in ["auth", "user"] {
        assert!(compose.env(name).contains_key("HEALTH_ADDR"), "{name}");
    }
}

#[test]
fn mounted_files_exist_and_data_lives_in_named_volumes() {
    let compose = Compose::load();
    let volumes = compose.doc["volumes"].as_object().expect("named volumes");
    for (name, service) in compose.services() {
        for mount in service["volumes"].as_array().into_iter().flatten() {
            let source = match mount {
                Value::String(short) => short.split(':').next().unwrap().to_owned(),
                long => long["source"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: {long}"))
                    .to_owned(),
            };
            let source = source.as_str();
            if source.starts_with("./") || source.starts_with("../") {
                let path = repo_path("deploy").join(source);
                assert!(
                    path.exists(),
                    "{name} mounts {source}, which is not in the repository"
                );
            } else if !source.starts_with('/') {
                assert!(
                    volumes.contains_key(source),
                    "{name}: volume {source} is not declared"
                );
            }
        }
    }
    let mounts = |name: &str| compose.service(name)["volumes"].to_string();
    assert!(mounts("postgres").contains("postgres-data:/var/lib/postgresql"));
    assert!(mounts("alloy").contains("/var/run/docker.sock:/var/run/docker.sock:ro"));
}

#[test]
fn the_example_settings_cover_every_required_variable() {
    let text = read(COMPOSE_FILE);
    let example = env_file(&read(ENV_EXAMPLE));
    let required = regex::Regex::new(r"\$\{([A-Z_]+):?\?").unwrap();
    let names: Vec<&str> = required
        .captures_iter(&text)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    assert!(names.contains(&"JWT_SECRET") && names.contains(&"POSTGRES_PASSWORD"));
    for name in names {
        assert!(
            example.contains_key(name),
            "{ENV_EXAMPLE} does not define {name}"
        );
    }
    // Secrets are generated, never committed.
    for secret in ["POSTGRES_PASSWORD", "JWT_SECRET", "GRAFANA_ADMIN_PASSWORD"] {
        assert_eq!(example[secret], "generate", "{secret}");
    }
    assert!(
        read(".gitignore")
            .lines()
            .any(|l| l.trim() == "deploy/.env")
    );
}

#[test]
fn make_up_generates_fresh_secrets_once_and_never_overwrites_them() {
    let dir = tempfile::tempdir().unwrap();
    let generate = |target: &std::path::Path| {
        let status = Command::new(repo_path("scripts/env-from-example.sh"))
            .arg(repo_path(ENV_EXAMPLE))
            .arg(target)
            .status()
            .unwrap();
        assert!(status.success());
        env_file(&std::fs::read_to_string(target).unwrap())
    };
    let first = generate(&dir.path().join("a.env"));
    let second = generate(&dir.path().join("b.env"));
    for secret in ["POSTGRES_PASSWORD", "JWT_SECRET", "GRAFANA_ADMIN_PASSWORD"] {
        let value = &first[secret];
        assert!(
            value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()),
            "{secret}={value}"
        );
        assert_ne!(value, &second[secret], "{secret} is not random");
    }
    assert_eq!(first["POSTGRES_USER"], "users", "other values are copied");
    let again = generate(&dir.path().join("a.env"));
    assert_eq!(first, again, "an existing file was rewritten");

    // With the generated values, the compose file interpolates completely.
    let vars = first.into_iter().collect();
    deploy_checks::interpolate(&read(COMPOSE_FILE), &vars).unwrap();
}

/// Compose's own list-or-map forms are used consistently, so the helpers above read them all.
#[test]
fn app_services_share_one_image_and_run_locked_down() {
    let compose = Compose::load();
    let image = |name: &str| compose.service(name)["image"].clone();
    for name in APP_SERVICES.iter().chain(&["loadgen", "verify"]) {
        let service = compose.service(name);
        assert_eq!(image(name), image("gateway"), "{name}");
        assert_eq!(service["build"]["dockerfile"], "Dockerfile", "{name}");
        assert_eq!(service["read_only"], true, "{name}");
        assert_eq!(service["cap_drop"], Value::from(vec!["ALL"]), "{name}");
    }
    assert_eq!(
        compose.service("loadgen")["profiles"],
        Value::from(vec!["load"])
    );
    assert_eq!(yaml(COMPOSE_FILE)["name"], "observable-rust");
}

#[test]
fn every_program_compose_runs_in_an_upstream_image_is_in_that_image() {
    let compose = Compose::load();
    let problems = deploy_checks::images::unavailable_programs(compose.services());
    assert!(problems.is_empty(), "{problems:#?}");

    // The mutations: each is a mistake a schema accepts and a real `make up` does not.
    let mutants = [
        // The init container the first `make up` died on: Tempo's image has no chown.
        (
            "tempo-init",
            json!({"image": "grafana/tempo:3.0.0", "user": "root",
                   "entrypoint": ["chown", "10001:10001", "/var/tempo"]}),
            "`chown`",
        ),
        // A shell healthcheck in a distroless image.
        (
            "loki",
            json!({"image": "grafana/loki:3.7.6",
                   "healthcheck": {"test": ["CMD-SHELL", "wget -qO- localhost:3100/ready"]}}),
            "`/bin/sh`",
        ),
        // A program by absolute path that busybox does not put there.
        (
            "prometheus",
            json!({"image": "prom/prometheus:v3.7.3",
                   "healthcheck": {"test": ["CMD", "/usr/bin/curl", "-f", "localhost:9090/-/ready"]}}),
            "`/usr/bin/curl`",
        ),
        // A tag nobody read.
        ("tempo", json!({"image": "grafana/tempo:2.9.0"}), "no row"),
    ];
    for (name, service, expected) in mutants {
        let mut services = compose.services().clone();
        services.insert(name.to_owned(), service);
        let problems = deploy_checks::images::unavailable_programs(&services);
        assert!(
            !problems.is_empty()
                && problems.iter().all(|p| p.starts_with(&format!("{name}: ")))
                && problems.iter().any(|p| p.contains(expected)),
            "{name}: {problems:#?}"
        );
    }
    // What does belong stays accepted: busybox's wget in Prometheus' image.
    let mut services = compose.services().clone();
    services.insert(
        "prometheus".to_owned(),
        json!({"image": "prom/prometheus:v3.7.3",
               "healthcheck": {"test": ["CMD", "wget", "-qO-", "localhost:9090/-/ready"]}}),
    );
    assert!(deploy_checks::images::unavailable_programs(&services).is_empty());
}
