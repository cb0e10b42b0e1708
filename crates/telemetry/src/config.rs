//! The standard OpenTelemetry environment variables, read once and validated.
//!
//! We follow the OpenTelemetry SDK configuration spec rather than inventing names, so the same
//! deployment manifests work for services written in any language. Values the SDK would silently
//! ignore (an unknown sampler, a ratio of 7) are refused here instead: a typo in a manifest should
//! stop the rollout, not quietly turn tracing off.

use std::fmt;

/// `OTEL_SERVICE_NAME`: overrides the name the service passes to [`crate::init`].
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// `OTEL_SDK_DISABLED`: `true` turns tracing off entirely (no ids, no export).
pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's gRPC endpoint, e.g. `http://tempo:4317`.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the signal-specific endpoint; wins over the generic one.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_TRACES_SAMPLER`: one of the spec's sampler names.
pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// `OTEL_TRACES_SAMPLER_ARG`: the ratio for the `*traceidratio` samplers.
pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// `OTEL_PROPAGATORS`: comma-separated list; we support `tracecontext`, `baggage` and `none`.
pub const OTEL_PROPAGATORS: &str = "OTEL_PROPAGATORS";
/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value,...`, read by the SDK; we only look for the environment.
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// `RUST_LOG`: env_logger-style level directives for the JSON logs, e.g. `info,user=debug`.
pub const RUST_LOG: &str = "RUST_LOG";

/// Numeric settings the SDK and exporter read themselves; the SDK ignores a bad value silently,
/// so we check them here.
const NUMERIC_VARIABLES: &[&str] = &[
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_MAX_CONCURRENT_EXPORTS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
];

const SAMPLERS: &[&str] = &[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// A propagator named in `OTEL_PROPAGATORS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagator {
    /// W3C `traceparent` / `tracestate`.
    TraceContext,
    /// W3C `baggage`.
    Baggage,
}

/// A configuration value we refuse to run with. Its `Display` is the one line printed before exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// Why its value was refused, including what would have been accepted.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.variable, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// What the telemetry crate was told by the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// `service.name` on every span and the `service` field of every log line.
    pub service_name: String,
    /// `service.version`: the workspace version, so a trace names the build that served it.
    pub service_version: &'static str,
    /// `deployment.environment`, from `OTEL_RESOURCE_ATTRIBUTES` or `local`.
    pub deployment_environment: String,
    /// Where spans go; `None` means ids are generated but nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// `OTEL_SDK_DISABLED=true`: no tracer at all.
    pub sdk_disabled: bool,
    /// The propagators to install, in order; empty for `OTEL_PROPAGATORS=none`.
    pub propagators: Vec<Propagator>,
    /// Log level directives (`RUST_LOG`), `info` by default.
    pub log_filter: String,
    /// `OTEL_TRACES_SAMPLER`, validated; `parentbased_always_on` by default, as the spec says.
    pub sampler: String,
    /// `OTEL_TRACES_SAMPLER_ARG` for the ratio samplers; 1.0 by default.
    pub sampler_ratio: f64,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: the most finished spans held for export; beyond it spans are
    /// dropped and counted.
    pub span_queue_size: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: the most spans in one export request.
    pub span_batch_size: usize,
}

/// Our default for `OTEL_BSP_MAX_QUEUE_SIZE`, four times the specification's 2048: one service
/// at a few thousand requests a second ends over 15,000 spans a second, and with one export in
/// flight at a time the specification's queue and batch sizes dropped a third of them even into
/// a sink that decodes nothing (BENCHMARKS.md). A full queue holds about 16 MiB.
pub const DEFAULT_SPAN_QUEUE_SIZE: usize = 8192;
/// Our default for `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, four times the specification's 512, for the
/// same reason: fewer, larger exports.
pub const DEFAULT_SPAN_BATCH_SIZE: usize = 2048;

impl TelemetryConfig {
    /// Reads the process environment.
    pub fn from_env(default_service_name: &str) -> Result<Self, ConfigError> {
        Self::from_lookup(default_service_name, |name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not mutate the process environment.
    pub fn from_lookup(
        default_service_name: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let sdk_disabled = match non_empty(OTEL_SDK_DISABLED) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(ConfigError {
                    variable: OTEL_SDK_DISABLED,
                    reason: format!("expected true or false, got {v:?}"),
                });
            }
        };

        let sampler =
            non_empty(OTEL_TRACES_SAMPLER).unwrap_or_else(|| "parentbased_always_on".to_owned());
        if !SAMPLERS.contains(&sampler.as_str()) {
            return Err(ConfigError {
                variable: OTEL_TRACES_SAMPLER,
                reason: format!(
                    "unknown sampler {sampler:?}; expected one of {}",
                    SAMPLERS.join(", ")
                ),
            });
        }
        let sampler_ratio = match non_empty(OTEL_TRACES_SAMPLER_ARG) {
            None => 1.0,
            Some(arg) => match arg.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
                _ => {
                    return Err(ConfigError {
                        variable: OTEL_TRACES_SAMPLER_ARG,
                        reason: format!("expected a ratio between 0 and 1, got {arg:?}"),
                    });
                }
            },
        };

