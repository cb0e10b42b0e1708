use auth::tokens::Tokens;
use proto::auth::v1::ValidateTokenRequest;
use proto::errors::reason;
use secrecy::SecretString;
use tonic::Code;

use crate::helpers::{SECRET, spawn};

async fn validate(svc: &mut crate::helpers::TestAuth, token: String) -> tonic::Status {
    svc.client
        .validate_token(ValidateTokenRequest {
            access_token: token,
        })
        .await
        .unwrap_err()
}

#[tokio::test]
async fn expired_tampered_foreign_and_garbage_tokens_are_refused() {
    let mut svc = spawn().await;
    let ours = Tokens::new(&SecretString::from(SECRET.to_owned()), 900);
    let theirs = Tokens::new(
        &SecretString::from("someone-elses-secret-0123456789abcdef".to_owned()),
        900,
    );

    let expired = ours
        .issue_at("user-1", chrono::Utc::now().timestamp() - 3600)
        .unwrap();
    let status = validate(&mut svc, expired).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status).as_deref(), Some("TOKEN_EXPIRED"));

    let valid = ours.issue("user-1").unwrap();
    let (head, rest) = valid.split_once('.').unwrap();
    let (_payload, signature) = rest.split_once('.').unwrap();
    let forged_payload = "eyJzdWIiOiJhZG1pbiIsImlzcyI6ImF1dGgiLCJpYXQiOjEsImV4cCI6OTk5OTk5OTk5OX0";
    let tampered = format!("{head}.{forged_payload}.{signature}");
    for bad in [
        tampered,
        theirs.issue("user-1").unwrap(),
        "garbage".into(),
        String::new(),
    ] {
        let status = validate(&mut svc, bad.clone()).await;
        assert_eq!(status.code(), Code::Unauthenticated, "{bad}");
        assert_eq!(reason(&status).as_deref(), Some("INVALID_TOKEN"), "{bad}");
    }
}
