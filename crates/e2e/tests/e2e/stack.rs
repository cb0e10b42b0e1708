use std::time::Duration;

use serde_json::{Value, json};
use testkit::process::Service;

pub const PASSWORD: &str = "e2e-Pa55word-that-must-never-leak";
pub const JWT_SECRET: &str = "e2e-jwt-secret-0123456789abcdef-0123";
const STARTUP: Duration = Duration::from_secs(30);

/// The three services as child processes, killed on drop.
pub struct Stack {
    pub gateway: Service,
    pub auth: Service,
    pub user: Service,
    pub gateway_url: String,
    pub auth_metrics: String,
    pub user_metrics: String,
    pub http: reqwest::Client,
    _database: Option<testkit::postgres::TestDatabase>,
    _dir: tempfile::TempDir,
}

/// Finds `key` in the first log line whose `msg` is `msg`, waiting for the line to appear.
async fn logged(service: &Service, msg: &str, key: &str) -> String {
    testkit::eventually(
        &format!("{}: {msg:?} log line", service.name),
        STARTUP,
        || {
            service
                .json_logs()
                .into_iter()
                .find(|line| line["msg"] == msg)
                .and_then(|line| line[key].as_str().map(str::to_owned))
        },
    )
    .await
}

fn common_env(otlp_endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint.to_owned()),
        // Export quickly so the test does not wait out the 5 s default batch delay.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=e2e".to_owned(),
        ),
        ("RUST_LOG", "info".to_owned()),
    ]
}

impl Stack {
    /// Starts user (PostgreSQL when reachable, always in CI; SQLite otherwise), auth and gateway
    /// on ports they pick themselves, and waits until the gateway reports ready.
    pub async fn start(otlp_endpoint: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = testkit::postgres::TestDatabase::create();
        let database_url = match &database {
            Some(db) => db.url().to_owned(),
            None => {
                eprintln!("e2e: running the user service on SQLite instead");
                format!("sqlite://{}", dir.path().join("users.db").display())
            }
        };
        let any_port = "127.0.0.1:0".to_owned();

        let mut env = common_env(otlp_endpoint);
        env.extend([
            ("GRPC_ADDR", any_port.clone()),
            ("METRICS_ADDR", any_port.clone()),
            ("DATABASE_URL", database_url),
        ]);
        let user = Service::spawn("user", &env);
        let user_grpc = logged(&user, "grpc server listening", "grpc.addr").await;
        let user_metrics = logged(&user, "grpc server listening", "metrics.addr").await;

        let mut env = common_env(otlp_endpoint);
        env.extend([
            ("GRPC_ADDR", any_port.clone()),
            ("METRICS_ADDR", any_port.clone()),
            ("USER_URL", format!("http://{user_grpc}")),
            ("JWT_SECRET", JWT_SECRET.to_owned()),
            ("BCRYPT_COST", "4".to_owned()),
        ]);
        let auth = Service::spawn("auth", &env);
        let auth_grpc = logged(&auth, "grpc server listening", "grpc.addr").await;
        let auth_metrics = logged(&auth, "grpc server listening", "metrics.addr").await;

        let mut env = common_env(otlp_endpoint);
        env.extend([
            ("HTTP_ADDR", any_port),
            ("AUTH_URL", format!("http://{auth_grpc}")),
            ("USER_URL", format!("http://{user_grpc}")),
            ("HTTP_WORKERS", "2".to_owned()),
        ]);
        let gateway = Service::spawn("gateway", &env);
        let gateway_url = logged(&gateway, "gateway listening", "url").await;

        let stack = Self {
            gateway,
            auth,
            user,
            gateway_url,
            auth_metrics: format!("http://{auth_metrics}/metrics"),
            user_metrics: format!("http://{user_metrics}/metrics"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _database: database,
            _dir: dir,
        };
        stack.wait_ready().await;
        stack
    }

    async fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + STARTUP;
        loop {
            let ready = self
                .http
                .get(format!("{}/readyz", self.gateway_url))
                .send()
                .await;
            if ready.is_ok_and(|response| response.status() == 200) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the stack never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.gateway_url))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn signup(&self, email: &str) -> reqwest::Response {
        self.post(
            "/api/v1/signup",
            json!({"email": email, "password": PASSWORD, "name": "E2E"}),
        )
        .await
    }

    pub async fn login(&self, email: &str) -> reqwest::Response {
        self.post(
            "/api/v1/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .await
    }

    pub async fn me(&self, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/api/v1/users/me", self.gateway_url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn metrics(&self, url: &str) -> String {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Every line the three processes printed, stdout and stderr.
    pub fn all_output(&self) -> Vec<String> {
        [&self.gateway, &self.auth, &self.user]
            .iter()
            .flat_map(|s| s.stdout().into_iter().chain(s.stderr()))
            .collect()
    }
}

/// The `x-trace-id` header of `response`.
pub fn trace_id(response: &reqwest::Response) -> String {
    response.headers()["x-trace-id"]
        .to_str()
        .unwrap()
        .to_owned()
}
