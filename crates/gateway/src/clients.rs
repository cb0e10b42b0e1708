//! gRPC clients for auth and user, each over a traced channel (client spans, context injection,
//! `grpc_client_*` metrics), plus health clients for `/readyz`.

use proto::auth::v1::auth_service_client::AuthServiceClient;
use proto::user::v1::user_service_client::UserServiceClient;
use telemetry::grpc::ClientService;
use telemetry::metrics::{GrpcMetrics, Side};
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

/// A transport with trace propagation and client metrics.
pub type Traced = ClientService<Channel>;

/// Everything the gateway calls. Cheap to clone: channels are shared handles.
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

impl Clients {
    /// Lazily connecting clients, over mutual TLS when `tls` is given; registers
    /// `grpc_client_*` metrics in `registry`.
    pub fn new(
        auth_url: &str,
        user_url: &str,
        tls: Option<&telemetry::tls::InternalTls>,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let metrics = GrpcMetrics::register(registry, Side::Client)?;
        let auth = telemetry::grpc::channel(auth_url, metrics.clone(), tls)?;
        let user = telemetry::grpc::channel(user_url, metrics, tls)?;
        Ok(Self {
            auth: AuthServiceClient::new(auth.clone()),
            user: UserServiceClient::new(user.clone()),
            auth_health: HealthClient::new(auth),
            user_health: HealthClient::new(user),
        })
    }
}
