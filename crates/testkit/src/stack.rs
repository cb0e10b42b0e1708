//! The whole system as three child processes: what the end-to-end tests and the benchmark run.

use std::time::Duration;

use serde_json::{Value, json};

use crate::process::Service;

/// The password every stack user signs up with; tests search all output for it.
pub const PASSWORD: &str = "e2e-Pa55word-that-must-never-leak";
/// The signing key the stack's auth service uses.
pub const JWT_SECRET: &str = "e2e-jwt-secret-0123456789abcdef-0123";
const STARTUP: Duration = Duration::from_secs(30);

/// The three services as child processes, killed on drop.
pub struct Stack {
    /// The gateway process.
    pub gateway: Service,
    /// The auth process.
    pub auth: Service,
    /// The user process.
    pub user: Service,
    /// `http://127.0.0.1:<port>`.
    pub gateway_url: String,
    /// auth's gRPC address, `127.0.0.1:<port>`.
    pub auth_grpc: String,
    /// user's gRPC address, `127.0.0.1:<port>`.
    pub user_grpc: String,
    /// auth's plain-text health-only address, `127.0.0.1:<port>` (the gRPC port speaks mTLS).
    pub auth_health: String,
    /// user's plain-text health-only address.
    pub user_health: String,
    /// auth's `/metrics` URL.
    pub auth_metrics: String,
    /// user's `/metrics` URL.
    pub user_metrics: String,
    /// A client with a request timeout.
    pub http: reqwest::Client,
    /// Each service's environment, to start it again in [`Stack::restart`].
    envs: Vec<(&'static str, Vec<(&'static str, String)>)>,
    /// Processes [`Stack::restart`] replaced, kept for [`Stack::all_output`].
    retired: Vec<Service>,
    _database: Option<crate::postgres::TestDatabase>,
    _dir: tempfile::TempDir,
}

/// The addresses `service` wrote to `path`, its `READY_FILE`, once it listens: waits for the
/// file, which appears whole.
pub async fn ready_file(service: &Service, path: &std::path::Path) -> Value {
    crate::eventually(
        &format!("{}: its ready file {}", service.name, path.display()),
        STARTUP,
        || {
            let text = std::fs::read_to_string(path).ok()?;
            serde_json::from_str(&text).ok()
        },
    )
    .await
}

/// One address from a ready file.
fn address(ready: &Value, key: &str) -> String {
    ready[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key:?} address in the ready file {ready}"))
        .to_owned()
}

/// The database the user service of a [`Stack`] keeps its rows in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Database {
    /// A throw-away PostgreSQL database when PostgreSQL is reachable (always under CI),
    /// SQLite otherwise (with a `NOTE:` line).
    #[default]
    PostgresIfReachable,
    /// SQLite in the stack's directory, as `make run` has it.
    Sqlite,
}

/// Where the three processes' stdout goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Logs {
    /// Read line by line into the test, for [`Service::json_logs`].
    #[default]
    Captured,
    /// Into a file per process in the stack's directory, as a container runtime keeps them:
    /// nothing reads them while the stack runs (the benchmark's choice).
    Files,
}

/// How [`Stack::start_with_options`] starts the stack.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The user service's database.
    pub database: Database,
    /// Where stdout goes.
    pub logs: Logs,
    /// A program (and its arguments) each service is started through, e.g. valgrind.
    pub launcher: &'static [&'static str],
}

/// A process's environment: its own `settings`, then the stack-wide defaults, then the
/// caller's `extra` ones, later entries winning.
fn env_for(
    settings: Vec<(&'static str, String)>,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = settings;
    env.extend([
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=e2e".to_owned(),
        ),
        ("RUST_LOG", "info".to_owned()),
        // The minimum cost keeps the suites fast; production uses bcrypt's default (12).
        ("BCRYPT_COST", "4".to_owned()),
        // Every request here comes from 127.0.0.1: rate limits off unless a test turns them on.
        ("RATE_LIMIT_SIGNUP_PER_IP", "off".to_owned()),
        ("RATE_LIMIT_LOGIN_PER_IP", "off".to_owned()),
        ("RATE_LIMIT_LOGIN_PER_ACCOUNT", "off".to_owned()),
    ]);
    env.extend(extra.iter().cloned());
    env
}