        for &variable in NUMERIC_VARIABLES {
            if let Some(value) = non_empty(variable)
                && value.trim().parse::<u64>().is_err()
            {
                return Err(ConfigError {
                    variable,
                    reason: format!("expected a whole number, got {value:?}"),
                });
            }
        }

        let span_queue_size =
            parse_var(&lookup, "OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_SPAN_QUEUE_SIZE)?;
        let span_batch_size = parse_var(
            &lookup,
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            DEFAULT_SPAN_BATCH_SIZE,
        )?;

        let propagators = match non_empty(OTEL_PROPAGATORS) {
            None => vec![Propagator::TraceContext, Propagator::Baggage],
            Some(list) => parse_propagators(&list)?,
        };

        let otlp_endpoint = [
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
            OTEL_EXPORTER_OTLP_ENDPOINT,
        ]
        .into_iter()
        .find_map(|variable| non_empty(variable).map(|value| (variable, value.trim().to_owned())));
        if let Some((variable, endpoint)) = &otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError {
                variable,
                reason: format!(
                    "expected an http:// or https:// URL, got {:?}",
                    redact_userinfo(endpoint)
                ),
            });
        }
        let otlp_endpoint = otlp_endpoint.map(|(_, endpoint)| endpoint);

        let log_filter = non_empty(RUST_LOG).unwrap_or_else(|| "info".to_owned());
        validate_log_filter(&log_filter).map_err(|reason| ConfigError {
            variable: RUST_LOG,
            reason,
        })?;

        let deployment_environment = non_empty(OTEL_RESOURCE_ATTRIBUTES)
            .and_then(|attrs| {
                attrs.split(',').find_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    matches!(
                        key.trim(),
                        "deployment.environment" | "deployment.environment.name"
                    )
                    .then(|| value.trim().to_owned())
                })
            })
            .unwrap_or_else(|| "local".to_owned());

        Ok(Self {
            service_name: non_empty(OTEL_SERVICE_NAME)
                .unwrap_or_else(|| default_service_name.to_owned()),
            service_version: env!("CARGO_PKG_VERSION"),
            deployment_environment,
            otlp_endpoint,
            sdk_disabled,
            propagators,
            log_filter,
            sampler,
            sampler_ratio,
            span_queue_size,
            span_batch_size,
        })
    }
}

/// Reads `name` through `lookup` and parses it, or returns `default` when unset or empty.
///
/// Services use this for their own settings so that every bad value fails the same way:
/// one line naming the variable, then exit 64.
pub fn parse_var<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    match lookup(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|e| ConfigError {
            variable: name,
            reason: format!("{e} (got {value:?})"),
        }),
    }
}

/// Checks `RUST_LOG` with the grammar slog-envlogger applies (`level`, `target`, `target=level`,
/// comma-separated, optionally `/filter`): it would print a plain-text warning into the JSON log
/// stream and carry on, where we want one clear line and exit 64.
fn validate_log_filter(spec: &str) -> Result<(), String> {
    let mut parts = spec.split('/');
    let directives = parts.next().unwrap_or_default();
    let _filter = parts.next();
    if parts.next().is_some() {
        return Err(format!("at most one '/' is allowed, got {spec:?}"));
    }
    for directive in directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let mut pieces = directive.split('=');
        let (_target, level, extra) = (pieces.next(), pieces.next().map(str::trim), pieces.next());
        if extra.is_some() {
            return Err(format!("{directive:?} has more than one '='"));
        }
        if let Some(level) = level.filter(|l| !l.is_empty())
            && level.parse::<slog::FilterLevel>().is_err()
        {
            return Err(format!(
                "unknown level {level:?} in {directive:?}; expected off, critical, error, warning, info, debug or trace"
            ));
        }
    }
    Ok(())
}

/// `scheme://user:password@host/...` with the user information masked, for logging a URL.
pub fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

