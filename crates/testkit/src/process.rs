//! A real service binary as a child process, with its stdout captured line by line.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt as _, BufReader};

/// How long a process may take to exit once asked (or once it should have).
pub const EXIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The directory holding the workspace's built binaries (`target/debug`), found from the test
/// executable's own path (`target/debug/deps/<test>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// The path of workspace binary `name`; panics with the fix if it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, which `make test` does)",
        path.display()
    );
    path
}

/// A running child process; killed when dropped.
pub struct Service {
    /// The binary's name, for messages.
    pub name: String,
    child: tokio::process::Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The tasks copying the pipes; awaited after exit so no last line is left unread.
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// Where stdout goes instead of the pipe, if it does ([`Service::spawn_logging_to`]).
    log_file: Option<std::path::PathBuf>,
}

impl Service {
    /// Starts workspace binary `name` with `env` added to a cleared-down environment
    /// (only `PATH` is inherited, so the developer's shell cannot change what is tested).
    pub fn spawn(name: &str, env: &[(&str, String)]) -> Self {
        Self::spawn_with_args(name, &[], env)
    }

    /// [`Service::spawn`] with stdout written to `log` (created or truncated) instead of read
    /// into the test, and through `launcher` when it is not empty (see
    /// [`Service::spawn_via`]): [`Service::stdout`] then reads the file.
    pub fn spawn_logging_to(
        name: &str,
        launcher: &[&str],
        env: &[(&str, String)],
        log: &std::path::Path,
    ) -> Self {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("{name}: cannot create {}: {e}", log.display()));
        let mut service =
            Self::spawn_command(name, command(name, launcher), env, Stdio::from(file));
        service.log_file = Some(log.to_owned());
        service
    }

    /// [`Service::spawn`] with command-line arguments.
    pub fn spawn_with_args(name: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut command = command(name, &[]);
        command.args(args);
        Self::spawn_command(name, command, env, Stdio::piped())
    }

    /// Starts workspace binary `name` through `launcher` (a program and its arguments, to which
    /// the binary's path is appended), e.g. `unshare` to give it a file system of its own.
    pub fn spawn_via(name: &str, launcher: &[&str], env: &[(&str, String)]) -> Self {
        assert!(!launcher.is_empty(), "a launcher program");
        Self::spawn_command(name, command(name, launcher), env, Stdio::piped())
    }

    fn spawn_command(
        name: &str,
        mut command: tokio::process::Command,
        env: &[(&str, String)],
        stdout_to: Stdio,
    ) -> Self {
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(stdout_to)
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = vec![collect(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
        )];
        if let Some(piped) = child.stdout.take() {
            readers.push(collect(piped, stdout.clone()));
        }
        Self {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            readers,
            log_file: None,
        }
    }

    /// Sends `signal` without waiting (SIGSTOP freezes the process: a hung dependency).
    #[cfg(unix)]
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("kill(2)");
        }
    }

    /// The process's resident set size in KiB (Linux `/proc`), `None` once it has exited.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// CPU time the process has used so far, all its threads, user and system (Linux
    /// `/proc`), `None` once it has exited.
    pub fn cpu_time(&self) -> Option<std::time::Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()?)).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        // utime and stime (fields 14 and 15 of proc(5)), in USER_HZ, which Linux fixes at 100.
        let total = ticks(11)? + ticks(12)?;
        Some(std::time::Duration::from_millis(total * 10))
    }

    /// The file stdout goes to, when it goes to one ([`Service::spawn_logging_to`]).
    pub fn log_file(&self) -> Option<&std::path::Path> {
        self.log_file.as_deref()
    }

    /// Every stdout line so far.
    pub fn stdout(&self) -> Vec<String> {
        match &self.log_file {
            Some(path) => std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect(),
            None => self.stdout.lock().expect("stdout lock").clone(),
        }
    }

    /// Every stderr line so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits until a log line that `matches` has been written (lines are written in batches
    /// and pass a pipe), and returns it; panics naming `what` after a few seconds.
    pub async fn wait_for_log(
        &self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        crate::eventually(
            &format!("{}: {what}", self.name),
            std::time::Duration::from_secs(5),
            || self.json_logs().into_iter().find(&matches),
        )
        .await
    }

    /// Stdout lines parsed as JSON; panics on a line that is not, since every line must be.
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{}: non-JSON log line {line:?}: {e}", self.name))
            })
            .collect()
    }

    /// Sends SIGTERM (what orchestrators send) and waits for the exit code.
    #[cfg(unix)]
    pub async fn terminate(&mut self) -> Option<i32> {
        self.stop_with(nix::sys::signal::Signal::SIGTERM).await
    }

    /// Sends `signal` (SIGINT is what Ctrl-C sends) and waits for the exit code.
    #[cfg(unix)]
    pub async fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> Option<i32> {
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
        self.wait().await
    }

    /// Waits for the process to exit and returns its exit code; panics after [`EXIT_TIMEOUT`]
    /// rather than hang the suite.
    pub async fn wait(&mut self) -> Option<i32> {
        match tokio::time::timeout(EXIT_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                // The exit can overtake the pipe readers: let them drain to EOF first.
                for reader in self.readers.drain(..) {
                    let _ = tokio::time::timeout(EXIT_TIMEOUT, reader).await;
                }
                status.ok().and_then(|status| status.code())
            }
            Err(_) => panic!(
                "{} did not exit within {EXIT_TIMEOUT:?}; stderr: {:?}",
                self.name,
                self.stderr()
            ),
        }
    }
}

/// Runs workspace binary `name`, through `launcher` (program and arguments) when not empty.
fn command(name: &str, launcher: &[&str]) -> tokio::process::Command {
    match launcher.split_first() {
        None => tokio::process::Command::new(bin(name)),
        Some((program, args)) => {
            let mut command = tokio::process::Command::new(program);
            command.args(args).arg(bin(name));
            command
        }
    }
}

fn collect<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
    into: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().expect("log lock").push(line);
        }
    })
}
