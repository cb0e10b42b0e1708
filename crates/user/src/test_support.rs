//! The user service inside a test process (feature `test-support`): the one way every test
//! crate starts it.

use service_runtime::config::GrpcServing;

use crate::db::DatabaseUrl;
use crate::{Application, Config};

/// The settings the suites run user with: free ports, plain text, the minimum bcrypt cost.
pub fn config(database_url: DatabaseUrl) -> Config {
    Config {
        serving: GrpcServing::loopback(),
        database_url,
        pool_size: 4,
        // The suites hash at the minimum cost; production uses 12 in auth and user.
        min_bcrypt_cost: 4,
        database_connect_timeout: std::time::Duration::from_secs(10),
    }
}

/// Builds the service from `config`, with the test logger and a registry of its own.
pub async fn build(config: Config) -> anyhow::Result<Application> {
    Application::build(
        config,
        telemetry::logs::test_logger("user"),
        telemetry::metrics::registry(),
    )
    .await
}

/// A service running in this process, stopped when dropped.
#[derive(Debug)]
pub struct Running {
    /// The bound gRPC address.
    pub grpc_addr: std::net::SocketAddr,
    /// The bound `/metrics` address.
    pub metrics_addr: std::net::SocketAddr,
    /// The bound plain-text health address, when the settings asked for one.
    pub health_addr: Option<std::net::SocketAddr>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// `http://<grpc_addr>`, for a caller's settings.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }
}

/// Serves the built `app` in the background until the returned handle is dropped.
pub fn run(app: Application) -> Running {
    let server = app.server();
    let (grpc_addr, metrics_addr, health_addr) = (
        server.grpc_addr(),
        server.metrics_addr(),
        server.health_addr(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    Running {
        grpc_addr,
        metrics_addr,
        health_addr,
        _stop: stop,
    }
}

/// Builds the service from `config` and serves it in the background.
pub async fn spawn(config: Config) -> Running {
    run(build(config).await.expect("the user service builds"))
}
