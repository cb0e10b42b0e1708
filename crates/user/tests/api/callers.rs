//! Mutual TLS and the caller policy, per method: no certificate is UNAUTHENTICATED, the wrong
//! service is PERMISSION_DENIED, the right one is served; health answers anyone. Only auth can
//! ever read a password hash.

use proto::user::v1::user_service_client::UserServiceClient;
use proto::user::v1::{CreateUserRequest, GetCredentialRequest, GetUserRequest};
use tonic::Code;
use tonic::transport::Endpoint;

use crate::helpers::HASH;

/// A client of `addr` over TLS trusting `ca`, presenting `identity` if any.
async fn client(
    addr: std::net::SocketAddr,
    ca: &str,
    identity: Option<&certgen::Issued>,
) -> UserServiceClient<tonic::transport::Channel> {
    UserServiceClient::new(
        testkit::tls::channel(addr.port(), ca, identity)
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn every_method_refuses_strangers_and_the_wrong_service() {
    let ca = certgen::Ca::new().unwrap();
    let mine = ca.issue("user").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        user::test_support::config(user::db::DatabaseUrl::Sqlite(dir.path().join("users.db")));
    config.serving.health_addr = Some("127.0.0.1:0".parse().unwrap());
    config.serving.tls = Some(service_runtime::tls::InternalTls::from_pem(
        &ca.pem(),
        &mine.cert,
        &mine.key,
    ));
    config.pool_size = 2;
    let running = user::test_support::spawn(config).await;
    let (addr, health) = (running.grpc_addr, running.health_addr.unwrap());

    let gateway = ca.issue("gateway").unwrap();
    let auth = ca.issue("auth").unwrap();
    let create = |email: &str| CreateUserRequest {
        email: email.into(),
        name: "Ann".into(),
        password_hash: HASH.into(),
    };

    // No certificate: every method is UNAUTHENTICATED.
    let mut stranger = client(addr, &ca.pem(), None).await;
    let codes = [
        stranger
            .create_user(create("s@example.com"))
            .await
            .unwrap_err()
            .code(),
        stranger
            .get_credential(GetCredentialRequest {
                email: "s@example.com".into(),
            })
            .await
            .unwrap_err()
            .code(),
        stranger
            .get_user(GetUserRequest { id: "x".into() })
            .await
            .unwrap_err()
            .code(),
    ];
    assert_eq!(codes, [Code::Unauthenticated; 3]);

    // The gateway may read profiles, never create accounts or read hashes.
    let mut as_gateway = client(addr, &ca.pem(), Some(&gateway)).await;
    assert_eq!(
        as_gateway
            .create_user(create("g@example.com"))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let hash = as_gateway
        .get_credential(GetCredentialRequest {
            email: "a@example.com".into(),
        })
        .await;
    assert_eq!(hash.unwrap_err().code(), Code::PermissionDenied);

    // auth creates and reads credentials, and is not a profile reader.
    let mut as_auth = client(addr, &ca.pem(), Some(&auth)).await;
    let created = as_auth
        .create_user(create("a@example.com"))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let credential = as_auth
        .get_credential(GetCredentialRequest {
            email: "a@example.com".into(),
        })
        .await
        .unwrap();
    assert_eq!(credential.into_inner().password_hash, HASH);
    assert_eq!(
        as_auth
            .get_user(GetUserRequest {
                id: created.id.clone()
            })
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let profile = as_gateway
        .get_user(GetUserRequest { id: created.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.user.unwrap().email, "a@example.com");

    // A certificate from another CA does not even connect.
    let other_ca = certgen::Ca::new().unwrap();
    let impostor = other_ca.issue("auth").unwrap();
    let channel = testkit::tls::channel(addr.port(), &ca.pem(), Some(&impostor)).await;
    let refused = match channel {
        Err(_) => true,
        Ok(channel) => UserServiceClient::new(channel)
            .get_credential(GetCredentialRequest {
                email: "a@example.com".into(),
            })
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA was accepted");

    // Health: on the TLS port without a certificate, and on the plain-text health port.
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = testkit::tls::channel(addr.port(), &ca.pem(), None)
        .await
        .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    let plain = Endpoint::from_shared(format!("http://{health}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(plain)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
}
