//! A load generator that makes the dashboards worth looking at.
//!
//! Each virtual user signs up once, logs in, then reads its profile (`GET /api/v1/users/me`)
//! with think time in between, logging in again now and then as a real session would. A share of
//! its requests are deliberately wrong (a wrong password, a garbage token, malformed JSON), so the
//! error panels and the 4xx series have something in them. Every response is checked against
//! what its request should get: a 401 for a wrong password is expected, a 503 anywhere is not.
//!
//! At the end (the configured duration, or SIGTERM/Ctrl-C) it prints a [`Summary`]: requests by
//! operation and status, latency percentiles, and the trace id of the slowest request, ready to
//! paste into Grafana.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng as _;
use service_runtime::config::{ConfigError, parse_var};
use tokio_util::sync::CancellationToken;

/// The gateway's base URL.
pub const LOAD_TARGET: &str = "LOAD_TARGET";
/// Concurrent virtual users.
pub const LOAD_USERS: &str = "LOAD_USERS";
/// How long to run, in seconds; 0 runs until SIGTERM or Ctrl-C.
pub const LOAD_DURATION_SECONDS: &str = "LOAD_DURATION_SECONDS";
/// Mean pause between one user's requests, in milliseconds (each pause is 0.5x to 1.5x of it).
pub const LOAD_THINK_MS: &str = "LOAD_THINK_MS";
/// Share of requests that are deliberately bad, in percent.
pub const LOAD_BAD_PERCENT: &str = "LOAD_BAD_PERCENT";

/// Default for [`LOAD_TARGET`]: the gateway of `make run`.
pub const DEFAULT_TARGET: &str = "http://127.0.0.1:8080";
/// Default for [`LOAD_USERS`].
pub const DEFAULT_USERS: u32 = 4;
/// Default for [`LOAD_DURATION_SECONDS`].
pub const DEFAULT_DURATION_SECONDS: u64 = 60;
/// Default for [`LOAD_THINK_MS`].
pub const DEFAULT_THINK_MS: u64 = 250;
/// Default for [`LOAD_BAD_PERCENT`].
pub const DEFAULT_BAD_PERCENT: u32 = 10;

/// A user logs in again after this many profile reads, as a new session would.
const READS_PER_SESSION: u32 = 50;
/// One request may take this long before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a run-until-stopped load prints a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// The load's settings, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Base URL of the gateway, without a trailing slash.
    pub target: String,
    /// Concurrent virtual users.
    pub users: u32,
    /// `None` runs until stopped.
    pub duration: Option<Duration>,
    /// Mean think time between requests.
    pub think: Duration,
    /// Percent of requests that are deliberately bad.
    pub bad_percent: u32,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let target: String = parse_var(&lookup, LOAD_TARGET, DEFAULT_TARGET.to_owned())?;
        let target = target.trim_end_matches('/').to_owned();
        if reqwest::Url::parse(&target).map_or(true, |url| !url.scheme().starts_with("http")) {
            return Err(ConfigError {
                variable: LOAD_TARGET,
                reason: format!("expected an http:// URL, got {target:?}"),
            });
        }
        let users = parse_var(&lookup, LOAD_USERS, DEFAULT_USERS)?;
        if users == 0 {
            return Err(ConfigError {
                variable: LOAD_USERS,
                reason: "must be at least 1".to_owned(),
            });
        }
        let bad_percent = parse_var(&lookup, LOAD_BAD_PERCENT, DEFAULT_BAD_PERCENT)?;
        if bad_percent > 100 {
            return Err(ConfigError {
                variable: LOAD_BAD_PERCENT,
                reason: format!("must be 0 to 100, got {bad_percent}"),
            });
        }
        let seconds = parse_var(&lookup, LOAD_DURATION_SECONDS, DEFAULT_DURATION_SECONDS)?;
        Ok(Self {
            target,
            users,
            duration: (seconds > 0).then(|| Duration::from_secs(seconds)),
            think: Duration::from_millis(parse_var(&lookup, LOAD_THINK_MS, DEFAULT_THINK_MS)?),
            bad_percent,
        })
    }

    /// One line saying what this run will do.
    pub fn banner(&self) -> String {
        let until = match self.duration {
            Some(duration) => format!("for {} s", duration.as_secs()),
            None => "until stopped".to_owned(),
        };
        format!(
            "loadgen: {} users against {} {until}, {} ms think time, {}% bad requests",
            self.users,
            self.target,
            self.think.as_millis(),
            self.bad_percent
        )
    }
}

