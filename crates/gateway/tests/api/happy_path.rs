use serde_json::Value;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn signup_login_and_me_return_the_same_user() {
    let app = TestApp::spawn().await;

    let response = app.signup("Ada@Example.com").await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["email"], "ada@example.com");
    assert_eq!(created["name"], "Ada");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(created.get("password").is_none() && created.get("password_hash").is_none());

    let response = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 900);

    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let response = app.me(Some(&bearer)).await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me, created);
}

#[tokio::test]
async fn root_health_readiness_and_openapi_are_served() {
    let app = TestApp::spawn().await;

    let root = app.get_json("/").await;
    assert_eq!(root["name"], "gateway");
    assert_eq!(root["links"]["openapi"], "/api/v1/openapi.json");

    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["auth"], "serving");
    assert_eq!(ready["checks"]["user"], "serving");

    let openapi = app.get_json("/api/v1/openapi.json").await;
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/signup",
        "/api/v1/login",
        "/api/v1/users/me",
        "/healthz",
        "/readyz",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} documented");
    }
    assert!(openapi["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn readiness_fails_while_dependencies_are_down_but_liveness_holds() {
    let app = TestApp::spawn_without_backends().await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let signup = app.signup("ada@example.com").await;
    crate::helpers::assert_error(signup, 503, "service_unavailable").await;
}

#[tokio::test]
async fn http_metrics_use_route_patterns_and_status() {
    let app = TestApp::spawn().await;
    app.signup("ada@example.com").await;
    app.login("ada@example.com", "wrong password").await;
    app.http
        .get(app.url("/no/such/path/123"))
        .send()
        .await
        .unwrap();

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"http_requests_total{endpoint="/api/v1/signup",method="POST",status="201"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"http_requests_total{endpoint="/api/v1/login",method="POST",status="401"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"endpoint="UNKNOWN""#),
        "unmatched paths fold into one series: {metrics}"
    );
    assert!(!metrics.contains("/no/such/path"), "{metrics}");
    assert!(
        metrics.contains("http_requests_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"grpc_client_handled_total{grpc_code="OK",grpc_method="Signup",grpc_service="auth.v1.AuthService",grpc_type="unary"} 1"#), "{metrics}");
}
