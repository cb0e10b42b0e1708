//! What telemetry costs: the same requests against six copies of the system, measured in one run.
//!
//! `make bench` builds the release binaries and runs this. Six stacks (user, auth, gateway as
//! separate processes, mutual TLS between them, as deployed) run side by side:
//!
//! | stack | tracing |
//! |---|---|
//! | off | `OTEL_SDK_DISABLED=true`: no tracer at all (the baseline) |
//! | ids only | spans and ids, no exporter |
//! | sink | exporting to a loopback OTLP endpoint that accepts and never decodes |
//! | collector | exporting to an in-process collector that decodes every span and counts it |
//! | dead | exporting to a port that refuses connections |
//! | hanging | exporting to a listener that accepts and never answers |
//!
//! Each round drives every stack in turn for `BENCH_SECONDS` with `BENCH_CONNECTIONS`
//! keep-alive connections (wrk when it is installed, else a built-in client), for
//! `GET /api/v1/users/me` (gateway -> auth -> user -> database) and `GET /` (the gateway alone);
//! the order rotates each round so drift on a shared machine hits every stack alike. Medians of
//! `BENCH_ROUNDS` rounds are printed as ratios against "off", with the CPU each request cost
//! the three processes, failed requests, spans dropped and each process's resident memory
//! before and after every round. The user service keeps its rows in SQLite, as `make run` has
//! it (`BENCH_DATABASE=postgres` for a throw-away PostgreSQL database), and each process's
//! stdout goes to a file, as a container runtime keeps it.
//!
//! Then two sections: heap allocations per request of each process, counted exactly by
//! valgrind's dhat (`BENCH_ALLOC_REQUESTS`; skipped with a line when valgrind is missing), and
//! logins at the production bcrypt cost saturating auth's hashing pool while `/users/me` is
//! measured.
//!
//! The table is printed and written to `BENCH_OUTPUT` (`BENCHMARKS.md` by `make bench`;
//! unset, nothing is written) with the machine, the commit and the command.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use testkit::otlp::OtlpCollector;
use testkit::sink::OtlpSink;
use testkit::stack::{Database, Logs, Options, Stack};

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {value:?}")),
        Err(_) => default,
    }
}

/// How the load is driven.
#[derive(Clone, Copy)]
struct Load {
    seconds: u64,
    connections: u64,
    threads: u64,
    wrk: bool,
}

/// One measurement of one endpoint on one stack.
#[derive(Clone, Copy, Default)]
struct Sample {
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
    /// Requests completed.
    requests: u64,
}

struct Scenario {
    name: &'static str,
    stack: Stack,
    token: String,
    me: Vec<Sample>,
    root: Vec<Sample>,
    /// Resident memory of gateway, auth and user: idle, then after each round.
    rss: Vec<[u64; 3]>,
    /// CPU used by gateway, auth and user while `/users/me` was driven, and the requests.
    me_cpu: [Duration; 3],
    me_requests: u64,
    /// Spans dropped, all three processes, while `/users/me` was driven.
    me_dropped: u64,
}

impl Scenario {
    /// Whether the stack has an exporter, and so spans it can drop.
    fn exports(&self) -> bool {
        !matches!(self.name, "off" | "ids only")
    }
}

async fn token(stack: &Stack, email: &str) -> String {
    assert_eq!(stack.signup(email).await.status(), 201);
    let login: serde_json::Value = stack.login(email).await.json().await.expect("login body");
    login["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// A request for the load tools: method, URL, headers, body.
struct Target {
    method: &'static str,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
}

impl Target {
    fn get(url: String, token: Option<&str>) -> Self {
        Self {
            method: "GET",
            url,
            headers: token
                .map(|t| vec![("Authorization", format!("Bearer {t}"))])
                .unwrap_or_default(),
            body: None,
        }
    }
}

/// Drives `target` for `load.seconds`.
async fn drive(target: &Target, load: Load) -> Sample {
    if load.wrk {
        wrk(target, load).await
    } else {
        builtin(target, load).await
    }
}

async fn wrk(target: &Target, load: Load) -> Sample {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut command = tokio::process::Command::new("wrk");
    command
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.seconds))
        .arg("--latency");
    for (name, value) in &target.headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    if let Some(body) = &target.body {
        // wrk sends a body only from a Lua script.
        let script = dir.path().join("post.lua");
        let lua = format!(
            "wrk.method = {:?}\nwrk.body = {:?}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
            target.method, body
        );
        std::fs::write(&script, lua).expect("wrk script");
        command.arg("-s").arg(script);
    }
    let output = command.arg(&target.url).output().await.expect("run wrk");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {text}");
    parse_wrk(&text)
}

