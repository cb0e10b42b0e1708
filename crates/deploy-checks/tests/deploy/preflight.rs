//! `scripts/preflight.sh`, what `make up` and `make kind-up` run first: each missing tool, old
//! version and taken port stops it with one line naming the minimum. `docker`, `kind` and
//! `kubectl` are the recording fakes of `kind_up.rs`, answering with the versions a test picks.

use std::path::Path;
use std::process::{Command, Output};

use deploy_checks::repo_path;

use crate::kind_up::{free_port, install_fakes};

/// Runs `preflight.sh mode` with the fakes first on PATH and `env` set.
fn preflight(fakes: &Path, mode: &str, env: &[(&str, String)]) -> Output {
    let state = tempfile::tempdir().unwrap();
    let path = format!("{}:{}", fakes.display(), std::env::var("PATH").unwrap());
    let mut command = Command::new(repo_path("scripts/preflight.sh"));
    command
        .arg(mode)
        .env("PATH", path)
        .env("STATE", state.path())
        .env("PREFLIGHT_PORTS", free_port().to_string());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// The one line a failed preflight prints, checked to be exactly one.
fn refusal(output: &Output) -> String {
    assert!(!output.status.success(), "it should have refused");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn a_machine_that_has_everything_passes_both() {
    let fakes = tempfile::tempdir().unwrap();
    install_fakes(fakes.path());
    for mode in ["compose", "kind"] {
        let output = preflight(fakes.path(), mode, &[]);
        assert!(
            output.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn each_missing_or_old_prerequisite_is_named_with_its_minimum() {
    let fakes = tempfile::tempdir().unwrap();
    install_fakes(fakes.path());
    let cases: [(&str, &str, String, &[&str]); 7] = [
        (
            "compose",
            "FAKE_DOCKER_VERSION",
            "25.0.5".into(),
            &["Docker Engine 26.0", "25.0.5"],
        ),
        (
            "compose",
            "FAKE_COMPOSE_VERSION",
            "2.25.0".into(),
            &["Docker Compose 2.26.0", "2.25.0"],
        ),
        (
            "compose",
            "FAKE_COMPOSE_VERSION",
            "v2.20.3".into(),
            &["Docker Compose 2.26.0"],
        ),
        ("compose", "FAKE_PODMAN", "1".into(), &["Podman"]),
        (
            "compose",
            "FAKE_NO_ENGINE",
            "1".into(),
            &["cannot reach the Docker engine"],
        ),
        (
            "kind",
            "FAKE_KIND_VERSION",
            "0.29.0".into(),
            &["kind 0.30.0", "v0.29.0"],
        ),
        (
            "kind",
            "FAKE_KUBECTL_VERSION",
            "1.31.4".into(),
            &["kubectl 1.33", "1.31"],
        ),
    ];
    for (mode, variable, value, expected) in cases {
        let line = refusal(&preflight(fakes.path(), mode, &[(variable, value.clone())]));
        for part in expected {
            assert!(line.contains(part), "{mode} {variable}={value}: {line}");
        }
    }
    // Newer than the minimum in every digit that sort -V compares.
    let newer = preflight(
        fakes.path(),
        "compose",
        &[
            ("FAKE_DOCKER_VERSION", "28.10.1".into()),
            ("FAKE_COMPOSE_VERSION", "v2.100.0".into()),
        ],
    );
    assert!(newer.status.success());
}

#[test]
fn a_missing_tool_is_named() {
    // A PATH with the shell and the tools the scripts use, and none of docker, kind, kubectl.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["bash", "dirname", "grep", "sort", "head", "cut"] {
        let real = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .unwrap();
        let real = String::from_utf8(real.stdout).unwrap();
        std::os::unix::fs::symlink(real.trim(), bin.path().join(tool)).unwrap();
    }
    for (mode, what) in [("compose", "make up"), ("kind", "make kind-up")] {
        let output = Command::new("/bin/bash")
            .arg(repo_path("scripts/preflight.sh"))
            .arg(mode)
            .env("PATH", bin.path())
            .output()
            .unwrap();
        let line = refusal(&output);
        assert!(line.starts_with(&format!("{what}: needs docker")), "{line}");
    }
    // kind-up.sh runs it before anything else.
    let output = Command::new("/bin/bash")
        .arg(repo_path("scripts/kind-up.sh"))
        .env("PATH", bin.path())
        .output()
        .unwrap();
    assert!(refusal(&output).contains("make kind-up: needs docker"));
}

#[test]
fn a_taken_port_is_named_unless_the_stack_is_already_up() {
    let fakes = tempfile::tempdir().unwrap();
    install_fakes(fakes.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for mode in ["compose", "kind"] {
        let line = refusal(&preflight(
            fakes.path(),
            mode,
            &[("PREFLIGHT_PORTS", format!("{} {port}", free_port()))],
        ));
        assert!(
            line.contains(&format!("port {port} on 127.0.0.1 is taken")),
            "{line}"
        );
    }

    // Already up: the ports are the stack's own, and `make up` is an update.
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("compose-running"), "3f2a\n").unwrap();
    std::fs::write(state.path().join("clusters"), "observable-rust\n").unwrap();
    for mode in ["compose", "kind"] {
        let path = format!(
            "{}:{}",
            fakes.path().display(),
            std::env::var("PATH").unwrap()
        );
        let output = Command::new(repo_path("scripts/preflight.sh"))
            .arg(mode)
            .env("PATH", path)
            .env("STATE", state.path())
            .env("PREFLIGHT_PORTS", port.to_string())
            .output()
            .unwrap();
        assert!(output.status.success(), "{mode}: {output:?}");
    }
}

#[test]
fn the_ports_checked_by_default_are_the_ones_the_stacks_publish() {
    // What the script greps out of the files, against what the files' own parsers say.
    let compose = deploy_checks::Compose::load();
    let mut published: Vec<u16> = compose
        .services()
        .values()
        .flat_map(|s| s["ports"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            let p = p.as_str().unwrap().split(' ').next().unwrap().to_owned();
            p.split(':').nth(1).unwrap().parse().unwrap()
        })
        .collect();
    published.sort_unstable();
    published.dedup();
    let script = std::fs::read_to_string(repo_path("scripts/preflight.sh")).unwrap();
    let grep = script
        .lines()
        .find(|l| l.contains("deploy/compose.yaml | cut"))
        .unwrap();
    let pipeline = grep
        .split("PREFLIGHT_PORTS-$(")
        .nth(1)
        .unwrap()
        .trim_end_matches('}')
        .trim_end_matches(')');
    let out = Command::new("/bin/bash")
        .arg("-c")
        .arg(pipeline)
        .current_dir(repo_path(""))
        .output()
        .unwrap();
    let found: Vec<u16> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(found, published);
    assert!(found.contains(&8080) && found.contains(&3000) && found.contains(&9090));
}
