//! Rate limits on the endpoints an attacker hammers: sign-up per client address, login per
//! client address and per account. GCRA limiters from `governor`, keyed by address or email,
//! answering 429 `rate_limited` with `Retry-After`.
//!
//! The per-account limit is what stops password guessing against one account from many
//! addresses; its price is that someone hammering your account can keep you waiting for up to
//! one period too. The client address is the socket peer unless a trusted proxy forwarded the
//! request (`TRUSTED_PROXIES`, see `telemetry::http::client_ip`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::ApiError;

/// `count` requests per `period`, refilled evenly (a burst of `count`, then one every
/// `period / count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period (and the largest burst).
    pub count: NonZeroU32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// Parses `N/Ss` (`10/60s`) or `off` (no limit).
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (count, period) = text
            .split_once('/')
            .ok_or_else(|| format!("expected N/Ss (e.g. 10/60s) or off, got {text:?}"))?;
        let count: NonZeroU32 = count
            .trim()
            .parse()
            .map_err(|_| format!("{count:?} is not a positive count"))?;
        let seconds: u64 = period
            .trim()
            .strip_suffix('s')
            .and_then(|s| s.parse().ok())
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("{period:?} is not a period in seconds (e.g. 60s)"))?;
        Ok(Some(Self {
            count,
            period: Duration::from_secs(seconds),
        }))
    }

    fn quota(self) -> Quota {
        let interval = self.period / self.count.get();
        Quota::with_period(interval.max(Duration::from_nanos(1)))
            .expect("a non-zero interval")
            .allow_burst(self.count)
    }
}

/// The configured limits; `None` switches one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Sign-ups per client address.
    pub signup_per_ip: Option<Rate>,
    /// Logins per client address.
    pub login_per_ip: Option<Rate>,
    /// Logins per account (email).
    pub login_per_account: Option<Rate>,
}

/// The limiters, shared by every worker.
#[derive(Debug)]
pub struct Limits {
    signup_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    login_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Keyed by a fixed-size digest of the account's email ([`Limits::account_key`]): whatever
    /// a client sends, an entry costs the same few bytes.
    login_per_account: Option<DefaultKeyedRateLimiter<u64>>,
    /// The digest's per-process random key, so that nobody can aim collisions at an account.
    account_hasher: std::collections::hash_map::RandomState,
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        // Whole seconds, rounded up: a client that waits this long gets through.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::RateLimited {
            retry_after: seconds.max(1),
        }
    })
}

impl Limits {
    /// Builds the limiters.
    pub fn new(config: LimitsConfig) -> Self {
        Self {
            signup_per_ip: config
                .signup_per_ip
                .map(|r| DefaultKeyedRateLimiter::keyed(r.quota())),
            login_per_ip: config
                .login_per_ip
                .map(|r| DefaultKeyedRateLimiter::keyed(r.quota())),
            login_per_account: config
                .login_per_account
                .map(|r| DefaultKeyedRateLimiter::keyed(r.quota())),
            account_hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The per-account key of `email`: its normal form as auth stores it (`proto::validation`),
    /// digested; `None` for an email no account can have, which only the per-address limit
    /// counts (a 16 KB "email" once made a 16 KB key, kept for the whole period).
    fn account_key(&self, email: &str) -> Option<u64> {
        use std::hash::BuildHasher as _;
        let normal = proto::validation::email(email).ok()?;
        Some(self.account_hasher.hash_one(normal))
    }

    /// Per-account entries held now (keys of the last period), for tests and tuning.
    pub fn accounts_tracked(&self) -> usize {
        self.login_per_account.as_ref().map_or(0, |l| l.len())
    }

    /// Counts a sign-up from `client`.
    pub fn signup(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        match client {
            Some(ip) => check(self.signup_per_ip.as_ref(), &ip),
            None => Ok(()),
        }
    }

    /// Counts a login from `client` for `email` (compared as auth stores it: trimmed, lower-case).
    pub fn login(&self, client: Option<IpAddr>, email: &str) -> Result<(), ApiError> {
        if let Some(ip) = client {
            check(self.login_per_ip.as_ref(), &ip)?;
        }
        match (&self.login_per_account, self.account_key(email)) {
            (Some(limiter), Some(key)) => check(Some(limiter), &key),
            _ => Ok(()),
        }
    }

    /// Forgets keys whose limits have refilled, so the tables stay as small as the traffic
    /// of the last period (called periodically).
    pub fn forget_idle(&self) {
        for limiter in [&self.signup_per_ip, &self.login_per_ip]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.login_per_account {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        let rate = Rate::parse("10/60s").unwrap().unwrap();
        assert_eq!(rate.count.get(), 10);
        assert_eq!(rate.period, Duration::from_secs(60));
        assert_eq!(Rate::parse("off").unwrap(), None);
        for bad in ["10", "0/60s", "10/60", "10/0s", "ten/60s", "10/1m"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_passes_then_429_with_a_retry_after_and_keys_are_separate() {
        let rate = Rate::parse("3/60s").unwrap();
        let limits = Limits::new(LimitsConfig {
            signup_per_ip: rate,
            login_per_ip: None,
            login_per_account: rate,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            limits.signup(Some(ip)).unwrap();
        }
        match limits.signup(Some(ip)) {
            Err(ApiError::RateLimited { retry_after }) => assert!((1..=20).contains(&retry_after)),
            other => panic!("{other:?}"),
        }
        limits.signup(Some("192.0.2.2".parse().unwrap())).unwrap();
        // One account, any address, any spelling of the email.
        for email in ["ada@example.com", "ADA@example.com", " ada@example.com "] {
            limits.login(Some(ip), email).unwrap();
        }
        assert!(
            limits
                .login(Some("198.51.100.1".parse().unwrap()), "ada@example.com")
                .is_err()
        );
        limits.login(Some(ip), "bob@example.com").unwrap();
        limits.forget_idle();
    }

    #[test]
    fn an_email_no_account_can_have_makes_no_per_account_entry() {
        // Issue 20, point 6: 1,200 logins with 16 KB "emails" grew the gateway by 18.5 MB,
        // because each became a key of its own size. Now such a login is counted per address
        // only, and a valid email's key is a digest: a few bytes, whatever was sent.
        let limits = Limits::new(LimitsConfig {
            signup_per_ip: None,
            login_per_ip: None,
            login_per_account: Some(Rate::parse("3/60s").unwrap().unwrap()),
        });
        let ip = Some("192.0.2.7".parse().unwrap());
        let huge = format!("{}@example.com", "a".repeat(16 * 1024));
        for _ in 0..10 {
            limits.login(ip, &huge).unwrap();
            limits.login(ip, "not an email").unwrap();
        }
        assert_eq!(limits.accounts_tracked(), 0);
        for i in 0..1200 {
            limits.login(ip, &format!("user{i}@example.com")).unwrap();
        }
        assert_eq!(limits.accounts_tracked(), 1200);
        // Still one account whatever its spelling, and still limited.
        for email in ["eve@example.com", "EVE@example.com", " eve@example.com "] {
            limits.login(ip, email).unwrap();
        }
        assert!(limits.login(ip, "Eve@Example.com").is_err());
    }
}
