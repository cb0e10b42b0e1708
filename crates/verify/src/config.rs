//! Where the stack's parts are, from the environment: defaults are the host ports `make up`
//! publishes, compose's `verify` service names the containers instead, and the kind Job the
//! Services.

use std::time::Duration;

/// The gateway's base URL.
pub const VERIFY_GATEWAY_URL: &str = "VERIFY_GATEWAY_URL";
/// Tempo's HTTP API.
pub const VERIFY_TEMPO_URL: &str = "VERIFY_TEMPO_URL";
/// Loki's HTTP API.
pub const VERIFY_LOKI_URL: &str = "VERIFY_LOKI_URL";
/// Prometheus' HTTP API.
pub const VERIFY_PROMETHEUS_URL: &str = "VERIFY_PROMETHEUS_URL";
/// Grafana.
pub const VERIFY_GRAFANA_URL: &str = "VERIFY_GRAFANA_URL";
/// How long each link may take to show the request, in seconds: spans leave in batches every
/// 5 s, Tempo's generator and Prometheus add up to a minute for the service graph.
pub const VERIFY_TIMEOUT_SECONDS: &str = "VERIFY_TIMEOUT_SECONDS";

/// Default for [`VERIFY_GATEWAY_URL`].
pub const DEFAULT_GATEWAY_URL: &str = "http://localhost:8080";
/// Default for [`VERIFY_TEMPO_URL`].
pub const DEFAULT_TEMPO_URL: &str = "http://localhost:3200";
/// Default for [`VERIFY_LOKI_URL`].
pub const DEFAULT_LOKI_URL: &str = "http://localhost:3100";
/// Default for [`VERIFY_PROMETHEUS_URL`].
pub const DEFAULT_PROMETHEUS_URL: &str = "http://localhost:9090";
/// Default for [`VERIFY_GRAFANA_URL`].
pub const DEFAULT_GRAFANA_URL: &str = "http://localhost:3000";
/// Default for [`VERIFY_TIMEOUT_SECONDS`].
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 120;

/// A setting verify refuses to run with; its `Display` is the one line printed before exit 64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable at fault.
    pub variable: &'static str,
    /// Why, and what would be accepted.
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.variable, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Everything verify needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gateway, where the request goes in.
    pub gateway: String,
    /// Tempo, asked for the trace.
    pub tempo: String,
    /// Loki, asked for the trace's lines.
    pub loki: String,
    /// Prometheus, asked for targets, span metrics, the service graph and exemplars.
    pub prometheus: String,
    /// Grafana, asked to reach the three through its own data sources.
    pub grafana: String,
    /// How long each link may take.
    pub timeout: Duration,
    /// The traces -> logs LogQL, with `${__span.tags["service.name"]}` and `${__trace.traceId}`
    /// as Grafana's data source holds it: by default the provisioned one
    /// ([`crate::grafana::provisioned_logs_query`]).
    pub logs_query: String,
}

impl Config {
    /// From the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let url = |variable: &'static str, default: &str| -> Result<String, ConfigError> {
            let value = lookup(variable)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_owned());
            let value = value.trim().trim_end_matches('/').to_owned();
            match reqwest::Url::parse(&value) {
                Ok(parsed) if ["http", "https"].contains(&parsed.scheme()) => Ok(value),
                _ => Err(ConfigError {
                    variable,
                    reason: format!("expected an http:// or https:// URL, got {value:?}"),
                }),
            }
        };
        let timeout = match lookup(VERIFY_TIMEOUT_SECONDS).filter(|v| !v.trim().is_empty()) {
            None => DEFAULT_TIMEOUT_SECONDS,
            Some(value) => value
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| ConfigError {
                    variable: VERIFY_TIMEOUT_SECONDS,
                    reason: format!("expected a whole number of seconds above 0, got {value:?}"),
                })?,
        };
        Ok(Self {
            gateway: url(VERIFY_GATEWAY_URL, DEFAULT_GATEWAY_URL)?,
            tempo: url(VERIFY_TEMPO_URL, DEFAULT_TEMPO_URL)?,
            loki: url(VERIFY_LOKI_URL, DEFAULT_LOKI_URL)?,
            prometheus: url(VERIFY_PROMETHEUS_URL, DEFAULT_PROMETHEUS_URL)?,
            grafana: url(VERIFY_GRAFANA_URL, DEFAULT_GRAFANA_URL)?,
            timeout: Duration::from_secs(timeout),
            logs_query: crate::grafana::provisioned_logs_query(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_are_the_ports_make_up_publishes() {
        let config = config(&[]).unwrap();
        assert_eq!(config.gateway, "http://localhost:8080");
        assert_eq!(config.grafana, "http://localhost:3000");
        assert_eq!(config.timeout, Duration::from_secs(120));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let error = config(&[(VERIFY_TEMPO_URL, "tempo:3200")]).unwrap_err();
        assert_eq!(error.variable, VERIFY_TEMPO_URL);
        let error = config(&[(VERIFY_TIMEOUT_SECONDS, "0")]).unwrap_err();
        assert_eq!(error.variable, VERIFY_TIMEOUT_SECONDS);
        let trimmed = config(&[(VERIFY_LOKI_URL, "http://loki:3100/")]).unwrap();
        assert_eq!(trimmed.loki, "http://loki:3100");
    }
}
