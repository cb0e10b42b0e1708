//! The viewer's page in a real browser: Debian's Chromium, headless, loads the page of a trace
//! the test made, runs its script, and the test reads the rendered DOM.

use std::path::Path;
use std::process::Command;

use crate::ViewerProcess;
use crate::run_layout::{chosen_trace, run_layout, signup, spans_of, viewer_source};

/// Chromium, headless, as this machine allows it: no sandbox (root), no GPU, none of the
/// background traffic a closed network refuses; a fresh profile. Lets the page's script run for
/// up to 5 s of virtual time before `what` (`--dump-dom`, `--screenshot=...`).
fn chromium(binary: &Path, profile: &Path, what: &str, url: &str) -> String {
    let output = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--window-size=1400,600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(what)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn chromium_draws_a_signup_across_the_three_services() {
    let Some(binary) = testkit::tool::require("chromium", "apt-get install chromium") else {
        return;
    };
    let viewer = ViewerProcess::start(&[]).await;
    let stack = run_layout(&viewer).await;
    let (id, traceparent) = chosen_trace();
    signup(&stack, "browser@example.com", &traceparent).await;
    let source = viewer_source(&viewer, &stack);
    spans_of(&source, &id, 7).await;
    let profile = tempfile::tempdir().unwrap();

    // The trace's page: one row per span, the waterfall's bars, each span's attributes.
    let dom = chromium(
        &binary,
        profile.path(),
        "--dump-dom",
        &format!("{}/trace/{id}", viewer.url),
    );
    let rows = |service: &str| {
        dom.matches(&format!(
            r#"<details class="span" data-service="{service}""#
        ))
        .count()
    };
    assert_eq!(
        (rows("gateway"), rows("auth"), rows("user")),
        (2, 3, 2),
        "the seven spans of a sign-up, by service:\n{dom}"
    );
    assert_eq!(dom.matches(r#"class="bar""#).count(), 7, "{dom}");
    for text in [
        "POST /api/v1/signup",
        "auth.v1.AuthService/Signup",
        "bcrypt.hash",
        "user.v1.UserService/CreateUser",
        "INSERT users",
        "http.route",
        "db.operation.name",
        &id,
    ] {
        assert!(dom.contains(text), "the page lacks {text:?}:\n{dom}");
    }

    // The list of recent traces links to it.
    let list = chromium(
        &binary,
        profile.path(),
        "--dump-dom",
        &format!("{}/", viewer.url),
    );
    assert!(
        list.contains(&format!(r#"<tr class="trace" data-trace-id="{id}""#))
            && list.contains(&format!(r#"href="/trace/{id}""#)),
        "{list}"
    );

    // And a picture of it, for a person to look at when this fails.
    let shot = profile.path().join("trace.png");
    chromium(
        &binary,
        profile.path(),
        &format!("--screenshot={}", shot.display()),
        &format!("{}/trace/{id}", viewer.url),
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
