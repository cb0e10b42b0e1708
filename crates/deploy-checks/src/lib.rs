//! Reads the deployment files under `deploy/` the way their consumers do, so the tests in
//! `tests/deploy` can check them without a Docker engine, Grafana, Tempo, Loki or Alloy.
//!
//! | item | what it gives a test |
//! |---|---|
//! | [`repo_path`], [`read`], [`yaml`] | a repository file, as text or as YAML (merge keys applied) |
//! | [`Compose`] | `deploy/compose.yaml` with `${VAR}` interpolated from `deploy/.env.example` |
//! | [`Compose::listening`] | the ports each compose service listens on, from its *own* config |
//! | [`Compose::resolve`] | whether a URL names a compose service and a port it listens on |
//! | [`images`] | what each pinned upstream image holds, and the programs compose runs in it |
//!
//! What each service listens on is read from the file that decides it (the services' `*_ADDR`
//! variables, `tempo.yaml`, `loki.yaml`, Alloy's and Prometheus' flags); only the images' own
//! defaults (PostgreSQL 5432, Prometheus 9090, Grafana 3000) are written here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

pub mod images;

/// The compose file, relative to the repository root.
pub const COMPOSE_FILE: &str = "deploy/compose.yaml";
/// The committed example settings that `make up` turns into `deploy/.env`.
pub const ENV_EXAMPLE: &str = "deploy/.env.example";

/// An absolute path to `relative` inside the repository.
/// Runs `command` (a checking tool), asserting it succeeded and showing all it printed if not;
/// returns what it wrote to stdout.
pub fn succeeds(command: &mut std::process::Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// The text of repository file `relative`; panics naming it when missing.
pub fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative))
        .unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// Parses YAML text as its consumers do (including `<<` merge keys) into a JSON value.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    let mut value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    value.apply_merge().map_err(|e| e.to_string())?;
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// Repository file `relative` parsed as YAML; panics naming it when it does not parse.
pub fn yaml(relative: &str) -> Value {
    parse_yaml(&read(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// The variables of an env file (`NAME=value` lines; comments and blank lines skipped).
pub fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// Compose's interpolation: `$$`, `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`,
/// `${NAME:?error}` and `${NAME?error}`. A required variable that `vars` lacks is an error.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let pattern = regex::Regex::new(
        r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))",
    )
    .expect("valid regex");
    let mut error = None;
    let out = pattern.replace_all(text, |caps: &regex::Captures<'_>| {
        if caps.get(1).is_some() {
            return "$".to_owned();
        }
        let name = caps
            .get(2)
            .or_else(|| caps.get(5))
            .map_or("", |m| m.as_str());
        let value = vars.get(name).filter(|v| !v.is_empty());
        match (caps.get(3).map(|m| m.as_str()), value) {
            (_, Some(value)) => value.clone(),
            (Some(":-" | "-"), None) => caps[4].to_owned(),
            (Some(":?" | "?"), None) | (None, None) => {
                error.get_or_insert_with(|| format!("${{{name}}} is not set"));
                String::new()
            }
            (Some(_), None) => String::new(),
        }
    });
    match error {
        Some(error) => Err(error),
        None => Ok(out.into_owned()),
    }
}

