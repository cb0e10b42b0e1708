//! JSON logs (slog + slog-json) whose every line carries the current span's `trace_id`/`span_id`.
//!
//! Writing to stdout happens on slog-async's worker thread so a slow pipe never blocks a request.
//! That thread knows nothing of the request's span, so [`TraceContextDrain`] stamps the ids onto
//! each record *on the calling thread, before* the async hand-off; a lazy value (`FnValue`) would
//! be evaluated too late, on the wrong thread.

use std::io::Write;

use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use slog::{Drain, KV, Logger, OwnedKVList, Record, RecordStatic, o};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::TelemetryConfig;

/// How many records may wait for the writer thread; beyond this, records are dropped and the
/// drop is reported, rather than blocking the request that logs.
const LOG_QUEUE_LEN: usize = 8192;

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
        format!("{:032x}", self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// A W3C `traceparent`/`traceresponse` value: `00-<trace>-<span>-<flags>`.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled) | (u8::from(self.random) << 1)
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
    /// Wraps `inner`; put it *in front of* any async drain.
    pub fn new(inner: D) -> Self {
        Self { inner }
    }
}

impl<D: Drain> Drain for TraceContextDrain<D> {
    type Ok = D::Ok;
    type Err = D::Err;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<Self::Ok, Self::Err> {
        let ids = current_trace_ids();
        let stamped = Stamped {
            // When it happened, not when the writer thread got to it.
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ids: ids.map(|ids| (ids.trace_id_hex(), ids.span_id_hex())),
            record_kv: record.kv(),
        };
        // Rebuild the record with the stamps added to its own key-values (what slog-async does
        // to move records across threads); the location, level and message are unchanged.
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

struct Stamped<'a> {
    ts: String,
    ids: Option<(String, String)>,
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
            serializer.emit_str("span_id", span_id)?;
            serializer.emit_str("trace_id", trace_id)?;
        }
        serializer.emit_str("ts", &self.ts)
    }
}

/// The service logger: JSON lines on stdout, levels from `RUST_LOG`.
///
/// The returned guard flushes queued records when dropped.
pub fn stdout_logger(config: &TelemetryConfig) -> (Logger, slog_async::AsyncGuard) {
    logger(&config.service_name, &config.log_filter, std::io::stdout())
}

/// A logger writing JSON lines to `writer`, for tests that want to read what was logged.
pub fn logger<W: Write + Send + 'static>(
    service: &str,
    filter: &str,
    writer: W,
) -> (Logger, slog_async::AsyncGuard) {
    let json = slog_json::Json::new(writer)
        .set_newlines(true)
        .set_flush(true)
        // Full level names (ERROR, not slog's ERRO), which Grafana's log-level detection knows;
        // `ts` is stamped by the TraceContextDrain on the logging thread.
        .add_key_value(o!(
            "msg" => slog::PushFnValue(|record: &Record<'_>, serializer| serializer.emit(record.msg())),
            "level" => slog::FnValue(|record: &Record<'_>| record.level().as_str()),
        ))
        .build()
        // A closed stdout must not kill the writer thread (and with it every later line).
        .ignore_res();
    let (async_drain, guard) = slog_async::Async::new(json)
        .chan_size(LOG_QUEUE_LEN)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("log-writer".to_owned())
        .build_with_guard();
    let stamped = TraceContextDrain::new(async_drain.fuse());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

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
        drop(guard); // flushes the async drain

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
}
