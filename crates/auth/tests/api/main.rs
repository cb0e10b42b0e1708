//! Integration tests for the auth service through its public gRPC interface, with a real user
//! service behind it, over loopback gRPC. One test binary: one link step.

#![allow(unreachable_pub)] // helpers are `pub` for sibling test modules, not for export

mod callers;
mod helpers;
mod login;
mod signup;
mod tokens;
