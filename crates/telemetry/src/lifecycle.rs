//! Process lifecycle shared by the services: the shutdown signal and the exit codes.

/// Exit code for a bad configuration value (`EX_USAGE` from sysexits.h).
pub const EXIT_USAGE: u8 = 64;

/// Completes on SIGTERM (what Kubernetes and `docker stop` send) or SIGINT (Ctrl-C).
///
/// Servers pass it as their shutdown future: they stop accepting, let in-flight requests finish,
/// and then `main` drops the telemetry guard, which flushes the last spans.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, never complete rather than shut down at once.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The whole `main` of a service: configuration, telemetry, then `serve` until SIGTERM/SIGINT.
///
/// A bad setting prints one line naming it and exits [`EXIT_USAGE`]; a failure to start or a
/// server error is logged as JSON and exits 1; a clean shutdown flushes spans and logs and exits
/// 0. `serve` receives the logger, the registry and the shutdown signal. Call it from inside the
/// multi-threaded Tokio runtime (`#[tokio::main]`): the OTLP exporter needs its reactor.
pub async fn run_service<C, F, Fut, E>(
    service: &'static str,
    config: Result<C, crate::ConfigError>,
    serve: F,
) -> std::process::ExitCode
where
    F: FnOnce(C, slog::Logger, prometheus::Registry, ShutdownSignal) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    use std::process::ExitCode;
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{service}: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let telemetry = match crate::init(service) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{service}: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let logger = telemetry.logger().clone();
    let outcome = serve(
        config,
        logger.clone(),
        telemetry.registry().clone(),
        Box::pin(shutdown_signal()),
    )
    .await;
    let code = match outcome {
        Ok(()) => {
            slog::info!(logger, "{} stopped", service);
            ExitCode::SUCCESS
        }
        Err(error) => {
            // `{:#}` keeps anyhow's cause chain on one line.
            slog::error!(logger, "{} stopped with an error", service; "error" => format!("{error:#}"));
            ExitCode::FAILURE
        }
    };
    drop(telemetry); // flush spans and logs before exit
    code
}

/// The future [`run_service`] hands to a service: completes on SIGTERM or SIGINT.
pub type ShutdownSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;
