//! `gateway` binary: configuration, telemetry, then [`gateway::Application`] until SIGTERM/SIGINT.
//!
//! `#[tokio::main]` rather than `#[actix_web::main]`: the telemetry providers must be built on a
//! multi-threaded runtime (actix's is single-threaded per worker), and actix-web runs happily
//! inside it, starting its own worker threads.

use std::process::ExitCode;

use telemetry::lifecycle::{EXIT_USAGE, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match gateway::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gateway: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let telemetry = match telemetry::init("gateway") {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("gateway: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let logger = telemetry.logger().clone();
    let app =
        match gateway::Application::build(config, logger.clone(), telemetry.registry().clone()) {
            Ok(app) => app,
            Err(error) => {
                slog::error!(logger, "gateway failed to start"; "error" => format!("{error:#}"));
                return ExitCode::FAILURE;
            }
        };
    let outcome = app.run(shutdown_signal()).await;
    if let Err(error) = &outcome {
        slog::error!(logger, "gateway stopped with an error"; "error" => format!("{error:#}"));
    }
    slog::info!(logger, "gateway stopped");
    drop(telemetry); // flush spans and logs before exit
    if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
