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
    _running: user::test_support::Running,
    _database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

pub async fn spawn(
    database_url: DatabaseUrl,
    backend: &'static str,
    database: Option<TestDatabase>,
    dir: tempfile::TempDir,
) -> TestUser {
    testkit::init_tracing();
    let running = user::test_support::spawn(user::test_support::config(database_url)).await;
    let client = UserServiceClient::connect(running.url())
        .await
        .expect("connect");
    TestUser {
        backend,
        client,
        grpc_addr: running.grpc_addr,
        metrics_addr: running.metrics_addr,
        _running: running,
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
