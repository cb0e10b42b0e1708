//! Mutual TLS between the services, and who may call what.
//!
//! With [`TLS_CA_FILE`], [`TLS_CERT_FILE`] and [`TLS_KEY_FILE`] set (all three, or none), a gRPC
//! server asks every caller for a certificate from the deployment's CA and a client presents
//! its own. The caller's identity is the `spiffe://observable-rust/<service>` URI in its
//! certificate (see the `certgen` crate); the [`AuthorizeLayer`] refuses a call without one
//! with UNAUTHENTICATED and a call from a service the [`CallerPolicy`] does not list for that
//! method with PERMISSION_DENIED. The gRPC health service answers anyone, so probes work.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tower::{Layer, Service};

use crate::config::ConfigError;

/// The CA certificate (PEM) every service trusts.
pub const TLS_CA_FILE: &str = "TLS_CA_FILE";
/// This service's certificate (PEM), presented as a server and as a client.
pub const TLS_CERT_FILE: &str = "TLS_CERT_FILE";
/// This service's private key (PEM).
pub const TLS_KEY_FILE: &str = "TLS_KEY_FILE";
/// The trust domain of service identities; the same as `certgen::TRUST_DOMAIN` (a test checks).
pub const TRUST_DOMAIN: &str = "observable-rust";

/// The certificates for mutual TLS. `Debug` never shows the key.
#[derive(Clone)]
pub struct InternalTls {
    ca: Certificate,
    identity: Identity,
}

impl std::fmt::Debug for InternalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalTls").finish_non_exhaustive()
    }
}

impl InternalTls {
    /// From PEM text: the CA, this service's certificate and its key.
    pub fn from_pem(ca: &str, cert: &str, key: &str) -> Self {
        Self {
            ca: Certificate::from_pem(ca),
            identity: Identity::from_pem(cert, key),
        }
    }

    /// Reads the three files named by the environment; `None` when none is set (plain text),
    /// an error naming the variable when only some are, or a file cannot be read.
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let names = [TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE];
        let values: Vec<Option<String>> = names
            .iter()
            .map(|name| lookup(name).filter(|v| !v.trim().is_empty()))
            .collect();
        if values.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut pem = Vec::new();
        for (name, value) in names.iter().zip(values) {
            let path = value.ok_or_else(|| ConfigError {
                variable: name,
                reason: format!("set it too: {} go together", names.join(", ")),
            })?;
            let text = std::fs::read_to_string(&path).map_err(|error| ConfigError {
                variable: name,
                reason: format!("cannot read {path}: {error}"),
            })?;
            pem.push(text);
        }
        Ok(Some(Self::from_pem(&pem[0], &pem[1], &pem[2])))
    }

    /// A server that asks callers for a certificate from the CA. Callers without one still
    /// complete the handshake (so that the health service answers them and everyone else gets
    /// a clear UNAUTHENTICATED rather than a broken connection).
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .client_auth_optional(true)
    }

    /// A client that trusts only the CA and presents this service's certificate.
    ///
    /// The handshake is bounded: a peer that accepts the connection and then answers nothing
    /// (a frozen process) would otherwise hold the first call on the channel forever.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .timeout(HANDSHAKE_TIMEOUT)
    }
}

/// The longest a client waits for a server's side of the TLS handshake.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The service named by the `spiffe://observable-rust/<service>` URI of a DER certificate.
pub fn identity_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let prefix = format!("spiffe://{TRUST_DOMAIN}/");
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => {
            uri.strip_prefix(prefix.as_str()).map(str::to_owned)
        }
        _ => None,
    })
}

/// Which services may call each method (`package.Service/Method`). A method it does not list
/// is refused to everyone: a new RPC is closed until someone decides who may call it.
#[derive(Debug, Clone, Default)]
pub struct CallerPolicy {
    allowed: Arc<HashMap<String, Vec<String>>>,
}

impl CallerPolicy {
    /// `entries`: (`package.Service/Method`, the services allowed to call it).
    pub fn new(entries: &[(&str, &[&str])]) -> Self {
        let allowed = entries
            .iter()
            .map(|(method, callers)| {
                (
                    (*method).to_owned(),
                    callers.iter().map(|c| (*c).to_owned()).collect(),
                )
            })
            .collect();
        Self {
            allowed: Arc::new(allowed),
        }
    }

    /// Whether `caller` may call `path` (`/package.Service/Method`).
    pub fn allows(&self, caller: &str, path: &str) -> bool {
        let method = path.strip_prefix('/').unwrap_or(path);
        self.allowed
            .get(method)
            .is_some_and(|callers| callers.iter().any(|c| c == caller))
    }
}

/// Tower layer that enforces a [`CallerPolicy`] on a TLS server (see the module doc).
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    policy: CallerPolicy,
    identities: Identities,
}

impl AuthorizeLayer {
    /// Enforces `policy`.
    pub fn new(policy: CallerPolicy) -> Self {
        Self {
            policy,
            identities: Identities::default(),
        }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            policy: self.policy.clone(),
            identities: self.identities.clone(),
        }
    }
}

/// The service produced by [`AuthorizeLayer`].
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    policy: CallerPolicy,
    identities: Identities,
}

/// The certificate chain of one TLS connection, as tonic hands it to every request on it.
type PeerCerts = Arc<Vec<tonic::transport::CertificateDer<'static>>>;

