//! `scripts/kind-up.sh` (what `make kind-up` runs), with `docker`, `kind` and `kubectl` replaced
//! by recorders on `PATH`: there is no Docker engine or cluster here, so this checks the script's
//! own logic (the order of steps, and that a second run updates in place), not the tools.

use std::path::Path;
use std::process::Command;

use deploy_checks::repo_path;

/// Fake tools that append their arguments to `calls.log` and keep just enough state: the
/// clusters kind knows, the id of the image docker built.
fn install_fakes(dir: &Path) {
    let fakes = [
        (
            "kind",
            r#"echo "kind $*" >> "$STATE/calls.log"
case "$1 $2" in
  "get clusters") cat "$STATE/clusters" 2>/dev/null ;;
  "create cluster") echo "$4" >> "$STATE/clusters" ;;
esac"#,
        ),
        (
            "docker",
            r#"echo "docker $*" >> "$STATE/calls.log"
case "$1 $2" in
  "image inspect") cat "$STATE/image-id" 2>/dev/null || exit 1 ;;
  "build --tag") cat "$STATE/next-image-id" > "$STATE/image-id" ;;
esac"#,
        ),
        ("kubectl", r#"echo "kubectl $*" >> "$STATE/calls.log""#),
    ];
    for (name, body) in fakes {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/usr/bin/env bash\nset -eu\n{body}\n")).unwrap();
        Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    }
}

/// Runs the script once with the next build producing image `image_id`; returns the calls.
fn kind_up(fakes: &Path, state: &Path, image_id: &str) -> Vec<String> {
    std::fs::write(state.join("next-image-id"), image_id).unwrap();
    let _ = std::fs::remove_file(state.join("calls.log"));
    let path = format!("{}:{}", fakes.display(), std::env::var("PATH").unwrap());
    let banner = deploy_checks::succeeds(
        Command::new(repo_path("scripts/kind-up.sh"))
            .env("PATH", path)
            .env("STATE", state),
    );
    assert!(
        banner.contains("http://localhost:8080") && banner.contains("http://localhost:3000"),
        "{banner}"
    );
    std::fs::read_to_string(state.join("calls.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn position(calls: &[String], prefix: &str) -> usize {
    calls
        .iter()
        .position(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` in {calls:#?}"))
}

#[test]
fn kind_up_creates_builds_loads_applies_and_waits_then_updates_in_place() {
    let fakes = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    install_fakes(fakes.path());

    // First run: a new cluster, the image built and loaded before the manifests are applied.
    let first = kind_up(fakes.path(), state.path(), "sha256:one");
    let create = position(
        &first,
        "kind create cluster --name observable-rust --config k8s/kind-config.yaml",
    );
    let build = position(&first, "docker build --tag observable-rust:dev .");
    let load = position(
        &first,
        "kind load docker-image observable-rust:dev --name observable-rust",
    );
    let apply = position(
        &first,
        "kubectl --context kind-observable-rust apply --kustomize k8s/overlays/kind",
    );
    let wait = position(
        &first,
        "kubectl --context kind-observable-rust --namespace observable-rust rollout status",
    );
    assert!(
        create < build && build < load && load < apply && apply < wait,
        "{first:#?}"
    );
    let waited = first
        .iter()
        .filter(|c| c.contains("rollout status"))
        .count();
    assert_eq!(waited, 9, "every workload is waited for: {first:#?}");
    assert!(
        !first.iter().any(|c| c.contains("rollout restart")),
        "nothing to restart on a first run"
    );
    for secret in ["postgres", "jwt", "grafana"] {
        assert!(repo_path(&format!("k8s/overlays/kind/secrets/{secret}.env")).exists());
    }

    // Second run, the code changed: the same cluster, a new image, the services restarted onto it.
    let second = kind_up(fakes.path(), state.path(), "sha256:two");
    assert!(
        !second.iter().any(|c| c.starts_with("kind create")),
        "the cluster is reused: {second:#?}"
    );
    let restart = position(
        &second,
        "kubectl --context kind-observable-rust --namespace observable-rust rollout restart deployment/gateway deployment/auth deployment/user",
    );
    assert!(position(&second, "kubectl --context kind-observable-rust apply") < restart);

    // Third run, nothing changed: nothing is restarted.
    let third = kind_up(fakes.path(), state.path(), "sha256:two");
    assert!(
        !third.iter().any(|c| c.contains("rollout restart")),
        "{third:#?}"
    );
}

#[test]
fn kind_up_says_which_tool_is_missing() {
    // A PATH with only what the script itself needs before its check: none of the three tools.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["dirname", "grep"] {
        let real = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .unwrap();
        let real = String::from_utf8(real.stdout).unwrap();
        std::os::unix::fs::symlink(real.trim(), bin.path().join(tool)).unwrap();
    }
    let output = Command::new("/bin/bash")
        .arg(repo_path("scripts/kind-up.sh"))
        .env("PATH", bin.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("kind-up needs docker"), "{stderr}");
}
