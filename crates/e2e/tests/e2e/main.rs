//! The three real binaries as separate processes, an in-test OTLP collector, real HTTP and gRPC.

#![allow(unreachable_pub)] // helpers are `pub` for sibling test modules, not for export

mod contract;
mod faults;
mod hostile;
mod lifecycle;
mod loadgen;
mod overload;
mod run_local;
mod storage;
mod trace;
mod w3c;
