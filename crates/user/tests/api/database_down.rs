//! The database going away and coming back: health says NOT_SERVING while it is gone (so the
//! gateway's readiness and Kubernetes stop sending traffic), calls answer UNAVAILABLE, and the
//! service serves again when it returns, without a restart.

use std::time::Duration;

use proto::user::v1::GetUserRequest;
use testkit::health_status as status;
use tonic_health::pb::health_check_response::ServingStatus;

/// A throw-away PostgreSQL database reached through a proxy the test can cut: the database,
/// the proxy and the URL to give the service. `None` (skipped) without PostgreSQL, off CI.
async fn proxied_postgres() -> Option<(
    testkit::postgres::TestDatabase,
    testkit::proxy::Proxy,
    user::db::DatabaseUrl,
)> {
    let database = testkit::postgres::TestDatabase::create()?;
    // The server's host:port from the URL (postgres://user@host:port/db), put behind the proxy.
    // Only a missing server skips the test; anything else about it is a failure.
    let server = database
        .url()
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("postgres://user@host:port/db")
        .to_owned();
    let target = tokio::net::lookup_host(&server)
        .await
        .expect("the test server's address")
        .next()
        .expect("an address");
    let proxy = testkit::proxy::Proxy::start(target).await;
    let url = database
        .url()
        .replacen(&server, &proxy.addr().to_string(), 1);
    Some((database, proxy, user::db::DatabaseUrl::Postgres(url)))
}

#[tokio::test]
async fn health_follows_the_database_and_service_resumes_when_it_returns() {
    let Some((_database, proxy, url)) = proxied_postgres().await else {
        return;
    };
    let mut config = user::test_support::config(url);
    config.serving.health_addr = Some("127.0.0.1:0".parse().unwrap());
    config.pool_size = 2;
    let running = user::test_support::spawn(config).await;
    let (grpc, health) = (running.grpc_addr, running.health_addr.unwrap().to_string());
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
    let Some((_database, proxy, url)) = proxied_postgres().await else {
        return;
    };
    let build = |timeout| {
        user::test_support::build(user::Config {
            pool_size: 2,
            database_connect_timeout: timeout,
            ..user::test_support::config(url.clone())
        })
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
    assert!(app.server().grpc_addr().port() > 0);
}