/// Reads throughput, percentiles and failures from `wrk --latency` output.
fn parse_wrk(text: &str) -> Sample {
    let number = |line: &str| -> f64 {
        line.split_whitespace()
            .last()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let duration_ms = |value: &str| -> f64 {
        let (digits, unit): (String, String) =
            value.chars().partition(|c| c.is_ascii_digit() || *c == '.');
        let n: f64 = digits.parse().unwrap_or(f64::NAN);
        match unit.as_str() {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            _ => f64::NAN,
        }
    };
    let mut sample = Sample::default();
    for line in text.lines().map(str::trim) {
        if let Some((count, _)) = line.split_once(" requests in ") {
            sample.requests = count.trim().parse().unwrap_or(0);
        } else if line.starts_with("Requests/sec:") {
            sample.throughput = number(line);
        } else if let Some(rest) = line.strip_prefix("50%") {
            sample.p50_ms = duration_ms(rest.trim());
        } else if let Some(rest) = line.strip_prefix("99%") {
            sample.p99_ms = duration_ms(rest.trim());
        } else if line.starts_with("Non-2xx or 3xx responses:") {
            sample.failed += number(line) as u64;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            sample.failed += rest
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    sample
}

/// The same measurement without wrk: keep-alive clients in this process.
async fn builtin(target: &Target, load: Load) -> Sample {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(load.connections as usize)
        .build()
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..load.connections)
        .map(|_| {
            let (http, stop, failed) = (http.clone(), stop.clone(), failed.clone());
            let method: reqwest::Method = target.method.parse().expect("method");
            let (url, headers, body) = (
                target.url.clone(),
                target.headers.clone(),
                target.body.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut request = http.request(method.clone(), &url);
                    for (name, value) in &headers {
                        request = request.header(*name, value);
                    }
                    if let Some(body) = &body {
                        request = request
                            .header("content-type", "application/json")
                            .body(body.clone());
                    }
                    let sent = Instant::now();
                    match request.send().await {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.bytes().await;
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(load.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p) as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    Sample {
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        failed: failed.load(Ordering::Relaxed) as u64,
        requests: latencies.len() as u64,
    }
}

fn median(samples: &[Sample]) -> Sample {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
    let mut middle = sorted[sorted.len() / 2];
    middle.failed = samples.iter().map(|s| s.failed).sum();
    middle
}

fn rss(stack: &Stack) -> [u64; 3] {
    [&stack.gateway, &stack.auth, &stack.user].map(|s| s.rss_kib().unwrap_or(0))
}

fn cpu(stack: &Stack) -> [Duration; 3] {
    [&stack.gateway, &stack.auth, &stack.user].map(|s| s.cpu_time().unwrap_or_default())
}

/// Microseconds of CPU per request.
fn per_request(cpu: Duration, requests: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / requests.max(1) as f64
}

/// The database of every stack, from `BENCH_DATABASE`.
fn database() -> Database {
    match std::env::var("BENCH_DATABASE").as_deref() {
        Err(_) | Ok("" | "sqlite") => Database::Sqlite,
        Ok("postgres") => Database::PostgresIfReachable,
        Ok(other) => panic!("BENCH_DATABASE must be sqlite or postgres, got {other:?}"),
    }
}

/// Spans each of the stack's three processes dropped (`otel_spans_dropped_total`, all reasons):
/// `gateway + auth + user = total`.
async fn dropped(stack: &Stack) -> String {
    let counts = dropped_by_process(stack).await;
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return "0".to_owned();
    }
    format!("{} + {} + {} = {total}", counts[0], counts[1], counts[2])
}

/// Spans the stack has dropped so far, all three processes; none without an exporter.
async fn lost(scenario: &Scenario) -> u64 {
    if !scenario.exports() {
        return 0;
    }
    dropped_by_process(&scenario.stack).await.iter().sum()
}

/// `otel_spans_dropped_total` of gateway, auth and user.
async fn dropped_by_process(stack: &Stack) -> Vec<u64> {
    let mut counts = Vec::new();
    for url in [
        format!("{}/metrics", stack.gateway_url),
        stack.auth_metrics.clone(),
        stack.user_metrics.clone(),
    ] {
        let text = stack.metrics(&url).await;
        counts.push(
            text.lines()
                .filter(|line| line.starts_with("otel_spans_dropped_total{"))
                .filter_map(|line| line.split_whitespace().last()?.parse::<f64>().ok())
                .sum::<f64>() as u64,
        );
    }
    counts
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), Linux {kernel}")
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[tokio::main]
async fn main() {
    let rounds = setting("BENCH_ROUNDS", 3) as usize;
    let wrk_installed = testkit::tool::find("wrk").is_some();
    let load = Load {
        seconds: setting("BENCH_SECONDS", 10),
        connections: setting("BENCH_CONNECTIONS", 64),
        threads: setting("BENCH_THREADS", 2),
        wrk: wrk_installed && std::env::var("BENCH_TOOL").as_deref() != Ok("builtin"),
    };
    if !load.wrk {
        eprintln!(
            "note: wrk is not installed (Debian: apt install wrk); using the built-in client, which shares the cores with the stacks less efficiently"
        );
    }
    // `BENCH_ENV="OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2048,..."` tries settings on every stack.
    let extra: Vec<(&'static str, String)> = std::env::var("BENCH_ENV")
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            (
                &*Box::leak(k.trim().to_owned().into_boxed_str()),
                v.trim().to_owned(),
            )
        })
        .collect();
    let options = Options {
        database: database(),
        logs: Logs::Files,
        ..Options::default()
    };
    // `BENCH_SECTIONS=login` runs one part only, to try something quickly.
    let sections =
        std::env::var("BENCH_SECTIONS").unwrap_or_else(|_| "overhead,allocations,login".to_owned());
    let wanted = |name: &str| sections.split(',').any(|s| s.trim() == name);

    let mut report = String::new();
    writeln!(report, "Machine: {}. Commit: {}.", machine(), commit()).unwrap();
    if !extra.is_empty() {
        writeln!(report, "Every stack also had `BENCH_ENV={extra:?}`.").unwrap();
    }
    if wanted("overhead") {
        report.push_str(&overhead_section(load, rounds, options, &extra).await);
    }
    if wanted("allocations") {
        report.push_str(&allocation_section(options.database, &extra).await);
    }
    if wanted("login") {
        report.push_str(&login_section(load, options, &extra).await);
    }
    println!("\n{report}");
    if let Ok(path) = std::env::var("BENCH_OUTPUT")
        && !path.is_empty()
    {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let path = root.join(path);
        let run = format!("<!-- bench:begin -->\n{report}<!-- bench:end -->");
        // Between the markers only: the analysis around the table is written by people.
        let document = match std::fs::read_to_string(&path) {
            Ok(old)
                if old.contains("<!-- bench:begin -->") && old.contains("<!-- bench:end -->") =>
            {
                let start = old.find("<!-- bench:begin -->").unwrap_or_default();
                let end =
                    old.find("<!-- bench:end -->").unwrap_or_default() + "<!-- bench:end -->".len();
                format!("{}{run}{}", &old[..start], &old[end..])
            }
            _ => format!(
                "# Benchmarks\n\nWritten by `make bench` (`crates/e2e/benches/telemetry_overhead.rs`).\n\n{run}\n"
            ),
        };
        std::fs::write(&path, document).expect("write the benchmark report");
        eprintln!("written to {}", path.display());
    }
}

/// The six stacks side by side: throughput, latency, CPU and memory of each against "off".
async fn overhead_section(
    load: Load,
    rounds: usize,
    options: Options,
    extra: &[(&'static str, String)],
) -> String {
    let sink = OtlpSink::start().await;
    let collector = OtlpCollector::start_counting().await;
    let dead = testkit::DeadEndpoint::reserve();
    let hanging = testkit::HangingEndpoint::start().await;
    let exporting = |endpoint: String| vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)];
    let stacks = [
        ("off", vec![("OTEL_SDK_DISABLED", "true".to_owned())]),
        ("ids only", vec![]),
        ("sink", exporting(sink.endpoint())),
        ("collector (decodes)", exporting(collector.endpoint())),
        ("dead collector", exporting(dead.url())),
        ("hanging collector", exporting(hanging.url())),
    ];
    let mut scenarios = Vec::new();
    for (name, mut env) in stacks {
        env.extend(extra.iter().cloned());
        let stack = Stack::start_with_options(&env, options).await;
        let token = token(&stack, "bench@example.com").await;
        let rss_idle = rss(&stack);
        scenarios.push(Scenario {
            name,
            stack,
            token,
            me: Vec::new(),
            root: Vec::new(),
            rss: vec![rss_idle],
            me_cpu: [Duration::ZERO; 3],
            me_requests: 0,
            me_dropped: 0,
        });
    }
    let targets = |s: &Scenario| {
        (
            Target::get(
                format!("{}/api/v1/users/me", s.stack.gateway_url),
                Some(&s.token),
            ),
            Target::get(format!("{}/", s.stack.gateway_url), None),
        )
    };

    eprintln!("warming up...");
    let warm = Load { seconds: 1, ..load };
    for scenario in &scenarios {
        drive(&targets(scenario).0, warm).await;
    }
    let count = scenarios.len();
    for n in 0..rounds {
        eprintln!("round {}/{rounds}", n + 1);
        // Rotate the order each round so no stack always runs first or last.
        for i in 0..count {
            let scenario = &mut scenarios[(i + n) % count];
            let (me, root) = targets(scenario);
            let lost_before = lost(scenario).await;
            let before = cpu(&scenario.stack);
            let sample = drive(&me, load).await;
            let after = cpu(&scenario.stack);
            scenario.me_dropped += lost(scenario).await.saturating_sub(lost_before);
            for (total, (a, b)) in scenario.me_cpu.iter_mut().zip(after.iter().zip(before)) {
                *total += a.saturating_sub(b);
            }
            scenario.me_requests += sample.requests;
            scenario.me.push(sample);
            let sample = drive(&root, load).await;
            scenario.root.push(sample);
            scenario.rss.push(rss(&scenario.stack));
        }
    }

    let mut report = String::new();
    let tool = if load.wrk {
        format!(
            "wrk -t{} -c{} -d{}s",
            load.threads, load.connections, load.seconds
        )
    } else {
        format!(
            "built-in client, {} connections, {} s",
            load.connections, load.seconds
        )
    };
    let database = match options.database {
        Database::Sqlite => "SQLite (as `make run`)",
        Database::PostgresIfReachable => "PostgreSQL",
    };
    writeln!(
        report,
        "Load: {tool} per stack and endpoint, {rounds} rounds alternated, medians; the six stacks, the load \
         generator and the sink or collector all share the machine. Every process at `RUST_LOG=info` \
         (one JSON line per request, to a file), mutual TLS between the services, 100% sampling, \
         user on {database}.\n"
    )
    .unwrap();
    writeln!(
        report,
        "| stack | `/users/me` req/s | vs off | p50 ms | p99 ms | CPU µs per request: gateway + auth + user | `GET /` req/s | vs off | failed | spans dropped: gateway + auth + user |"
    )
    .unwrap();
    writeln!(report, "|---|---|---|---|---|---|---|---|---|---|").unwrap();
    let base_me = median(&scenarios[0].me);
    let base_root = median(&scenarios[0].root);
    let mut memory = String::new();
    writeln!(
        memory,
        "\nResident memory, MiB: idle, then after each round (each round drives every stack for \
         {} s).\n\n| stack | gateway | auth | user |\n|---|---|---|---|",
        2 * load.seconds
    )
    .unwrap();
    for scenario in &scenarios {
        let me = median(&scenario.me);
        let root = median(&scenario.root);
        let lost = if scenario.exports() {
            dropped(&scenario.stack).await
        } else {
            "n/a".to_owned()
        };
        let cpu = scenario
            .me_cpu
            .map(|cpu| per_request(cpu, scenario.me_requests));
        writeln!(
            report,
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} + {:.0} + {:.0} = {:.0} | {:.0} | {:.2} | {} | {} |",
            scenario.name,
            me.throughput,
            me.throughput / base_me.throughput,
            me.p50_ms,
            me.p99_ms,
            cpu[0],
            cpu[1],
            cpu[2],
            cpu.iter().sum::<f64>(),
            root.throughput,
            root.throughput / base_root.throughput,
            me.failed + root.failed,
            lost,
        )
        .unwrap();
        let cells: Vec<String> = (0..3)
            .map(|i| {
                scenario
                    .rss
                    .iter()
                    .map(|sample| mib(sample[i]))
                    .collect::<Vec<_>>()
                    .join(" / ")
            })
            .collect();
        writeln!(memory, "| {} | {} |", scenario.name, cells.join(" | ")).unwrap();
    }
    let during_me: Vec<String> = scenarios
        .iter()
        .filter(|s| s.exports())
        .map(|s| format!("{} {}", s.name, s.me_dropped))
        .collect();
    writeln!(
        report,
        "\nOf the spans dropped, while `/users/me` was driven (the rest while `GET /` was): {}.",
        during_me.join(", ")
    )
    .unwrap();
    report.push_str(&memory);
    let (exports, bytes) = sink.received();
    writeln!(
        report,
        "\nThe sink received {exports} export requests ({:.1} MiB); the collector decoded {} spans.",
        bytes as f64 / 1_048_576.0,
        collector.span_count()
    )
    .unwrap();
    assert!(
        exports > 0,
        "the sink stack exported nothing: the comparison would be meaningless"
    );

    report
}

/// The services under valgrind's dhat, which counts every heap allocation exactly.
const DHAT: &[&str] = &["valgrind", "--tool=dhat", "--dhat-out-file=/dev/null"];

/// Heap allocations per `GET /users/me` in each process, for tracing off, ids only and
/// exporting to the sink: each stack runs twice under dhat, once with no profile reads and once
/// with `BENCH_ALLOC_REQUESTS` of them, and the difference is divided by that number (start-up,
/// sign-up and login cancel out). Instruction-exact and unmoved by the machine's other load.
async fn allocation_section(database: Database, extra: &[(&'static str, String)]) -> String {
    let requests = setting("BENCH_ALLOC_REQUESTS", 500);
    if testkit::tool::find("valgrind").is_none() {
        return "\nAllocations per request: not counted, valgrind is not installed (Debian: \
                `apt install valgrind`).\n"
            .to_owned();
    }
    eprintln!("counting allocations under valgrind...");
    let sink = OtlpSink::start().await;
    let configurations = [
        ("off", vec![("OTEL_SDK_DISABLED", "true".to_owned())]),
        ("ids only", vec![]),
        (
            "sink",
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint())],
        ),
    ];
    let mut text = format!(
        "\nHeap allocations per `/users/me` (valgrind dhat, {requests} requests, one at a time):\n\n\
         | stack | gateway | auth | user | all three |\n|---|---|---|---|---|\n"
    );
    for (name, mut env) in configurations {
        env.extend(extra.iter().cloned());
        let without = dhat_blocks(&env, database, 0).await;
        let with = dhat_blocks(&env, database, requests).await;
        let per: Vec<f64> = (0..3)
            .map(|i| with[i].saturating_sub(without[i]) as f64 / requests.max(1) as f64)
            .collect();
        writeln!(
            text,
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} |",
            per[0],
            per[1],
            per[2],
            per.iter().sum::<f64>()
        )
        .unwrap();
    }
    text
}

/// Blocks allocated over the whole life of gateway, auth and user, started under dhat with
/// `env`, after sign-up, login and `requests` profile reads.
async fn dhat_blocks(
    env: &[(&'static str, String)],
    database: Database,
    requests: u64,
) -> [u64; 3] {
    let options = Options {
        database,
        logs: Logs::Files,
        launcher: DHAT,
    };
    let mut stack = Stack::start_with_options(env, options).await;
    let token = token(&stack, "allocations@example.com").await;
    for _ in 0..requests {
        assert_eq!(stack.me(&token).await.status(), 200, "profile read");
    }
    let mut blocks = [0; 3];
    // The gateway first, so that no call is cut off on its way to a stopped service.
    for (i, service) in [&mut stack.gateway, &mut stack.auth, &mut stack.user]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            service.terminate().await,
            Some(0),
            "{} under dhat",
            service.name
        );
        // "==1234== Total:     60,806,557 bytes in 184,208 blocks"
        blocks[i] = service
            .stderr()
            .iter()
            .find_map(|line| {
                let total = line.split_once("Total:")?.1;
                let count = total.split_once(" in ")?.1.trim().strip_suffix("blocks")?;
                count.trim().replace(',', "").parse().ok()
            })
            .unwrap_or_else(|| panic!("{}: no dhat total in {:?}", service.name, service.stderr()));
    }
    blocks
}

/// Logins at bcrypt's production cost saturate auth's hashing pool; `/users/me` must keep its
/// latency meanwhile (profile reads hash nothing).
async fn login_section(load: Load, options: Options, extra: &[(&'static str, String)]) -> String {
    let cost = 12;
    let sink = OtlpSink::start().await;
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint()),
        ("BCRYPT_COST", cost.to_string()),
    ];
    env.extend(extra.iter().cloned());
    let stack = Stack::start_with_options(&env, options).await;
    let token = token(&stack, "login-bench@example.com").await;
    let me = Target::get(
        format!("{}/api/v1/users/me", stack.gateway_url),
        Some(&token),
    );
    let login = Target {
        method: "POST",
        url: format!("{}/api/v1/login", stack.gateway_url),
        headers: Vec::new(),
        body: Some(
            serde_json::json!({"email": "login-bench@example.com", "password": testkit::stack::PASSWORD})
                .to_string(),
        ),
    };
    let reads = Load {
        connections: 16,
        ..load
    };
    drive(
        &me,
        Load {
            seconds: 1,
            ..reads
        },
    )
    .await;
    let unloaded = drive(&me, reads).await;
    let started = Instant::now();
    let (saturated, logins) = tokio::join!(drive(&me, reads), drive(&login, reads));
    let took = started.elapsed().as_secs_f64();
    let hashed = (logins.throughput * took - logins.failed as f64).max(0.0) / took;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut text = String::new();
    writeln!(
        text,
        "\nLogin at bcrypt cost {cost} (telemetry on, exporting to the sink), 16 connections each:\n\n\
         | measure | value |\n|---|---|\n\
         | logins answered 200 per second (one bcrypt verify each) | {hashed:.1} ({:.1} per core) |\n\
         | logins shed with 503 `overloaded` | {} |\n\
         | `/users/me` p99 unloaded | {:.2} ms |\n\
         | `/users/me` p99 while logins saturate the pool | {:.2} ms ({:.2}x) |",
        hashed / cores,
        logins.failed,
        unloaded.p99_ms,
        saturated.p99_ms,
        saturated.p99_ms / unloaded.p99_ms,
    )
    .unwrap();
    text
}
