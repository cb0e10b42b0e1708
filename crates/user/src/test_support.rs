//! The user service inside a test process (feature `test-support`): the one way every test
//! crate starts it.

use service_runtime::config::GrpcServing;

use crate::db::DatabaseUrl;
use service_runtime::lifecycle::Service as _;

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
pub use service_runtime::grpc::Running;

/// Serves the built `app` in the background until the returned handle is dropped.
pub fn run(app: Application) -> Running {
    Running::start(app, Application::server)
}

/// The service on the database at `url` (`postgres://...` or `sqlite://...`), serving in the
/// background with [`config`]'s settings.
pub async fn spawn_on(url: &str) -> Running {
    let url = DatabaseUrl::parse(url).expect("a database URL");
    spawn(config(url)).await
}

/// Builds the service from `config` and serves it in the background.
pub async fn spawn(config: Config) -> Running {
    run(build(config).await.expect("the user service builds"))
}
