//! The auth service inside a test process (feature `test-support`): the one way every test
//! crate starts it.

use secrecy::SecretString;
use service_runtime::config::GrpcServing;

use service_runtime::lifecycle::Service as _;

use crate::{Application, Config};

/// The signing key the suites' auth services use.
pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// The settings the suites run auth with, calling user at `user_url`: free ports, plain text,
/// the minimum bcrypt cost.
pub fn config(user_url: String) -> Config {
    Config {
        serving: GrpcServing::loopback(),
        user_url,
        jwt_secret: SecretString::from(JWT_SECRET.to_owned()),
        jwt_ttl_seconds: 900,
        // The minimum cost keeps the suites fast; production uses bcrypt's default (12).
        bcrypt_cost: 4,
        bcrypt_concurrency: 2,
        bcrypt_queue_timeout: std::time::Duration::from_millis(
            crate::config::DEFAULT_BCRYPT_QUEUE_TIMEOUT_MS,
        ),
    }
}

/// Builds the service from `config`, with the test logger and a registry of its own.
pub async fn build(config: Config) -> anyhow::Result<Application> {
    Application::build(
        config,
        telemetry::logs::test_logger("auth"),
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

/// Builds the service from `config` and serves it in the background.
pub async fn spawn(config: Config) -> Running {
    run(build(config).await.expect("the auth service builds"))
}
