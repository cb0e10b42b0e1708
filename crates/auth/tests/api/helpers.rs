use std::net::SocketAddr;

use proto::auth::v1::SignupRequest;
use proto::auth::v1::auth_service_client::AuthServiceClient;
use tonic::transport::Channel;

pub use auth::test_support::JWT_SECRET as SECRET;
pub const PASSWORD: &str = "correct horse battery staple";

/// A user service and an auth service in this process on free ports, stopped when dropped.
pub struct TestAuth {
    pub client: AuthServiceClient<Channel>,
    pub metrics_addr: SocketAddr,
    /// The user service's database, for tests that arrange its data directly.
    pub database_url: String,
    _auth: auth::test_support::Running,
    _user: user::test_support::Running,
    _dir: tempfile::TempDir,
    _database: Option<testkit::postgres::TestDatabase>,
}

/// auth alone, calling user at `user_url`, and a client of it.
pub async fn spawn_auth(
    user_url: String,
) -> (AuthServiceClient<Channel>, auth::test_support::Running) {
    testkit::init_tracing();
    let running = auth::test_support::spawn(auth::test_support::config(user_url)).await;
    let client = AuthServiceClient::connect(running.url())
        .await
        .expect("connect auth");
    (client, running)
}

/// user (PostgreSQL when reachable, always in CI; SQLite otherwise) and auth in front of it.
pub async fn spawn() -> TestAuth {
    testkit::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (database, url) = testkit::postgres::postgres_or_sqlite(dir.path());
    let user = user::test_support::spawn_on(&url).await;
    let (client, auth) = spawn_auth(user.url()).await;
    TestAuth {
        client,
        metrics_addr: auth.metrics_addr,
        database_url: url,
        _auth: auth,
        _user: user,
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
