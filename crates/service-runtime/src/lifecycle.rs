//! Process lifecycle shared by the services: the shutdown signal, the exit codes, and the
//! `--health-check` mode that lets a binary probe its own running copy.
//!
//! Container images built from `distroless` have no shell, `curl` or `grpc_health_probe`, so a
//! Docker `HEALTHCHECK` runs the service binary itself with [`HEALTH_CHECK_FLAG`]: it reads the
//! same environment as the server it probes (so it knows the address), asks it once and exits 0
//! (healthy) or 1 (not), without starting telemetry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Where a service writes the addresses it has bound, once it listens (see [`ReadyFile`]).
pub const READY_FILE: &str = "READY_FILE";

/// A JSON file naming the addresses a service bound, written once it listens, for whatever
/// started it on port 0 (tests, a supervisor): `{"service":"user","pid":42,"grpc":"127.0.0.1:40123",...}`.
///
/// Written whole: a temporary file beside it is renamed into place, so a reader that sees the
/// file sees all of it. Unset, nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyFile(std::path::PathBuf);

impl ReadyFile {
    /// [`READY_FILE`] through `lookup`; unset or empty is `None`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        lookup(READY_FILE)
            .filter(|path| !path.trim().is_empty())
            .map(|path| Self(path.into()))
    }

    /// The file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Writes `service`'s bound `addresses` (`("grpc", addr)`, ...).
    pub fn write(&self, service: &str, addresses: &[(&str, SocketAddr)]) -> std::io::Result<()> {
        let mut fields = serde_json::Map::new();
        fields.insert("service".into(), service.into());
        fields.insert("pid".into(), std::process::id().into());
        for (name, addr) in addresses {
            fields.insert((*name).into(), addr.to_string().into());
        }
        let mut partial = self.0.clone().into_os_string();
        partial.push(".partial");
        std::fs::write(&partial, serde_json::Value::Object(fields).to_string())?;
        std::fs::rename(&partial, &self.0)
    }
}

/// Exit code for a bad configuration value (`EX_USAGE` from sysexits.h).
pub const EXIT_USAGE: u8 = 64;

/// The argument that turns a service binary into a one-shot probe of its running copy.
pub const HEALTH_CHECK_FLAG: &str = "--health-check";

/// How long a probe waits for an answer, connection included. Docker's own default healthcheck
/// timeout is 30 s; a probe that answers in bounded time reports "unhealthy" rather than hang.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What `--health-check` asks of the running service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `GET path` must answer 200 (the gateway's `/readyz`).
    Http {
        /// The server's listen address (an unspecified IP is probed on loopback).
        addr: SocketAddr,
        /// The path to request.
        path: &'static str,
    },
    /// The standard `grpc.health.v1.Health/Check` for the whole server (service `""`) must
    /// answer SERVING.
    Grpc {
        /// The server's listen address (an unspecified IP is probed on loopback).
        addr: SocketAddr,
    },
}

/// Completes on SIGTERM (what Kubernetes and `docker stop` send) or SIGINT (Ctrl-C).
///
/// Servers pass it as their shutdown future: they stop accepting, let in-flight requests finish,
/// and then `main` drops the telemetry guard, which flushes the last spans.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, never complete rather than shut down at once.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// A service as [`run_service`] runs it (and the test suites, in-process): built from its
/// settings, then served until shutdown.
pub trait Service: Sized {
    /// Its settings, read from the environment by `main`.
    type Config;

