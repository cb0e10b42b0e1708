//! The user service: the only owner of the users table, served over gRPC (`user.v1`).
//!
//! | module | role |
//! |---|---|
//! | [`config`] | settings from the environment |
//! | [`db`] | one diesel code path for PostgreSQL and SQLite, run off the async executor |
//! | [`service`] | the `UserService` gRPC implementation |
//! | [`error`] | errors and their mapping to gRPC statuses |
//! | [`app`] | listeners, server, health, metrics, graceful shutdown |
//!
//! `main.rs` is a thin shell over [`app::Application`], so tests run the same server on port 0.

pub mod app;
pub mod config;
pub mod db;
pub mod error;
pub mod service;

#[cfg(feature = "test-support")]
pub mod test_support;

pub use app::Application;
pub use config::Config;
