//! End-to-end tests live in `tests/`: they start the real `user`, `auth` and `gateway` binaries
//! as separate processes, point them at an in-test OTLP collector, and check that one HTTP
//! request is one trace across all three, with matching logs and metrics.
//!
//! Build the binaries first (`cargo build --workspace --bins`); `make test` does.
