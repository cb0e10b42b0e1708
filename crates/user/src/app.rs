//! Wiring: listeners, the gRPC server with its telemetry layer, health and `/metrics`.

use std::future::Future;
use std::net::SocketAddr;

use proto::user::v1::user_service_server::UserServiceServer;
use telemetry::grpc::Listeners;

use crate::config::Config;
use crate::db::Database;
use crate::service::UserApi;

/// Who may call what: only auth creates accounts and reads password hashes; the gateway reads
/// profiles. Enforced when the service speaks mutual TLS.
pub fn caller_policy() -> telemetry::tls::CallerPolicy {
    telemetry::tls::CallerPolicy::new(&[
        ("user.v1.UserService/CreateUser", &["auth"]),
        ("user.v1.UserService/GetCredential", &["auth"]),
        ("user.v1.UserService/GetUser", &["gateway"]),
    ])
}

/// A user service with its listeners bound and its database migrated, ready to [`run`](Self::run).
pub struct Application {
    listeners: Listeners,
    tls: Option<telemetry::tls::InternalTls>,
    api: UserApi,
    logger: slog::Logger,
    registry: prometheus::Registry,
}

impl Application {
    /// Binds both listeners (port 0 picks free ports) and connects and migrates the database.
    pub async fn build(
        config: Config,
        logger: slog::Logger,
        registry: prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let listeners =
            Listeners::bind(config.grpc_addr, config.metrics_addr, config.health_addr).await?;
        let (url, pool_size) = (config.database_url.clone(), config.pool_size);
        // Connecting and migrating block; keep them off the async workers.
        let db = tokio::task::spawn_blocking(move || Database::connect(&url, pool_size)).await??;
        slog::info!(logger, "database ready"; "db.system" => db.backend().system());
        Ok(Self {
            listeners,
            tls: config.tls,
            api: UserApi::new(db, config.min_bcrypt_cost, logger.clone()),
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
        let service = UserServiceServer::new(self.api);
        self.listeners
            .serve(
                service,
                &proto::methods(proto::user::v1::user_service_server::SERVICE_NAME),
                self.tls.map(|tls| (tls, caller_policy())),
                self.registry,
                self.logger,
                shutdown,
            )
            .await?;
        Ok(())
    }
}
