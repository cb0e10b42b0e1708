//! The `make run` layout: the viewer and the three services as separate processes, the
//! services exporting to the viewer and writing their lines to `<service>.log` files; then
//! `make trace`'s code, and the `trace` binary itself, asked for a sign-up's trace.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use testkit::stack::{Logs, Options, Stack};
use testkit::standins::ObservedStack;
use viewer::sources::Source;
use viewer::store::Span;

use crate::ViewerProcess;

/// The stack `make run` starts, exporting to `viewer`, its lines in files.
pub async fn run_layout(viewer: &ViewerProcess) -> Stack {
    Stack::start_with_options(
        &Stack::exporting_to(&viewer.otlp_grpc),
        Options {
            logs: Logs::Files,
            ..Options::default()
        },
    )
    .await
}

/// The folder of the stack's `<service>.log` files.
pub fn log_dir(stack: &Stack) -> &Path {
    stack.gateway.log_file().unwrap().parent().unwrap()
}

/// `make trace`'s default source on this layout: the viewer and the stack's log files.
pub fn viewer_source(viewer: &ViewerProcess, stack: &Stack) -> Source {
    Source::Viewer {
        url: viewer.url.clone(),
        log_dir: log_dir(stack).to_owned(),
    }
}

/// A fresh trace id that starts with `00`, and the `traceparent` that puts a request in it.
pub fn chosen_trace() -> (String, String) {
    let id = format!("00{:030x}", rand_u128() >> 8);
    let parent = format!("00-{id}-b7ad6b7169203331-01");
    (id, parent)
}

fn rand_u128() -> u128 {
    // Unique enough per test run, without a dependency: the clock and the process.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    now.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u128::from(std::process::id())
}