    /// Binds its listeners and prepares everything that can fail before serving; logs go to
    /// `logger`, metrics to `registry`.
    fn build(
        config: Self::Config,
        logger: slog::Logger,
        registry: prometheus::Registry,
    ) -> impl std::future::Future<Output = anyhow::Result<Self>> + Send;

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight work finish.
    fn run(
        self,
        shutdown: ShutdownSignal,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

/// The whole `main` of a service: configuration, telemetry, then the service `S` until
/// SIGTERM/SIGINT.
///
/// A bad setting prints one line naming it and exits [`EXIT_USAGE`]; a failure to start or a
/// server error is logged as JSON and exits 1; a clean shutdown flushes spans and logs and exits
/// 0. Call it from inside the multi-threaded Tokio runtime (`#[tokio::main]`): the OTLP exporter
/// needs its reactor.
///
/// Started with [`HEALTH_CHECK_FLAG`], it instead runs the [`Probe`] that `probe` derives from the
/// configuration against the already running service and exits 0 or 1 (see the module doc).
pub async fn run_service<S: Service>(
    service: &'static str,
    config: Result<S::Config, crate::config::ConfigError>,
    probe: impl FnOnce(&S::Config) -> Probe,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{service}: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if std::env::args().skip(1).any(|arg| arg == HEALTH_CHECK_FLAG) {
        return match health_check(&probe(&config)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("{service}: unhealthy: {reason}");
                ExitCode::FAILURE
            }
        };
    }
    let telemetry = match telemetry::init(service) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{service}: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let logger = telemetry.logger().clone();
    let outcome = async {
        S::build(config, logger.clone(), telemetry.registry().clone())
            .await?
            .run(Box::pin(shutdown_signal()))
            .await
    }
    .await;
    let code = match outcome {
        Ok(()) => {
            slog::info!(logger, "{} stopped", service);
            ExitCode::SUCCESS
        }
        Err(error) => {
            // `{:#}` keeps anyhow's cause chain on one line.
            slog::error!(logger, "{} stopped with an error", service; "error" => format!("{error:#}"));
            ExitCode::FAILURE
        }
    };
    drop(telemetry); // flush spans and logs before exit
    code
}

/// A service serving in the background of this process until the handle is dropped: how the
/// test suites run one in-process.
#[derive(Debug)]
pub struct Background {
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Background {
    /// Serves the built `service` on the current runtime; dropping the handle is its shutdown
    /// signal, and it drains as it would on SIGTERM.
    pub fn spawn<S>(service: S) -> Self
    where
        S: Service + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown: ShutdownSignal = Box::pin(async move {
            let _ = stopped.await;
        });
        tokio::spawn(async move {
            let _ = service.run(shutdown).await;
        });
        Self { _stop: stop }
    }
}

/// The future [`run_service`] hands to a service: completes on SIGTERM or SIGINT.
pub type ShutdownSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

/// Runs `probe` once against the running service: `Ok` when it reports healthy.
pub async fn health_check(probe: &Probe) -> Result<(), String> {
    let outcome = match probe {
        Probe::Http { addr, path } => {
            tokio::time::timeout(PROBE_TIMEOUT, http_status(reachable(*addr), path)).await
        }
        Probe::Grpc { addr } => {
            tokio::time::timeout(PROBE_TIMEOUT, grpc_health(reachable(*addr))).await
        }
    };
    outcome.unwrap_or_else(|_| Err(format!("no answer within {PROBE_TIMEOUT:?}")))
}

/// A server bound to `0.0.0.0` (as in a container) is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// One HTTP/1.1 `GET`, reading no further than the status line: all a probe needs, without
/// pulling an HTTP client into every binary.
async fn http_status(addr: SocketAddr, path: &str) -> Result<(), String> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|error| format!("cannot connect to {addr}: {error}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("cannot send to {addr}: {error}"))?;
    let mut status_line = String::new();
    tokio::io::BufReader::new(stream)
        .read_line(&mut status_line)
        .await
        .map_err(|error| format!("no answer from {addr}: {error}"))?;
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("GET {path} answered {:?}", status_line.trim_end())),
    }
}

async fn grpc_health(addr: SocketAddr) -> Result<(), String> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|error| error.to_string())?
        .connect()
        .await
        .map_err(|error| format!("cannot connect to {addr}: {error}"))?;
    let response = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|status| format!("health check failed: {}", status.code()))?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("health status {}", other.as_str_name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_probed_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            reachable("[::]:50051".parse().unwrap()),
            "[::1]:50051".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            reachable("10.1.2.3:9".parse().unwrap()),
            "10.1.2.3:9".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn the_ready_file_names_every_address_and_is_whole_when_it_appears() {
        let dir = std::env::temp_dir().join(format!("ready-file-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("user.json");
        let lookup = |name: &str| (name == READY_FILE).then(|| path.display().to_string());
        let ready = ReadyFile::from_lookup(lookup).expect("set");
        assert_eq!(
            ReadyFile::from_lookup(|_| Some(" ".into())),
            None,
            "empty is unset"
        );
        let grpc: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        let metrics: SocketAddr = "127.0.0.1:40124".parse().unwrap();
        ready
            .write("user", &[("grpc", grpc), ("metrics", metrics)])
            .unwrap();
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written["service"], "user");
        assert_eq!(written["pid"], std::process::id());
        assert_eq!(written["grpc"], "127.0.0.1:40123");
        assert_eq!(written["metrics"], "127.0.0.1:40124");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["user.json"], "no temporary file left behind");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_closed_port_is_unhealthy_and_says_why() {
        // Bind then drop: the port is free and (almost certainly) refuses connections.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        for probe in [
            Probe::Http {
                addr,
                path: "/readyz",
            },
            Probe::Grpc { addr },
        ] {
            let error = health_check(&probe).await.unwrap_err();
            assert!(error.contains("cannot connect"), "{probe:?}: {error}");
        }
    }

    #[tokio::test]
    async fn http_probe_reads_the_status_line() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 1024];
                let n = socket.read(&mut request).await.unwrap();
                assert!(request[..n].starts_with(b"GET /readyz HTTP/1.1\r\n"));
                let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                socket.write_all(response.as_bytes()).await.unwrap();
            }
        });
        let probe = Probe::Http {
            addr,
            path: "/readyz",
        };
        assert_eq!(health_check(&probe).await, Ok(()));
        let error = health_check(&probe).await.unwrap_err();
        assert!(error.contains("503"), "{error}");
        server.await.unwrap();
    }
}