impl Stack {
    /// Starts user (PostgreSQL when reachable, always in CI; SQLite otherwise), auth and gateway
    /// on ports they pick themselves, exporting spans to `otlp_endpoint` quickly (100 ms batch
    /// delay), and waits until the gateway reports ready.
    pub async fn start(otlp_endpoint: &str) -> Self {
        Self::start_with(&Self::exporting_to(otlp_endpoint)).await
    }

    /// The settings [`Stack::start`] adds: export to `otlp_endpoint`, quickly.
    pub fn exporting_to(otlp_endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint.to_owned()),
            // Export quickly so a test does not wait out the 5 s default batch delay.
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000".to_owned()),
        ]
    }

    /// Starts the stack with `env` added to every process's environment.
    pub async fn start_with(extra: &[(&'static str, String)]) -> Self {
        Self::start_with_options(extra, Options::default()).await
    }

    /// [`Stack::start_with`], choosing the database and where logs go.
    pub async fn start_with_options(extra: &[(&'static str, String)], options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (database, database_url) = match options.database {
            Database::PostgresIfReachable => crate::postgres::postgres_or_sqlite(dir.path()),
            Database::Sqlite => (
                None,
                format!("sqlite://{}", dir.path().join("users.db").display()),
            ),
        };
        let spawn = |name: &str, env: &[(&'static str, String)]| match options.logs {
            Logs::Captured if options.launcher.is_empty() => Service::spawn(name, env),
            Logs::Captured => Service::spawn_via(name, options.launcher, env),
            Logs::Files => Service::spawn_logging_to(
                name,
                options.launcher,
                env,
                &dir.path().join(format!("{name}.log")),
            ),
        };
        let ready_path = |name: &str| dir.path().join(format!("{name}.ready.json"));
        let any_port = "127.0.0.1:0".to_owned();
        // Mutual TLS between the three, as deployed: a CA of this test's own.
        let certs = dir.path().join("certs");
        certgen::write_missing(&certs).expect("certificates");
        let tls = |service: &str| -> Vec<(&'static str, String)> {
            let file = |name: &str| certs.join(service).join(name).display().to_string();
            vec![
                ("TLS_CA_FILE", file(certgen::CA_FILE)),
                ("TLS_CERT_FILE", file(certgen::CERT_FILE)),
                ("TLS_KEY_FILE", file(certgen::KEY_FILE)),
            ]
        };

        let mut settings = vec![
            ("GRPC_ADDR", any_port.clone()),
            ("METRICS_ADDR", any_port.clone()),
            ("HEALTH_ADDR", any_port.clone()),
            ("DATABASE_URL", database_url),
            ("READY_FILE", ready_path("user").display().to_string()),
        ];
        settings.extend(tls("user"));
        let user_env = env_for(settings, extra);
        let user = spawn("user", &user_env);
        let ready = ready_file(&user, &ready_path("user")).await;
        let (user_grpc, user_metrics, user_health) = (
            address(&ready, "grpc"),
            address(&ready, "metrics"),
            address(&ready, "health"),
        );

        let mut settings = vec![
            ("GRPC_ADDR", any_port.clone()),
            ("METRICS_ADDR", any_port.clone()),
            ("HEALTH_ADDR", any_port.clone()),
            ("USER_URL", format!("https://{user_grpc}")),
            ("JWT_SECRET", JWT_SECRET.to_owned()),
            ("READY_FILE", ready_path("auth").display().to_string()),
        ];
        settings.extend(tls("auth"));
        let auth_env = env_for(settings, extra);
        let auth = spawn("auth", &auth_env);
        let ready = ready_file(&auth, &ready_path("auth")).await;
        let (auth_grpc, auth_metrics, auth_health) = (
            address(&ready, "grpc"),
            address(&ready, "metrics"),
            address(&ready, "health"),
        );

        let mut settings = vec![
            ("HTTP_ADDR", any_port),
            ("AUTH_URL", format!("https://{auth_grpc}")),
            ("USER_URL", format!("https://{user_grpc}")),
            ("HTTP_WORKERS", "2".to_owned()),
            ("READY_FILE", ready_path("gateway").display().to_string()),
        ];
        settings.extend(tls("gateway"));
        let env = env_for(settings, extra);
        let gateway = spawn("gateway", &env);
        let ready = ready_file(&gateway, &ready_path("gateway")).await;
        let gateway_url = format!("http://{}", address(&ready, "http"));

        let pin = |env: Vec<(&'static str, String)>, addrs: [(&'static str, &str); 3]| {
            // A restarted service comes back where its callers expect it.
            let mut env = env;
            env.extend(addrs.map(|(key, addr)| (key, addr.to_owned())));
            env
        };
        let envs = vec![
            (
                "user",
                pin(
                    user_env,
                    [
                        ("GRPC_ADDR", &user_grpc),
                        ("METRICS_ADDR", &user_metrics),
                        ("HEALTH_ADDR", &user_health),
                    ],
                ),
            ),
            (
                "auth",
                pin(
                    auth_env,
                    [
                        ("GRPC_ADDR", &auth_grpc),
                        ("METRICS_ADDR", &auth_metrics),
                        ("HEALTH_ADDR", &auth_health),
                    ],
                ),
            ),
        ];
        let stack = Self {
            gateway,
            auth,
            user,
            gateway_url,
            auth_grpc,
            user_grpc,
            auth_health,
            user_health,
            auth_metrics: format!("http://{auth_metrics}/metrics"),
            user_metrics: format!("http://{user_metrics}/metrics"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            envs,
            retired: Vec::new(),
            _database: database,
            _dir: dir,
        };
        stack.wait_ready().await;
        stack
    }

    /// Starts `service` (`"user"` or `"auth"`, which must have exited) again on the same
    /// addresses and database, and waits until the gateway reports ready again.
    pub async fn restart(&mut self, service: &str) {
        let env = self
            .envs
            .iter()
            .find(|(name, _)| *name == service)
            .map(|(_, env)| env.clone())
            .unwrap_or_else(|| panic!("no restartable service {service:?}"));
        let fresh = Service::spawn(service, &env);
        let old = match service {
            "user" => std::mem::replace(&mut self.user, fresh),
            _ => std::mem::replace(&mut self.auth, fresh),
        };
        self.retired.push(old);
        self.wait_ready().await;
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

    /// A mutual-TLS gRPC channel to `addr` (one of the stack's gRPC addresses) presenting the
    /// certificate of `caller` (`gateway`, `auth` or `user`).
    pub async fn grpc_channel(&self, caller: &str, addr: &str) -> tonic::transport::Channel {
        let folder = self._dir.path().join("certs").join(caller);
        let read = |name: &str| std::fs::read_to_string(folder.join(name)).expect("certificate");
        let identity = certgen::Issued {
            cert: read(certgen::CERT_FILE),
            key: read(certgen::KEY_FILE),
        };
        let port: u16 = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        crate::tls::channel(port, &read(certgen::CA_FILE), Some(&identity))
            .await
            .expect("mutual TLS handshake")
    }

    /// POSTs `body` as JSON to the gateway.
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.gateway_url))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Signs `email` up with [`PASSWORD`].
    pub async fn signup(&self, email: &str) -> reqwest::Response {
        self.post(
            "/api/v1/signup",
            json!({"email": email, "password": PASSWORD, "name": "E2E"}),
        )
        .await
    }

    /// Logs `email` in with [`PASSWORD`].
    pub async fn login(&self, email: &str) -> reqwest::Response {
        self.post(
            "/api/v1/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .await
    }

    /// `GET /api/v1/users/me` with `token`.
    pub async fn me(&self, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/api/v1/users/me", self.gateway_url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// The gateway's `/readyz`: its status code and body.
    pub async fn readyz(&self) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/readyz", self.gateway_url))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// The body at a `/metrics` URL.
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
            .into_iter()
            .chain(&self.retired)
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
