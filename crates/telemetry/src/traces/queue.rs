//! The export queue's accounting: every span that will never reach the collector is counted.
//!
//! The SDK's batch processor drops spans silently once its queue is full (it warns once per
//! process life and gives the total only at shutdown), and a failed export loses its whole batch
//! with no count at all. [`Counted`] admits each finished span against the same capacity the
//! processor was given, so the processor's own queue can never overflow and every span that does
//! not fit is counted here instead; [`CountingExporter`] counts the spans of failed exports.
//! Both feed `otel_spans_dropped_total{reason}`, and [`report_drops`] logs one warning per
//! interval, never one per span.
//!
//! After a failed export the collector is given a rest ([`Backoff`]): for a second, doubling
//! while exports keep failing up to [`MAX_BACKOFF`], no span is admitted and queued spans are
//! dropped without an export attempt. After the rest only [`PROBE_SPANS`] are admitted, and they
//! try the collector first; the rest of the queue follows only if they get through. All of it
//! is counted as `export_failed`. Otherwise a dead collector costs every batch its conversion and
//! encoding for a connection that is refused, and a hanging one holds the export thread for a
//! full timeout per queued batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// The metric counting spans lost on the way to the collector.
pub const DROPPED_METRIC: &str = "otel_spans_dropped_total";

/// While the collector is failing, how many spans try it after each rest.
pub const PROBE_SPANS: usize = 16;

/// The first rest after a failed export; it doubles with each further failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest rest between two export attempts while the collector stays unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Spans admitted and not yet handed to the exporter, against a fixed capacity.
#[derive(Debug)]
pub struct Drops {
    pending: AtomicUsize,
    capacity: usize,
    /// Spans refused because the queue was full (the collector is slow, hanging or down).
    queue_full: IntCounter,
    /// Spans lost to a failing collector: in batches whose export failed (refused, timed out,
    /// rejected), or refused while the exporter rests after such a failure.
    export_failed: IntCounter,
    backoff: Backoff,
}

/// When the exporter may try the collector again, after failures.
#[derive(Debug)]
struct Backoff {
    /// The reference point for the instants below, kept as milliseconds since it.
    epoch: Instant,
    /// Until when nothing is admitted or exported (ms since `epoch`); 0 when not resting.
    resting_until_ms: AtomicU64,
    /// The length of the current rest (ms); 0 after a success.
    current_ms: AtomicU64,
}

impl Backoff {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            resting_until_ms: AtomicU64::new(0),
            current_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn resting(&self) -> bool {
        let until = self.resting_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// The last export failed (resting or not): the next one is a probe.
    fn failing(&self) -> bool {
        self.current_ms.load(Ordering::Relaxed) != 0
    }

    /// Ends the current rest at once (tests: the clock is not theirs to wind).
    #[cfg(test)]
    fn end_rest(&self) {
        self.resting_until_ms.store(0, Ordering::Relaxed);
    }

    /// An export failed: rest, longer than last time.
    fn failed(&self) -> Duration {
        let previous = self.current_ms.load(Ordering::Relaxed);
        let rest = (previous * 2).clamp(
            FIRST_BACKOFF.as_millis() as u64,
            MAX_BACKOFF.as_millis() as u64,
        );
        self.current_ms.store(rest, Ordering::Relaxed);
        self.resting_until_ms
            .store(self.now_ms() + rest, Ordering::Relaxed);
        Duration::from_millis(rest)
    }

    /// An export went through: no more rests.
    fn succeeded(&self) {
        self.current_ms.store(0, Ordering::Relaxed);
        self.resting_until_ms.store(0, Ordering::Relaxed);
    }
}

impl Drops {
    /// Accounting for a queue of `capacity` spans, registered in `registry` (if given) as
    /// [`DROPPED_METRIC`].
    pub fn new(capacity: usize, registry: Option<&Registry>) -> Arc<Self> {
        let counter = IntCounterVec::new(
            Opts::new(
                DROPPED_METRIC,
                "Finished spans that were never exported, by reason (queue_full, export_failed).",
            ),
            &["reason"],
        )
        .expect("a valid metric definition");
        if let Some(registry) = registry {
            // Only fails if registered twice: one provider per process.
            let _ = registry.register(Box::new(counter.clone()));
        }
        Arc::new(Self {
            pending: AtomicUsize::new(0),
            capacity,
            queue_full: counter.with_label_values(&["queue_full"]),
            export_failed: counter.with_label_values(&["export_failed"]),
            backoff: Backoff::new(),
        })
    }

