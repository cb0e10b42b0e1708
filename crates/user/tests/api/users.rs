use proto::errors::reason;
use proto::user::v1::{CreateUserRequest, GetCredentialRequest, GetUserRequest};
use tonic::Code;

use crate::helpers::{HASH, TestUser, on_every_backend};

fn create(email: &str) -> CreateUserRequest {
    CreateUserRequest {
        email: email.to_owned(),
        name: "Ada".to_owned(),
        password_hash: HASH.to_owned(),
    }
}

#[tokio::test]
async fn a_created_user_can_be_read_back_by_id_and_email() {
    for mut svc in on_every_backend().await {
        let created = svc
            .client
            .create_user(create("ada@example.com"))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        assert_eq!(created.email, "ada@example.com", "{}", svc.backend);
        assert!(uuid::Uuid::parse_str(&created.id).is_ok());

        let fetched = svc
            .client
            .get_user(GetUserRequest {
                id: created.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        assert_eq!(
            fetched, created,
            "{}: the profile round-trips exactly",
            svc.backend
        );

        let credential = svc
            .client
            .get_credential(GetCredentialRequest {
                email: "ada@example.com".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(credential.user_id, created.id);
        assert_eq!(credential.password_hash, HASH);
    }
}

#[tokio::test]
async fn a_duplicate_email_is_already_exists_with_a_reason() {
    for mut svc in on_every_backend().await {
        svc.client
            .create_user(create("dup@example.com"))
            .await
            .unwrap();
        let status = svc
            .client
            .create_user(create("dup@example.com"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{}", svc.backend);
        assert_eq!(reason(&status).as_deref(), Some("EMAIL_TAKEN"));
    }
}

/// `attempts` simultaneous sign-ups for one email; every loser of the race must be told the
/// email is taken, nothing else. Returns how many were created.
async fn race_sign_ups(svc: &TestUser, attempts: usize) -> usize {
    let attempts: Vec<_> = (0..attempts)
        .map(|_| {
            let mut client = svc.client.clone();
            tokio::spawn(async move { client.create_user(create("race@example.com")).await })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(status) => assert_eq!(
                status.code(),
                Code::AlreadyExists,
                "{}: the loser of a race is told the email is taken, nothing else: {status:?}",
                svc.backend
            ),
        }
    }
    created
}

#[tokio::test]
async fn concurrent_sign_ups_for_one_email_create_exactly_one_user() {
    for svc in on_every_backend().await {
        assert_eq!(race_sign_ups(&svc, 8).await, 1, "{}", svc.backend);
    }
}

#[tokio::test]
async fn unknown_and_malformed_lookups_are_client_errors() {
    for mut svc in on_every_backend().await {
        let missing = svc
            .client
            .get_user(GetUserRequest {
                id: uuid::Uuid::new_v4().to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound, "{}", svc.backend);
        assert_eq!(reason(&missing).as_deref(), Some("USER_NOT_FOUND"));

        let malformed = svc
            .client
            .get_user(GetUserRequest {
                id: "1; DROP TABLE users".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(malformed.code(), Code::InvalidArgument);

        let unknown = svc
            .client
            .get_credential(GetCredentialRequest {
                email: "nobody@example.com".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
    }
}

#[tokio::test]
async fn invalid_create_requests_are_refused_and_store_nothing() {
    for mut svc in on_every_backend().await {
        let mut plaintext = create("plain@example.com");
        plaintext.password_hash = "hunter2hunter2".into();
        let status = svc.client.create_user(plaintext).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason(&status).as_deref(), Some("INVALID_PASSWORD_HASH"));
        assert!(
            !status.message().contains("hunter2"),
            "the refused value is not echoed"
        );

        let lookup = svc
            .client
            .get_credential(GetCredentialRequest {
                email: "plain@example.com".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            lookup.code(),
            Code::NotFound,
            "{}: nothing was stored",
            svc.backend
        );
    }
}

#[tokio::test]
async fn metrics_and_health_are_served() {
    for mut svc in on_every_backend().await {
        let _ = svc
            .client
            .get_user(GetUserRequest { id: "bad".into() })
            .await;

        let body = testkit::metrics_at(svc.metrics_addr).await;
        assert!(
            body.contains(r#"grpc_server_handled_total{grpc_code="InvalidArgument",grpc_method="GetUser",grpc_service="user.v1.UserService",grpc_type="unary"} 1"#),
            "{body}"
        );
        assert!(body.contains("grpc_server_started_total"), "{body}");
        assert!(
            body.contains("grpc_server_handling_seconds_bucket"),
            "{body}"
        );

        let channel = tonic::transport::Channel::from_shared(format!("http://{}", svc.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "user.v1.UserService".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            health.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
    }
}

#[tokio::test]
async fn fifty_simultaneous_sign_ups_for_one_email_store_exactly_one_account() {
    for svc in on_every_backend().await {
        assert_eq!(race_sign_ups(&svc, 50).await, 1, "{}", svc.backend);
        let mut client = svc.client.clone();
        let stored = client
            .get_credential(proto::user::v1::GetCredentialRequest {
                email: "race@example.com".into(),
            })
            .await;
        assert!(stored.is_ok(), "{}: the one account is there", svc.backend);
    }
}
