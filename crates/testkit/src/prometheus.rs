//! A real Prometheus server (Debian's package in CI) as a child process, started the way compose
//! starts it, for tests of scrape configs, PromQL and exemplars.

use serde_json::Value;

/// A Prometheus server process on a free loopback port; killed on drop.
pub struct Prometheus {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `binary` with `config` (and the flags compose uses) on a free port.
    pub fn start(binary: &std::path::Path, config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = std::process::Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // The flags compose starts it with.
            .args([
                "--web.enable-remote-write-receiver",
                "--enable-feature=exemplar-storage",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// An instant query's whole answer.
    pub async fn try_query(
        &self,
        http: &reqwest::Client,
        promql: &str,
    ) -> Result<Value, reqwest::Error> {
        http.get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await?
            .json()
            .await
    }

    /// [`Prometheus::try_query`], panicking on a transport error.
    pub async fn query(&self, http: &reqwest::Client, promql: &str) -> Value {
        self.try_query(http, promql)
            .await
            .unwrap_or_else(|e| panic!("{promql}: {e}"))
    }
}

/// `config` (deploy/prometheus/prometheus.yml, parsed) turned onto `stack`: its gateway, auth and
/// user jobs, names and settings kept, scrape this test's processes, every other job is dropped
/// (its targets are containers that do not run here), and scrapes come every second so rates
/// have samples within seconds.
pub fn scraping(mut config: Value, stack: &crate::stack::Stack) -> Value {
    config["global"]["scrape_interval"] = serde_json::json!("1s");
    let host = |url: &str| -> String {
        let host = url.trim_start_matches("http://");
        host.split('/').next().unwrap_or(host).to_owned()
    };
    let jobs: Vec<Value> = config["scrape_configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|job| {
            let target = match job["job_name"].as_str()? {
                "gateway" => host(&stack.gateway_url),
                "auth" => host(&stack.auth_metrics),
                "user" => host(&stack.user_metrics),
                _ => return None,
            };
            let mut job = job.clone();
            job["static_configs"] = serde_json::json!([{"targets": [target]}]);
            Some(job)
        })
        .collect();
    assert_eq!(
        jobs.len(),
        3,
        "the deploy config scrapes gateway, auth and user"
    );
    config["scrape_configs"] = Value::Array(jobs);
    config
}
