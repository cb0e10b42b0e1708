//! `trace` (`make trace ID=<trace id>`): one trace as a tree with its log lines, from the
//! embedded viewer and `make run`'s log files, or (`TRACE_SOURCE=tempo`) from Tempo and Loki.
//! Without an id, the slowest and the most recent failed trace of the last 15 minutes. One
//! line and exit 1 when the backend cannot be reached or has no such trace.

use std::process::ExitCode;
use std::time::Duration;

use viewer::sources::Source;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let source = match Source::from_lookup(|name| std::env::var(name).ok()) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("trace: {error}");
            return ExitCode::from(64);
        }
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let ids: Vec<(String, String)> = match std::env::args().nth(1).filter(|a| !a.is_empty()) {
        Some(id) => vec![(String::new(), id)],
        None => match source.notable(&http).await {
            Ok(found) if found.is_empty() => {
                eprintln!("trace: no traces in the last 15 minutes; send a request first");
                return ExitCode::FAILURE;
            }
            Ok(found) => found,
            Err(error) => {
                eprintln!("trace: {error}");
                return ExitCode::FAILURE;
            }
        },
    };
    for (what, id) in ids {
        if !what.is_empty() {
            println!("== the {what} request of the last 15 minutes");
        }
        let spans = match source.spans(&http, &id).await {
            Ok(spans) => spans,
            Err(error) => {
                eprintln!("trace: {error}");
                return ExitCode::FAILURE;
            }
        };
        let logs = match source.logs(&http, &id).await {
            Ok(logs) => logs,
            Err(error) => {
                eprintln!("trace: {error} (showing the spans without log lines)");
                Vec::new()
            }
        };
        println!("{}", viewer::tree::render(&id, &spans, &logs));
    }
    ExitCode::SUCCESS
}