    /// Takes a place in the queue for one span, or counts it as dropped.
    fn admit(&self) -> bool {
        let failing = self.backoff.failing();
        if failing
            && (self.backoff.resting() || self.pending.load(Ordering::Acquire) >= PROBE_SPANS)
        {
            self.export_failed.inc();
            return false;
        }
        let admitted = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                (pending < self.capacity).then_some(pending + 1)
            })
            .is_ok();
        if !admitted {
            self.queue_full.inc();
        }
        admitted
    }

    /// `count` spans left the queue for the exporter.
    fn taken(&self, count: usize) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                Some(pending.saturating_sub(count))
            });
    }

    /// Spans dropped so far: (queue full, export failed).
    pub fn totals(&self) -> (u64, u64) {
        (self.queue_full.get(), self.export_failed.get())
    }
}

/// A span processor that admits spans to `inner` (the batch processor) only while the shared
/// queue has room.
#[derive(Debug)]
pub struct Counted<P> {
    inner: P,
    drops: Arc<Drops>,
}

impl<P> Counted<P> {
    /// Puts `drops`' admission in front of `inner`, whose exporter must be a
    /// [`CountingExporter`] on the same `drops` and whose queue must be at least as large.
    pub fn new(inner: P, drops: Arc<Drops>) -> Self {
        Self { inner, drops }
    }
}

impl<P: SpanProcessor> SpanProcessor for Counted<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.drops.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// An exporter that frees queue places as batches leave and counts the spans of failed exports.
#[derive(Debug)]
pub struct CountingExporter<E> {
    inner: E,
    drops: Arc<Drops>,
}

