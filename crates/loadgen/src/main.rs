//! `loadgen` binary: reads its settings, runs until the duration ends or SIGTERM/Ctrl-C, prints the
//! summary and exits 1 if any response was not the one its request should get.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match loadgen::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("loadgen: {error}");
            return std::process::ExitCode::from(service_runtime::lifecycle::EXIT_USAGE);
        }
    };
    println!("{}", config.banner());
    let summary = loadgen::run(config, service_runtime::lifecycle::shutdown_signal()).await;
    println!("{summary}");
    if summary.unexpected() == 0 && summary.total() > 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
