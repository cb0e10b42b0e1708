//! The user service's SQLite storage failing: a read-only data directory at start-up, a full
//! disk at run time. Each runs the real binary in a mount namespace of its own (`unshare`),
//! where a small or read-only tmpfs is its data directory; nothing needs root.

use proto::user::v1::user_service_client::UserServiceClient;
use proto::user::v1::{CreateUserRequest, GetUserRequest};
use testkit::process::Service;

/// A launcher that mounts a tmpfs with `options` on `dir` and then runs the binary there.
fn in_tmpfs(dir: &str, options: &str) -> Vec<String> {
    vec![
        "unshare".into(),
        "--user".into(),
        "--map-root-user".into(),
        "--mount".into(),
        "sh".into(),
        "-c".into(),
        format!("mount -t tmpfs -o {options} tmpfs \"$0\" && exec \"$1\""),
        dir.into(),
    ]
}

/// Whether this machine lets an unprivileged process mount a tmpfs in its own namespace;
/// says SKIPPED when not, and fails under `CI=true`.
fn namespaces_available() -> bool {
    let works = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .status()
        .is_ok_and(|status| status.success());
    if !works {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but `unshare --user --map-root-user --mount` fails here"
        );
        eprintln!("SKIPPED: storage fault tests need unprivileged user namespaces (unshare)");
    }
    works
}

fn env(data_dir: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATA_DIR", data_dir.to_owned()),
        ("GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("HEALTH_ADDR", "127.0.0.1:0".to_owned()),
        ("BCRYPT_COST", "4".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
}

#[tokio::test]
async fn a_read_only_data_directory_stops_start_up_with_one_clear_line() {
    if !namespaces_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let launcher = in_tmpfs(&data, "ro");
    let launcher: Vec<&str> = launcher.iter().map(String::as_str).collect();
    let mut user = Service::spawn_via("user", &launcher, &env(&data));

    let code = user.wait().await;
    assert_eq!(code, Some(1), "stderr: {:?}", user.stderr());
    let logs = user.json_logs();
    let error = logs
        .iter()
        .find(|line| line["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR line in {logs:?}"));
    let why = error["error"].as_str().unwrap();
    assert!(
        why.contains(&format!("{data}/users.db is not writable"))
            && why.contains("Read-only file system")
            && why.contains("DATA_DIR"),
        "{why}"
    );
    assert!(
        !logs
            .iter()
            .any(|line| line["msg"] == "database unreachable; retrying"),
        "a read-only directory is not retried like a network outage"
    );
}

#[tokio::test]
async fn a_full_disk_refuses_writes_as_unavailable_and_keeps_serving_reads() {
    if !namespaces_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let launcher = in_tmpfs(&data, "size=256k");
    let launcher: Vec<&str> = launcher.iter().map(String::as_str).collect();
    // Beside the data directory, which is the tmpfs that fills up.
    let ready_dir = tempfile::tempdir().unwrap();
    let ready = ready_dir.path().join("user.ready.json");
    let mut settings = env(&data);
    settings.push(("READY_FILE", ready.display().to_string()));
    let user = Service::spawn_via("user", &launcher, &settings);
    let addr = testkit::stack::ready_file(&user, &ready).await["grpc"]
        .as_str()
        .expect("user's gRPC address")
        .to_owned();
    let mut client = UserServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let hash = bcrypt::hash("a password that is long enough", 4).unwrap();

    let mut first_id = None;
    let mut refusal = None;
    for n in 0..5_000 {
        let created = client
            .create_user(CreateUserRequest {
                email: format!("full-{n}@example.com"),
                name: "n".repeat(100),
                password_hash: hash.clone(),
            })
            .await;
        match created {
            Ok(response) => {
                first_id.get_or_insert_with(|| response.into_inner().user.unwrap().id);
            }
            Err(status) => {
                refusal = Some((n, status));
                break;
            }
        }
    }
    let (stored, status) = refusal.expect("256 KiB never filled up");
    assert!(
        stored > 0,
        "the disk filled before the first row: {status:?}"
    );
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        status.message(),
        "the user database cannot store data right now"
    );

    // Reads go on: the profile stored first is still served.
    let read = client
        .get_user(GetUserRequest {
            id: first_id.unwrap(),
        })
        .await
        .expect("reads still work on a full disk");
    assert_eq!(read.into_inner().user.unwrap().email, "full-0@example.com");
    user.wait_for_log("the operator's log names the cause", |line| {
        line["level"] == "ERROR" && line.to_string().contains("database or disk is full")
    })
    .await;
}
