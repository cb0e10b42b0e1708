use std::net::SocketAddr;

use proto::user::v1::user_service_client::UserServiceClient;
use testkit::postgres::TestDatabase;
use tonic::transport::Channel;
use user::db::DatabaseUrl;

/// A user service running in this process on free ports, stopped when dropped.
pub struct TestUser {
    pub backend: &'static str,
    pub client: UserServiceClient<Channel>,
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

/// The settings the suites run user with: free ports, plain text, the minimum bcrypt cost.
pub fn config(database_url: DatabaseUrl) -> user::Config {
    user::Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        health_addr: None,
        tls: None,
        ready_file: None,
        database_url,
        pool_size: 4,
        // The suites hash at the minimum cost; production uses 12 in auth and user.
        min_bcrypt_cost: 4,
        database_connect_timeout: std::time::Duration::from_secs(10),
    }
}

/// Builds the service from `config`, with the test logger and a registry of its own.
pub async fn build(config: user::Config) -> user::Application {
    try_build(config).await.expect("user service builds")
}

/// [`build`], for tests of start-up failing.
pub async fn try_build(config: user::Config) -> anyhow::Result<user::Application> {
    user::Application::build(
        config,
        telemetry::logs::test_logger("user"),
        telemetry::metrics::registry(),
    )
    .await
}

pub async fn spawn(
    database_url: DatabaseUrl,
    backend: &'static str,
    database: Option<TestDatabase>,
    dir: tempfile::TempDir,
) -> TestUser {
    testkit::init_tracing();
    let app = build(config(database_url)).await;
    let (grpc_addr, metrics_addr) = (app.grpc_addr(), app.metrics_addr());
    let (shutdown, stopped) = testkit::stopper();
    tokio::spawn(app.run(stopped));
    let client = UserServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .expect("connect");
    TestUser {
        backend,
        client,
        grpc_addr,
        metrics_addr,
        _shutdown: shutdown,
        _database: database,
        _dir: dir,
    }
}

pub async fn spawn_sqlite() -> TestUser {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    spawn(DatabaseUrl::Sqlite(path), "sqlite", None, dir).await
}

pub async fn spawn_postgres() -> Option<TestUser> {
    let database = TestDatabase::create()?;
    let url = DatabaseUrl::Postgres(database.url().to_owned());
    Some(
        spawn(
            url,
            "postgres",
            Some(database),
            tempfile::tempdir().unwrap(),
        )
        .await,
    )
}

/// The service on every backend this machine offers: SQLite always, PostgreSQL when reachable
/// (always under CI).
pub async fn on_every_backend() -> Vec<TestUser> {
    let mut services = vec![spawn_sqlite().await];
    services.extend(spawn_postgres().await);
    services
}

pub const HASH: &str = "$2b$04$C6UzMDM.H6dfI/f/IKcEeO5KRzqzVuINNlrDjAwJfGLtbH6mh2cU.";