fn parse_propagators(list: &str) -> Result<Vec<Propagator>, ConfigError> {
    let mut propagators = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "tracecontext" => propagators.push(Propagator::TraceContext),
            "baggage" => propagators.push(Propagator::Baggage),
            "none" => return Ok(Vec::new()),
            other => {
                return Err(ConfigError {
                    variable: OTEL_PROPAGATORS,
                    reason: format!(
                        "unsupported propagator {other:?}; supported: tracecontext, baggage, none"
                    ),
                });
            }
        }
    }
    Ok(propagators)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<TelemetryConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetryConfig::from_lookup("svc", |name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_need_no_environment() {
        let config = config(&[]).unwrap();
        assert_eq!(config.service_name, "svc");
        assert_eq!(config.otlp_endpoint, None);
        assert!(!config.sdk_disabled);
        assert_eq!(
            config.propagators,
            vec![Propagator::TraceContext, Propagator::Baggage]
        );
        assert_eq!(config.deployment_environment, "local");
        assert_eq!(config.log_filter, "info");
        assert_eq!(config.sampler, "parentbased_always_on");
        assert_eq!(config.sampler_ratio, 1.0);
        assert_eq!(
            (config.span_queue_size, config.span_batch_size),
            (DEFAULT_SPAN_QUEUE_SIZE, DEFAULT_SPAN_BATCH_SIZE)
        );
    }

    #[test]
    fn standard_variables_are_honoured() {
        let config = config(&[
            (OTEL_SERVICE_NAME, "renamed"),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://tempo:4317"),
            (OTEL_SDK_DISABLED, "TRUE"),
            (OTEL_PROPAGATORS, "tracecontext"),
            (
                OTEL_RESOURCE_ATTRIBUTES,
                "team=core, deployment.environment=staging",
            ),
            (OTEL_TRACES_SAMPLER, "parentbased_traceidratio"),
            (OTEL_TRACES_SAMPLER_ARG, "0.25"),
        ])
        .unwrap();
        assert_eq!(config.service_name, "renamed");
        assert_eq!(config.otlp_endpoint.as_deref(), Some("http://tempo:4317"));
        assert!(config.sdk_disabled);
        assert_eq!(config.propagators, vec![Propagator::TraceContext]);
        assert_eq!(config.deployment_environment, "staging");
        assert_eq!(config.sampler, "parentbased_traceidratio");
        assert_eq!(config.sampler_ratio, 0.25);
    }

    #[test]
    fn signal_specific_endpoint_wins() {
        let config = config(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://generic:4317"),
            (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://traces:4317"),
        ])
        .unwrap();
        assert_eq!(config.otlp_endpoint.as_deref(), Some("http://traces:4317"));
    }

    #[test]
    fn parse_var_defaults_and_reports_bad_values() {
        let lookup = |name: &str| (name == "PORT").then(|| "eighty".to_owned());
        assert_eq!(parse_var(&lookup, "OTHER", 7u16), Ok(7));
        let error = parse_var(&lookup, "PORT", 7u16).unwrap_err();
        assert_eq!(error.variable, "PORT");
        assert!(error.reason.contains("eighty"), "{error}");
    }

    #[test]
    fn rust_log_accepts_env_logger_directives() {
        for spec in [
            "info",
            "warn,user=debug",
            "user::db=trace,gateway",
            "debug/request",
            "off",
        ] {
            assert!(validate_log_filter(spec).is_ok(), "{spec}");
        }
    }

    #[test]
    fn urls_are_logged_without_credentials() {
        assert_eq!(
            redact_userinfo("postgres://u:secret@db:5432/app"),
            "postgres://***@db:5432/app"
        );
        assert_eq!(redact_userinfo("http://tempo:4317"), "http://tempo:4317");
        assert_eq!(redact_userinfo("http://h/path@x"), "http://h/path@x");
    }

    #[test]
    fn none_propagator_disables_propagation() {
        assert!(
            config(&[(OTEL_PROPAGATORS, "none")])
                .unwrap()
                .propagators
                .is_empty()
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            (OTEL_SDK_DISABLED, "yes"),
            (OTEL_TRACES_SAMPLER, "sometimes"),
            (OTEL_TRACES_SAMPLER_ARG, "7"),
            (OTEL_TRACES_SAMPLER_ARG, "half"),
            (OTEL_PROPAGATORS, "b3"),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "tempo:4317"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "tempo:4317"),
            (RUST_LOG, "user=loud"),
            (RUST_LOG, "a=b=c"),
        ];
        for (variable, value) in cases {
            let error = config(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("invalid {variable}: ")),
                "{error}"
            );
        }
    }
}
