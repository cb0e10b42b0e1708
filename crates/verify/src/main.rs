//! `verify` binary (`make verify`): runs the walk-through against a running stack; exit 0 when
//! every link holds, 1 at the first broken one (named, with where to look), 64 on a bad setting.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match verify::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("verify: {error}");
            return ExitCode::from(64);
        }
    };
    println!(
        "verify: one request through {}, then Tempo {}, Loki {}, Prometheus {}, Grafana {} \
         (each may take up to {:?})",
        config.gateway,
        config.tempo,
        config.loki,
        config.prometheus,
        config.grafana,
        config.timeout
    );
    let mut stdout = std::io::stdout();
    match verify::run(&config, &mut stdout).await {
        Ok(()) => {
            println!(
                "verify: the whole chain holds: one trace across gateway, auth and user, its logs, \
                 its metrics, and Grafana reaching all three"
            );
            ExitCode::SUCCESS
        }
        Err(broken) => {
            eprintln!("verify: {broken}");
            ExitCode::FAILURE
        }
    }
}
