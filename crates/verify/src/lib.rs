//! `make verify`: the README's walk-through, automated. It sends one sign-up, login and profile
//! read through the gateway under a trace id it chose (one that starts with `00`, the case
//! Tempo's id handling trips on), then follows that request link by link, the way a person does
//! in Grafana and the way Grafana itself asks:
//!
//! | link | module | what must hold |
//! |---|---|---|
//! | gateway | [`gateway`] | the three requests answer, under the chosen trace id |
//! | Tempo | [`tempo`] | one trace, spans from gateway, auth and user, every parent link intact |
//! | Loki | [`loki`] | the provisioned traces -> logs query finds lines of all three services |
//! | Prometheus | [`prometheus`] | every target up; span metrics, the service-graph edges, exemplars that open a trace |
//! | Grafana | [`grafana`] | healthy; anonymous visitors can Explore; each data source healthy and answering a query |
//!
//! It prints a line per check that passed, and stops at the first broken link with what broke
//! and where to look ([`Broken`]).

use std::future::Future;
use std::time::{Duration, Instant};

pub mod config;
pub mod gateway;
pub mod grafana;
pub mod loki;
pub mod prometheus;
pub mod tempo;

pub use config::Config;

/// The first link of the chain that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// Which part: `gateway`, `Tempo`, `Loki`, `Prometheus` or `Grafana`.
    pub link: &'static str,
    /// What was expected and what was found.
    pub problem: String,
    /// How to look at it yourself.
    pub look: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BROKEN at {}: {}\n  look: {}",
            self.link, self.problem, self.look
        )
    }
}

impl std::error::Error for Broken {}

/// The ids of the request verify sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// 32 lower-case hex digits, starting with `00`.
    pub trace_id: String,
    /// The parent span ids of the three requests (sign-up, login, profile), as their
    /// `traceparent` headers name them: 16 hex digits each.
    pub parents: [String; 3],
}

impl Ids {
    /// Fresh random ids; the trace id starts with `00`.
    pub fn random() -> Self {
        let trace: u128 = rand::random::<u128>() >> 8;
        let trace_id = format!("{trace:032x}");
        let parent = || format!("{:016x}", rand::random::<u64>() | 1);
        Self {
            trace_id,
            parents: [parent(), parent(), parent()],
        }
    }

    /// The trace id as Tempo writes it in search results and exemplars: without leading zeros.
    pub fn tempo_form(&self) -> &str {
        self.trace_id.trim_start_matches('0')
    }
}

/// What verify talks over: one client with a per-request timeout, and one that does not follow
/// redirects (a page Grafana refuses answers with one).
#[derive(Debug, Clone)]
pub struct Clients {
    /// Follows redirects; 10 s per request.
    pub http: reqwest::Client,
    /// Returns redirects as they are.
    pub no_redirects: reqwest::Client,
}

impl Clients {
    /// Both clients.
    pub fn new() -> Self {
        let build = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(redirects)
                .build()
                .expect("an HTTP client")
        };
        Self {
            http: build(reqwest::redirect::Policy::limited(5)),
            no_redirects: build(reqwest::redirect::Policy::none()),
        }
    }
}

impl Default for Clients {
    fn default() -> Self {
        Self::new()
    }
}

/// Retries `attempt` once a second until it succeeds or `timeout` has passed; the error is the
/// last attempt's.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Sends `request` and parses its JSON body; any failure, or a status other than 2xx, is an
/// error that names the URL.
pub(crate) async fn json(request: reqwest::RequestBuilder) -> Result<serde_json::Value, String> {
    let (client, request) = request.build_split();
    let request = request.map_err(|e| e.to_string())?;
    let url = request.url().to_string();
    let response = client
        .execute(request)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url} answered {status}: {}", clip(&body)));
    }
    serde_json::from_str(&body).map_err(|e| format!("{url}: not JSON ({e}): {}", clip(&body)))
}

/// At most 300 characters of `text`, for messages.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Runs every check in order, printing one line per check that passed to `out`; stops at the
/// first broken link.
pub async fn run(config: &Config, out: &mut impl std::io::Write) -> Result<(), Broken> {
    let clients = Clients::new();
    let ids = Ids::random();
    let mut say = |line: String| {
        let _ = writeln!(out, "  ok  {line}");
    };
    say(gateway::send(config, &clients, &ids).await?);
    say(tempo::check(config, &clients, &ids).await?);
    say(loki::check(config, &clients, &ids).await?);
    for line in prometheus::check(config, &clients, &ids).await? {
        say(line);
    }
    for line in grafana::check(config, &clients, &ids).await? {
        say(line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_starts_with_two_zeros_and_tempo_drops_them() {
        for _ in 0..100 {
            let ids = Ids::random();
            assert_eq!(ids.trace_id.len(), 32);
            assert!(ids.trace_id.starts_with("00"), "{}", ids.trace_id);
            assert!(ids.tempo_form().len() <= 30);
            assert!(!ids.tempo_form().starts_with('0'));
            assert!(
                ids.parents
                    .iter()
                    .all(|p| p.len() == 16 && p != "0000000000000000")
            );
        }
    }

    #[test]
    fn a_broken_link_says_where_to_look() {
        let broken = Broken {
            link: "Loki",
            problem: "no lines".into(),
            look: "make logs SERVICE=alloy".into(),
        };
        assert_eq!(
            broken.to_string(),
            "BROKEN at Loki: no lines\n  look: make logs SERVICE=alloy"
        );
    }
}
