use proto::auth::v1::{LoginRequest, ValidateTokenRequest};
use proto::errors::reason;
use tonic::Code;

use crate::helpers::{PASSWORD, signup_request, spawn};

#[tokio::test]
async fn login_issues_a_bearer_token_that_validates_to_the_user() {
    let mut svc = spawn().await;
    let user = svc
        .client
        .signup(signup_request("ada@example.com"))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let login = svc
        .client
        .login(LoginRequest {
            email: "ADA@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(login.token_type, "Bearer");
    assert_eq!(login.expires_in, 900);
    assert!(!login.access_token.contains(PASSWORD));

    let validated = svc
        .client
        .validate_token(ValidateTokenRequest {
            access_token: login.access_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(validated.user_id, user.id);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_are_indistinguishable() {
    let mut svc = spawn().await;
    svc.client
        .signup(signup_request("ada@example.com"))
        .await
        .unwrap();
    let wrong_password = svc
        .client
        .login(LoginRequest {
            email: "ada@example.com".into(),
            password: "not the password".into(),
        })
        .await
        .unwrap_err();
    let unknown_email = svc
        .client
        .login(LoginRequest {
            email: "nobody@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_err();
    let malformed_email = svc
        .client
        .login(LoginRequest {
            email: "nobody".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_err();
    for status in [&wrong_password, &unknown_email, &malformed_email] {
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(reason(status).as_deref(), Some("INVALID_CREDENTIALS"));
        assert_eq!(status.message(), wrong_password.message());
    }
}

#[tokio::test]
async fn grpc_metrics_count_server_and_client_calls() {
    let mut svc = spawn().await;
    let _ = svc
        .client
        .login(LoginRequest {
            email: "nobody@example.com".into(),
            password: PASSWORD.into(),
        })
        .await;
    let body = testkit::metrics_at(svc.metrics_addr).await;
    assert!(body.contains(r#"grpc_server_handled_total{grpc_code="Unauthenticated",grpc_method="Login",grpc_service="auth.v1.AuthService",grpc_type="unary"} 1"#), "{body}");
    assert!(body.contains(r#"grpc_client_handled_total{grpc_code="NotFound",grpc_method="GetCredential",grpc_service="user.v1.UserService",grpc_type="unary"} 1"#), "{body}");
    #[cfg(target_os = "linux")] // the prometheus crate's process collector is Linux-only
    assert!(body.contains("process_resident_memory_bytes"), "{body}");
}

#[tokio::test]
async fn bytes_past_bcrypts_72_byte_limit_are_not_ignored_at_login() {
    let mut svc = spawn().await;
    let exact = "p".repeat(72);
    let mut request = signup_request("long@example.com");
    request.password = exact.clone();
    svc.client.signup(request).await.unwrap();

    let login = |password: String| LoginRequest {
        email: "long@example.com".into(),
        password,
    };
    assert!(svc.client.login(login(exact.clone())).await.is_ok());
    let status = svc
        .client
        .login(login(format!("{exact}-anything")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status).as_deref(), Some("INVALID_CREDENTIALS"));
}

#[tokio::test]
async fn an_account_whose_stored_hash_is_unusable_gets_a_plain_401() {
    let mut svc = spawn().await;
    // Straight into the table: the user service itself refuses a malformed hash, but one can
    // still be there (a botched data migration, a restore from elsewhere).
    let url = user::db::DatabaseUrl::parse(&svc.database_url).unwrap();
    let db = user::db::Database::connect(&url, 1).unwrap();
    db.insert(user::db::UserRow::new(
        "broken@example.com".into(),
        "Broken".into(),
        "$2b$12$truncated".into(),
    ))
    .await
    .unwrap();
    let status = svc
        .client
        .login(LoginRequest {
            email: "broken@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "not Internal: {status:?}"
    );
    assert_eq!(reason(&status).as_deref(), Some("INVALID_CREDENTIALS"));
}
