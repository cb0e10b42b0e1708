//! What each pinned upstream image holds, and the programs compose asks it to run.
//!
//! A compose file can name any program in an `entrypoint`, `command` or `healthcheck`; the Compose
//! schema accepts them all, and only `docker compose up` on a user's machine finds out that the
//! image has no such file. Upstream images hold less than one expects: Tempo's and Loki's are
//! distroless (their own binary and nothing else, no shell), so a `chown` init container in
//! Tempo's image could never start and `make up` waited forever for it.
//!
//! [`PINNED`] says, per image and tag compose pins, what the image contains, each row with the
//! upstream file it was read from; [`programs_run`] lists what a compose service runs; and
//! [`unavailable_programs`] is the check: every program must be in the image.

use serde_json::Value;

/// One pinned upstream image, as its Dockerfile at that tag builds it.
#[derive(Debug)]
pub struct ImageContents {
    /// `name:tag`, exactly as compose pins it.
    pub image: &'static str,
    /// The image's own `ENTRYPOINT`: a `command` is passed to it as arguments, not run.
    pub entrypoint: Option<&'static str>,
    /// Every executable a compose file may name, by absolute path. `/bin/sh` is here only when
    /// the image has a shell (needed by `CMD-SHELL` healthchecks).
    pub programs: &'static [&'static str],
    /// The upstream file (repository, tag, path) that this row was read from.
    pub read_from: &'static str,
}

/// Busybox applets a compose file might reach for, as the `busybox --install` of Prometheus'
/// base image lays them out in `/bin`.
const BUSYBOX: &[&str] = &[
    "/bin/sh",
    "/bin/wget",
    "/bin/chown",
    "/bin/chmod",
    "/bin/mkdir",
    "/bin/cat",
    "/bin/ls",
    "/bin/sleep",
];

/// The images compose pins, and what is in them. A new image, or a new tag, needs a row read
/// from its Dockerfile at that tag: the check fails on an image it does not know.
pub const PINNED: &[ImageContents] = &[
    ImageContents {
        image: "grafana/tempo:3.0.0",
        entrypoint: Some("/tempo"),
        // distroless/static-debian12: /tempo, CA certificates, /etc/passwd and /etc/group, and
        // /var/tempo owned by 10001. No shell, no busybox (only its build stage has one).
        programs: &["/tempo"],
        read_from: "grafana/tempo v3.0.0 cmd/tempo/Dockerfile",
    },
    ImageContents {
        image: "grafana/loki:3.7.6",
        entrypoint: Some("/usr/bin/loki"),
        // distroless/static:nonroot: /usr/bin/loki, /etc/loki and /loki owned by 10001.
        programs: &["/usr/bin/loki"],
        read_from: "grafana/loki v3.7.6 cmd/loki/Dockerfile",
    },
    ImageContents {
        image: "prom/prometheus:v3.7.3",
        entrypoint: Some("/bin/prometheus"),
        // quay.io/prometheus/busybox: the two binaries and busybox's applets.
        programs: &["/bin/prometheus", "/bin/promtool"],
        read_from: "prometheus/prometheus v3.7.3 Dockerfile (FROM quay.io/prometheus/busybox)",
    },
    ImageContents {
        image: "grafana/alloy:v1.18.0",
        entrypoint: Some("/bin/alloy"),
        // Ubuntu noble with ca-certificates, libsystemd0 and tzdata: a shell, no curl or wget.
        programs: &["/bin/alloy", "/bin/otelcol", "/bin/sh"],
        read_from: "grafana/alloy v1.18.0 Dockerfile",
    },
    ImageContents {
        image: "grafana/grafana:13.1.2",
        entrypoint: Some("/run.sh"),
        // Its entrypoint script runs grafana; compose overrides none of it.
        programs: &["/run.sh", "/usr/share/grafana/bin/grafana", "/bin/sh"],
        // Read on the default branch: the repository is beyond this workplace's fetch limit,
        // so not at the tag. Compose runs nothing of its own in it.
        read_from: "grafana/grafana packaging/docker/Dockerfile and run.sh (default branch)",
    },
    ImageContents {
        image: "postgres:18.1-alpine",
        entrypoint: Some("docker-entrypoint.sh"),
        // Alpine with busybox, bash and the PostgreSQL client and server programs.
        programs: &[
            "/usr/local/bin/docker-entrypoint.sh",
            "/usr/local/bin/postgres",
            "/usr/local/bin/pg_isready",
            "/usr/local/bin/psql",
            "/bin/sh",
            "/bin/bash",
        ],
        read_from: "docker-library/postgres 18/alpine3.22/Dockerfile (PG_VERSION 18.1)",
    },
];

