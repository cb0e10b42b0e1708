use proto::auth::v1::{LoginRequest, SignupRequest};
use proto::errors::reason;
use tonic::Code;

use crate::helpers::{PASSWORD, signup_request, spawn, spawn_auth};

#[tokio::test]
async fn signup_normalises_the_email_and_returns_the_profile() {
    let mut svc = spawn().await;
    let mut request = signup_request("  Ada@Example.COM ");
    request.name = "  Ada Lovelace ".into();
    let user = svc
        .client
        .signup(request)
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.email, "ada@example.com");
    assert_eq!(user.name, "Ada Lovelace");
    assert!(user.created_at.is_some());
}

#[tokio::test]
async fn invalid_sign_ups_say_why_and_store_nothing() {
    let mut svc = spawn().await;
    let cases = [
        (
            SignupRequest {
                email: "not-an-email".into(),
                ..signup_request("")
            },
            "INVALID_EMAIL",
        ),
        (
            SignupRequest {
                password: "short".into(),
                ..signup_request("a@example.com")
            },
            "PASSWORD_TOO_SHORT",
        ),
        (
            SignupRequest {
                password: "x".repeat(73),
                ..signup_request("b@example.com")
            },
            "PASSWORD_TOO_LONG",
        ),
        (
            SignupRequest {
                name: " ".into(),
                ..signup_request("c@example.com")
            },
            "INVALID_NAME",
        ),
    ];
    for (request, expected) in cases {
        let (email, password) = (request.email.clone(), request.password.clone());
        let status = svc.client.signup(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{expected}");
        assert_eq!(reason(&status).as_deref(), Some(expected));
        assert!(
            !status.message().contains(&password),
            "a refused password is never echoed"
        );
        let login = svc
            .client
            .login(LoginRequest { email, password })
            .await
            .unwrap_err();
        assert_eq!(
            login.code(),
            Code::Unauthenticated,
            "{expected}: nothing was stored"
        );
    }
}

#[tokio::test]
async fn a_second_sign_up_with_the_same_email_is_already_exists() {
    let mut svc = spawn().await;
    svc.client
        .signup(signup_request("dup@example.com"))
        .await
        .unwrap();
    let status = svc
        .client
        .signup(signup_request("DUP@example.com"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(reason(&status).as_deref(), Some("EMAIL_TAKEN"));
}

#[tokio::test]
async fn a_dead_user_service_is_unavailable_not_internal() {
    let dead = testkit::DeadEndpoint::reserve();
    let (mut client, _running) = spawn_auth(dead.url()).await;
    let status = client
        .signup(signup_request("ada@example.com"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status).as_deref(), Some("USER_SERVICE_UNAVAILABLE"));
    assert!(!status.message().contains(PASSWORD));
}