/// What a request does, and so which status it should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// `POST /api/v1/signup` with a new email: 201.
    Signup,
    /// `POST /api/v1/login` with the right password: 200.
    Login,
    /// `GET /api/v1/users/me` with a valid token: 200.
    Me,
    /// Login with a wrong password: 401.
    WrongPassword,
    /// `/users/me` with a token that is not a JWT: 401.
    BadToken,
    /// Sign-up with a body that is not JSON: 400.
    MalformedJson,
}

impl Operation {
    /// The status a correct server answers this request with.
    pub fn expected_status(self) -> u16 {
        match self {
            Self::Signup => 201,
            Self::Login | Self::Me => 200,
            Self::WrongPassword | Self::BadToken => 401,
            Self::MalformedJson => 400,
        }
    }

    /// Whether `status` is a correct answer to this request: its expected status, or 429, the
    /// gateway's rate limit doing its job under a heavy load from one address.
    pub fn answered_correctly(self, status: Option<u16>) -> bool {
        status == Some(self.expected_status()) || status == Some(429)
    }

    /// The name the summary prints.
    pub fn name(self) -> &'static str {
        match self {
            Self::Signup => "signup",
            Self::Login => "login",
            Self::Me => "users/me",
            Self::WrongPassword => "login, wrong password",
            Self::BadToken => "users/me, bad token",
            Self::MalformedJson => "signup, malformed JSON",
        }
    }
}

/// `None` stands for a request that got no HTTP response at all (refused, reset, timed out).
type Status = Option<u16>;

/// What a run did: counts by operation and status, latency, the slowest request.
#[derive(Debug)]
pub struct Summary {
    counts: BTreeMap<(Operation, Status), u64>,
    /// Latency of every answered request, in microseconds.
    latency: hdrhistogram::Histogram<u64>,
    slowest: Option<(Operation, Duration, Option<String>)>,
    elapsed: Duration,
}

impl Default for Summary {
    fn default() -> Self {
        Self {
            counts: BTreeMap::new(),
            // 1 µs to 1 h at 3 significant digits: a few tens of KiB whatever the run's length.
            latency: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
            slowest: None,
            elapsed: Duration::ZERO,
        }
    }
}

impl Summary {
    fn record(
        &mut self,
        operation: Operation,
        status: Status,
        took: Duration,
        trace: Option<String>,
    ) {
        *self.counts.entry((operation, status)).or_default() += 1;
        if status.is_some() {
            let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            self.latency.saturating_record(micros.max(1));
            if self
                .slowest
                .as_ref()
                .is_none_or(|(_, slowest, _)| took > *slowest)
            {
                self.slowest = Some((operation, took, trace));
            }
        }
    }

    /// Every request sent.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Requests whose answer was not a correct one (including no answer at all; a 429 is a
    /// correct answer to too many requests).
    pub fn unexpected(&self) -> u64 {
        self.counts
            .iter()
            .filter(|((operation, status), _)| !operation.answered_correctly(*status))
            .map(|(_, count)| count)
            .sum()
    }

    /// How many `operation` requests were answered with `status` (`None`: not answered).
    pub fn count(&self, operation: Operation, status: Status) -> u64 {
        self.counts.get(&(operation, status)).copied().unwrap_or(0)
    }

