//! Integration tests for the gateway's HTTP API, with real auth and user services behind it
//! (in this process, over loopback gRPC). One test binary: one link step.

#![allow(unreachable_pub)] // helpers are `pub` for sibling test modules, not for export

mod bad_input;
mod happy_path;
mod helpers;
mod input_policy;
mod rate_limits;
mod tracing_headers;