/// Signs `email` up under `traceparent`.
pub async fn signup(stack: &Stack, email: &str, traceparent: &str) {
    let response = stack
        .http
        .post(format!("{}/api/v1/signup", stack.gateway_url))
        .header("traceparent", traceparent)
        .json(&json!({"email": email, "password": testkit::stack::PASSWORD, "name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

/// The spans of `id` once all `count` have arrived.
pub async fn spans_of(source: &Source, id: &str, count: usize) -> Vec<Span> {
    let http = reqwest::Client::new();
    testkit::eventually_async(
        &format!("{count} spans of {id}"),
        Duration::from_secs(20),
        || async {
            let spans = source.spans(&http, id).await.ok()?;
            (spans.len() == count).then_some(spans)
        },
    )
    .await
}

/// The `trace` binary, as `make trace` runs it: (exit code, stdout, stderr).
fn trace_command(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(testkit::process::bin("trace"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// `trace`'s output for a sign-up asked as `asked`: the tree of seven spans with the attributes
/// a reader needs, and the lines of all three services.
fn assert_prints_the_signup((code, out, err): &(i32, String, String), asked: &str) {
    assert_eq!(*code, 0, "{err}");
    assert!(
        out.starts_with(&format!("trace {asked}  7 spans  gateway, auth, user  ")),
        "{out}"
    );
    for expected in [
        "  POST /api/v1/signup ",
        "  └─ auth.v1.AuthService/Signup ",
        "        ├─ bcrypt.hash ",
        "              └─ INSERT users ",
        "http.route=/api/v1/signup",
        "db.operation.name=INSERT",
        "user created",
        "user signed up",
        "http request handled",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
}

#[tokio::test]
async fn make_trace_prints_a_signup_as_one_tree_with_the_lines_of_all_three_services() {
    let viewer = ViewerProcess::start(&[]).await;
    let stack = run_layout(&viewer).await;
    let (id, traceparent) = chosen_trace();
    signup(&stack, "tree@example.com", &traceparent).await;
    let source = viewer_source(&viewer, &stack);

    // One tree: the seven spans of a sign-up, each under the span that caused it.
    let spans = spans_of(&source, &id, 7).await;
    let find = |service: &str, name: &str, kind: &str| -> &Span {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name && s.kind == kind)
            .unwrap_or_else(|| panic!("no {service} {kind} {name} in {spans:#?}"))
    };
    let root = find("gateway", "POST /api/v1/signup", "server");
    assert_eq!(
        root.parent_span_id, "b7ad6b7169203331",
        "under the traceparent"
    );
    let call = find("gateway", "auth.v1.AuthService/Signup", "client");
    let signup_span = find("auth", "auth.v1.AuthService/Signup", "server");
    let hash = find("auth", "bcrypt.hash", "internal");
    let create_call = find("auth", "user.v1.UserService/CreateUser", "client");
    let create = find("user", "user.v1.UserService/CreateUser", "server");
    let insert = find("user", "INSERT users", "client");
    for (child, parent) in [
        (call, root),
        (signup_span, call),
        (hash, signup_span),
        (create_call, signup_span),
        (create, create_call),
        (insert, create),
    ] {
        assert_eq!(
            child.parent_span_id, parent.span_id,
            "{} under {}",
            child.name, parent.name
        );
    }

    // The lines of all three services, found in the log files by the trace id.
    let http = reqwest::Client::new();
    let logs = testkit::eventually_async("lines of all three", Duration::from_secs(10), || async {
        let logs = source.logs(&http, &id).await.ok()?;
        let all = ["gateway", "auth", "user"]
            .iter()
            .all(|s| logs.iter().any(|l| l.service == *s));
        all.then_some(logs)
    })
    .await;
    assert!(logs.iter().all(|l| l.span_id.len() == 16));

    // What `make trace` prints, from the binary itself; Tempo's zero-stripped form finds it too.
    let env = [
        ("VIEWER_URL", viewer.url.as_str()),
        ("LOG_DIR", log_dir(&stack).to_str().unwrap()),
    ];
    for asked in [id.as_str(), id.trim_start_matches('0')] {
        assert_prints_the_signup(&trace_command(&[asked], &env), asked);
    }
    // The README shows this output; its shape is the code's.
    let rendered = viewer::tree::render(&id, &spans, &logs);
    crate::run_layout::readme_matches(&rendered);

    // A backend that is not there: one line, exit 1.
    let dead = testkit::DeadEndpoint::reserve().url();
    let (code, out, err) = trace_command(&[&id], &[("VIEWER_URL", &dead)]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("trace: cannot reach the viewer at"),
        "{err}"
    );
    let (code, _, err) = trace_command(&["00ffffffffffffffffffffffffffffff"], &env);
    assert_eq!((code, err.lines().count()), (1, 1), "{err}");
    assert!(err.contains("no trace"), "{err}");
}

#[tokio::test]
async fn without_an_id_make_trace_shows_the_slowest_and_the_latest_failed_request() {
    let viewer = ViewerProcess::start(&[]).await;
    let mut stack = run_layout(&viewer).await;
    let (slow, traceparent) = chosen_trace();
    // A sign-up hashes a password: the slowest request here.
    signup(&stack, "slow@example.com", &traceparent).await;
    let login = stack.login("slow@example.com").await;
    let token = login.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // With user gone, a profile read fails: its gateway -> user call is an error span.
    stack.user.terminate().await;
    let failed = stack.me(&token).await;
    assert_eq!(failed.status(), 503);
    let failed_id = testkit::stack::trace_id(&failed);

    let source = viewer_source(&viewer, &stack);
    let http = reqwest::Client::new();
    let notable = testkit::eventually_async("a failed trace", Duration::from_secs(20), || async {
        let found = source.notable(&http).await.ok()?;
        (found.len() == 2).then_some(found)
    })
    .await;
    assert_eq!(notable[0], ("slowest".to_owned(), slow.clone()));
    assert_eq!(
        notable[1],
        ("most recent failed".to_owned(), failed_id.clone())
    );

    let env = [
        ("VIEWER_URL", viewer.url.as_str()),
        ("LOG_DIR", log_dir(&stack).to_str().unwrap()),
    ];
    let (code, out, err) = trace_command(&[], &env);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "== the slowest request of the last 15 minutes\ntrace {slow}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "== the most recent failed request of the last 15 minutes\ntrace {failed_id}"
        )),
        "{out}"
    );
    assert!(out.contains("error"), "{out}");
}

// Two workers: the stand-ins serve while the test waits on the `trace` process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_trace_reads_the_same_trace_from_tempo_and_loki() {
    // `make up`'s layout in small: the spans go to the in-test collector, which a stand-in for
    // Tempo's HTTP API serves; the lines to files, which a stand-in for Loki's serves.
    let ObservedStack {
        stack,
        collector,
        tempo,
        loki,
    } = ObservedStack::start().await;
    let (id, traceparent) = chosen_trace();
    signup(&stack, "tempo@example.com", &traceparent).await;
    testkit::eventually(
        "seven spans at the collector",
        Duration::from_secs(20),
        || (collector.trace(&id).len() == 7).then_some(()),
    )
    .await;

    let env = [
        ("TRACE_SOURCE", "tempo"),
        ("TEMPO_URL", tempo.url.as_str()),
        ("LOKI_URL", loki.url.as_str()),
    ];
    // Tempo's form of the id, as its search results give it.
    let asked = id.trim_start_matches('0');
    assert_prints_the_signup(&trace_command(&[asked], &env), asked);
    // Loki and Tempo not there: one line, exit 1.
    let dead = testkit::DeadEndpoint::reserve().url();
    let (code, _, err) = trace_command(
        &[asked],
        &[
            ("TRACE_SOURCE", "tempo"),
            ("TEMPO_URL", &dead),
            ("LOKI_URL", &dead),
        ],
    );
    assert_eq!((code, err.lines().count()), (1, 1), "{err}");
    assert!(err.starts_with("trace: cannot reach Tempo at"), "{err}");
}

/// The README's "Seeing the trace" block has the shape `render` gives: the same header, the
/// same tree (prefix, name, service, kind per row, in order) and a logs heading.
pub fn readme_matches(rendered: &str) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let block = readme
        .split("$ make trace ID=")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README: a ```make trace ID=...``` block in \"Seeing the trace\"");
    // Each span row: the tree (prefix and name), the service and the kind, then the duration.
    let row = regex::Regex::new(r"^  (.*?\S)\s{2,}(\S+)\s+(\S+)\s+[0-9.]+ ms ").unwrap();
    let tree = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains('█'))
            .filter_map(|l| row.captures(l))
            .map(|c| format!("{} | {} | {}", &c[1], &c[2], &c[3]))
            .collect()
    };
    let documented = tree(block);
    assert_eq!(documented.len(), 7, "README block:\n{block}");
    assert_eq!(
        documented,
        tree(rendered),
        "README block:\n{block}\nrendered:\n{rendered}"
    );
    let header = |text: &str| -> String {
        let line = text
            .lines()
            .find(|l| l.starts_with("trace "))
            .unwrap_or("")
            .to_owned();
        line.split("  ").nth(1).unwrap_or("").to_owned()
            + " | "
            + line.split("  ").nth(2).unwrap_or("")
    };
    assert_eq!(header(block), header(rendered));
    assert!(block.contains("logs: ") && block.contains(", by time"));
}
