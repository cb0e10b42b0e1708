//! `viewer` binary: the trace viewer `make run` starts. Exits 0 on SIGTERM or Ctrl-C, 1 when a
//! port cannot be bound, 64 on a bad setting.

use std::process::ExitCode;
use std::sync::Arc;

use service_runtime::lifecycle::{EXIT_USAGE, ReadyFile, shutdown_signal};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use viewer::{Config, Viewer};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("viewer: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| format!("viewer: cannot listen on {addr}: {e}"))
    };
    let listeners = async {
        Ok::<_, String>((
            bind(config.addr).await?,
            bind(config.otlp_grpc_addr).await?,
            bind(config.otlp_http_addr).await?,
        ))
    };
    let (web, grpc, http) = match listeners.await {
        Ok(listeners) => listeners,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let local = |l: &TcpListener| l.local_addr().expect("a bound address");
    let (web_addr, grpc_addr, http_addr) = (local(&web), local(&grpc), local(&http));
    let viewer = Arc::new(Viewer::new(config.budget));

    let shutdown = CancellationToken::new();
    let web_server = axum::serve(web, viewer::web::router(viewer.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let http_server = axum::serve(
        http,
        viewer::receive::http_router(viewer.clone(), config.max_request_bytes),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let grpc_server = tonic::transport::Server::builder()
        .add_service(viewer::receive::grpc_service(
            viewer.clone(),
            config.max_request_bytes,
        ))
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(grpc),
            shutdown.clone().cancelled_owned(),
        );

    if let Some(ready) = ReadyFile::from_lookup(|name| std::env::var(name).ok()) {
        let addresses = [
            ("http", web_addr),
            ("otlp_grpc", grpc_addr),
            ("otlp_http", http_addr),
        ];
        if let Err(error) = ready.write("viewer", &addresses) {
            eprintln!("viewer: cannot write {}: {error}", ready.path().display());
        }
    }
    eprintln!(
        "viewer: traces at http://{web_addr} (OTLP gRPC {grpc_addr}, HTTP {http_addr}; keeps {} traces, {} MiB)",
        config.budget.traces,
        config.budget.bytes >> 20
    );
    tokio::spawn(async move {
        shutdown_signal().await;
        shutdown.cancel();
    });
    let (web, http, grpc) = tokio::join!(web_server, http_server, grpc_server);
    match (web, http, grpc) {
        (Ok(()), Ok(()), Ok(())) => ExitCode::SUCCESS,
        (web, http, grpc) => {
            eprintln!("viewer: a server failed: {web:?} {http:?} {grpc:?}");
            ExitCode::FAILURE
        }
    }
}
