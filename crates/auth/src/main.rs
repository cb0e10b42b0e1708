//! `auth` binary: configuration, telemetry, then [`auth::Application`] until SIGTERM/SIGINT.

use std::process::ExitCode;

use telemetry::lifecycle::{EXIT_USAGE, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match auth::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("auth: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Inside the runtime: the OTLP exporter's channel needs a reactor.
    let telemetry = match telemetry::init("auth") {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("auth: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let logger = telemetry.logger().clone();
    let app = match auth::Application::build(config, logger.clone(), telemetry.registry().clone())
        .await
    {
        Ok(app) => app,
        Err(error) => {
            slog::error!(logger, "auth service failed to start"; "error" => format!("{error:#}"));
            return ExitCode::FAILURE;
        }
    };
    let outcome = app.run(shutdown_signal()).await;
    if let Err(error) = &outcome {
        slog::error!(logger, "auth service stopped with an error"; "error" => format!("{error:#}"));
    }
    slog::info!(logger, "auth service stopped");
    drop(telemetry); // flush spans and logs before exit
    if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
