//! The OpenAPI contract, checked from outside: schemathesis generates requests from
//! `/api/v1/openapi.json` (valid ones and invalid ones) against the real stack, and fails on a
//! 5xx, an undocumented status or header, a response that breaks its schema, a schema-valid
//! request refused, an invalid one accepted, or a 405 without `Allow`.

use std::process::Command;

use serde_json::Value;
use testkit::stack::Stack;

/// Fixed, so a failure reproduces: `st run` prints the same cases each time.
const SEED: &str = "20261125";
/// Examples per operation and phase: enough to walk each schema's edges, small enough for CI.
const MAX_EXAMPLES: &str = "100";

#[tokio::test]
async fn schemathesis_finds_nothing_the_openapi_document_does_not_promise() {
    let Some(st) = testkit::tool::require("st", "python3 -m pip install schemathesis") else {
        return;
    };
    let stack = Stack::start_with(&[]).await;
    assert_eq!(stack.signup("contract@example.com").await.status(), 201);
    let login: Value = stack
        .login("contract@example.com")
        .await
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // schemathesis keeps its example database and reports in the working directory.
    let work = tempfile::tempdir().unwrap();
    let url = format!("{}/api/v1/openapi.json", stack.gateway_url);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .arg("--config-file")
            .arg(root.join("schemathesis.toml"))
            .arg("--no-color")
            .args(["run", &url])
            .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES])
            .args(["--workers", "1", "--request-timeout", "15"])
            .args(["--generation-database", "none"])
            // The document states lengths in characters and byte limits that only coincide for
            // ASCII, and character rules JSON Schema's regexes cannot spell (README: "The
            // OpenAPI contract").
            .args(["--generation-codec", "ascii"])
            .env("API_TOKEN", token)
            .current_dir(work.path())
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown with `--nocapture`: what was generated and checked.
    println!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("passed") && !stdout.contains("No operations"),
        "schemathesis tested nothing:\n{stdout}"
    );
    let server_errors: Vec<String> = stack
        .all_output()
        .into_iter()
        .filter(|line| line.contains("\"level\":\"ERROR\"") || line.contains("panicked"))
        .collect();
    assert!(server_errors.is_empty(), "{server_errors:#?}");
}