    /// The trace id of the slowest answered request, when the gateway sent one.
    pub fn slowest_trace_id(&self) -> Option<&str> {
        self.slowest
            .as_ref()
            .and_then(|(_, _, trace)| trace.as_deref())
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "loadgen: {} requests in {seconds:.1} s ({:.1} req/s), {} unexpected",
            self.total(),
            self.total() as f64 / seconds.max(f64::EPSILON),
            self.unexpected()
        )?;
        writeln!(f, "  {:<24} {:>6} {:>8}  ", "operation", "status", "count")?;
        for ((operation, status), count) in &self.counts {
            let expected = operation.answered_correctly(*status);
            let status = status.map_or_else(|| "none".to_owned(), |s| s.to_string());
            let mark = if expected { "" } else { "  <- unexpected" };
            writeln!(f, "  {:<24} {status:>6} {count:>8}{mark}", operation.name())?;
        }
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        write!(
            f,
            "  latency ms: p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
            ms(0.5),
            ms(0.95),
            ms(0.99),
            self.latency.max() as f64 / 1000.0
        )?;
        if let Some((operation, took, trace)) = &self.slowest {
            write!(
                f,
                "\n  slowest: {} in {:.1} ms",
                operation.name(),
                took.as_secs_f64() * 1000.0
            )?;
            if let Some(trace) = trace {
                write!(
                    f,
                    ", trace_id {trace} (paste it into Grafana > Explore > Tempo)"
                )?;
            }
        }
        Ok(())
    }
}

/// Runs the load until the configured duration has passed or `stop` completes, then lets each
/// user finish the request it is in (so stopping never manufactures errors) and returns what
/// happened.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> Summary {
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("a TLS-free HTTP client always builds");
    let summary = Arc::new(Mutex::new(Summary::default()));
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let users: Vec<_> = (0..config.users)
        .map(|_| {
            let user = VirtualUser::new(&config, http.clone(), summary.clone());
            tokio::spawn(user.run(cancel.clone()))
        })
        .collect();

    let deadline = async {
        match config.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    let progress = async {
        let mut ticks = tokio::time::interval(PROGRESS_EVERY);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let summary = summary.lock().expect("summary lock");
            println!(
                "loadgen: {} s, {} requests, {} unexpected",
                started.elapsed().as_secs(),
                summary.total(),
                summary.unexpected()
            );
        }
    };
    tokio::select! {
        () = deadline => {}
        () = stop => {}
        () = progress => {}
    }
    cancel.cancel();
    for user in users {
        let _ = user.await;
    }
    let mut summary = std::mem::take(&mut *summary.lock().expect("summary lock"));
    summary.elapsed = started.elapsed();
    summary
}

/// One simulated person: an account, a session token, a habit of reading their profile.
struct VirtualUser {
    http: reqwest::Client,
    target: String,
    think: Duration,
    bad_percent: u32,
    email: String,
    password: String,
    signed_up: bool,
    token: Option<String>,
    reads_left: u32,
    summary: Arc<Mutex<Summary>>,
}

