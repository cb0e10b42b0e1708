use std::net::SocketAddr;

use proto::auth::v1::SignupRequest;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use secrecy::SecretString;
use tonic::transport::Channel;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const PASSWORD: &str = "correct horse battery staple";

/// A user service and an auth service in this process on free ports, stopped when dropped.
pub struct TestAuth {
    pub client: AuthServiceClient<Channel>,
    pub metrics_addr: SocketAddr,
    /// The user service's database, for tests that arrange its data directly.
    pub database_url: String,
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    _database: Option<testkit::postgres::TestDatabase>,
}

pub fn auth_config(user_url: String) -> auth::Config {
    auth::Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        health_addr: None,
        tls: None,
        ready_file: None,
        user_url,
        jwt_secret: SecretString::from(SECRET.to_owned()),
        jwt_ttl_seconds: 900,
        // The minimum cost keeps the suite fast; production uses bcrypt's default (12).
        bcrypt_cost: 4,
        bcrypt_concurrency: 2,
        bcrypt_queue_timeout: std::time::Duration::from_millis(
            auth::config::DEFAULT_BCRYPT_QUEUE_TIMEOUT_MS,
        ),
    }
}

pub async fn spawn_auth(
    user_url: String,
) -> (
    AuthServiceClient<Channel>,
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
) {
    testkit::init_tracing();
    let app = auth::Application::build(
        auth_config(user_url),
        telemetry::logs::test_logger("auth"),
        telemetry::metrics::registry(),
    )
    .await
    .expect("auth builds");
    let (grpc, metrics) = (app.grpc_addr(), app.metrics_addr());
    let (stop, stopped) = testkit::stopper();
    tokio::spawn(app.run(stopped));
    let client = AuthServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect auth");
    (client, metrics, stop)
}

pub async fn spawn() -> TestAuth {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL when reachable (always in CI), SQLite otherwise.
    let (database, url) = testkit::postgres::postgres_or_sqlite(dir.path());
    let user_config = user::Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        health_addr: None,
        tls: None,
        ready_file: None,
        database_url: user::db::DatabaseUrl::parse(&url).unwrap(),
        pool_size: 4,
        // The suites hash at the minimum cost; production uses 12 in auth and user.
        min_bcrypt_cost: 4,
        database_connect_timeout: std::time::Duration::from_secs(10),
    };
    let user_app = user::Application::build(
        user_config,
        telemetry::logs::test_logger("user"),
        telemetry::metrics::registry(),
    )
    .await
    .expect("user builds");
    let user_url = format!("http://{}", user_app.grpc_addr());
    let (stop_user, user_stopped) = testkit::stopper();
    tokio::spawn(user_app.run(user_stopped));
    let (client, metrics_addr, stop_auth) = spawn_auth(user_url.clone()).await;
    TestAuth {
        client,
        metrics_addr,
        database_url: url,
        _stop: vec![stop_auth, stop_user],
        _dir: dir,
        _database: database,
    }
}

pub fn signup_request(email: &str) -> SignupRequest {
    SignupRequest {
        email: email.to_owned(),
        password: PASSWORD.to_owned(),
        name: "Ada".to_owned(),
    }
}
