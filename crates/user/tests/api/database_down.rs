//! The database going away and coming back: health says NOT_SERVING while it is gone (so the
//! gateway's readiness and Kubernetes stop sending traffic), calls answer UNAVAILABLE, and the
//! service serves again when it returns, without a restart.

use std::time::Duration;

use proto::user::v1::GetUserRequest;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

async fn status(health: &str) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{health}"))
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

#[tokio::test]
async fn health_follows_the_database_and_service_resumes_when_it_returns() {
    let Some(database) = testkit::postgres::TestDatabase::create() else {
        return;
    };
    // The server's host:port from the URL (postgres://user@host:port/db), put behind the proxy.
    let server = database
        .url()
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let target = tokio::net::lookup_host(&server)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = testkit::proxy::Proxy::start(target).await;
    let url = database
        .url()
        .replacen(&server, &proxy.addr().to_string(), 1);
    let config = user::Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        health_addr: Some("127.0.0.1:0".parse().unwrap()),
        tls: None,
        database_url: user::db::DatabaseUrl::Postgres(url),
        pool_size: 2,
        min_bcrypt_cost: 4,
    };
    let app = user::Application::build(
        config,
        telemetry::logs::test_logger("user"),
        telemetry::metrics::registry(),
    )
    .await
    .unwrap();
    let (grpc, health) = (app.grpc_addr(), app.health_addr().unwrap().to_string());
    let (_stop, stopped) = testkit::stopper();
    tokio::spawn(app.run(stopped));
    assert_eq!(status(&health).await, Some(ServingStatus::Serving));

    proxy.cut();
    testkit::eventually_async(
        "NOT_SERVING while the database is gone",
        Duration::from_secs(30),
        || async { (status(&health).await == Some(ServingStatus::NotServing)).then_some(()) },
    )
    .await;
    let mut client =
        proto::user::v1::user_service_client::UserServiceClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
    let call = client
        .get_user(GetUserRequest {
            id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(call.code(), tonic::Code::Unavailable, "{call:?}");

    proxy.restore();
    testkit::eventually_async(
        "SERVING once it is back",
        Duration::from_secs(30),
        || async { (status(&health).await == Some(ServingStatus::Serving)).then_some(()) },
    )
    .await;
    let call = client
        .get_user(GetUserRequest {
            id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        call.code(),
        tonic::Code::NotFound,
        "served again, no restart: {call:?}"
    );
}
