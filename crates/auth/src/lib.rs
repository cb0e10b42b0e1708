//! The auth service: sign-up, login and token validation over gRPC (`auth.v1`).
//!
//! It owns no data: users live in the user service, which auth calls with trace context
//! propagated. Passwords exist here only as [`validation::Password`] (a secret that never prints)
//! on their way into bcrypt, which runs on the blocking pool in its own span.
//!
//! | module | role |
//! |---|---|
//! | [`config`] | settings from the environment; the JWT secret is required and never printed |
//! | [`validation`] | `Email`, `Password`, `Name` parsed at the edge |
//! | [`password`] | bcrypt hash/verify off the async executor |
//! | [`tokens`] | HS256 JWT issue and validation |
//! | [`service`] | the `AuthService` gRPC implementation |
//! | [`error`] | errors and their mapping to gRPC statuses |
//! | [`app`] | listeners, client, server, health, metrics, graceful shutdown |

pub mod app;
pub mod config;
pub mod error;
pub mod password;
pub mod service;
pub mod tokens;
pub mod validation;

#[cfg(feature = "test-support")]
pub mod test_support;

pub use app::Application;
pub use config::Config;
