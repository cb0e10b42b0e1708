//! Configuration from the environment (12-factor); names are constants, defaults suit `make run`.

use secrecy::{ExposeSecret as _, SecretString};
use service_runtime::config::{
    ConfigError, DEFAULT_AUTH_GRPC_ADDR, DEFAULT_AUTH_METRICS_ADDR, DEFAULT_USER_URL, GrpcServing,
    parse_var,
};

pub use service_runtime::config::{GRPC_ADDR, HEALTH_ADDR, METRICS_ADDR};
/// The user service's gRPC URL.
pub const USER_URL: &str = "USER_URL";
/// HS256 signing key; required, at least [`MIN_SECRET_BYTES`] bytes.
pub const JWT_SECRET: &str = "JWT_SECRET";
/// Access-token lifetime in seconds.
pub const JWT_TTL_SECONDS: &str = "JWT_TTL_SECONDS";
/// Default for [`JWT_TTL_SECONDS`]: an hour.
pub const DEFAULT_JWT_TTL_SECONDS: i64 = 3600;
/// The bounds of [`JWT_TTL_SECONDS`]: a minute to thirty days.
pub const JWT_TTL_RANGE: std::ops::RangeInclusive<i64> = 60..=86_400 * 30;
/// bcrypt work factor (4 to 31).
pub const BCRYPT_COST: &str = "BCRYPT_COST";
/// Default for [`BCRYPT_COST`]: bcrypt's own.
pub const DEFAULT_BCRYPT_COST: u32 = bcrypt::DEFAULT_COST;
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
    /// Where and how it serves: `GRPC_ADDR`, `METRICS_ADDR`, `HEALTH_ADDR`, `TLS_*`,
    /// `READY_FILE`. Its TLS identity is also what its own calls present.
    pub serving: GrpcServing,
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
        let jwt_ttl_seconds = parse_var(&lookup, JWT_TTL_SECONDS, DEFAULT_JWT_TTL_SECONDS)?;
        if !JWT_TTL_RANGE.contains(&jwt_ttl_seconds) {
            return Err(ConfigError {
                variable: JWT_TTL_SECONDS,
                reason: format!(
                    "must be between {} and {}, got {jwt_ttl_seconds}",
                    JWT_TTL_RANGE.start(),
                    JWT_TTL_RANGE.end()
                ),
            });
        }
        let bcrypt_cost = parse_var(&lookup, BCRYPT_COST, DEFAULT_BCRYPT_COST)?;
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
        let serving =
            GrpcServing::from_lookup(&lookup, DEFAULT_AUTH_GRPC_ADDR, DEFAULT_AUTH_METRICS_ADDR)?;
        let user_url = service_runtime::config::grpc_url(
            &lookup,
            USER_URL,
            DEFAULT_USER_URL,
            serving.tls.is_some(),
        )?;
        Ok(Self {
            serving,
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
