//! The traces the viewer keeps: the most recent ones, within a budget of traces and of bytes.
//! When either is exceeded the trace that arrived first goes (reading a trace does not make it
//! newer), and what went is counted.

use std::collections::{HashMap, VecDeque};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde_json::{Value, json};

/// A trace id as OTLP carries it.
pub type TraceId = [u8; 16];

/// How much the store may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Traces at most.
    pub traces: usize,
    /// Estimated bytes at most (the spans' strings and fixed parts).
    pub bytes: usize,
}

/// One event on a span.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its name.
    pub name: String,
    /// When, in Unix nanoseconds.
    pub time_unix_nano: u64,
    /// Its attributes, rendered.
    pub attributes: Vec<(String, String)>,
}

/// One span, as much of OTLP's as a reader needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, empty for a root.
    pub parent_span_id: String,
    /// The resource's `service.name`.
    pub service: String,
    /// The span name.
    pub name: String,
    /// `server`, `client`, `internal`, `producer`, `consumer` or `unspecified`.
    pub kind: &'static str,
    /// Start, Unix nanoseconds.
    pub start_unix_nano: u64,
    /// End, Unix nanoseconds.
    pub end_unix_nano: u64,
    /// `unset`, `ok` or `error`.
    pub status: &'static str,
    /// The status message, if any.
    pub status_message: String,
    /// Attributes, rendered, in the order sent.
    pub attributes: Vec<(String, String)>,
    /// Events, in the order sent.
    pub events: Vec<Event>,
}

impl Span {
    /// The estimate of what it occupies: its fixed part, and each heap allocation as malloc
    /// hands it out (the length rounded up to 16 bytes, plus a 16-byte header), so that the
    /// budget is close to the resident memory it costs.
    fn bytes(&self) -> usize {
        fn heap(len: usize) -> usize {
            if len == 0 { 0 } else { (len + 31) & !15 }
        }
        let pairs = |pairs: &Vec<(String, String)>| -> usize {
            heap(pairs.capacity() * std::mem::size_of::<(String, String)>())
                + pairs
                    .iter()
                    .map(|(k, v)| heap(k.capacity()) + heap(v.capacity()))
                    .sum::<usize>()
        };
        std::mem::size_of::<Self>()
            + heap(self.span_id.capacity())
            + heap(self.parent_span_id.capacity())
            + heap(self.service.capacity())
            + heap(self.name.capacity())
            + heap(self.status_message.capacity())
            + pairs(&self.attributes)
            + heap(self.events.capacity() * std::mem::size_of::<Event>())
            + self
                .events
                .iter()
                .map(|e| heap(e.name.capacity()) + pairs(&e.attributes))
                .sum::<usize>()
    }

    /// Its duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// The span as the JSON API serves it.
    pub fn to_json(&self) -> Value {
        let pairs = |pairs: &[(String, String)]| -> Value {
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "service": self.service,
            "name": self.name,
            "kind": self.kind,
            "start_unix_nano": self.start_unix_nano,
            "end_unix_nano": self.end_unix_nano,
            "duration_ns": self.duration_ns(),
            "status": {"code": self.status, "message": self.status_message},
            "attributes": pairs(&self.attributes),
            "events": self.events.iter().map(|e| json!({
                "name": e.name,
                "time_unix_nano": e.time_unix_nano,
                "attributes": pairs(&e.attributes),
            })).collect::<Vec<_>>(),
        })
    }
}

/// A trace's spans and their estimated size.
#[derive(Debug, Default, Clone)]
struct Trace {
    spans: Vec<Span>,
    bytes: usize,
}

impl Trace {
    /// The span that started it: one without a parent in the trace, the earliest.
    fn root(&self) -> Option<&Span> {
        self.spans
            .iter()
            .filter(|s| !self.spans.iter().any(|p| p.span_id == s.parent_span_id))
            .min_by_key(|s| s.start_unix_nano)
    }

    fn start(&self) -> u64 {
        self.spans
            .iter()
            .map(|s| s.start_unix_nano)
            .min()
            .unwrap_or(0)
    }

    fn end(&self) -> u64 {
        self.spans
            .iter()
            .map(|s| s.end_unix_nano)
            .max()
            .unwrap_or(0)
    }
}

