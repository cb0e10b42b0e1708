//! Integration tests for the user service through its public gRPC interface, over real loopback
//! gRPC, against SQLite and a throw-away PostgreSQL database. One test binary: one link step.
#![allow(unreachable_pub)] // helpers are `pub` for sibling test modules, not for export

mod callers;
mod database_down;
mod helpers;
mod migrations;
mod users;
