use auth::tokens::Tokens;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{PASSWORD, SECRET, TestApp, assert_error};

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_bodies_are_400_with_a_stable_code() {
    let app = TestApp::spawn().await;
    let json = "application/json";
    assert_error(
        post_raw(&app, "/api/v1/signup", json, "{\"email\": ").await,
        400,
        "malformed_json",
    )
    .await;
    assert_error(
        post_raw(&app, "/api/v1/login", json, "not json").await,
        400,
        "malformed_json",
    )
    .await;

    let missing = assert_error(
        post_raw(
            &app,
            "/api/v1/signup",
            json,
            r#"{"email":"a@b.co","name":"A"}"#,
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    assert!(
        missing["message"].as_str().unwrap().contains("password"),
        "{missing}"
    );

    let wrong_type = post_raw(
        &app,
        "/api/v1/login",
        json,
        r#"{"email":"a@b.co","password":98765432}"#,
    )
    .await;
    let body = assert_error(wrong_type, 400, "invalid_request").await;
    assert!(
        !body.to_string().contains("98765432"),
        "the offending value is not echoed: {body}"
    );

    assert_error(
        post_raw(&app, "/api/v1/signup", "text/plain", "{}").await,
        415,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn invalid_fields_are_422_and_nothing_is_created() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": PASSWORD, "name": "Ada"}),
            "invalid_email",
        ),
        (
            json!({"email": "a@example.com", "password": "Zq9!xK2", "name": "Ada"}),
            "password_too_short",
        ),
        (
            json!({"email": "b@example.com", "password": "x".repeat(73), "name": "Ada"}),
            "password_too_long",
        ),
        (
            json!({"email": "c@example.com", "password": PASSWORD, "name": ""}),
            "invalid_name",
        ),
    ];
    for (body, code) in cases {
        let response = app.post_json("/api/v1/signup", &body).await;
        let error = assert_error(response, 422, code).await;
        assert!(
            !error
                .to_string()
                .contains(body["password"].as_str().unwrap()),
            "{error}"
        );
    }
    // The valid-looking ones among them were not stored: logging in fails.
    assert_error(
        app.login("a@example.com", "Zq9!xK2").await,
        401,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn a_duplicate_email_is_409() {
    let app = TestApp::spawn().await;
    assert_eq!(app.signup("dup@example.com").await.status(), 201);
    assert_error(app.signup("DUP@example.com").await, 409, "email_taken").await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let app = TestApp::spawn().await;
    assert_eq!(app.signup("ada@example.com").await.status(), 201);
    let mut wrong = assert_error(
        app.login("ada@example.com", "not the password").await,
        401,
        "invalid_credentials",
    )
    .await;
    let mut unknown = assert_error(
        app.login("nobody@example.com", PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    // Identical but for the trace id, which differs per request by design.
    wrong["trace_id"].take();
    unknown["trace_id"].take();
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_code_for_each_case() {
    let app = TestApp::spawn().await;
    let token = app.token_for("ada@example.com").await;
    let ours = Tokens::new(&SecretString::from(SECRET.to_owned()), 900);
    let expired = ours
        .issue_at("someone", chrono::Utc::now().timestamp() - 3600)
        .unwrap();
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });

    assert_error(app.me(None).await, 401, "missing_token").await;
    assert_error(app.me(Some("Bearer garbage")).await, 401, "invalid_token").await;
    assert_error(
        app.me(Some(&format!("Basic {token}"))).await,
        401,
        "invalid_token",
    )
    .await;
    assert_error(
        app.me(Some(&format!("Bearer {tampered}"))).await,
        401,
        "invalid_token",
    )
    .await;
    assert_error(
        app.me(Some(&format!("Bearer {expired}"))).await,
        401,
        "token_expired",
    )
    .await;
    assert_eq!(app.me(Some(&format!("Bearer {token}"))).await.status(), 200);
}

#[tokio::test]
async fn oversize_bodies_are_413() {
    let app = TestApp::spawn().await;
    let huge = json!({"email": "a@example.com", "password": PASSWORD, "name": "x".repeat(10_000)});
    assert_error(
        app.post_json("/api/v1/signup", &huge).await,
        413,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = TestApp::spawn().await;
    assert_error(
        app.http.get(app.url("/nope")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    // RFC 9110: a 405 names the methods the resource does allow.
    for (method, path, allow) in [
        (reqwest::Method::GET, "/api/v1/signup", "POST"),
        (reqwest::Method::DELETE, "/api/v1/users/me", "GET"),
        (reqwest::Method::POST, "/readyz", "GET"),
    ] {
        let response = app
            .http
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allow, "{path}");
        assert_error(response, 405, "method_not_allowed").await;
    }
}
