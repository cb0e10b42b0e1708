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
