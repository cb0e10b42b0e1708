//! The viewer's settings, from the environment; every default is named.

use std::net::SocketAddr;

use service_runtime::config::{ConfigError, parse_var};

use crate::store::Budget;

/// Where the page, its JSON API and `/metrics` listen.
pub const VIEWER_ADDR: &str = "VIEWER_ADDR";
/// Where OTLP/gRPC is received.
pub const VIEWER_OTLP_GRPC_ADDR: &str = "VIEWER_OTLP_GRPC_ADDR";
/// Where OTLP/HTTP (protobuf) is received.
pub const VIEWER_OTLP_HTTP_ADDR: &str = "VIEWER_OTLP_HTTP_ADDR";
/// Traces kept at most.
pub const VIEWER_MAX_TRACES: &str = "VIEWER_MAX_TRACES";
/// Estimated bytes kept at most.
pub const VIEWER_MAX_BYTES: &str = "VIEWER_MAX_BYTES";
/// The largest OTLP request accepted, in bytes.
pub const VIEWER_MAX_REQUEST_BYTES: &str = "VIEWER_MAX_REQUEST_BYTES";

/// Default for [`VIEWER_ADDR`]: Jaeger's UI port, which trace tools and people know.
pub const DEFAULT_ADDR: &str = "127.0.0.1:16686";
/// Default for [`VIEWER_OTLP_GRPC_ADDR`]: OTLP's gRPC port, the services' default endpoint.
pub const DEFAULT_OTLP_GRPC_ADDR: &str = "127.0.0.1:4317";
/// Default for [`VIEWER_OTLP_HTTP_ADDR`]: OTLP's HTTP port.
pub const DEFAULT_OTLP_HTTP_ADDR: &str = "127.0.0.1:4318";
/// Default for [`VIEWER_MAX_TRACES`].
pub const DEFAULT_MAX_TRACES: usize = 1000;
/// Default for [`VIEWER_MAX_BYTES`]: 64 MiB.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;
/// Default for [`VIEWER_MAX_REQUEST_BYTES`]: 4 MiB, gRPC's default message limit.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 << 20;

/// Everything the viewer needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The page and API.
    pub addr: SocketAddr,
    /// OTLP/gRPC.
    pub otlp_grpc_addr: SocketAddr,
    /// OTLP/HTTP.
    pub otlp_http_addr: SocketAddr,
    /// What the store may hold.
    pub budget: Budget,
    /// The largest request taken.
    pub max_request_bytes: usize,
}

impl Config {
    /// From the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let addr = |name: &'static str, default: &str| -> Result<SocketAddr, ConfigError> {
            parse_var(&lookup, name, default.parse().expect("a valid default"))
        };
        let budget = Budget {
            traces: parse_var(&lookup, VIEWER_MAX_TRACES, DEFAULT_MAX_TRACES)?,
            bytes: parse_var(&lookup, VIEWER_MAX_BYTES, DEFAULT_MAX_BYTES)?,
        };
        let max_request_bytes =
            parse_var(&lookup, VIEWER_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_BYTES)?;
        if max_request_bytes == 0 {
            return Err(ConfigError {
                variable: VIEWER_MAX_REQUEST_BYTES,
                reason: "must be above 0".into(),
            });
        }
        Ok(Self {
            addr: addr(VIEWER_ADDR, DEFAULT_ADDR)?,
            otlp_grpc_addr: addr(VIEWER_OTLP_GRPC_ADDR, DEFAULT_OTLP_GRPC_ADDR)?,
            otlp_http_addr: addr(VIEWER_OTLP_HTTP_ADDR, DEFAULT_OTLP_HTTP_ADDR)?,
            budget,
            max_request_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_bad_value() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.addr.port(), 16686);
        assert_eq!(config.otlp_grpc_addr.port(), 4317);
        assert_eq!(config.budget.bytes, 64 << 20);
        let bad = Config::from_lookup(|n| (n == VIEWER_MAX_TRACES).then(|| "many".into()));
        assert_eq!(bad.unwrap_err().variable, VIEWER_MAX_TRACES);
    }
}
