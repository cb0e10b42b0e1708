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

/// Machine-readable error reasons carried in a `google.rpc.ErrorInfo` detail.
///
/// The gRPC code says what kind of failure it is; the reason says which one, so the gateway can
/// give clients a stable `code` without parsing human-readable messages.
pub mod errors {
    use tonic_types::{ErrorDetails, StatusExt as _};

    /// The `ErrorInfo.domain` our services use.
    pub const DOMAIN: &str = "observable-rust-services";

    /// A status whose details carry `reason` as a `google.rpc.ErrorInfo`.
    pub fn status(code: tonic::Code, reason: &str, message: impl Into<String>) -> tonic::Status {
        let details =
            ErrorDetails::with_error_info(reason, DOMAIN, std::collections::HashMap::new());
        tonic::Status::with_error_details(code, message, details)
    }

    /// The `ErrorInfo.reason` of `status`, if it has one.
    pub fn reason(status: &tonic::Status) -> Option<String> {
        status
            .get_error_details()
            .error_info()
            .map(|info| info.reason.clone())
    }
}
