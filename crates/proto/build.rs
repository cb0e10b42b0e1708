//! Generates the gRPC client and server code once, for every crate that depends on `proto`.

use std::path::{Path, PathBuf};

/// Fully qualified names of the messages with secret fields.
const SECRET_BEARING: [&str; 6] = [
    ".auth.v1.SignupRequest",
    ".auth.v1.LoginRequest",
    ".auth.v1.LoginResponse",
    ".auth.v1.ValidateTokenRequest",
    ".user.v1.CreateUserRequest",
    ".user.v1.GetCredentialResponse",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        root.join("user/v1/user.proto"),
        root.join("auth/v1/auth.proto"),
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    println!("cargo:rerun-if-env-changed=PROTOC");

    // A vendored protoc lets a machine with only the Rust toolchain build the workspace;
    // an explicit PROTOC still wins, for distributions that ship their own.
    let mut config = tonic_prost_build::Config::new();
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    config.protoc_executable(protoc);
    // Messages that carry a password, a hash or a token get a hand-written, redacting `Debug`
    // (in lib.rs) instead of prost's, so `{:?}` anywhere cannot print a secret.
    config.skip_debug(SECRET_BEARING);
    let well_known = protoc_bin_vendored::include_path()?;

    // The descriptors, so services can list their own methods (`proto::methods`) instead of
    // keeping a second copy of the .proto files' method names.
    let descriptors = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?)
        .join("descriptors.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(descriptors)
        .compile_with_config(config, &files, &[root, well_known])?;
    Ok(())
}
