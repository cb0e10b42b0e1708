//! Generated gRPC code for the contracts in `/proto`: one place runs codegen, every service links it.
//!
//! Packages are versioned (`auth.v1`, `user.v1`) so a breaking change gets a new package, not a
//! silent re-interpretation of the old one.

#![allow(unreachable_pub, clippy::all)]

pub mod user {
    pub mod v1 {
        tonic::include_proto!("user.v1");
    }
}

pub mod auth {
    pub mod v1 {
        tonic::include_proto!("auth.v1");
    }
}
