use std::net::SocketAddr;

use secrecy::SecretString;
use serde_json::{Value, json};

pub const SECRET: &str = "gateway-test-secret-0123456789abcdef";
pub const PASSWORD: &str = "correct horse battery staple";

/// The whole stack in this process on free ports, stopped when dropped.
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    _dead: Option<testkit::DeadEndpoint>,
    _database: Option<testkit::postgres::TestDatabase>,
}

/// The user service on PostgreSQL when reachable (always in CI), SQLite otherwise.
async fn start_user(
    dir: &std::path::Path,
    stop: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) -> (String, Option<testkit::postgres::TestDatabase>) {
    let (database, url) = testkit::postgres::postgres_or_sqlite(dir);
    let config = user::Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        health_addr: None,
        tls: None,
        ready_file: None,
        database_url: user::db::DatabaseUrl::parse(&url).unwrap(),
        pool_size: 4,
        // The suites hash at the minimum cost; production uses 12 in auth and user.
        min_bcrypt_cost: 4,
        database_connect_timeout: std::time::Duration::from_secs(10),
    };
    let app = user::Application::build(
        config,
        telemetry::logs::test_logger("user"),
        telemetry::metrics::registry(),
    )
    .await
    .expect("user builds");
    let url = format!("http://{}", app.grpc_addr());
    let (tx, rx) = testkit::stopper();
    stop.push(tx);
    tokio::spawn(app.run(rx));
    (url, database)
}

async fn start_auth(user_url: String, stop: &mut Vec<tokio::sync::oneshot::Sender<()>>) -> String {
    let config = auth::Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        health_addr: None,
        tls: None,
        ready_file: None,
        user_url,
        jwt_secret: SecretString::from(SECRET.to_owned()),
        jwt_ttl_seconds: 900,
        bcrypt_cost: 4,
        bcrypt_concurrency: 2,
        bcrypt_queue_timeout: std::time::Duration::from_millis(
            auth::config::DEFAULT_BCRYPT_QUEUE_TIMEOUT_MS,
        ),
    };
    let app = auth::Application::build(
        config,
        telemetry::logs::test_logger("auth"),
        telemetry::metrics::registry(),
    )
    .await
    .expect("auth builds");
    let url = format!("http://{}", app.grpc_addr());
    let (tx, rx) = testkit::stopper();
    stop.push(tx);
    tokio::spawn(app.run(rx));
    url
}

fn start_gateway(
    auth_url: String,
    user_url: String,
    settings: &[(&str, &str)],
    stop: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) -> SocketAddr {
    // The settings a deployment would give it; rate limits off unless a test turns them on, so
    // tests that send many requests test what they are about.
    let mut env: std::collections::HashMap<String, String> = [
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("AUTH_URL", auth_url.as_str()),
        ("USER_URL", user_url.as_str()),
        ("MAX_BODY_BYTES", "4096"),
        ("HTTP_WORKERS", "1"),
        ("RATE_LIMIT_SIGNUP_PER_IP", "off"),
        ("RATE_LIMIT_LOGIN_PER_IP", "off"),
        ("RATE_LIMIT_LOGIN_PER_ACCOUNT", "off"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.extend(
        settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let config = gateway::Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let app = gateway::Application::build(
        config,
        telemetry::logs::test_logger("gateway"),
        telemetry::metrics::registry(),
    )
    .expect("gateway builds");
    let addr = app.addr();
    let (tx, rx) = testkit::stopper();
    stop.push(tx);
    tokio::spawn(app.run(rx));
    addr
}

impl TestApp {
    /// Gateway, auth and user, all up.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// [`TestApp::spawn`] with gateway `settings` (environment variable, value) added.
    pub async fn spawn_with(settings: &[(&str, &str)]) -> Self {
        testkit::init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let mut stop = Vec::new();
        let (user_url, database) = start_user(dir.path(), &mut stop).await;
        let auth_url = start_auth(user_url.clone(), &mut stop).await;
        let addr = start_gateway(auth_url, user_url, settings, &mut stop);
        let mut app = Self::new(addr, stop, dir);
        app._database = database;
        app
    }

    /// A gateway whose auth and user services are down.
    pub async fn spawn_without_backends() -> Self {
        testkit::init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let mut stop = Vec::new();
        let dead = testkit::DeadEndpoint::reserve();
        let addr = start_gateway(dead.url(), dead.url(), &[], &mut stop);
        let mut app = Self::new(addr, stop, dir);
        app._dead = Some(dead);
        app
    }

    fn new(
        addr: SocketAddr,
        stop: Vec<tokio::sync::oneshot::Sender<()>>,
        dir: tempfile::TempDir,
    ) -> Self {
        Self {
            address: format!("http://{addr}"),
            http: reqwest::Client::new(),
            _stop: stop,
            _dir: dir,
            _dead: None,
            _database: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn signup(&self, email: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/signup",
            &json!({"email": email, "password": PASSWORD, "name": "Ada"}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn me(&self, authorization: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.url("/api/v1/users/me"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send().await.unwrap()
    }

    /// Signs up and logs in; returns the access token.
    pub async fn token_for(&self, email: &str) -> String {
        assert_eq!(self.signup(email).await.status(), 201);
        let body: Value = self.login(email, PASSWORD).await.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

/// Asserts `response` is an error with `status` and `code`, and that its body is the standard
/// `{code, message, trace_id}` whose trace id matches the `x-trace-id` header. Returns the body.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(
        response.status().as_u16(),
        status,
        "expected {status} {code}"
    );
    let header = response
        .headers()
        .get("x-trace-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.expect("error bodies are JSON");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let trace_id = body["trace_id"]
        .as_str()
        .expect("error bodies carry the trace id");
    assert_eq!(trace_id.len(), 32, "{body}");
    assert_eq!(
        Some(trace_id.to_owned()),
        header,
        "body and header name the same trace"
    );
    body
}