/// What the store has taken in and let go, for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Spans received.
    pub spans_received: u64,
    /// Traces evicted to stay within the budget.
    pub traces_evicted: u64,
    /// Spans those traces held.
    pub spans_evicted: u64,
}

/// The traces, oldest first.
#[derive(Debug)]
pub struct Store {
    budget: Budget,
    traces: HashMap<TraceId, Trace>,
    /// Trace ids in the order their first span arrived: eviction takes from the front.
    order: VecDeque<TraceId>,
    bytes: usize,
    counts: Counts,
}

/// An OTLP attribute value as text.
fn render(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex::encode(b),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| render(Some(v))).collect();
            format!("[{}]", items.join(", "))
        }
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn pairs(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
        .collect()
}

impl Store {
    /// An empty store within `budget`.
    pub fn new(budget: Budget) -> Self {
        Self {
            budget,
            traces: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            counts: Counts::default(),
        }
    }

    /// Takes in one export request: every span with a valid trace id is stored (under its
    /// trace), then the oldest traces go until the store is within its budget. Returns the
    /// number of spans rejected for an invalid id.
    pub fn insert(&mut self, request: ExportTraceServiceRequest) -> usize {
        let mut rejected = 0;
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .map(|kv| render(kv.value.as_ref()))
                .unwrap_or_else(|| "unknown_service".to_owned());
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                let Ok(trace_id) = <TraceId>::try_from(span.trace_id.as_slice()) else {
                    rejected += 1;
                    continue;
                };
                if trace_id == [0; 16] || span.span_id.len() != 8 {
                    rejected += 1;
                    continue;
                }
                let status = span.status.as_ref();
                let stored = Span {
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    service: service.clone(),
                    name: span.name,
                    kind: match span.kind {
                        1 => "internal",
                        2 => "server",
                        3 => "client",
                        4 => "producer",
                        5 => "consumer",
                        _ => "unspecified",
                    },
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                    status: match status.map(|s| s.code) {
                        Some(1) => "ok",
                        Some(2) => "error",
                        _ => "unset",
                    },
                    status_message: status.map(|s| s.message.clone()).unwrap_or_default(),
                    attributes: pairs(&span.attributes),
                    events: span
                        .events
                        .iter()
                        .map(|e| Event {
                            name: e.name.clone(),
                            time_unix_nano: e.time_unix_nano,
                            attributes: pairs(&e.attributes),
                        })
                        .collect(),
                };
                let bytes = stored.bytes();
                let trace = self.traces.entry(trace_id).or_insert_with(|| {
                    self.order.push_back(trace_id);
                    Trace::default()
                });
                trace.spans.push(stored);
                trace.bytes += bytes;
                self.bytes += bytes;
                self.counts.spans_received += 1;
            }
        }
        self.evict();
        rejected
    }

    /// Drops the oldest traces until within the budget.
    fn evict(&mut self) {
        while self.traces.len() > self.budget.traces || self.bytes > self.budget.bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(trace) = self.traces.remove(&oldest) {
                self.bytes -= trace.bytes;
                self.counts.traces_evicted += 1;
                self.counts.spans_evicted += trace.spans.len() as u64;
            }
        }
    }

    /// The spans of trace `id` (32 hex digits, or fewer: Tempo's zero-stripped form is padded),
    /// ordered by start.
    pub fn trace(&self, id: &str) -> Option<Vec<Span>> {
        let id = parse_trace_id(id)?;
        let mut spans = self.traces.get(&id)?.spans.clone();
        spans.sort_by_key(|s| s.start_unix_nano);
        Some(spans)
    }

    /// The newest `limit` traces, newest first, as the JSON API lists them.
    pub fn summaries(&self, limit: usize) -> Vec<Value> {
        self.order
            .iter()
            .rev()
            .filter_map(|id| self.traces.get(id).map(|t| (id, t)))
            .take(limit)
            .map(|(id, trace)| {
                let root = trace.root();
                let mut services: Vec<&str> =
                    trace.spans.iter().map(|s| s.service.as_str()).collect();
                services.sort_unstable();
                services.dedup();
                json!({
                    "trace_id": hex::encode(id),
                    "root_service": root.map(|r| r.service.as_str()),
                    "root_name": root.map(|r| r.name.as_str()),
                    "start_unix_nano": trace.start(),
                    "duration_ns": trace.end().saturating_sub(trace.start()),
                    "span_count": trace.spans.len(),
                    "services": services,
                    "error": trace.spans.iter().any(|s| s.status == "error"),
                })
            })
            .collect()
    }

    /// Traces held now.
    pub fn len(&self) -> usize {
        self.traces.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    /// Estimated bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The budget.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// What came in and what went.
    pub fn counts(&self) -> Counts {
        self.counts
    }
}

