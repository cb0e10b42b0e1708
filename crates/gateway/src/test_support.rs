//! The gateway inside a test process (feature `test-support`): the one way every test crate
//! starts it.

use crate::{Application, Config};

/// The settings a deployment would give a gateway calling `auth_url` and `user_url`, with
/// `settings` (variable, value) on top: a free port, one worker, a small body limit, and rate
/// limits off unless a test turns them on, so that tests sending many requests test what they
/// are about.
pub fn config(auth_url: &str, user_url: &str, settings: &[(&str, &str)]) -> Config {
    let mut env: std::collections::HashMap<&str, &str> = [
        (crate::config::HTTP_ADDR, "127.0.0.1:0"),
        (crate::config::AUTH_URL, auth_url),
        (crate::config::USER_URL, user_url),
        (crate::config::MAX_BODY_BYTES, "4096"),
        (crate::config::HTTP_WORKERS, "1"),
        (crate::config::RATE_LIMIT_SIGNUP_PER_IP, "off"),
        (crate::config::RATE_LIMIT_LOGIN_PER_IP, "off"),
        (crate::config::RATE_LIMIT_LOGIN_PER_ACCOUNT, "off"),
    ]
    .into_iter()
    .collect();
    env.extend(settings.iter().copied());
    Config::from_lookup(|name| env.get(name).map(|value| (*value).to_owned()))
        .expect("valid test settings")
}

/// A gateway running in this process, stopped when dropped.
#[derive(Debug)]
pub struct Running {
    /// The bound HTTP address.
    pub addr: std::net::SocketAddr,
    _serving: service_runtime::lifecycle::Background,
}

impl Running {
    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Builds the gateway from `config`, with the test logger and a registry of its own, and serves
/// it in the background.
pub fn spawn(config: Config) -> Running {
    let app = Application::bind(
        config,
        telemetry::logs::test_logger("gateway"),
        telemetry::metrics::registry(),
    )
    .expect("the gateway builds");
    Running {
        addr: app.addr(),
        _serving: service_runtime::lifecycle::Background::spawn(app),
    }
}
