//! `make run`'s script: it serves, its trace viewer shows the request as one trace across the
//! three services, each service's lines land in its log file too, and one Ctrl-C stops it all.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt as _;

/// Free loopback ports (bound, then released: the script needs numbers, not sockets).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// The settings naming the script's ports, in the order [`free_ports`] hands them out.
const PORT_SETTINGS: [&str; 10] = [
    "HTTP_PORT",
    "AUTH_GRPC_PORT",
    "USER_GRPC_PORT",
    "AUTH_METRICS_PORT",
    "USER_METRICS_PORT",
    "AUTH_HEALTH_PORT",
    "USER_HEALTH_PORT",
    "VIEWER_PORT",
    "OTLP_GRPC_PORT",
    "OTLP_HTTP_PORT",
];

/// `make run`'s script on `ports` (see [`PORT_SETTINGS`]) with its data in `data`: the command,
/// for the caller to add its environment and where output goes.
fn run_script(data: &std::path::Path, ports: &[u16]) -> tokio::process::Command {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/run-local.sh");
    let mut command = tokio::process::Command::new("bash");
    command
        .arg(script)
        .env("BIN", testkit::process::bin_dir())
        .env("DATA_DIR", data)
        .envs(
            PORT_SETTINGS
                .iter()
                .zip(ports)
                .map(|(name, port)| (*name, port.to_string())),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The README's sign-up against the script's gateway at `base`: its trace id.
async fn signup(http: &reqwest::Client, base: &str, email: &str) -> String {
    let response = http
        .post(format!("{base}/api/v1/signup"))
        .json(&serde_json::json!({"email": email, "password": "correct horse battery", "name": "Run"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    testkit::stack::trace_id(&response)
}

#[tokio::test]
async fn the_run_script_serves_and_ctrl_c_stops_all_three() {
    let data = tempfile::tempdir().unwrap();
    let ports = free_ports(PORT_SETTINGS.len());
    let mut child = run_script(data.path(), &ports)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        // A key exported in the developer's shell: it must reach auth, and only auth.
        .env("JWT_SECRET", "shell-exported-key-0123456789abcdef0123")
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the script");
    let banner = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let sink = banner.clone();
    let reader = tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });

    let base = format!("http://127.0.0.1:{}", ports[0]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready; script said: {}",
            banner.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let trace_id = signup(&http, &base, "run@example.com").await;
    // What the person opening the printed URL sees: the sign-up, one trace, three services.
    let viewer = format!("http://127.0.0.1:{}", ports[7]);
    let trace = testkit::eventually_async(
        "the sign-up in the viewer",
        Duration::from_secs(20),
        || async {
            let answer = http
                .get(format!("{viewer}/api/traces/{trace_id}"))
                .send()
                .await
                .ok()?;
            let trace: serde_json::Value = answer.json().await.ok()?;
            (trace["spans"].as_array()?.len() == 7).then_some(trace)
        },
    )
    .await;
    let mut services: Vec<&str> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    services.sort_unstable();
    services.dedup();
    assert_eq!(services, ["auth", "gateway", "user"]);
    let page = http
        .get(format!("{viewer}/trace/{trace_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    // And each service's lines in its file, for `make trace`.
    for service in ["gateway", "auth", "user"] {
        let file = data.path().join(format!("logs/{service}.log"));
        testkit::eventually(
            &format!("{} has the trace", file.display()),
            Duration::from_secs(10),
            || {
                std::fs::read_to_string(&file)
                    .ok()?
                    .contains(&trace_id)
                    .then_some(())
            },
        )
        .await;
    }
    assert!(
        data.path().join("users.db").exists(),
        "SQLite file in DATA_DIR"
    );
    assert!(
        data.path().join("certs/auth/key.pem").exists(),
        "the calls between the services are mutual TLS"
    );
    let banner_text = banner.lock().unwrap().clone();
    assert!(
        banner_text.contains("curl")
            && banner_text.contains(&base)
            && banner_text.contains(&viewer),
        "{banner_text}"
    );

    #[cfg(target_os = "linux")]
    only_auth_holds_the_signing_key(child.id().unwrap());

    // Ctrl-C: SIGINT to the script.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("script exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Read the pipe to its end (every writer has exited) before looking for the last words.
    tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("stderr closes")
        .unwrap();
    let said = banner.lock().unwrap().clone();
    assert!(said.contains("stopped."), "{said}");
    for port in &ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "port {port} still answers: a service outlived the script"
        );
    }
}

/// Each service process started by the script (its children), by name, with its environment.
#[cfg(target_os = "linux")]
fn only_auth_holds_the_signing_key(script: u32) {
    let children =
        std::fs::read_to_string(format!("/proc/{script}/task/{script}/children")).unwrap();
    let mut seen = Vec::new();
    for pid in children.split_whitespace() {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let name = exe
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !["gateway", "auth", "user", "viewer"].contains(&name.as_str()) {
            continue; // the script's own `sleep`, and the `tee`s that copy lines to files
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let has_key = environ
            .split(|b| *b == 0)
            .any(|var| var.starts_with(b"JWT_SECRET="));
        assert_eq!(
            has_key,
            name == "auth",
            "{name}: JWT_SECRET in its environment: {has_key}"
        );
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["auth", "gateway", "user", "viewer"]);
}

#[tokio::test]
async fn with_a_collector_of_your_own_the_run_script_exports_there_and_starts_no_viewer() {
    let collector = testkit::otlp::OtlpCollector::start().await;
    let data = tempfile::tempdir().unwrap();
    let ports = free_ports(PORT_SETTINGS.len());
    let mut child = run_script(data.path(), &ports)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stderr(Stdio::null())
        .spawn()
        .expect("run the script");
    let base = format!("http://127.0.0.1:{}", ports[0]);
    let http = reqwest::Client::new();
    testkit::eventually_async("the gateway ready", Duration::from_secs(30), || async {
        let ready = http.get(format!("{base}/readyz")).send().await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    let trace_id = signup(&http, &base, "own@example.com").await;
    // The spans go to the collector the user named; no viewer was started.
    testkit::eventually(
        "the sign-up at the collector",
        Duration::from_secs(20),
        || (collector.trace(&trace_id).len() == 7).then_some(()),
    )
    .await;
    for port in &ports[7..] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_err(),
            "a viewer listens on {port}"
        );
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("script exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
