//! The log writer: JSON lines gathered into batches in memory and written by one thread.
//!
//! A request thread serialises its line and appends it to a shared buffer; a writer thread
//! wakes when the buffer stops being empty, lets [`BATCH_WINDOW`] pass, and writes everything
//! gathered meanwhile in one `write`. Under load that is one wake-up and one system call per
//! window instead of one per line: a queue of records with a writer woken for each (slog-async)
//! cost every process a thread switch per request. A line waits at most about one window.
//!
//! Nothing blocks the logging thread on the writer: past [`MAX_PENDING_BYTES`] (stdout is not
//! being read), lines are dropped and counted, and the writer reports the count in a line of
//! its own once it can write again.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// How long the writer gathers lines after the first one arrives.
pub const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// The most bytes held for the writer; lines beyond this are dropped (about 10,000 lines).
pub const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;

/// What the logging threads and the writer share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when `pending` stops being empty, and on shutdown.
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<u8>,
    /// Lines dropped since the writer last reported.
    dropped: u64,
    stopping: bool,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves whole lines behind: nothing to repair.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `io::Write` that slog-json serialises into: it holds one line until slog-json flushes
/// it (once per record), then hands the whole line to the writer.
#[derive(Debug)]
pub struct LineSink {
    line: Vec<u8>,
    shared: Arc<Shared>,
}

impl Write for LineSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        let mut state = self.shared.state();
        if state.pending.len() + self.line.len() > MAX_PENDING_BYTES {
            state.dropped += 1;
        } else {
            let was_empty = state.pending.is_empty();
            state.pending.extend_from_slice(&self.line);
            if was_empty {
                self.shared.wake.notify_one();
            }
        }
        drop(state);
        self.line.clear();
        Ok(())
    }
}

/// Stops the writer when dropped, after it has written every line logged before.
#[derive(Debug)]
pub struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.shared.state().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A [`LineSink`] for slog-json and the thread writing its lines to `out`; `service` names the
/// process in the line reporting drops.
pub fn spawn<W: Write + Send + 'static>(service: &str, out: W) -> (LineSink, WriterGuard) {
    let shared = Arc::new(Shared::default());
    let writer = Writer {
        shared: shared.clone(),
        out,
        service: service.to_owned(),
    };
    let thread = std::thread::Builder::new()
        .name("log-writer".to_owned())
        .spawn(move || writer.run())
        .ok();
    if thread.is_none() {
        // No thread, no logs: say so where it can still be seen.
        eprintln!("{service}: could not start the log writer thread; logs are discarded");
    }
    let sink = LineSink {
        line: Vec::with_capacity(512),
        shared: shared.clone(),
    };
    (sink, WriterGuard { shared, thread })
}

struct Writer<W> {
    shared: Arc<Shared>,
    out: W,
    service: String,
}

impl<W: Write> Writer<W> {
    fn run(mut self) {
        let mut batch = Vec::new();
        loop {
            let mut state = self.shared.state();
            while state.pending.is_empty() && !state.stopping {
                state = self
                    .shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if !state.stopping {
                // Let the window's lines gather; the logging threads append meanwhile.
                drop(state);
                std::thread::sleep(BATCH_WINDOW);
                state = self.shared.state();
            }
            std::mem::swap(&mut batch, &mut state.pending);
            let (dropped, stopping) = (std::mem::take(&mut state.dropped), state.stopping);
            drop(state);
            // A closed or broken stdout must not stop the writer: later lines may still go.
            let _ = self.out.write_all(&batch);
            if dropped > 0 {
                let _ = self.out.write_all(self.dropped_line(dropped).as_bytes());
            }
            let _ = self.out.flush();
            // Keep the allocation for the next batch, but not a burst's worth of it.
            batch.clear();
            batch.shrink_to(256 * 1024);
            if stopping && self.shared.state().pending.is_empty() {
                return;
            }
        }
    }

    fn dropped_line(&self, dropped: u64) -> String {
        let line = serde_json::json!({
            "msg": "log lines dropped: stdout is not keeping up",
            "level": "WARN",
            "service": self.service,
            "log.dropped_lines": dropped,
            "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        });
        format!("{line}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(sink: &mut LineSink, text: &str) {
        sink.write_all(text.as_bytes()).unwrap();
        sink.write_all(b"\n").unwrap();
        sink.flush().unwrap();
    }

    #[test]
    fn lines_arrive_whole_in_order_and_in_few_writes() {
        let capture = Capture::default();
        let (mut sink, guard) = spawn("svc", capture.clone());
        for i in 0..1000 {
            line(&mut sink, &format!("{{\"n\":{i}}}"));
        }
        drop(guard);
        let writes = capture.0.lock().unwrap().clone();
        let text = String::from_utf8(writes.concat()).unwrap();
        let expected: String = (0..1000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        assert_eq!(text, expected);
        assert!(writes.len() < 100, "{} writes for 1000 lines", writes.len());
    }

    #[test]
    fn a_stalled_stdout_drops_lines_counts_them_and_never_blocks_the_logger() {
        // A writer that blocks until released, as a full pipe would.
        #[derive(Clone)]
        struct Stalled(Arc<(Mutex<bool>, Condvar)>, Capture);
        impl Write for Stalled {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                let (released, cv) = &*self.0;
                let mut released = released.lock().unwrap();
                while !*released {
                    released = cv.wait(released).unwrap();
                }
                self.1.write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let capture = Capture::default();
        let (mut sink, guard) = spawn("svc", Stalled(gate.clone(), capture.clone()));
        let long = "x".repeat(1000);
        // Far more than MAX_PENDING_BYTES: the logger must return every time.
        for _ in 0..(3 * MAX_PENDING_BYTES / long.len()) {
            line(&mut sink, &long);
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        let text = String::from_utf8(capture.0.lock().unwrap().concat()).unwrap();
        let report = text
            .lines()
            .find(|l| l.contains("log lines dropped"))
            .expect("a line reporting the drops");
        let report: serde_json::Value = serde_json::from_str(report).unwrap();
        assert_eq!(report["level"], "WARN");
        assert_eq!(report["service"], "svc");
        assert!(
            report["log.dropped_lines"].as_u64().unwrap() > 1000,
            "{report}"
        );
        assert!(text.lines().filter(|l| *l == long).count() > 1000);
    }
}
