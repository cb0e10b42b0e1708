//! `user` binary: a thin shell over [`user::Application`]; see
//! `service_runtime::lifecycle::run_service`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_runtime::lifecycle::run_service::<user::Application>(
        "user",
        user::Config::from_env(),
        |config| config.serving.probe(),
    )
    .await
}
