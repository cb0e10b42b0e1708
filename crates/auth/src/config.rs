//! Configuration from the environment (12-factor); names are constants, defaults suit `make run`.

use std::net::SocketAddr;

use secrecy::{ExposeSecret as _, SecretString};
use telemetry::config::{ConfigError, parse_var};

/// Address the gRPC server binds.
pub const GRPC_ADDR: &str = "GRPC_ADDR";
/// Address the `/metrics` HTTP listener binds.
pub const METRICS_ADDR: &str = "METRICS_ADDR";
/// A plain-text address serving only gRPC health, for probes; required with mutual TLS.
pub const HEALTH_ADDR: &str = "HEALTH_ADDR";
/// The user service's gRPC URL.
pub const USER_URL: &str = "USER_URL";
/// HS256 signing key; required, at least [`MIN_SECRET_BYTES`] bytes.
pub const JWT_SECRET: &str = "JWT_SECRET";
/// Access-token lifetime in seconds.
pub const JWT_TTL_SECONDS: &str = "JWT_TTL_SECONDS";
/// bcrypt work factor (4 to 31).
pub const BCRYPT_COST: &str = "BCRYPT_COST";
/// How many bcrypt hashes run at once; the default is one per core.
pub const BCRYPT_CONCURRENCY: &str = "BCRYPT_CONCURRENCY";
/// How long a sign-up or login waits for a hashing turn before 503 `overloaded`, in ms.
pub const BCRYPT_QUEUE_TIMEOUT_MS: &str = "BCRYPT_QUEUE_TIMEOUT_MS";

/// Default for [`BCRYPT_QUEUE_TIMEOUT_MS`]: short, so an overloaded service says so quickly.
pub const DEFAULT_BCRYPT_QUEUE_TIMEOUT_MS: u64 = 500;

/// An HS256 key shorter than the hash output weakens it (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// The auth service's settings. `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub struct Config {
    /// gRPC listen address; port 0 picks a free port (tests).
    pub grpc_addr: SocketAddr,
    /// `/metrics` listen address.
    pub metrics_addr: SocketAddr,
    /// Health-only plain-text listen address, if any.
    pub health_addr: Option<SocketAddr>,
    /// Mutual TLS with the gateway and user, if configured.
    pub tls: Option<telemetry::tls::InternalTls>,
    /// [`telemetry::lifecycle::READY_FILE`]: where to write the bound addresses once serving.
    pub ready_file: Option<telemetry::lifecycle::ReadyFile>,
    /// Where the user service listens, e.g. `http://127.0.0.1:50052`.
    pub user_url: String,
    /// The JWT signing key.
    pub jwt_secret: SecretString,
    /// Token lifetime, seconds.
    pub jwt_ttl_seconds: i64,
    /// bcrypt cost.
    pub bcrypt_cost: u32,
    /// Hashes at once.
    pub bcrypt_concurrency: usize,
    /// Longest wait for a hashing turn.
    pub bcrypt_queue_timeout: std::time::Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let jwt_secret = SecretString::from(lookup(JWT_SECRET).unwrap_or_default());
        if jwt_secret.expose_secret().len() < MIN_SECRET_BYTES {
            // Never echo the value, not even a short one.
            return Err(ConfigError {
                variable: JWT_SECRET,
                reason: format!(
                    "must be set to at least {MIN_SECRET_BYTES} bytes (try: openssl rand -hex 32)"
                ),
            });
        }
        let jwt_ttl_seconds = parse_var(&lookup, JWT_TTL_SECONDS, 3600i64)?;
        if !(60..=86_400 * 30).contains(&jwt_ttl_seconds) {
            return Err(ConfigError {
                variable: JWT_TTL_SECONDS,
                reason: format!("must be between 60 and 2592000, got {jwt_ttl_seconds}"),
            });
        }
        let bcrypt_cost = parse_var(&lookup, BCRYPT_COST, bcrypt::DEFAULT_COST)?;
        if !(4..=31).contains(&bcrypt_cost) {
            return Err(ConfigError {
                variable: BCRYPT_COST,
                reason: format!("must be between 4 and 31, got {bcrypt_cost}"),
            });
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let bcrypt_concurrency = parse_var(&lookup, BCRYPT_CONCURRENCY, cores)?;
        if bcrypt_concurrency == 0 {
            return Err(ConfigError {
                variable: BCRYPT_CONCURRENCY,
                reason: "must be at least 1".to_owned(),
            });
        }
        let bcrypt_queue_timeout = std::time::Duration::from_millis(parse_var(
            &lookup,
            BCRYPT_QUEUE_TIMEOUT_MS,
            DEFAULT_BCRYPT_QUEUE_TIMEOUT_MS,
        )?);
        let tls = telemetry::tls::InternalTls::from_lookup(&lookup)?;
        let user_url = telemetry::config::grpc_url(
            &lookup,
            USER_URL,
            "http://127.0.0.1:50052",
            tls.is_some(),
        )?;
        let health_addr = telemetry::config::health_addr(&lookup, HEALTH_ADDR, tls.is_some())?;
        Ok(Self {
            grpc_addr: parse_var(
                &lookup,
                GRPC_ADDR,
                SocketAddr::from(([127, 0, 0, 1], 50051)),
            )?,
            metrics_addr: parse_var(
                &lookup,
                METRICS_ADDR,
                SocketAddr::from(([127, 0, 0, 1], 9101)),
            )?,
            health_addr,
            tls,
            ready_file: telemetry::lifecycle::ReadyFile::from_lookup(&lookup),
            user_url,
            jwt_secret,
            jwt_ttl_seconds,
            bcrypt_cost,
            bcrypt_concurrency,
            bcrypt_queue_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn lookup(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let pairs = pairs.to_vec();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn secret_is_required_and_never_echoed() {
        let error = Config::from_lookup(lookup(&[(JWT_SECRET, "short-secret")])).unwrap_err();
        assert_eq!(error.variable, JWT_SECRET);
        assert!(!error.to_string().contains("short-secret"));
        assert_eq!(
            Config::from_lookup(lookup(&[])).unwrap_err().variable,
            JWT_SECRET
        );
    }

    #[test]
    fn defaults_and_debug_redaction() {
        let config = Config::from_lookup(lookup(&[(JWT_SECRET, SECRET)])).unwrap();
        assert_eq!(config.bcrypt_cost, bcrypt::DEFAULT_COST);
        assert_eq!(config.jwt_ttl_seconds, 3600);
        assert!(!format!("{config:?}").contains(SECRET));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            (BCRYPT_COST, "3"),
            (JWT_TTL_SECONDS, "1"),
            (USER_URL, "not a url"),
            (USER_URL, "127.0.0.1:50052"),
            (GRPC_ADDR, ":"),
        ] {
            let error =
                Config::from_lookup(lookup(&[(JWT_SECRET, SECRET), (name, value)])).unwrap_err();
            assert_eq!(error.variable, name, "{value}");
        }
    }
}
