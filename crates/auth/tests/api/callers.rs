//! Mutual TLS and the caller policy on auth: only the gateway may sign up, log in and validate
//! tokens; no certificate is UNAUTHENTICATED, another service PERMISSION_DENIED.

use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::auth::v1::{LoginRequest, ValidateTokenRequest};
use proto::errors::reason;
use tonic::Code;

use crate::helpers::signup_request;

async fn client(
    addr: std::net::SocketAddr,
    ca: &str,
    identity: Option<&certgen::Issued>,
) -> AuthServiceClient<tonic::transport::Channel> {
    AuthServiceClient::new(
        testkit::tls::channel(addr.port(), ca, identity)
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn only_the_gateway_may_call_auth() {
    let ca = certgen::Ca::new().unwrap();
    let mine = ca.issue("auth").unwrap();
    let mut config = auth::test_support::config("https://localhost:1".to_owned());
    config.serving.tls = Some(service_runtime::tls::InternalTls::from_pem(
        &ca.pem(),
        &mine.cert,
        &mine.key,
    ));
    config.serving.health_addr = Some("127.0.0.1:0".parse().unwrap());
    let running = auth::test_support::spawn(config).await;
    let addr = running.grpc_addr;
    let validate = || ValidateTokenRequest {
        access_token: "not-a-token".into(),
    };
    let login = || LoginRequest {
        email: "a@example.com".into(),
        password: "whatever-password".into(),
    };

    for identity in [None, Some(ca.issue("user").unwrap())] {
        let expected = if identity.is_some() {
            Code::PermissionDenied
        } else {
            Code::Unauthenticated
        };
        let mut caller = client(addr, &ca.pem(), identity.as_ref()).await;
        let statuses = [
            caller
                .signup(signup_request("x@example.com"))
                .await
                .unwrap_err(),
            caller.login(login()).await.unwrap_err(),
            caller.validate_token(validate()).await.unwrap_err(),
        ];
        for status in statuses {
            assert_eq!(status.code(), expected, "{status:?}");
            assert_eq!(
                reason(&status),
                None,
                "refused before any business logic: {status:?}"
            );
        }
    }

    // The gateway gets through to the service, which judges the token itself.
    let mut gateway = client(addr, &ca.pem(), Some(&ca.issue("gateway").unwrap())).await;
    let status = gateway.validate_token(validate()).await.unwrap_err();
    assert_eq!(
        reason(&status).as_deref(),
        Some("INVALID_TOKEN"),
        "{status:?}"
    );
}
