//! Wiring: the user-service client and the gRPC server (telemetry, health, `/metrics`, TLS).

use proto::auth::v1::auth_service_server::AuthServiceServer;
use proto::user::v1::user_service_client::UserServiceClient;
use service_runtime::grpc::GrpcServer;
use service_runtime::lifecycle::{Service, ShutdownSignal};
use telemetry::metrics::{GrpcMetrics, Side};

use crate::config::Config;
use crate::service::AuthApi;
use crate::tokens::Tokens;

/// Who may call what: the gateway, and only the gateway, signs up, logs in and validates
/// tokens. Enforced when the service speaks mutual TLS.
pub fn caller_policy() -> service_runtime::tls::CallerPolicy {
    service_runtime::tls::CallerPolicy::new(&[
        ("auth.v1.AuthService/Signup", &["gateway"]),
        ("auth.v1.AuthService/Login", &["gateway"]),
        ("auth.v1.AuthService/ValidateToken", &["gateway"]),
    ])
}

/// An auth service with its listeners bound, ready to [`run`](Self::run).
pub struct Application {
    server: GrpcServer,
    api: AuthApi,
}

impl Application {
    /// The server's bound addresses.
    pub fn server(&self) -> &GrpcServer {
        &self.server
    }
}

impl Service for Application {
    type Config = Config;

    /// Binds the listeners (port 0 picks free ports) and prepares the user-service client.
    async fn build(
        config: Config,
        logger: slog::Logger,
        registry: prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let client_metrics = GrpcMetrics::register(&registry, Side::Client)?;
        let users = UserServiceClient::new(service_runtime::grpc::channel(
            &config.user_url,
            client_metrics,
            config.serving.tls.as_ref(),
        )?);
        let server = GrpcServer::bind(
            &config.serving,
            "auth",
            caller_policy(),
            registry,
            logger.clone(),
        )
        .await?;
        let tokens = Tokens::new(&config.jwt_secret, config.jwt_ttl_seconds);
        let hasher = crate::password::Hasher::new(
            config.bcrypt_cost,
            config.bcrypt_concurrency,
            config.bcrypt_queue_timeout,
        );
        let api = AuthApi::new(users, tokens, hasher, logger).await?;
        Ok(Self { server, api })
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight calls finish.
    async fn run(self, shutdown: ShutdownSignal) -> anyhow::Result<()> {
        self.server
            .serve(
                AuthServiceServer::new(self.api),
                &proto::methods(proto::auth::v1::auth_service_server::SERVICE_NAME),
                shutdown,
            )
            .await?;
        Ok(())
    }
}
