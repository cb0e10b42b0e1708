//! Settings every service's configuration shares, on top of telemetry's [`parse_var`] and
//! [`ConfigError`]: how a gRPC service serves ([`GrpcServing`]), the peer URL check
//! ([`grpc_url`]), and where each service listens by default.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

pub use telemetry::config::{ConfigError, parse_var};

use crate::lifecycle::{Probe, ReadyFile};
use crate::tls::InternalTls;

/// Address a gRPC service's server binds.
pub const GRPC_ADDR: &str = "GRPC_ADDR";
/// Address a gRPC service's `/metrics` HTTP listener binds.
pub const METRICS_ADDR: &str = "METRICS_ADDR";
/// A plain-text address serving only gRPC health, for probes; required with mutual TLS.
pub const HEALTH_ADDR: &str = "HEALTH_ADDR";

/// Where each service listens by default (`make run`), and so where its callers look.
const fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}
/// auth's default [`GRPC_ADDR`].
pub const DEFAULT_AUTH_GRPC_ADDR: SocketAddr = loopback(50051);
/// auth's default [`METRICS_ADDR`].
pub const DEFAULT_AUTH_METRICS_ADDR: SocketAddr = loopback(9101);
/// user's default [`GRPC_ADDR`].
pub const DEFAULT_USER_GRPC_ADDR: SocketAddr = loopback(50052);
/// user's default [`METRICS_ADDR`].
pub const DEFAULT_USER_METRICS_ADDR: SocketAddr = loopback(9102);
/// auth as its callers name it by default (`AUTH_URL`): [`DEFAULT_AUTH_GRPC_ADDR`].
pub const DEFAULT_AUTH_URL: &str = "http://127.0.0.1:50051";
/// user as its callers name it by default (`USER_URL`): [`DEFAULT_USER_GRPC_ADDR`].
pub const DEFAULT_USER_URL: &str = "http://127.0.0.1:50052";

/// How a gRPC service serves: its addresses, its identity for mutual TLS (which its own calls
/// present too) and its ready file. auth and user read them alike.
#[derive(Debug, Clone)]
pub struct GrpcServing {
    /// [`GRPC_ADDR`]; port 0 picks a free port (tests).
    pub grpc_addr: SocketAddr,
    /// [`METRICS_ADDR`].
    pub metrics_addr: SocketAddr,
    /// [`HEALTH_ADDR`], if any.
    pub health_addr: Option<SocketAddr>,
    /// Mutual TLS with the other services (`TLS_*`), if configured.
    pub tls: Option<InternalTls>,
    /// [`crate::lifecycle::READY_FILE`], if set.
    pub ready_file: Option<ReadyFile>,
}

impl GrpcServing {
    /// Reads the settings through `lookup`, with the service's own default addresses.
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        default_grpc_addr: SocketAddr,
        default_metrics_addr: SocketAddr,
    ) -> Result<Self, ConfigError> {
        let tls = InternalTls::from_lookup(lookup)?;
        Ok(Self {
            grpc_addr: parse_var(lookup, GRPC_ADDR, default_grpc_addr)?,
            metrics_addr: parse_var(lookup, METRICS_ADDR, default_metrics_addr)?,
            health_addr: health_addr(lookup, HEALTH_ADDR, tls.is_some())?,
            tls,
            ready_file: ReadyFile::from_lookup(lookup),
        })
    }

    /// Free loopback ports, plain text, no ready file: a service inside a test.
    pub fn loopback() -> Self {
        Self {
            grpc_addr: loopback(0),
            metrics_addr: loopback(0),
            health_addr: None,
            tls: None,
            ready_file: None,
        }
    }

    /// What `--health-check` asks: the plain-text health port when there is one (the gRPC port
    /// then speaks mutual TLS, which the probe cannot), else the gRPC port.
    pub fn probe(&self) -> Probe {
        Probe::Grpc {
            addr: self.health_addr.unwrap_or(self.grpc_addr),
        }
    }
}

/// A peer's gRPC URL from `name` (or `default`): `http://host:port`, or `https://` — which it
/// must be when the service speaks mutual TLS (`tls`).
pub fn grpc_url(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: &str,
    tls: bool,
) -> Result<String, ConfigError> {
    let url: String = parse_var(lookup, name, default.to_owned())?;
    let scheme_ok = if tls {
        url.starts_with("https://")
    } else {
        url.starts_with("http://") || url.starts_with("https://")
    };
    if !scheme_ok || tonic::transport::Endpoint::from_shared(url.clone()).is_err() {
        let expected = if tls {
            "an https:// URL (TLS_* are set)"
        } else {
            "an http:// URL"
        };
        return Err(ConfigError {
            variable: name,
            reason: format!("expected {expected}, got {url:?}"),
        });
    }
    Ok(url)
}

/// The health-only address from `name`: optional, but required when the main port speaks
/// mutual TLS (`tls`), which Kubernetes' gRPC probes and `--health-check` cannot.
pub fn health_addr(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    tls: bool,
) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    match lookup(name).filter(|v| !v.trim().is_empty()) {
        Some(value) => value.trim().parse().map(Some).map_err(|e| ConfigError {
            variable: name,
            reason: format!("{e} (got {value:?})"),
        }),
        None if tls => Err(ConfigError {
            variable: name,
            reason: "required with TLS_*: probes need a plain-text health port".to_owned(),
        }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_urls_name_the_default_addresses() {
        assert_eq!(DEFAULT_AUTH_URL, format!("http://{DEFAULT_AUTH_GRPC_ADDR}"));
        assert_eq!(DEFAULT_USER_URL, format!("http://{DEFAULT_USER_GRPC_ADDR}"));
    }

    #[test]
    fn serving_settings_default_per_service_and_name_a_bad_variable() {
        let none = |_: &str| None;
        let auth =
            GrpcServing::from_lookup(&none, DEFAULT_AUTH_GRPC_ADDR, DEFAULT_AUTH_METRICS_ADDR)
                .unwrap();
        assert_eq!(
            (auth.grpc_addr, auth.metrics_addr),
            (DEFAULT_AUTH_GRPC_ADDR, DEFAULT_AUTH_METRICS_ADDR)
        );
        assert_eq!(
            auth.probe(),
            Probe::Grpc {
                addr: DEFAULT_AUTH_GRPC_ADDR
            }
        );
        for (variable, value) in [(GRPC_ADDR, ":"), (METRICS_ADDR, "x"), (HEALTH_ADDR, "y")] {
            let lookup = |name: &str| (name == variable).then(|| value.to_owned());
            let error = GrpcServing::from_lookup(
                &lookup,
                DEFAULT_USER_GRPC_ADDR,
                DEFAULT_USER_METRICS_ADDR,
            )
            .unwrap_err();
            assert_eq!(error.variable, variable);
        }
        let health = |name: &str| (name == HEALTH_ADDR).then(|| "127.0.0.1:7".to_owned());
        let user =
            GrpcServing::from_lookup(&health, DEFAULT_USER_GRPC_ADDR, DEFAULT_USER_METRICS_ADDR)
                .unwrap();
        assert_eq!(
            user.probe(),
            Probe::Grpc {
                addr: "127.0.0.1:7".parse().unwrap()
            }
        );
    }
}
