//! Test helpers shared by every crate's integration tests and the end-to-end suite.
//!
//! | module | what it gives a test |
//! |---|---|
//! | [`otlp`] | a real OTLP/gRPC trace collector on `127.0.0.1:0` that keeps what it receives |
//! | [`postgres`] | a throw-away PostgreSQL database per test (skipped with one line off CI) |
//! | [`process`] | a real binary as a child process with captured stdout, killed on drop |
//! | [`prometheus`] | a real Prometheus server with compose's flags, killed on drop |
//! | [`proxy`] | a TCP forwarder a test can cut and restore (a dependency that goes away and returns) |
//! | [`standins`] | Tempo's, Loki's and Grafana's HTTP APIs, fed with real spans and log files, with faults to switch on |
//! | [`stack`] | user, auth and gateway as child processes wired together |
//! | [`tls`] | mutual-TLS clients, for tests of the services' caller policy |
//! | [`tool`] | external tools a test runs (`promtool`, `hadolint`...), skipped with one line when missing |

pub mod otlp;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod sink;
pub mod stack;
pub mod standins;
pub mod tls;
pub mod tool;

use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
///
/// Spans and log lines arrive asynchronously (batch export, async log drain); tests wait for
/// them rather than sleep a guessed amount.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The body of `GET url`, which must answer.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap()
}

/// The Prometheus exposition a `/metrics` listener at `addr` serves.
pub async fn metrics_at(addr: std::net::SocketAddr) -> String {
    get_text(&format!("http://{addr}/metrics")).await
}

/// [`eventually`] for a check that has to await (an HTTP query, say).
pub async fn eventually_async<T, Fut>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Fut,
) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole server's gRPC health status at plain-text `addr` (`127.0.0.1:<port>`), or `None`
/// when it cannot be asked.
pub async fn health_status(
    addr: &str,
) -> Option<tonic_health::pb::health_check_response::ServingStatus> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    Some(response.into_inner().status())
}

/// A loopback address where nothing listens, reserved for as long as this value lives.
///
/// The socket is bound but never listens, so connections are refused at once, and no other test
/// can take the port meanwhile (binding a listener and closing it would leave that race open).
pub struct DeadEndpoint {
    _socket: tokio::net::TcpSocket,
    url: String,
}

impl DeadEndpoint {
    /// Reserves a port.
    pub fn reserve() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let addr = socket.local_addr().expect("local address");
        Self {
            _socket: socket,
            url: format!("http://{addr}"),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

/// A loopback listener that accepts connections and never answers: a collector that hangs.
///
/// Accepted sockets are held open (unread) until this value is dropped.
pub struct HangingEndpoint {
    task: tokio::task::JoinHandle<()>,
    url: String,
}

impl HangingEndpoint {
    /// Starts listening.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Self { task, url }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

impl Drop for HangingEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Installs tracing once per test process, with ids but no exporter, so in-process services
/// produce trace ids in headers, error bodies and logs as they do in production.
pub fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let config =
            telemetry::TelemetryConfig::from_lookup("test", |_| None).expect("default config");
        // Another test harness may have installed a subscriber first; ids are then its concern.
        let provider = telemetry::traces::install(&config, None)
            .ok()
            .flatten()
            .map(|installed| installed.provider);
        std::mem::forget(provider);
    });
}