impl VirtualUser {
    fn new(config: &Config, http: reqwest::Client, summary: Arc<Mutex<Summary>>) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            http,
            target: config.target.clone(),
            think: config.think,
            bad_percent: config.bad_percent,
            email: format!("load-{id}@example.com"),
            password: format!("load-password-{id}"),
            signed_up: false,
            token: None,
            reads_left: 0,
            summary,
        }
    }

    async fn run(mut self, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            self.step().await;
            let think = self.think.mul_f64(rand::rng().random_range(0.5..1.5));
            tokio::select! {
                () = tokio::time::sleep(think) => {}
                () = cancel.cancelled() => {}
            }
        }
    }

    /// Sends the next request this user would send.
    async fn step(&mut self) {
        if rand::rng().random_range(0..100) < self.bad_percent {
            let bad = match rand::rng().random_range(0..3) {
                0 => Operation::WrongPassword,
                1 => Operation::BadToken,
                _ => Operation::MalformedJson,
            };
            self.send(bad).await;
        } else if !self.signed_up {
            self.signed_up = self.send(Operation::Signup).await.is_some();
        } else if self.token.is_none() || self.reads_left == 0 {
            self.token = self
                .send(Operation::Login)
                .await
                .and_then(|body| body["access_token"].as_str().map(str::to_owned));
            self.reads_left = READS_PER_SESSION;
        } else {
            self.reads_left -= 1;
            if self.send(Operation::Me).await.is_none() {
                self.token = None;
            }
        }
    }

    /// Sends `operation`, records the outcome, and returns the JSON body when the status was the
    /// expected one.
    async fn send(&self, operation: Operation) -> Option<serde_json::Value> {
        let url = |path: &str| format!("{}{path}", self.target);
        let credentials =
            |password: &str| serde_json::json!({"email": self.email, "password": password});
        let request = match operation {
            Operation::Signup => self.http.post(url("/api/v1/signup")).json(
                &serde_json::json!({"email": self.email, "password": self.password, "name": "Load Tester"}),
            ),
            Operation::Login => self.http.post(url("/api/v1/login")).json(&credentials(&self.password)),
            Operation::WrongPassword => self
                .http
                .post(url("/api/v1/login"))
                .json(&credentials("not-the-password")),
            Operation::Me => self
                .http
                .get(url("/api/v1/users/me"))
                .bearer_auth(self.token.as_deref().unwrap_or_default()),
            Operation::BadToken => self
                .http
                .get(url("/api/v1/users/me"))
                .bearer_auth("not-a-jwt"),
            Operation::MalformedJson => self
                .http
                .post(url("/api/v1/signup"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(r#"{"email": "#),
        };
        let started = Instant::now();
        let (status, trace, body) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let trace = response
                    .headers()
                    .get("x-trace-id")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let body = response.json::<serde_json::Value>().await.ok();
                (Some(status), trace, body)
            }
            Err(_) => (None, None, None),
        };
        let took = started.elapsed();
        self.summary
            .lock()
            .expect("summary lock")
            .record(operation, status, took, trace);
        body.filter(|_| status == Some(operation.expected_status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_target_make_run_for_a_minute() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.target, DEFAULT_TARGET);
        assert_eq!(config.duration, Some(Duration::from_secs(60)));
        let forever = Config::from_lookup(|n| (n == LOAD_DURATION_SECONDS).then(|| "0".into()));
        assert_eq!(forever.unwrap().duration, None);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            (LOAD_TARGET, "gateway:8080"),
            (LOAD_USERS, "0"),
            (LOAD_BAD_PERCENT, "101"),
            (LOAD_THINK_MS, "soon"),
        ] {
            let error = Config::from_lookup(|n| (n == name).then(|| value.to_owned())).unwrap_err();
            assert_eq!(error.variable, name, "{value}");
        }
    }

    #[test]
    fn only_answers_other_than_the_expected_one_are_unexpected() {
        let mut summary = Summary::default();
        let ms = Duration::from_millis;
        summary.record(Operation::WrongPassword, Some(401), ms(2), None);
        summary.record(Operation::Me, Some(200), ms(9), Some("abc".into()));
        summary.record(Operation::Me, Some(503), ms(1), None);
        summary.record(Operation::Login, None, ms(30), None);
        summary.record(Operation::Login, Some(429), ms(1), None);
        assert_eq!(summary.total(), 5);
        assert_eq!(summary.unexpected(), 2);
        assert_eq!(
            summary.slowest_trace_id(),
            Some("abc"),
            "unanswered requests have no latency"
        );
        let text = summary.to_string();
        assert!(
            text.contains("users/me                    503        1  <- unexpected"),
            "{text}"
        );
        assert!(text.contains("trace_id abc"), "{text}");
    }
}
