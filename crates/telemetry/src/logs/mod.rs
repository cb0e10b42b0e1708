//! JSON logs (slog + slog-json) whose every line carries the current span's `trace_id`/`span_id`.
//!
//! Each line is stamped and serialised on the thread that logs it, where the request's span is
//! current, and handed whole to a writer thread that writes lines in batches ([`batch`]), so a
//! slow pipe never blocks a request and a busy service pays one `write` per batch, not per line.

pub mod batch;

use std::fmt::Write as _;

use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use slog::{Drain, KV, Logger, OwnedKVList, Record, RecordStatic, o};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::TelemetryConfig;

/// The W3C ids of a span, as they appear in logs, headers and Tempo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIds {
    /// 16-byte trace id.
    pub trace_id: TraceId,
    /// 8-byte span id.
    pub span_id: SpanId,
    /// Whether the sampler kept the trace (the `01` flag of `traceparent`).
    pub sampled: bool,
    /// W3C Trace Context Level 2's random flag (`02`): the trace id's right 7 bytes are random.
    pub random: bool,
}

impl TraceIds {
    /// The trace id as 32 lowercase hex digits, the form Tempo and Loki search for.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id.to_bytes())
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex::encode(self.span_id.to_bytes())
    }

    /// A W3C `traceparent`/`traceresponse` value: `00-<trace>-<span>-<flags>`.
    pub fn traceparent(&self) -> String {
        crate::propagation::traceparent(
            self.trace_id,
            self.span_id,
            u8::from(self.sampled) | (u8::from(self.random) << 1),
        )
    }
}

/// The ids of the current `tracing` span, if it maps to a valid OpenTelemetry span.
pub fn current_trace_ids() -> Option<TraceIds> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| TraceIds {
        trace_id: span_context.trace_id(),
        span_id: span_context.span_id(),
        sampled: span_context.is_sampled(),
        random: span_context.trace_flags() & crate::propagation::RANDOM
            == crate::propagation::RANDOM,
    })
}

/// A drain that adds `ts` and the `trace_id`/`span_id` of the current span to each record it
/// passes on, on the thread that logs.
#[derive(Debug)]
pub struct TraceContextDrain<D> {
    inner: D,
}

impl<D> TraceContextDrain<D> {
    /// Wraps `inner`; put it *in front of* any drain that leaves the logging thread.
    pub fn new(inner: D) -> Self {
        Self { inner }
    }
}

impl<D: Drain> Drain for TraceContextDrain<D> {
    type Ok = D::Ok;
    type Err = D::Err;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<Self::Ok, Self::Err> {
        let ids = current_trace_ids();
        let mut ts = StackStr::<40>::new();
        // When it happened, not when the writer thread got to it.
        let _ = write!(
            ts,
            "{}",
            chrono::Utc::now().format_with_items(RFC3339_MICROS.iter())
        );
        let stamped = Stamped {
            ts: &ts,
            ids: ids.map(|ids| (hex(ids.trace_id.to_bytes()), hex(ids.span_id.to_bytes()))),
            record_kv: record.kv(),
        };
        // Rebuild the record with the stamps added to its own key-values; the location, level
        // and message are unchanged.
        let record_static = RecordStatic {
            location: record.location(),
            tag: record.tag(),
            level: record.level(),
        };
        let stamped_record = Record::new(&record_static, record.msg(), slog::BorrowedKV(&stamped));
        self.inner.log(&stamped_record, values)
    }

    fn is_enabled(&self, level: slog::Level) -> bool {
        self.inner.is_enabled(level)
    }
}

/// `2026-12-01T12:00:00.123456Z`: RFC 3339 in UTC with microseconds, what Loki and Grafana parse.
const RFC3339_MICROS: [chrono::format::Item<'static>; 13] = {
    use chrono::format::{Fixed, Item, Numeric, Pad};
    [
        Item::Numeric(Numeric::Year, Pad::Zero),
        Item::Literal("-"),
        Item::Numeric(Numeric::Month, Pad::Zero),
        Item::Literal("-"),
        Item::Numeric(Numeric::Day, Pad::Zero),
        Item::Literal("T"),
        Item::Numeric(Numeric::Hour, Pad::Zero),
        Item::Literal(":"),
        Item::Numeric(Numeric::Minute, Pad::Zero),
        Item::Literal(":"),
        Item::Numeric(Numeric::Second, Pad::Zero),
        Item::Fixed(Fixed::Nanosecond6),
        Item::Literal("Z"),
    ]
};

