//! Wiring: listeners, the gRPC server with its telemetry layer, health and `/metrics`.

use proto::user::v1::user_service_server::UserServiceServer;
use service_runtime::grpc::GrpcServer;
use service_runtime::lifecycle::{Service, ShutdownSignal};

use crate::config::Config;
use crate::db::Database;
use crate::service::UserApi;

/// Who may call what: only auth creates accounts and reads password hashes; the gateway reads
/// profiles. Enforced when the service speaks mutual TLS.
pub fn caller_policy() -> service_runtime::tls::CallerPolicy {
    service_runtime::tls::CallerPolicy::new(&[
        ("user.v1.UserService/CreateUser", &["auth"]),
        ("user.v1.UserService/GetCredential", &["auth"]),
        ("user.v1.UserService/GetUser", &["gateway"]),
    ])
}

/// The first pause between attempts to reach the database at start-up; it doubles up to
/// [`MAX_CONNECT_BACKOFF`].
const FIRST_CONNECT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);
/// The longest pause between attempts.
const MAX_CONNECT_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects and migrates, retrying with backoff while the database cannot be reached (it is
/// often still starting: a compose `up`, a pod scheduled before its database) for up to
/// `config.database_connect_timeout`, with one line per attempt saying why, rather than exiting
/// at once into a crash loop. Any other failure (a migration error) ends start-up at once.
async fn connect_with_retries(config: &Config, logger: &slog::Logger) -> anyhow::Result<Database> {
    let deadline = tokio::time::Instant::now() + config.database_connect_timeout;
    let mut pause = FIRST_CONNECT_BACKOFF;
    loop {
        let (url, pool_size) = (config.database_url.clone(), config.pool_size);
        // Connecting and migrating block; keep them off the async workers.
        match tokio::task::spawn_blocking(move || Database::connect(&url, pool_size)).await? {
            Ok(db) => return Ok(db),
            Err(crate::error::UserError::Unavailable(why))
                if tokio::time::Instant::now() + pause < deadline =>
            {
                slog::warn!(logger, "database unreachable; retrying";
                    "error" => &why, "retry_in_ms" => pause.as_millis() as u64);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_CONNECT_BACKOFF);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// How often the health watchdog checks the database.
const DATABASE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Reports NOT_SERVING (for the whole server and the user service) while the database cannot
/// be reached, and SERVING again when it can: the gateway's `/readyz` and Kubernetes take the
/// service out of rotation instead of letting every call fail. One log line per change.
async fn watch_database(
    db: Database,
    health: tonic_health::server::HealthReporter,
    logger: slog::Logger,
) {
    use tonic_health::ServingStatus;
    let mut every = tokio::time::interval(DATABASE_CHECK_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut up = true;
    loop {
        every.tick().await;
        let reachable = db.reachable().await;
        if reachable == up {
            continue;
        }
        up = reachable;
        let status = if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in ["", proto::user::v1::user_service_server::SERVICE_NAME] {
            health.set_service_status(service, status).await;
        }
        if up {
            slog::info!(logger, "database reachable again: serving");
        } else {
            slog::warn!(
                logger,
                "database unreachable: reporting NOT_SERVING until it returns"
            );
        }
    }
}

/// A user service with its listeners bound and its database migrated, ready to [`run`](Self::run).
pub struct Application {
    server: GrpcServer,
    db: Database,
    api: UserApi,
    logger: slog::Logger,
}

impl Application {
    /// The server's bound addresses.
    pub fn server(&self) -> &GrpcServer {
        &self.server
    }
}

impl Service for Application {
    type Config = Config;

    /// Binds the listeners (port 0 picks free ports) and connects and migrates the database.
    async fn build(
        config: Config,
        logger: slog::Logger,
        registry: prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let server = GrpcServer::bind(
            &config.serving,
            "user",
            caller_policy(),
            registry,
            logger.clone(),
        )
        .await?;
        let db = connect_with_retries(&config, &logger).await?;
        slog::info!(logger, "database ready"; "db.system" => db.backend().system());
        Ok(Self {
            server,
            db: db.clone(),
            api: UserApi::new(db, config.min_bcrypt_cost, logger.clone()),
            logger,
        })
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight calls finish.
    async fn run(self, shutdown: ShutdownSignal) -> anyhow::Result<()> {
        let watchdog = tokio::spawn(watch_database(self.db, self.server.health(), self.logger));
        // Once draining starts, NOT_SERVING stays, whatever the database does.
        let shutdown = async move {
            shutdown.await;
            watchdog.abort();
        };
        self.server
            .serve(
                UserServiceServer::new(self.api),
                &proto::methods(proto::user::v1::user_service_server::SERVICE_NAME),
                shutdown,
            )
            .await?;
        Ok(())
    }
}
