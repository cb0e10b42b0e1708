//! Generated gRPC code for the contracts in `/proto`: one place runs codegen, every service links it.
//!
//! Packages are versioned (`auth.v1`, `user.v1`) so a breaking change gets a new package, not a
//! silent re-interpretation of the old one. Beside the generated code: [`errors`] (the stable
//! error reasons on statuses) and [`validation`] (what an account may hold, one definition for
//! every service that reads or stores one).

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

pub mod validation;

/// The encoded `FileDescriptorSet` of every `.proto` file compiled here.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// The methods of `service` (fully qualified, e.g. `auth.v1.AuthService`) as declared in its
/// `.proto` file; empty for a service not compiled here. Servers use it to tell a real method
/// from a made-up one without a second list to keep in step.
pub fn methods(service: &str) -> Vec<String> {
    use prost::Message as _;
    let Ok(set) = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    set.file
        .iter()
        .flat_map(|file| {
            let package = file.package().to_owned();
            file.service
                .iter()
                .map(move |s| (format!("{package}.{}", s.name()), s))
        })
        .filter(|(name, _)| name == service)
        .flat_map(|(_, s)| s.method.iter().map(|m| m.name().to_owned()))
        .collect()
}

/// `Debug` for the messages that carry secrets: every field but the secret, which prints as
/// `"<redacted>"` (see `build.rs`).
mod redacted {
    use std::fmt;

    const REDACTED: &str = "<redacted>";

    impl fmt::Debug for crate::auth::v1::SignupRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SignupRequest")
                .field("email", &self.email)
                .field("password", &REDACTED)
                .field("name", &self.name)
                .finish()
        }
    }

    impl fmt::Debug for crate::auth::v1::LoginRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("LoginRequest")
                .field("email", &self.email)
                .field("password", &REDACTED)
                .finish()
        }
    }

    impl fmt::Debug for crate::auth::v1::LoginResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("LoginResponse")
                .field("access_token", &REDACTED)
                .field("token_type", &self.token_type)
                .field("expires_in", &self.expires_in)
                .finish()
        }
    }

    impl fmt::Debug for crate::auth::v1::ValidateTokenRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ValidateTokenRequest")
                .field("access_token", &REDACTED)
                .finish()
        }
    }

    impl fmt::Debug for crate::user::v1::CreateUserRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("CreateUserRequest")
                .field("email", &self.email)
                .field("name", &self.name)
                .field("password_hash", &REDACTED)
                .finish()
        }
    }

    impl fmt::Debug for crate::user::v1::GetCredentialResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("GetCredentialResponse")
                .field("user_id", &self.user_id)
                .field("password_hash", &REDACTED)
                .finish()
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn secrets_never_print() {
            let printed = format!(
                "{:?} {:?} {:?} {:?} {:?} {:?}",
                crate::auth::v1::SignupRequest {
                    email: "e".into(),
                    password: "pw-secret".into(),
                    name: "n".into()
                },
                crate::auth::v1::LoginRequest {
                    email: "e".into(),
                    password: "pw-secret".into()
                },
                crate::auth::v1::LoginResponse {
                    access_token: "tok-secret".into(),
                    token_type: "Bearer".into(),
                    expires_in: 1
                },
                crate::auth::v1::ValidateTokenRequest {
                    access_token: "tok-secret".into()
                },
                crate::user::v1::CreateUserRequest {
                    email: "e".into(),
                    name: "n".into(),
                    password_hash: "hash-secret".into()
                },
                crate::user::v1::GetCredentialResponse {
                    user_id: "u".into(),
                    password_hash: "hash-secret".into()
                },
            );
            assert!(!printed.contains("secret"), "{printed}");
            assert!(printed.contains("<redacted>"));
        }
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

#[cfg(test)]
mod tests {
    #[test]
    fn services_list_their_methods_from_the_descriptors() {
        assert_eq!(
            super::methods("auth.v1.AuthService"),
            ["Signup", "Login", "ValidateToken"]
        );
        assert_eq!(
            super::methods("user.v1.UserService"),
            ["CreateUser", "GetUser", "GetCredential"]
        );
        assert!(super::methods("nope.v1.Nothing").is_empty());
    }
}