impl<E> CountingExporter<E> {
    /// Wraps `inner`, accounting on `drops`.
    pub fn new(inner: E, drops: Arc<Drops>) -> Self {
        Self { inner, drops }
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len();
        // The batch processor has already taken these off its channel.
        self.drops.taken(count);
        let backoff = &self.drops.backoff;
        if backoff.resting() {
            self.drops.export_failed.inc_by(count as u64);
            return Err(OTelSdkError::InternalFailure(
                "the collector failed the last export; resting before the next".into(),
            ));
        }
        if backoff.failing() {
            // A few spans try first: a collector still down costs their encoding, not the batch's.
            let rest = batch.split_off(PROBE_SPANS.min(batch.len()));
            if let Err(error) = self.inner.export(batch).await {
                self.drops.export_failed.inc_by(count as u64);
                backoff.failed();
                return Err(error);
            }
            backoff.succeeded();
            if rest.is_empty() {
                return Ok(());
            }
            batch = rest;
        }
        let outcome = self.inner.export(batch).await;
        match &outcome {
            Ok(()) => self.drops.backoff.succeeded(),
            Err(_) => {
                self.drops.export_failed.inc_by(count as u64);
                self.drops.backoff.failed();
            }
        }
        outcome
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// How often [`report_drops`] looks; the first drop is reported within this.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Logs one WARN line when spans were dropped, then at most one per `interval`, each with the
/// counts since the previous line. Runs until the process exits.
pub async fn report_drops(drops: Arc<Drops>, logger: slog::Logger, interval: Duration) {
    let mut reported = (0, 0);
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = tokio::time::Instant::now();
        if last_warning.is_some_and(|at| now.duration_since(at) < interval) {
            continue;
        }
        let totals = drops.totals();
        if totals == reported {
            continue;
        }
        slog::warn!(logger, "spans dropped: the collector is not keeping up or unreachable";
            "otel.spans_dropped.queue_full" => totals.0 - reported.0,
            "otel.spans_dropped.export_failed" => totals.1 - reported.1,
            "otel.span_queue_size" => drops.capacity,
            "interval_s" => interval.as_secs(),
        );
        reported = totals;
        last_warning = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_export_rests_the_exporter_longer_each_time_until_one_succeeds() {
        let backoff = Backoff::new();
        assert!(!backoff.resting());
        assert_eq!(backoff.failed(), FIRST_BACKOFF);
        assert!(backoff.resting());
        assert_eq!(backoff.failed(), FIRST_BACKOFF * 2);
        for _ in 0..10 {
            backoff.failed();
        }
        assert_eq!(backoff.failed(), MAX_BACKOFF, "capped");
        backoff.succeeded();
        assert!(!backoff.resting());
        assert_eq!(backoff.failed(), FIRST_BACKOFF, "starts over");
    }

    /// An exporter whose collector refuses every export.
    #[derive(Debug, Default)]
    struct Refused(AtomicUsize);

    impl SpanExporter for Refused {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(OTelSdkError::InternalFailure("connection refused".into()))
        }
    }

    /// An exporter whose collector refuses until it is told it is back, keeping the size of
    /// every batch it is asked to send.
    #[derive(Debug, Default)]
    struct Recovering {
        up: std::sync::atomic::AtomicBool,
        batches: std::sync::Mutex<Vec<usize>>,
    }

    impl SpanExporter for Recovering {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.batches.lock().unwrap().push(batch.len());
            if self.up.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err(OTelSdkError::InternalFailure("connection refused".into()))
            }
        }
    }

    fn span_data(n: usize) -> Vec<SpanData> {
        use opentelemetry::trace::{SpanContext, SpanKind, Status};
        (0..n)
            .map(|_| SpanData {
                span_context: SpanContext::empty_context(),
                parent_span_id: opentelemetry::trace::SpanId::INVALID,
                parent_span_is_remote: false,
                span_kind: SpanKind::Internal,
                name: "span".into(),
                start_time: std::time::SystemTime::UNIX_EPOCH,
                end_time: std::time::SystemTime::UNIX_EPOCH,
                attributes: Vec::new(),
                dropped_attributes_count: 0,
                events: Default::default(),
                links: Default::default(),
                status: Status::Unset,
                instrumentation_scope: Default::default(),
            })
            .collect()
    }

    #[tokio::test]
    async fn after_a_rest_a_few_spans_probe_the_collector_before_the_rest_follow() {
        let drops = Drops::new(10_000, None);
        let exporter = CountingExporter::new(Recovering::default(), drops.clone());
        assert!(exporter.export(span_data(100)).await.is_err());
        // Resting: nothing admitted. After the rest, only a probe's worth.
        assert!(!drops.admit());
        drops.backoff.end_rest();
        let admitted = (0..100).filter(|_| drops.admit()).count();
        assert_eq!(admitted, PROBE_SPANS);
        drops.taken(admitted);
        // Still down: the probe fails, the batch is not tried.
        assert!(exporter.export(span_data(100)).await.is_err());
        drops.backoff.end_rest();
        // Back: the probe goes through, then everything else.
        exporter.inner.up.store(true, Ordering::Relaxed);
        assert!(exporter.export(span_data(100)).await.is_ok());
        assert_eq!(
            *exporter.inner.batches.lock().unwrap(),
            [100, PROBE_SPANS, PROBE_SPANS, 100 - PROBE_SPANS]
        );
        assert!((0..100).all(|_| drops.admit()), "admitted freely again");
        assert_eq!(drops.totals().1, 100 + 100 + 100 - admitted as u64 + 1);
    }

    #[tokio::test]
    async fn while_resting_queued_batches_are_dropped_without_calling_the_collector() {
        let drops = Drops::new(8, None);
        let exporter = CountingExporter::new(Refused::default(), drops.clone());
        assert!(exporter.export(Vec::new()).await.is_err());
        assert!(exporter.export(Vec::new()).await.is_err());
        assert!(exporter.export(Vec::new()).await.is_err());
        assert_eq!(
            exporter.inner.0.load(Ordering::Relaxed),
            1,
            "tried once, then rested"
        );
    }

    #[test]
    fn nothing_is_admitted_while_the_exporter_rests_and_the_refusals_are_counted() {
        let drops = Drops::new(8, None);
        assert!(drops.admit());
        drops.backoff.failed();
        assert!(!drops.admit() && !drops.admit());
        assert_eq!(drops.totals(), (0, 2), "counted as export_failed");
        drops.backoff.succeeded();
        assert!(drops.admit());
    }

    #[test]
    fn spans_beyond_capacity_are_counted_and_places_free_as_batches_leave() {
        let registry = Registry::new();
        let drops = Drops::new(3, Some(&registry));
        let admitted = (0..5).filter(|_| drops.admit()).count();
        assert_eq!(admitted, 3);
        assert_eq!(drops.totals(), (2, 0));
        drops.taken(2);
        assert!(drops.admit() && drops.admit());
        assert!(!drops.admit());
        assert_eq!(drops.totals(), (3, 0));
        let text = crate::metrics::render(&registry);
        assert!(
            text.contains(r#"otel_spans_dropped_total{reason="queue_full"} 3"#),
            "{text}"
        );
    }
}
