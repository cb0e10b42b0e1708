//! gRPC clients for auth and user, each over a traced channel (client spans, context injection,
//! `grpc_client_*` metrics), plus health clients for `/readyz`.

use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::user::v1::user_service_client::UserServiceClient;
use telemetry::grpc::ClientService;
use telemetry::metrics::{GrpcMetrics, Side};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;

/// A transport with trace propagation and client metrics.
pub type Traced = ClientService<Channel>;

/// Everything the gateway calls. Cheap to clone: channels are shared handles.
///
/// Made per actix worker ([`Endpoints::connect`]), so that a call's channel and HTTP/2
/// connection run on the worker's own thread: one channel shared by all workers lives on the
/// main runtime, and every call would then wake a thread there and another on its way back.
#[derive(Debug, Clone)]
pub struct Clients {
    /// `auth.v1.AuthService`.
    pub auth: AuthServiceClient<Traced>,
    /// `user.v1.UserService`.
    pub user: UserServiceClient<Traced>,
    /// Health of the auth process.
    pub auth_health: HealthClient<Traced>,
    /// Health of the user process.
    pub user_health: HealthClient<Traced>,
}

/// Where auth and user are, and the client metrics every worker's [`Clients`] count in.
#[derive(Debug, Clone)]
pub struct Endpoints {
    auth: Endpoint,
    user: Endpoint,
    metrics: GrpcMetrics,
}

impl Endpoints {
    /// The two endpoints, over mutual TLS when `tls` is given; registers `grpc_client_*`
    /// metrics in `registry`.
    pub fn new(
        auth_url: &str,
        user_url: &str,
        tls: Option<&service_runtime::tls::InternalTls>,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            auth: service_runtime::grpc::endpoint(auth_url, tls)?,
            user: service_runtime::grpc::endpoint(user_url, tls)?,
            metrics: GrpcMetrics::register(registry, Side::Client)?,
        })
    }

    /// Lazily connecting clients whose connections run on the calling thread's runtime.
    pub fn connect(&self) -> Clients {
        let auth = service_runtime::grpc::traced(&self.auth, self.metrics.clone());
        let user = service_runtime::grpc::traced(&self.user, self.metrics.clone());
        Clients {
            auth: AuthServiceClient::new(auth.clone()),
            user: UserServiceClient::new(user.clone()),
            auth_health: HealthClient::new(auth),
            user_health: HealthClient::new(user),
        }
    }
}
