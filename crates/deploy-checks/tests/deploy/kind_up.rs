//! `scripts/kind-up.sh` (what `make kind-up` runs), with `docker`, `kind` and `kubectl` replaced
//! by recorders on `PATH`: there is no Docker engine or cluster here, so this checks the script's
//! own logic (the order of steps, and that a second run updates in place), not the tools.

use std::path::Path;
use std::process::Command;

use deploy_checks::repo_path;

/// Fake tools that append their arguments to `calls.log` and keep just enough state: the
/// clusters kind knows, the id of the image docker built. They answer version questions with
/// `FAKE_*_VERSION` (defaults: versions `scripts/preflight.sh` accepts); `FAKE_PODMAN=1` makes
/// `docker version` answer as Podman's docker does.
pub fn install_fakes(dir: &Path) {
    let fakes = [
        (
            "kind",
            r#"echo "kind $*" >> "$STATE/calls.log"
case "$1 ${2:-}" in
  "version ") echo "kind v${FAKE_KIND_VERSION:-0.30.0} go1.24.6 linux/amd64" ;;
  "get clusters") cat "$STATE/clusters" 2>/dev/null ;;
  "create cluster") echo "$4" >> "$STATE/clusters" ;;
esac"#,
        ),
        (
            "docker",
            r#"echo "docker $*" >> "$STATE/calls.log"
case "$1 ${2:-}" in
  "version --format") [ -z "${FAKE_NO_ENGINE:-}" ] || exit 1; echo "${FAKE_DOCKER_VERSION:-27.3.1}" ;;
  "version ") [ -z "${FAKE_PODMAN:-}" ] && echo "Server: Docker Engine - Community" || echo "Server: Podman Engine" ;;
  "compose version") echo "${FAKE_COMPOSE_VERSION:-2.30.3}" ;;
  "compose -f") cat "$STATE/compose-running" 2>/dev/null || true ;;
  "image inspect") cat "$STATE/image-id" 2>/dev/null || exit 1 ;;
  "build --tag") cat "$STATE/next-image-id" > "$STATE/image-id" ;;
esac"#,
        ),
        (
            "kubectl",
            r#"echo "kubectl $*" >> "$STATE/calls.log"
case "$1 ${2:-}" in
  "version --client") printf '{\n  "clientVersion": {\n    "major": "1",\n    "gitVersion": "v%s",\n    "platform": "linux/amd64"\n  }\n}\n' "${FAKE_KUBECTL_VERSION:-1.34.1}" ;;
esac"#,
        ),
    ];
    for (name, body) in fakes {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/usr/bin/env bash\nset -eu\n{body}\n")).unwrap();
        Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    }
}

/// A port on 127.0.0.1 that nothing listens on (one the OS just handed out and took back).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The kubectl calls that do not name the project's namespace.
fn kubectl_calls_outside_the_namespace(calls: &[String]) -> Vec<&String> {
    calls
        .iter()
        .filter(|c| c.starts_with("kubectl ") && !c.starts_with("kubectl version"))
        .filter(|c| !c.contains(" --namespace observable-rust "))
        .collect()
}

/// Runs the script once with the next build producing image `image_id`; returns the calls.
fn kind_up(fakes: &Path, state: &Path, image_id: &str) -> Vec<String> {
    run_kind_up(&repo_path("scripts/kind-up.sh"), fakes, state, image_id)
}

fn run_kind_up(script: &Path, fakes: &Path, state: &Path, image_id: &str) -> Vec<String> {
    std::fs::write(state.join("next-image-id"), image_id).unwrap();
    let _ = std::fs::remove_file(state.join("calls.log"));
    let path = format!("{}:{}", fakes.display(), std::env::var("PATH").unwrap());
    let banner = deploy_checks::succeeds(
        Command::new(script)
            .env("PATH", path)
            .env("STATE", state)
            .env("PREFLIGHT_PORTS", free_port().to_string()),
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
        "kubectl --context kind-observable-rust --namespace observable-rust apply --kustomize k8s/overlays/kind",
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
    assert_eq!(
        kubectl_calls_outside_the_namespace(&first),
        Vec::<&String>::new()
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
    assert!(
        position(
            &second,
            "kubectl --context kind-observable-rust --namespace observable-rust apply"
        ) < restart
    );

    // Third run, nothing changed: nothing is restarted.
    let third = kind_up(fakes.path(), state.path(), "sha256:two");
    assert!(
        !third.iter().any(|c| c.contains("rollout restart")),
        "{third:#?}"
    );
}

#[test]
fn a_kubectl_call_without_the_namespace_is_caught() {
    // The mutation: kind-up.sh as it was, its apply naming no namespace. A copy beside the real
    // one, since the script finds the repository from where it lives.
    let fakes = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    install_fakes(fakes.path());
    let text = std::fs::read_to_string(repo_path("scripts/kind-up.sh")).unwrap();
    let mutated = text.replace(
        r#""${KUBECTL[@]}" apply"#,
        r#"kubectl --context "$CONTEXT" apply"#,
    );
    assert_ne!(mutated, text);
    // Closed before it runs (a file open for writing cannot be executed), removed on drop.
    let script = tempfile::Builder::new()
        .prefix(".kind-up-mutant-")
        .suffix(".sh")
        .tempfile_in(repo_path("scripts"))
        .unwrap()
        .into_temp_path();
    std::fs::write(&script, mutated).unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let calls = run_kind_up(&script, fakes.path(), state.path(), "sha256:one");
    let outside = kubectl_calls_outside_the_namespace(&calls);
    assert_eq!(
        outside,
        ["kubectl --context kind-observable-rust apply --kustomize k8s/overlays/kind"],
        "{calls:#?}"
    );
}