/// A trace id from hex, left-padded to 32 digits.
pub fn parse_trace_id(id: &str) -> Option<TraceId> {
    let id = id.trim();
    if id.is_empty() || id.len() > 32 {
        return None;
    }
    let padded = format!("{id:0>32}");
    let bytes = hex::decode(padded).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};

    /// A request with one span per `(trace byte, span byte)`, each with `padding` bytes of name.
    fn request(spans: &[(u8, u8)], padding: usize) -> ExportTraceServiceRequest {
        let spans = spans
            .iter()
            .map(|(t, s)| OtlpSpan {
                trace_id: vec![*t; 16],
                span_id: vec![*s; 8],
                name: "x".repeat(padding),
                kind: 2,
                start_time_unix_nano: u64::from(*s),
                end_time_unix_nano: u64::from(*s) + 10,
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("gateway".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn the_oldest_trace_goes_first_when_the_count_is_exceeded() {
        let mut store = Store::new(Budget {
            traces: 2,
            bytes: usize::MAX,
        });
        store.insert(request(&[(1, 1), (2, 2)], 1));
        // Reading the oldest does not make it newer.
        assert!(store.trace(&hex::encode([1u8; 16])).is_some());
        store.insert(request(&[(3, 3), (2, 4)], 1));
        assert_eq!(store.len(), 2);
        assert!(store.trace(&hex::encode([1u8; 16])).is_none());
        assert_eq!(store.trace(&hex::encode([2u8; 16])).unwrap().len(), 2);
        assert_eq!(
            store.counts(),
            Counts {
                spans_received: 4,
                traces_evicted: 1,
                spans_evicted: 1
            }
        );
    }

    #[test]
    fn the_byte_budget_holds_and_the_count_of_bytes_returns_to_zero() {
        let mut store = Store::new(Budget {
            traces: 1000,
            bytes: 10_000,
        });
        for t in 1..=50u8 {
            store.insert(request(&[(t, 1)], 1000));
            assert!(store.bytes() <= 10_000, "{}", store.bytes());
        }
        assert!(store.len() < 10 && store.len() > 2, "{}", store.len());
        assert_eq!(store.counts().traces_evicted as usize + store.len(), 50);
        // The newest are the ones kept.
        assert!(store.trace(&hex::encode([50u8; 16])).is_some());
        let mut empty = Store::new(Budget {
            traces: 0,
            bytes: 0,
        });
        empty.insert(request(&[(1, 1)], 10));
        assert_eq!((empty.len(), empty.bytes()), (0, 0));
    }

    #[test]
    fn invalid_ids_are_rejected_and_short_ids_are_padded() {
        let mut store = Store::new(Budget {
            traces: 10,
            bytes: usize::MAX,
        });
        let mut bad = request(&[(0, 1), (5, 1)], 1);
        bad.resource_spans[0].scope_spans[0].spans[1].span_id = vec![1, 2];
        assert_eq!(store.insert(bad), 2);
        assert!(store.is_empty());
        let mut zeros = request(&[(1, 1)], 1);
        zeros.resource_spans[0].scope_spans[0].spans[0].trace_id =
            [vec![0; 2], vec![0xab; 14]].concat();
        store.insert(zeros);
        let short = hex::encode([0xab; 14]);
        assert_eq!(store.trace(&short).unwrap().len(), 1);
        assert_eq!(store.summaries(10)[0]["root_service"], "gateway");
        assert!(parse_trace_id("xyz").is_none());
        assert!(parse_trace_id(&"1".repeat(33)).is_none());
    }
}