/// Lowercase hex of an id, on the stack: ids are stamped on every line.
fn hex<const N: usize>(bytes: [u8; N]) -> StackStr<32> {
    // A table lookup per byte: `write!` with `{:02x}` went through the formatter for each of the
    // 24 bytes of every log line's ids.
    let mut out = StackStr::new();
    if hex::encode_to_slice(bytes, out.bytes.get_mut(..2 * N).unwrap_or_default()).is_ok() {
        out.len = 2 * N;
    }
    out
}

/// A string of at most `N` bytes kept on the stack; what does not fit is cut off.
struct StackStr<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> StackStr<N> {
    fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `str`s are ever appended.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl<const N: usize> std::fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

struct Stamped<'a> {
    ts: &'a StackStr<40>,
    ids: Option<(StackStr<32>, StackStr<32>)>,
    record_kv: slog::BorrowedKV<'a>,
}

impl KV for Stamped<'_> {
    fn serialize(
        &self,
        record: &Record<'_>,
        serializer: &mut dyn slog::Serializer,
    ) -> slog::Result {
        self.record_kv.serialize(record, serializer)?;
        if let Some((trace_id, span_id)) = &self.ids {
            serializer.emit_str("span_id", span_id.as_str())?;
            serializer.emit_str("trace_id", trace_id.as_str())?;
        }
        serializer.emit_str("ts", self.ts.as_str())
    }
}

/// The JSON serialiser every logging thread shares, in front of the [`batch`] writer.
///
/// slog-json keeps its output in a `RefCell`, so it is used under a lock; the lock is held for
/// the serialisation of one line, a few microseconds.
struct Json(std::sync::Mutex<slog_json::Json<batch::LineSink>>);

impl Drain for Json {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let json = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only fails if a value's own serialisation fails; the line is then incomplete and is
        // better lost than written.
        let _ = json.log(record, values);
        Ok(())
    }

    fn is_enabled(&self, _level: slog::Level) -> bool {
        // Levels are the filter's business (RUST_LOG), in front of this.
        true
    }
}

/// Flushes the lines not yet written when dropped; keep it for the life of the process.
pub type LogGuard = batch::WriterGuard;

/// The service logger: JSON lines on stdout, levels from `RUST_LOG`.
///
/// The returned guard writes the lines still buffered when dropped.
pub fn stdout_logger(config: &TelemetryConfig) -> (Logger, LogGuard) {
    logger(&config.service_name, &config.log_filter, std::io::stdout())
}

