//! Wiring: listeners, the user-service client, the gRPC server with telemetry, health, `/metrics`.

use std::future::Future;
use std::net::SocketAddr;

use proto::auth::v1::auth_service_server::AuthServiceServer;
use proto::user::v1::user_service_client::UserServiceClient;
use telemetry::grpc::Listeners;
use telemetry::metrics::{GrpcMetrics, Side};

use crate::config::Config;
use crate::service::AuthApi;
use crate::tokens::Tokens;

/// Who may call what: the gateway, and only the gateway, signs up, logs in and validates
/// tokens. Enforced when the service speaks mutual TLS.
pub fn caller_policy() -> telemetry::tls::CallerPolicy {
    telemetry::tls::CallerPolicy::new(&[
        ("auth.v1.AuthService/Signup", &["gateway"]),
        ("auth.v1.AuthService/Login", &["gateway"]),
        ("auth.v1.AuthService/ValidateToken", &["gateway"]),
    ])
}

/// An auth service with its listeners bound, ready to [`run`](Self::run).
pub struct Application {
    listeners: Listeners,
    tls: Option<telemetry::tls::InternalTls>,
    api: AuthApi,
    logger: slog::Logger,
    registry: prometheus::Registry,
}

impl Application {
    /// Binds both listeners (port 0 picks free ports) and prepares the user-service client.
    pub async fn build(
        config: Config,
        logger: slog::Logger,
        registry: prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let listeners = Listeners::bind(config.grpc_addr, config.metrics_addr, config.health_addr)
            .await?
            .announce_to(config.ready_file.clone(), "auth");
        let client_metrics = GrpcMetrics::register(&registry, Side::Client)?;
        let users = UserServiceClient::new(telemetry::grpc::channel(
            &config.user_url,
            client_metrics,
            config.tls.as_ref(),
        )?);
        let tokens = Tokens::new(&config.jwt_secret, config.jwt_ttl_seconds);
        let hasher = crate::password::Hasher::new(
            config.bcrypt_cost,
            config.bcrypt_concurrency,
            config.bcrypt_queue_timeout,
        );
        let api = AuthApi::new(users, tokens, hasher, logger.clone()).await?;
        Ok(Self {
            listeners,
            tls: config.tls,
            api,
            logger,
            registry,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.listeners.grpc_addr()
    }

    /// The bound health-only address, if any.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.listeners.health_addr()
    }

    /// The bound `/metrics` address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.listeners.metrics_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight calls finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let service = AuthServiceServer::new(self.api);
        self.listeners
            .serve(
                service,
                &proto::methods(proto::auth::v1::auth_service_server::SERVICE_NAME),
                self.tls.map(|tls| (tls, caller_policy())),
                self.registry,
                self.logger,
                shutdown,
            )
            .await?;
        Ok(())
    }
}
