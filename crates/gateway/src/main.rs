//! `gateway` binary: a thin shell over [`gateway::Application`]; see
//! `service_runtime::lifecycle::run_service`.
//!
//! `#[tokio::main]` rather than `#[actix_web::main]`: the telemetry providers must be built on a
//! multi-threaded runtime (actix's is single-threaded per worker), and actix-web runs happily
//! inside it, starting its own worker threads.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_runtime::lifecycle::run_service::<gateway::Application>(
        "gateway",
        gateway::Config::from_env(),
        |config| service_runtime::lifecycle::Probe::Http {
            addr: config.http_addr,
            path: "/readyz",
        },
    )
    .await
}