/// A logger writing JSON lines to `writer`, for tests that want to read what was logged.
pub fn logger<W: std::io::Write + Send + 'static>(
    service: &str,
    filter: &str,
    writer: W,
) -> (Logger, LogGuard) {
    let (sink, guard) = batch::spawn(service, writer);
    let json = slog_json::Json::new(sink)
        .set_newlines(true)
        // One flush per record hands the finished line to the writer.
        .set_flush(true)
        // Full level names (ERROR, not slog's ERRO), which Grafana's log-level detection knows;
        // `ts` is stamped by the TraceContextDrain on the logging thread.
        .add_key_value(o!(
            "msg" => slog::PushFnValue(|record: &Record<'_>, serializer| serializer.emit(record.msg())),
            "level" => slog::FnValue(|record: &Record<'_>| level_name(record.level())),
        ))
        .build();
    let stamped = TraceContextDrain::new(Json(std::sync::Mutex::new(json)));
    let filtered = slog_envlogger::LogBuilder::new(stamped)
        .parse(filter)
        .build();
    let logger = Logger::root(filtered.fuse(), o!("service" => service.to_owned()));
    (logger, guard)
}

/// A logger for tests: silent unless `TEST_LOG` is set, then JSON on stdout.
pub fn test_logger(service: &str) -> Logger {
    if std::env::var_os("TEST_LOG").is_some() {
        let (logger, guard) = logger(service, "debug", std::io::stdout());
        // Tests end abruptly; leaking the guard keeps the writer thread alive until exit.
        std::mem::forget(guard);
        logger
    } else {
        Logger::root(slog::Discard, o!())
    }
}

/// A level as the JSON lines name it: the label set the dashboards, Loki's `level` stream label
/// and the README use (INFO, WARN, ERROR, DEBUG), which is OpenTelemetry's severity text too.
/// slog's own long name for a warning is WARNING, which a `level=~"ERROR|WARN"` query misses.
pub fn level_name(level: slog::Level) -> &'static str {
    match level {
        slog::Level::Critical => "CRITICAL",
        slog::Level::Error => "ERROR",
        slog::Level::Warning => "WARN",
        slog::Level::Info => "INFO",
        slog::Level::Debug => "DEBUG",
        slog::Level::Trace => "TRACE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn ids_are_fixed_width_lower_case_hex() {
        let ids = TraceIds {
            trace_id: TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319cu128),
            span_id: SpanId::from(0x00f0_67aa_0ba9_02b7u64),
            sampled: true,
            random: true,
        };
        assert_eq!(ids.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(ids.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(
            ids.traceparent(),
            "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-03"
        );
        assert_eq!(hex(ids.trace_id.to_bytes()).as_str(), ids.trace_id_hex());
        assert_eq!(hex(ids.span_id.to_bytes()).as_str(), ids.span_id_hex());
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(buffer: &Buffer) -> Vec<serde_json::Value> {
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn lines_carry_the_ids_of_the_span_that_logged_them() {
        use opentelemetry::trace::TracerProvider as _;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let buffer = Buffer::default();
        let (logger, guard) = logger("svc", "info", buffer.clone());

        let expected = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("work");
            let _entered = span.enter();
            slog::info!(logger, "inside"; "user_id" => "u1");
            current_trace_ids().expect("span has ids")
        });
        slog::info!(logger, "outside");
        drop(guard); // writes what is buffered

        let lines = lines(&buffer);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let inside = &lines[0];
        assert_eq!(inside["msg"], "inside");
        assert_eq!(inside["service"], "svc");
        assert_eq!(inside["level"], "INFO");
        assert_eq!(inside["user_id"], "u1");
        assert!(inside["ts"].is_string());
        assert_eq!(inside["trace_id"], expected.trace_id_hex());
        assert_eq!(inside["span_id"], expected.span_id_hex());
        assert!(
            lines[1].get("trace_id").is_none(),
            "no span, no id: {:?}",
            lines[1]
        );
    }

    #[test]
    fn rust_log_directives_filter_levels() {
        let buffer = Buffer::default();
        let (logger, guard) = logger("svc", "warn", buffer.clone());
        slog::info!(logger, "dropped");
        slog::warn!(logger, "kept");
        drop(guard);
        let lines = lines(&buffer);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["msg"], "kept");
    }

    #[test]
    fn stamps_are_rfc3339_micros_and_ids_lowercase_hex() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.006007Z").unwrap();
        let mut ts = StackStr::<40>::new();
        write!(ts, "{}", at.format_with_items(RFC3339_MICROS.iter())).unwrap();
        assert_eq!(ts.as_str(), "2026-01-02T03:04:05.006007Z");
        assert_eq!(
            ts.as_str(),
            at.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        );
        let id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(
            hex(id.to_bytes()).as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            hex(SpanId::from_hex("00f067aa0ba902b7").unwrap().to_bytes()).as_str(),
            "00f067aa0ba902b7"
        );
    }

    #[test]
    fn traceparent_formats_as_w3c() {
        let ids = TraceIds {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            sampled: true,
            random: false,
        };
        assert_eq!(
            ids.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn levels_are_named_as_the_dashboards_query_them() {
        assert_eq!(level_name(slog::Level::Warning), "WARN");
        assert_eq!(level_name(slog::Level::Error), "ERROR");
        assert_eq!(level_name(slog::Level::Info), "INFO");
        assert_eq!(level_name(slog::Level::Debug), "DEBUG");
    }
}