/// The port of a `host:port` socket address as the services' `*_ADDR` variables hold it.
pub fn addr_port(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// `deploy/compose.yaml`, interpolated with the values of `deploy/.env.example`.
pub struct Compose {
    /// The whole document.
    pub doc: Value,
}

impl Compose {
    /// Loads and interpolates the compose file.
    pub fn load() -> Self {
        let vars = env_file(&read(ENV_EXAMPLE));
        let text = interpolate(&read(COMPOSE_FILE), &vars)
            .unwrap_or_else(|error| panic!("{COMPOSE_FILE} with {ENV_EXAMPLE}: {error}"));
        let doc = parse_yaml(&text).unwrap_or_else(|error| panic!("{COMPOSE_FILE}: {error}"));
        Self { doc }
    }

    /// Service name -> definition.
    pub fn services(&self) -> &serde_json::Map<String, Value> {
        self.doc["services"].as_object().expect("services is a map")
    }

    /// One service's definition; panics when there is none.
    pub fn service(&self, name: &str) -> &Value {
        self.services()
            .get(name)
            .unwrap_or_else(|| panic!("no compose service {name:?}"))
    }

    /// A service's environment as compose builds it: its `env_file`s (relative to `deploy/`),
    /// then `environment` (a map or a `NAME=value` list), later entries winning.
    pub fn env(&self, service: &str) -> BTreeMap<String, String> {
        let scalar = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let definition = self.service(service);
        let files: Vec<String> = match &definition["env_file"] {
            Value::String(file) => vec![file.clone()],
            Value::Array(files) => files.iter().map(scalar).collect(),
            _ => Vec::new(),
        };
        let mut env: BTreeMap<String, String> = files
            .iter()
            .flat_map(|file| env_file(&read(&format!("deploy/{file}"))))
            .collect();
        env.extend(self.environment(service));
        env
    }

    /// The service's `environment` key alone.
    fn environment(&self, service: &str) -> BTreeMap<String, String> {
        let scalar = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        match &self.service(service)["environment"] {
            Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
            Value::Array(items) => {
                env_file(&items.iter().map(scalar).collect::<Vec<_>>().join("\n"))
            }
            _ => BTreeMap::new(),
        }
    }

    /// A service's `command` as a list of words.
    pub fn command(&self, service: &str) -> Vec<String> {
        match &self.service(service)["command"] {
            Value::Array(words) => words
                .iter()
                .filter_map(|w| w.as_str().map(str::to_owned))
                .collect(),
            Value::String(line) => line.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }

    /// The value of flag `--name=value` (or `-name=value`) in a service's command.
    pub fn flag(&self, service: &str, name: &str) -> Option<String> {
        self.command(service).into_iter().find_map(|word| {
            let word = word.trim_start_matches('-');
            word.strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_owned)
        })
    }

    /// The ports `service` listens on inside the compose network, read from its own settings.
    pub fn listening(&self, service: &str) -> BTreeSet<u16> {
        let env = self.env(service);
        let env_ports = |names: &[&str]| -> BTreeSet<u16> {
            names
                .iter()
                .filter_map(|name| env.get(*name).and_then(|addr| addr_port(addr)))
                .collect()
        };
        let image = self.service(service)["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match service {
            "gateway" => env_ports(&["HTTP_ADDR"]),
            "auth" | "user" => env_ports(&["GRPC_ADDR", "METRICS_ADDR", "HEALTH_ADDR"]),
            _ if image.starts_with("grafana/tempo:") => {
                tempo_ports(&yaml("deploy/tempo/tempo.yaml"))
            }
            _ if image.starts_with("grafana/loki:") => {
                let loki = yaml("deploy/loki/loki.yaml");
                loki["server"]["http_listen_port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .into_iter()
                    .collect()
            }
            _ if image.starts_with("grafana/alloy:") => self
                .flag(service, "server.http.listen-addr")
                .and_then(|addr| addr_port(&addr))
                .into_iter()
                .collect(),
            _ if image.starts_with("prom/prometheus:") => {
                let addr = self
                    .flag(service, "web.listen-address")
                    .unwrap_or_else(|| "0.0.0.0:9090".into());
                addr_port(&addr).into_iter().collect()
            }
            _ if image.starts_with("postgres:") => env
                .get("PGPORT")
                .and_then(|p| p.parse().ok())
                .into_iter()
                .chain([5432])
                .take(1)
                .collect(),
            _ if image.starts_with("grafana/grafana:") => env
                .get("GF_SERVER_HTTP_PORT")
                .and_then(|p| p.parse().ok())
                .into_iter()
                .chain([3000])
                .take(1)
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Checks that `url` (or a bare `host:port`) names a compose service and a port it listens
    /// on; `localhost` means `from` itself. Returns the service's name.
    pub fn resolve(&self, from: &str, url: &str) -> Result<String, String> {
        let with_scheme = if url.contains("://") {
            url.to_owned()
        } else {
            format!("tcp://{url}")
        };
        let parsed = reqwest::Url::parse(&with_scheme).map_err(|e| format!("{url:?}: {e}"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("{url:?} has no host"))?;
        let port = parsed
            .port_or_known_default()
            .or_else(|| (parsed.scheme() == "postgres").then_some(5432))
            .ok_or_else(|| format!("{url:?} has no port"))?;
        let service = if host == "localhost" { from } else { host };
        if !self.services().contains_key(service) {
            return Err(format!(
                "{from}: {url:?} names {host:?}, which is not a compose service"
            ));
        }
        let listening = self.listening(service);
        if !listening.contains(&port) {
            return Err(format!(
                "{from}: {url:?} names port {port} of {service}, which listens on {listening:?}"
            ));
        }
        Ok(service.to_owned())
    }
}

/// Tempo's ports from its config: the HTTP API and each OTLP receiver's endpoint.
pub fn tempo_ports(tempo: &Value) -> BTreeSet<u16> {
    let protocols = &tempo["distributor"]["receivers"]["otlp"]["protocols"];
    ["grpc", "http"]
        .iter()
        .filter_map(|p| protocols[p]["endpoint"].as_str().and_then(addr_port))
        .chain(
            tempo["server"]["http_listen_port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok()),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_follows_compose() {
        let vars = BTreeMap::from([
            ("A".to_owned(), "1".to_owned()),
            ("E".to_owned(), String::new()),
        ]);
        assert_eq!(interpolate("x${A}y$A $$A", &vars).unwrap(), "x1y1 $A");
        assert_eq!(
            interpolate("${B:-d} ${E:-d} ${A:?m}", &vars).unwrap(),
            "d d 1"
        );
        assert!(
            interpolate("${B:?missing}", &vars)
                .unwrap_err()
                .contains("B")
        );
        assert!(interpolate("${B}", &vars).is_err(), "unset without default");
    }

    #[test]
    fn yaml_merge_keys_are_applied() {
        let doc = parse_yaml("base: &b {x: 1, y: 2}\nthing:\n  <<: *b\n  y: 3\n").unwrap();
        assert_eq!(doc["thing"], serde_json::json!({"x": 1, "y": 3}));
    }
}