/// The caller identities of the connections seen last, so that a certificate is parsed once per
/// connection rather than once per call (an X.509 parse is a dozen allocations).
///
/// Keyed by the chain's `Arc`, which tonic makes once per connection: the entry holds a clone,
/// so the allocation cannot be freed and its address reused by another connection while the
/// entry lives. Peers are few (the other services' connections); the oldest entry goes first.
#[derive(Debug, Clone, Default)]
struct Identities(Arc<std::sync::Mutex<std::collections::VecDeque<Seen>>>);

/// A connection's certificate chain and the identity read from it.
type Seen = (PeerCerts, Option<String>);

/// Connections remembered by [`Identities`]: more than the services have to each other.
const REMEMBERED_CONNECTIONS: usize = 16;

impl Identities {
    /// The identity in `certs`' leaf certificate.
    fn of(&self, certs: PeerCerts) -> Option<String> {
        // A poisoned lock only means a panic elsewhere; the entries are still sound.
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, identity)) = seen.iter().find(|(known, _)| Arc::ptr_eq(known, &certs)) {
            return identity.clone();
        }
        let identity = identity_of(certs.first()?.as_ref());
        if seen.len() == REMEMBERED_CONNECTIONS {
            seen.pop_front();
        }
        seen.push_back((certs, identity.clone()));
        identity
    }
}

/// The identity in the caller's certificate, if it presented one.
fn caller<B>(request: &http::Request<B>, identities: &Identities) -> Option<String> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let info = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?;
    identities.of(info.peer_certs()?)
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Authorize<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Send,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<S::Future, std::future::Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        let refusal = if path.starts_with("/grpc.health.v1.Health/") {
            None
        } else {
            match caller(&request, &self.identities) {
                None => Some(tonic::Status::unauthenticated(
                    "a client certificate issued by this deployment's CA is required",
                )),
                Some(caller) if !self.policy.allows(&caller, path) => Some(
                    tonic::Status::permission_denied(format!("{caller} may not call {path}")),
                ),
                Some(_) => None,
            }
        };
        match refusal {
            None => futures::future::Either::Left(self.inner.call(request)),
            Some(refusal) => {
                futures::future::Either::Right(std::future::ready(Ok(refusal.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trust_domain_is_the_one_certgen_issues_in() {
        assert_eq!(TRUST_DOMAIN, certgen::TRUST_DOMAIN);
        let ca = certgen::Ca::new().unwrap();
        let issued = ca.issue("auth").unwrap();
        let der = x509_parser::pem::parse_x509_pem(issued.cert.as_bytes())
            .unwrap()
            .1
            .contents;
        assert_eq!(identity_of(&der).as_deref(), Some("auth"));
        assert_eq!(identity_of(b"not a certificate"), None);
    }

    #[test]
    fn a_connection_keeps_its_own_identity_even_past_the_cache() {
        let ca = certgen::Ca::new().unwrap();
        let chain = |service: &str| -> PeerCerts {
            let pem = ca.issue(service).unwrap().cert;
            let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
                .unwrap()
                .1
                .contents;
            Arc::new(vec![tonic::transport::CertificateDer::from(der)])
        };
        let identities = Identities::default();
        let (auth, gateway) = (chain("auth"), chain("gateway"));
        assert_eq!(identities.of(auth.clone()).as_deref(), Some("auth"));
        assert_eq!(identities.of(gateway.clone()).as_deref(), Some("gateway"));
        assert_eq!(identities.of(auth.clone()).as_deref(), Some("auth"));
        for _ in 0..REMEMBERED_CONNECTIONS {
            assert_eq!(identities.of(chain("user")).as_deref(), Some("user"));
        }
        // Forgotten, so read again: still its own.
        assert_eq!(identities.of(gateway).as_deref(), Some("gateway"));
        assert_eq!(identities.of(Arc::new(Vec::new())), None, "no certificate");
    }

    #[test]
    fn the_policy_lists_callers_per_method_and_refuses_what_it_does_not_list() {
        let policy = CallerPolicy::new(&[
            ("user.v1.UserService/CreateUser", &["auth"]),
            ("user.v1.UserService/GetUser", &["gateway", "auth"]),
        ]);
        assert!(policy.allows("auth", "/user.v1.UserService/CreateUser"));
        assert!(!policy.allows("gateway", "/user.v1.UserService/CreateUser"));
        assert!(policy.allows("gateway", "/user.v1.UserService/GetUser"));
        assert!(!policy.allows("auth", "/user.v1.UserService/DropTable"));
    }

    #[test]
    fn the_three_files_go_together_and_are_read() {
        let dir = tempfile_dir();
        certgen::write_missing(&dir).unwrap();
        let path = |f: &str| dir.join(f).display().to_string();
        let all = |name: &str| match name {
            TLS_CA_FILE => Some(path("user/ca.pem")),
            TLS_CERT_FILE => Some(path("user/cert.pem")),
            TLS_KEY_FILE => Some(path("user/key.pem")),
            _ => None,
        };
        assert!(InternalTls::from_lookup(&all).unwrap().is_some());
        assert!(InternalTls::from_lookup(&|_| None).unwrap().is_none());
        let partial = |name: &str| (name == TLS_CA_FILE).then(|| path("user/ca.pem"));
        assert_eq!(
            InternalTls::from_lookup(&partial).unwrap_err().variable,
            TLS_CERT_FILE
        );
        let missing = |name: &str| {
            all(name).map(|p| {
                if name == TLS_KEY_FILE {
                    "/nope".into()
                } else {
                    p
                }
            })
        };
        assert_eq!(
            InternalTls::from_lookup(&missing).unwrap_err().variable,
            TLS_KEY_FILE
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tls-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
