//! External command-line tools a test needs (`promtool`, `check-jsonschema`, `hadolint`...).
//!
//! Where a tool is missing, the test says so in one `SKIPPED:` line naming the install command
//! and is skipped, except under `CI=true`, where a missing tool is a failure: `.ci/run` installs
//! every one of them, and CI must never pass by skipping.

use std::io::Write as _;
use std::path::PathBuf;

/// `name` on `PATH`, or `None` after printing the `SKIPPED` line (panics under `CI=true`).
/// `install` is the command that provides it, for the message.
pub fn require(name: &str, install: &str) -> Option<PathBuf> {
    if let Some(path) = find(name) {
        return Some(path);
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !in_ci,
        "CI=true but `{name}` is not on PATH: `{install}` provides it (.ci/run does this)"
    );
    // Straight to stderr: the harness captures eprintln! of passing tests, and a skip must show.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: a check that needs `{name}`, which is not installed (`{install}`)"
    );
    None
}

/// `name` on `PATH`, if it is there.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
