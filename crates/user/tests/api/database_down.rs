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
        database_connect_timeout: std::time::Duration::from_secs(10),
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

/// A database that is still starting when the service starts: it waits, retrying, instead of
/// exiting into a crash loop; and it does give up, with the cause, after its timeout.
#[tokio::test]
async fn start_up_waits_for_a_database_that_comes_late_and_gives_up_eventually() {
    let Some(database) = testkit::postgres::TestDatabase::create() else {
        return;
    };
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
    let config = |timeout: Duration| user::Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        health_addr: None,
        tls: None,
        database_url: user::db::DatabaseUrl::Postgres(url.clone()),
        pool_size: 2,
        min_bcrypt_cost: 4,
        database_connect_timeout: timeout,
    };
    let build = |timeout| {
        user::Application::build(
            config(timeout),
            telemetry::logs::test_logger("user"),
            telemetry::metrics::registry(),
        )
    };

    proxy.cut();
    let error = build(Duration::from_millis(1200))
        .await
        .err()
        .expect("gives up");
    assert!(format!("{error:#}").contains("cannot connect"), "{error:#}");

    let late = tokio::spawn(build(Duration::from_secs(30)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!late.is_finished(), "still waiting for the database");
    proxy.restore();
    let app = late.await.unwrap().expect("started once the database came");
    assert!(app.grpc_addr().port() > 0);
}
