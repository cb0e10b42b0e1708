//! Configuration from the environment (12-factor); names are constants, defaults suit `make run`.

use service_runtime::config::{
    ConfigError, DEFAULT_USER_GRPC_ADDR, DEFAULT_USER_METRICS_ADDR, GrpcServing, parse_var,
};

use crate::db::DatabaseUrl;

pub use service_runtime::config::{GRPC_ADDR, HEALTH_ADDR, METRICS_ADDR};
/// `postgres://...` or `sqlite://path`; unset means SQLite in `DATA_DIR`.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// Where the default SQLite file lives.
pub const DATA_DIR: &str = "DATA_DIR";
/// Default for [`DATA_DIR`]: beside where `make run` is started.
pub const DEFAULT_DATA_DIR: &str = "data";
/// The SQLite file in [`DATA_DIR`] when [`DATABASE_URL`] is unset.
pub const SQLITE_FILE: &str = "users.db";
/// Maximum pooled database connections.
pub const DATABASE_POOL_SIZE: &str = "DATABASE_POOL_SIZE";
/// Default for [`DATABASE_POOL_SIZE`].
pub const DEFAULT_DATABASE_POOL_SIZE: u32 = 10;
/// How long start-up keeps trying to reach the database, in ms, before it gives up.
pub const DATABASE_CONNECT_TIMEOUT_MS: &str = "DATABASE_CONNECT_TIMEOUT_MS";
/// Default for [`DATABASE_CONNECT_TIMEOUT_MS`]: long enough for a database starting beside us.
pub const DEFAULT_DATABASE_CONNECT_TIMEOUT_MS: u64 = 60_000;
/// The bcrypt cost auth hashes at; hashes below it are refused. Set it as auth's.
pub const BCRYPT_COST: &str = "BCRYPT_COST";

/// Default for [`BCRYPT_COST`]: bcrypt's own default, which auth uses too.
pub const DEFAULT_BCRYPT_COST: u32 = 12;

/// The user service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where and how it serves: `GRPC_ADDR`, `METRICS_ADDR`, `HEALTH_ADDR`, `TLS_*`,
    /// `READY_FILE`. Its TLS identity is also what its own calls present.
    pub serving: GrpcServing,
    /// The database to own.
    pub database_url: DatabaseUrl,
    /// Pool size; also bounds concurrent blocking database calls.
    pub pool_size: u32,
    /// The lowest bcrypt cost a stored hash may have.
    pub min_bcrypt_cost: u32,
    /// How long start-up keeps trying to reach the database.
    pub database_connect_timeout: std::time::Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let data_dir: String = parse_var(&lookup, DATA_DIR, DEFAULT_DATA_DIR.to_owned())?;
        let database_url = match lookup(DATABASE_URL).filter(|v| !v.trim().is_empty()) {
            None => DatabaseUrl::Sqlite(std::path::Path::new(&data_dir).join(SQLITE_FILE)),
            Some(url) => DatabaseUrl::parse(url.trim()).map_err(|reason| ConfigError {
                variable: DATABASE_URL,
                reason,
            })?,
        };
        let pool_size = parse_var(&lookup, DATABASE_POOL_SIZE, DEFAULT_DATABASE_POOL_SIZE)?;
        if pool_size == 0 {
            return Err(ConfigError {
                variable: DATABASE_POOL_SIZE,
                reason: "must be at least 1".to_owned(),
            });
        }
        let serving =
            GrpcServing::from_lookup(&lookup, DEFAULT_USER_GRPC_ADDR, DEFAULT_USER_METRICS_ADDR)?;
        let min_bcrypt_cost = parse_var(&lookup, BCRYPT_COST, DEFAULT_BCRYPT_COST)?;
        if !(4..=31).contains(&min_bcrypt_cost) {
            return Err(ConfigError {
                variable: BCRYPT_COST,
                reason: format!("must be between 4 and 31, got {min_bcrypt_cost}"),
            });
        }
        Ok(Self {
            serving,
            database_url,
            pool_size,
            min_bcrypt_cost,
            database_connect_timeout: std::time::Duration::from_millis(parse_var(
                &lookup,
                DATABASE_CONNECT_TIMEOUT_MS,
                DEFAULT_DATABASE_CONNECT_TIMEOUT_MS,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_sqlite_in_the_data_dir() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(
            config.database_url,
            DatabaseUrl::Sqlite("data/users.db".into())
        );
        assert_eq!(config.serving.grpc_addr, DEFAULT_USER_GRPC_ADDR);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            (GRPC_ADDR, "nope"),
            (DATABASE_URL, "mysql://x"),
            (DATABASE_POOL_SIZE, "0"),
            (BCRYPT_COST, "3"),
        ] {
            let error = Config::from_lookup(|n| (n == name).then(|| value.to_owned())).unwrap_err();
            assert_eq!(error.variable, name);
        }
    }
}
