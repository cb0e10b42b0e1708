//! Mutual-TLS clients for tests of the services' caller policy.

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A TLS channel to a server on loopback `port` that trusts `ca` (PEM), presenting `identity`
/// (a certificate from `certgen`) if given. Errors when the handshake fails.
pub async fn channel(
    port: u16,
    ca: &str,
    identity: Option<&certgen::Issued>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some(issued) = identity {
        tls = tls.identity(Identity::from_pem(&issued.cert, &issued.key));
    }
    Endpoint::from_shared(format!("https://localhost:{port}"))?
        .tls_config(tls)?
        .connect()
        .await
}
