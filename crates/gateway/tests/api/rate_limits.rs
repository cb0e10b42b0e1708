//! Rate limits on sign-up and login: 429 `rate_limited` with `Retry-After`, success again once
//! it has passed, keyed on the socket's address unless a trusted proxy forwarded the request.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, assert_error};

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn guessing_one_accounts_password_is_slowed_then_allowed_again() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_LOGIN_PER_ACCOUNT", "3/3s")]).await;
    assert_eq!(app.signup("ada@example.com").await.status(), 201);
    for _ in 0..3 {
        assert_eq!(
            app.login("ada@example.com", "wrong-guess-1").await.status(),
            401
        );
    }
    // Even the right password waits: the limit is on attempts, whoever makes them.
    let limited = app.login("ADA@example.com", PASSWORD).await;
    let wait = retry_after(&limited);
    assert!((1..=3).contains(&wait), "Retry-After: {wait}");
    assert_error(limited, 429, "rate_limited").await;
    // Another account is not affected.
    assert_eq!(app.signup("bob@example.com").await.status(), 201);
    assert_eq!(app.login("bob@example.com", PASSWORD).await.status(), 200);

    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn sign_ups_from_one_address_are_limited() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_SIGNUP_PER_IP", "2/60s")]).await;
    assert_eq!(app.signup("one@example.com").await.status(), 201);
    // Refused sign-ups count too: they are attempts.
    let bad = app
        .post_json(
            "/api/v1/signup",
            &json!({"email": "x", "password": PASSWORD, "name": "X"}),
        )
        .await;
    assert_eq!(bad.status(), 422);
    let limited = app.signup("three@example.com").await;
    assert!(retry_after(&limited) >= 1);
    assert_error(limited, 429, "rate_limited").await;
}

async fn login_with_forwarded_for(app: &TestApp, forwarded: &str) -> u16 {
    app.http
        .post(app.url("/api/v1/login"))
        .header("x-forwarded-for", forwarded)
        .json(&json!({"email": format!("nobody-{forwarded}@example.com"), "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_forged_forwarded_for_does_not_escape_the_limit_but_a_trusted_proxys_is_believed() {
    let direct = TestApp::spawn_with(&[("RATE_LIMIT_LOGIN_PER_IP", "2/60s")]).await;
    let statuses = [
        login_with_forwarded_for(&direct, "192.0.2.1").await,
        login_with_forwarded_for(&direct, "192.0.2.2").await,
        login_with_forwarded_for(&direct, "192.0.2.3").await,
    ];
    assert_eq!(
        statuses,
        [401, 401, 429],
        "one client, whatever the header says"
    );

    let proxied = TestApp::spawn_with(&[
        ("RATE_LIMIT_LOGIN_PER_IP", "2/60s"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let statuses = [
        login_with_forwarded_for(&proxied, "192.0.2.1").await,
        login_with_forwarded_for(&proxied, "192.0.2.2").await,
        login_with_forwarded_for(&proxied, "192.0.2.3").await,
        login_with_forwarded_for(&proxied, "192.0.2.3").await,
        login_with_forwarded_for(&proxied, "192.0.2.3").await,
    ];
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 429],
        "three clients behind our proxy"
    );
}
