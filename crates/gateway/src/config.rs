//! Configuration from the environment (12-factor); names are constants, defaults suit `make run`.

use std::net::SocketAddr;

use service_runtime::config::{ConfigError, parse_var};

/// Address the HTTP server binds.
pub const HTTP_ADDR: &str = "HTTP_ADDR";
/// Default for [`HTTP_ADDR`]: loopback, as `make run` has it.
pub const DEFAULT_HTTP_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));
/// The auth service's gRPC URL.
pub const AUTH_URL: &str = "AUTH_URL";
/// The user service's gRPC URL.
pub const USER_URL: &str = "USER_URL";
/// Largest accepted JSON body, in bytes.
pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
/// Default for [`MAX_BODY_BYTES`]: far more than a sign-up needs.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
/// The smallest [`MAX_BODY_BYTES`] accepted: a sign-up at its longest fits.
pub const MIN_MAX_BODY_BYTES: usize = 256;
/// actix-web worker threads; 0 means one per core.
pub const HTTP_WORKERS: &str = "HTTP_WORKERS";
/// Default for [`HTTP_WORKERS`]: actix's own choice.
pub const DEFAULT_HTTP_WORKERS: usize = 0;
/// How long a request body may take to arrive, in ms; slower ones get 408 `request_timeout`.
pub const BODY_READ_TIMEOUT_MS: &str = "BODY_READ_TIMEOUT_MS";
/// Default for [`BODY_READ_TIMEOUT_MS`]: a 16 KB body in 10 s is 1.6 KB/s, slower than any
/// real client and faster than a slow-loris one.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 10_000;
/// Proxies whose `X-Forwarded-For` is believed: comma-separated addresses or CIDR networks.
pub const TRUSTED_PROXIES: &str = "TRUSTED_PROXIES";
/// After SIGTERM, how long `/readyz` answers 503 `draining` while requests are still served,
/// before the listener closes: the time a load balancer needs to stop sending new ones.
pub const SHUTDOWN_DELAY_MS: &str = "SHUTDOWN_DELAY_MS";
/// No delay: Kubernetes' `preStop` sleep already holds SIGTERM back until endpoints are gone.
pub const DEFAULT_SHUTDOWN_DELAY_MS: u64 = 0;
/// Sign-ups per client address, `N/Ss` or `off`.
pub const RATE_LIMIT_SIGNUP_PER_IP: &str = "RATE_LIMIT_SIGNUP_PER_IP";
/// Logins per client address, `N/Ss` or `off`.
pub const RATE_LIMIT_LOGIN_PER_IP: &str = "RATE_LIMIT_LOGIN_PER_IP";
/// Logins per account, `N/Ss` or `off`.
pub const RATE_LIMIT_LOGIN_PER_ACCOUNT: &str = "RATE_LIMIT_LOGIN_PER_ACCOUNT";

