//! The viewer and `trace` as a user meets them: the `make run` layout (three services and the
//! viewer as separate processes, each service logging to a file), a real browser on the page,
//! and the viewer under load and under bad input.

#![allow(unreachable_pub)] // helpers are `pub` for sibling test modules, not for export

mod browser;
mod budget;
mod run_layout;

use testkit::process::Service;

/// A running viewer process on ports it picked, and where it listens.
pub struct ViewerProcess {
    /// The process.
    pub process: Service,
    /// `http://127.0.0.1:<port>`: the page and API.
    pub url: String,
    /// `http://127.0.0.1:<port>`: OTLP/gRPC.
    pub otlp_grpc: String,
    /// `http://127.0.0.1:<port>/v1/traces`: OTLP/HTTP.
    pub otlp_http: String,
    _dir: tempfile::TempDir,
}

impl ViewerProcess {
    /// Starts `viewer` with `env` added, on free ports, and waits until it listens.
    pub async fn start(env: &[(&'static str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("viewer.ready.json");
        let mut all = vec![
            ("VIEWER_ADDR", "127.0.0.1:0".to_owned()),
            ("VIEWER_OTLP_GRPC_ADDR", "127.0.0.1:0".to_owned()),
            ("VIEWER_OTLP_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("READY_FILE", ready.display().to_string()),
        ];
        all.extend(env.iter().cloned());
        let process = Service::spawn("viewer", &all);
        let addresses = testkit::stack::ready_file(&process, &ready).await;
        let at = |key: &str| format!("http://{}", addresses[key].as_str().unwrap());
        Self {
            url: at("http"),
            otlp_grpc: at("otlp_grpc"),
            otlp_http: format!("{}/v1/traces", at("otlp_http")),
            process,
            _dir: dir,
        }
    }

    /// `/metrics`, as text.
    pub async fn metrics(&self) -> String {
        testkit::get_text(&format!("{}/metrics", self.url)).await
    }

    /// One sample of `/metrics` (a metric without labels).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }
}
