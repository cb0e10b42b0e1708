//! `user` binary: a thin shell over [`user::Application`]; see `telemetry::lifecycle::run_service`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    telemetry::lifecycle::run_service(
        "user",
        user::Config::from_env(),
        // With mutual TLS on, the probe asks the plain-text health port.
        |config| telemetry::lifecycle::Probe::Grpc {
            addr: config.health_addr.unwrap_or(config.grpc_addr),
        },
        |config, logger, registry, shutdown| async move {
            user::Application::build(config, logger, registry)
                .await?
                .run(shutdown)
                .await
        },
    )
    .await
}