impl ImageContents {
    /// The row for `image`, if compose may pin it.
    pub fn of(image: &str) -> Option<&'static ImageContents> {
        PINNED.iter().find(|row| row.image == image)
    }

    /// Whether the image holds `program`: an absolute path must be there as written; a bare
    /// name is looked up the way `exec` does, by its file name in any directory.
    pub fn holds(&self, program: &str) -> bool {
        let busybox = self.programs.contains(&"/bin/prometheus");
        let all = self
            .programs
            .iter()
            .chain(if busybox { BUSYBOX } else { &[] });
        let mut all = all.copied();
        if program.starts_with('/') {
            all.any(|p| p == program)
        } else {
            all.any(|p| p.rsplit('/').next() == Some(program))
        }
    }
}

/// The programs compose runs inside `service` (one compose service, parsed), with where each
/// comes from: the `entrypoint` override, the `command` when nothing but it is run, and the
/// healthcheck (`CMD` names a program; `CMD-SHELL` needs `/bin/sh` and runs the line's first word).
pub fn programs_run(service: &Value, image: &ImageContents) -> Vec<(String, &'static str)> {
    let words = |value: &Value| -> Vec<String> {
        match value {
            Value::String(line) => line.split_whitespace().map(str::to_owned).collect(),
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut run = Vec::new();
    let entrypoint = words(&service["entrypoint"]);
    if let Some(first) = entrypoint.first() {
        run.push((first.clone(), "entrypoint"));
    } else if image.entrypoint.is_none()
        && let Some(first) = words(&service["command"]).first()
    {
        run.push((first.clone(), "command"));
    }
    let test = words(&service["healthcheck"]["test"]);
    match test.first().map(String::as_str) {
        Some("CMD") => run.extend(test.get(1).map(|p| (p.clone(), "healthcheck"))),
        Some("CMD-SHELL") => {
            run.push(("/bin/sh".to_owned(), "healthcheck (CMD-SHELL)"));
            // Compose passes the rest as one shell line; its first word is what runs.
            let line = test[1..].join(" ");
            run.extend(
                line.split_whitespace()
                    .next()
                    .map(|p| (p.to_owned(), "healthcheck")),
            );
        }
        _ => {}
    }
    run
}

/// Every program a compose file's upstream-image services run that their image does not hold,
/// and every upstream image without a row, one line each; empty when all is well. Services built
/// from this repository's Dockerfile are checked against it elsewhere (`dockerfile.rs`).
pub fn unavailable_programs(services: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, service) in services {
        if service.get("build").is_some() {
            continue;
        }
        let Some(image) = service["image"].as_str() else {
            problems.push(format!("{name}: no image"));
            continue;
        };
        let Some(contents) = ImageContents::of(image) else {
            problems.push(format!(
                "{name}: {image} has no row in deploy_checks::images::PINNED \
                 (read its Dockerfile at that tag and add one)"
            ));
            continue;
        };
        for (program, from) in programs_run(service, contents) {
            if !contents.holds(&program) {
                problems.push(format!(
                    "{name}: its {from} runs `{program}`, which {image} does not contain \
                     (it holds {:?}; read from {})",
                    contents.programs, contents.read_from
                ));
            }
        }
    }
    problems
}