/// Default for [`RATE_LIMIT_SIGNUP_PER_IP`].
pub const DEFAULT_SIGNUP_PER_IP: &str = "30/60s";
/// Default for [`RATE_LIMIT_LOGIN_PER_IP`]: room for an office behind one NAT address.
pub const DEFAULT_LOGIN_PER_IP: &str = "120/60s";
/// Default for [`RATE_LIMIT_LOGIN_PER_ACCOUNT`]: a person mistyping is never stopped; a
/// guesser gets 20 tries a minute.
pub const DEFAULT_LOGIN_PER_ACCOUNT: &str = "20/60s";

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP listen address; port 0 picks a free port (tests).
    pub http_addr: SocketAddr,
    /// e.g. `http://127.0.0.1:50051`.
    pub auth_url: String,
    /// e.g. `http://127.0.0.1:50052`.
    pub user_url: String,
    /// JSON body limit; larger bodies get 413 `payload_too_large`.
    pub max_body_bytes: usize,
    /// Worker threads; 0 lets actix pick one per core.
    pub workers: usize,
    /// The longest a request body may take to arrive.
    pub body_read_timeout: std::time::Duration,
    /// Mutual TLS to auth and user, if configured.
    pub tls: Option<service_runtime::tls::InternalTls>,
    /// [`service_runtime::lifecycle::READY_FILE`]: where to write the bound addresses once serving.
    pub ready_file: Option<service_runtime::lifecycle::ReadyFile>,
    /// Whose `X-Forwarded-For` to believe.
    pub trusted_proxies: telemetry::http::TrustedProxies,
    /// Rate limits on sign-up and login.
    pub limits: crate::limits::LimitsConfig,
    /// [`SHUTDOWN_DELAY_MS`].
    pub shutdown_delay: std::time::Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let tls = service_runtime::tls::InternalTls::from_lookup(&lookup)?;
        let url = |name: &'static str, default: &str| {
            service_runtime::config::grpc_url(&lookup, name, default, tls.is_some())
        };
        let max_body_bytes = parse_var(&lookup, MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES)?;
        if max_body_bytes < MIN_MAX_BODY_BYTES {
            return Err(ConfigError {
                variable: MAX_BODY_BYTES,
                reason: format!("must be at least {MIN_MAX_BODY_BYTES}, got {max_body_bytes}"),
            });
        }
        let rate = |name: &'static str, default: &str| {
            let text: String = parse_var(&lookup, name, default.to_owned())?;
            crate::limits::Rate::parse(&text).map_err(|reason| ConfigError {
                variable: name,
                reason,
            })
        };
        let limits = crate::limits::LimitsConfig {
            signup_per_ip: rate(RATE_LIMIT_SIGNUP_PER_IP, DEFAULT_SIGNUP_PER_IP)?,
            login_per_ip: rate(RATE_LIMIT_LOGIN_PER_IP, DEFAULT_LOGIN_PER_IP)?,
            login_per_account: rate(RATE_LIMIT_LOGIN_PER_ACCOUNT, DEFAULT_LOGIN_PER_ACCOUNT)?,
        };
        let proxies: String = parse_var(&lookup, TRUSTED_PROXIES, String::new())?;
        let trusted_proxies =
            telemetry::http::TrustedProxies::parse(&proxies).map_err(|reason| ConfigError {
                variable: TRUSTED_PROXIES,
                reason,
            })?;
        Ok(Self {
            http_addr: parse_var(&lookup, HTTP_ADDR, DEFAULT_HTTP_ADDR)?,
            auth_url: url(AUTH_URL, service_runtime::config::DEFAULT_AUTH_URL)?,
            user_url: url(USER_URL, service_runtime::config::DEFAULT_USER_URL)?,
            max_body_bytes,
            workers: parse_var(&lookup, HTTP_WORKERS, DEFAULT_HTTP_WORKERS)?,
            body_read_timeout: std::time::Duration::from_millis(parse_var(
                &lookup,
                BODY_READ_TIMEOUT_MS,
                DEFAULT_BODY_READ_TIMEOUT_MS,
            )?),
            trusted_proxies,
            limits,
            shutdown_delay: std::time::Duration::from_millis(parse_var(
                &lookup,
                SHUTDOWN_DELAY_MS,
                DEFAULT_SHUTDOWN_DELAY_MS,
            )?),
            tls,
            ready_file: service_runtime::lifecycle::ReadyFile::from_lookup(&lookup),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_suit_local_runs() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.http_addr.port(), 8080);
        assert_eq!(config.auth_url, "http://127.0.0.1:50051");
        assert_eq!(config.max_body_bytes, 16 * 1024);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            (HTTP_ADDR, "x"),
            (AUTH_URL, "auth:50051"),
            (MAX_BODY_BYTES, "10"),
            (HTTP_WORKERS, "-1"),
            (TRUSTED_PROXIES, "proxy.local"),
            (RATE_LIMIT_LOGIN_PER_ACCOUNT, "lots"),
            (SHUTDOWN_DELAY_MS, "5s"),
        ] {
            let error = Config::from_lookup(|n| (n == name).then(|| value.to_owned())).unwrap_err();
            assert_eq!(error.variable, name, "{value}");
        }
    }
}
