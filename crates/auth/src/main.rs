//! `auth` binary: a thin shell over [`auth::Application`]; see
//! `service_runtime::lifecycle::run_service`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_runtime::lifecycle::run_service::<auth::Application>(
        "auth",
        auth::Config::from_env(),
        |config| config.serving.probe(),
    )
    .await
}
