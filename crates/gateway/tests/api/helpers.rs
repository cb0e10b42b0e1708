use serde_json::{Value, json};

pub use auth::test_support::JWT_SECRET as SECRET;
pub const PASSWORD: &str = "correct horse battery staple";

/// The whole stack in this process on free ports, stopped when dropped.
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    _gateway: gateway::test_support::Running,
    _auth: Option<auth::test_support::Running>,
    _user: Option<user::test_support::Running>,
    _dir: tempfile::TempDir,
    _dead: Option<testkit::DeadEndpoint>,
    _database: Option<testkit::postgres::TestDatabase>,
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
        // PostgreSQL when reachable (always in CI), SQLite otherwise.
        let (database, url) = testkit::postgres::postgres_or_sqlite(dir.path());
        let user = user::test_support::spawn_on(&url).await;
        let auth = auth::test_support::spawn(auth::test_support::config(user.url())).await;
        let gateway = gateway::test_support::spawn(gateway::test_support::config(
            &auth.url(),
            &user.url(),
            settings,
        ));
        Self {
            _auth: Some(auth),
            _user: Some(user),
            _database: database,
            ..Self::new(gateway, dir)
        }
    }

    /// A gateway whose auth and user services are down.
    pub async fn spawn_without_backends() -> Self {
        testkit::init_tracing();
        let dead = testkit::DeadEndpoint::reserve();
        let gateway = gateway::test_support::spawn(gateway::test_support::config(
            &dead.url(),
            &dead.url(),
            &[],
        ));
        Self {
            _dead: Some(dead),
            ..Self::new(gateway, tempfile::tempdir().unwrap())
        }
    }

    fn new(gateway: gateway::test_support::Running, dir: tempfile::TempDir) -> Self {
        Self {
            address: gateway.url(),
            http: reqwest::Client::new(),
            _gateway: gateway,
            _auth: None,
            _user: None,
            _dir: dir,
            _dead: None,
            _database: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// `GET path`, its body as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    /// The gateway's `/metrics`.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
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
