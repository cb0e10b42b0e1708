//! The gateway: the public REST API (actix-web) in front of the auth and user gRPC services.
//!
//! Each request runs inside a root span opened by tracing-actix-web (continuing the caller's
//! `traceparent` if any); gRPC calls to auth and user go through traced channels that inject the
//! context, so one HTTP request is one trace across all three processes. Responses carry
//! `traceresponse`/`x-trace-id`; errors are `{code, message, trace_id}` bodies.
//!
//! | module | role |
//! |---|---|
//! | [`config`] | settings from the environment |
//! | [`clients`] | traced gRPC clients for auth and user |
//! | [`routes`] | handlers and the OpenAPI document |
//! | [`error`] | the one error type and its HTTP mapping |
//! | [`limits`] | rate limits on sign-up and login (per client address, per account) |
//! | [`app`] | server wiring, middleware order, graceful shutdown |

pub mod app;
pub mod clients;
pub mod config;
pub mod error;
pub mod limits;
pub mod routes;

#[cfg(feature = "test-support")]
pub mod test_support;

pub use app::Application;
pub use config::Config;
