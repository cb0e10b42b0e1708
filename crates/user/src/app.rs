//! Wiring: listeners, the gRPC server with its telemetry layer, health and `/metrics`.

use std::future::Future;
use std::net::SocketAddr;

use proto::user::v1::user_service_server::UserServiceServer;
use telemetry::grpc::Listeners;

use crate::config::Config;
use crate::db::Database;
use crate::service::UserApi;

/// A user service with its listeners bound and its database migrated, ready to [`run`](Self::run).
pub struct Application {
    listeners: Listeners,
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
        let listeners = Listeners::bind(config.grpc_addr, config.metrics_addr).await?;
        let (url, pool_size) = (config.database_url.clone(), config.pool_size);
        // Connecting and migrating block; keep them off the async workers.
        let db = tokio::task::spawn_blocking(move || Database::connect(&url, pool_size)).await??;
        slog::info!(logger, "database ready"; "db.system" => db.backend().system());
        Ok(Self {
            listeners,
            api: UserApi::new(db, config.min_bcrypt_cost, logger.clone()),
            logger,
            registry,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.listeners.grpc_addr()
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
                self.registry,
                self.logger,
                shutdown,
            )
            .await?;
        Ok(())
    }
}
