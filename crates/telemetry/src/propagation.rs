//! Extraction of the caller's trace context that keeps W3C Trace Context to the letter.
//!
//! The OpenTelemetry propagator parses `traceparent`'s fields as numbers without checking their
//! lengths or case, so `00-<31 hex digits>-...` was continued, left-padded with a zero. The
//! spec says such a header is invalid: the receiver starts a new trace and ignores
//! `tracestate`. [`extract`] hides a `traceparent` that breaks the grammar (and then
//! `tracestate` too, and a `tracestate` of more than 32 members) from the propagator, which
//! handles everything else (flags, `tracestate`'s key and value rules, baggage).

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// W3C Trace Context Level 2's random flag: the right-most 7 bytes of the trace id are random.
pub const RANDOM: TraceFlags = TraceFlags::new(0x02);

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
/// The most list members a `tracestate` may carry.
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Whether `value` is a `traceparent` a receiver may continue (W3C Trace Context Level 1 and 2):
/// `version-traceid-parentid-flags` in lower-case hex of 2, 32, 16 and 2 digits; version `ff`
/// forbidden; ids not all zero; version `00` exactly that long, a later version possibly
/// followed by more fields after a `-`.
pub fn valid_traceparent(value: &str) -> bool {
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let value = value.trim_matches([' ', '\t']);
    if value.len() < 55 || !value.is_char_boundary(55) {
        return false;
    }
    let (head, rest) = value.split_at(55);
    let version = &head[..2];
    let mut fields = head.split('-');
    let (Some(_), Some(trace_id), Some(parent_id), Some(flags), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return false;
    };
    hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && match version {
            "00" => rest.is_empty(),
            _ => rest.is_empty() || rest.starts_with('-'),
        }
}

/// An extractor that shows the propagator only headers it may use.
struct Strict<'a, E: Extractor>(&'a E);

impl<E: Extractor> Extractor for Strict<'_, E> {
    fn get(&self, key: &str) -> Option<&str> {
        let traceparent_ok = || self.0.get(TRACEPARENT).is_some_and(valid_traceparent);
        match key {
            TRACEPARENT => self.0.get(key).filter(|_| traceparent_ok()),
            TRACESTATE => self.0.get(key).filter(|state| {
                traceparent_ok()
                    && state.split(',').filter(|m| !m.trim().is_empty()).count()
                        <= MAX_TRACESTATE_MEMBERS
            }),
            _ => self.0.get(key),
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys()
    }
}

/// Writes propagation headers into an `http::HeaderMap` (gRPC metadata): the W3C names are
/// static and values are moved in, where opentelemetry-http's injector parses the name and
/// copies the value of every header it sets.
#[cfg(feature = "tonic")]
pub struct HeaderInjector<'a>(pub &'a mut http::HeaderMap);

#[cfg(feature = "tonic")]
impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        use http::header::HeaderName;
        let name = match key {
            TRACEPARENT => HeaderName::from_static(TRACEPARENT),
            TRACESTATE => HeaderName::from_static(TRACESTATE),
            "baggage" => HeaderName::from_static("baggage"),
            other => match HeaderName::from_bytes(other.as_bytes()) {
                Ok(name) => name,
                Err(_) => return,
            },
        };
        if let Ok(value) = http::HeaderValue::try_from(value) {
            self.0.insert(name, value);
        }
    }
}

/// The caller's context from `headers`, through the global propagator, invalid trace headers
/// ignored as the spec says (a new trace starts).
pub fn extract(headers: &impl Extractor) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Strict(headers))
    })
}

/// The W3C `traceparent`/`tracestate` propagator, Level 2 as far as a receiver goes.
///
/// OpenTelemetry's propagator implements Level 1, which zeroes every flag but `sampled`. Level 2
/// adds the `random` flag (`02`), which describes the trace id and so travels with it: this
/// propagator keeps it from an incoming `traceparent` and sends it on. (Traces this process
/// starts do not set it: the SDK gives root spans no way to; see the README's conformance notes.)
#[derive(Debug, Default)]
pub struct TraceContextLevel2 {
    inner: TraceContextPropagator,
}

impl TraceContextLevel2 {
    /// A new propagator.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A version-00 `traceparent` (and `traceresponse`) value: `00-<trace id>-<span id>-<flags>` in
/// lower-case hex.
///
/// Written into a fixed buffer: it is made for every outgoing call and every response, and
/// `format!` through the ids' `Display` cost the gateway thousands of instructions a request.
pub(crate) fn traceparent(trace_id: TraceId, span_id: SpanId, flags: u8) -> String {
    let mut value = [b'-'; 55];
    value[..2].copy_from_slice(b"00");
    // Each slice is exactly twice its input's length, the one way encoding could fail.
    let _ = hex::encode_to_slice(trace_id.to_bytes(), &mut value[3..35]);
    let _ = hex::encode_to_slice(span_id.to_bytes(), &mut value[36..52]);
    let _ = hex::encode_to_slice([flags], &mut value[53..55]);
    // Hex digits and dashes only.
    String::from_utf8(value.to_vec()).unwrap_or_default()
}

/// The flags byte of a valid `traceparent`.
fn flags_of(traceparent: &str) -> Option<u8> {
    let value = traceparent.trim_matches([' ', '\t']);
    value
        .get(53..55)
        .and_then(|flags| u8::from_str_radix(flags, 16).ok())
}

impl TextMapPropagator for TraceContextLevel2 {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let context = span.span_context();
        if !context.is_valid() {
            return;
        }
        // As the SDK's propagator writes it, but keeping `random` beside `sampled`.
        let flags = context.trace_flags() & (TraceFlags::SAMPLED | RANDOM);
        injector.set(
            TRACEPARENT,
            traceparent(context.trace_id(), context.span_id(), flags.to_u8()),
        );
        // An empty `tracestate` says nothing: the spec asks senders to leave it out.
        let state = context.trace_state().header();
        if !state.is_empty() {
            injector.set(TRACESTATE, state);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let extracted = self.inner.extract_with_context(cx, extractor);
        let random = extractor
            .get(TRACEPARENT)
            .and_then(flags_of)
            .is_some_and(|flags| flags & RANDOM.to_u8() != 0);
        let with_random = {
            let span = extracted.span();
            let context = span.span_context();
            (random && context.is_valid() && context.is_remote()).then(|| {
                SpanContext::new(
                    context.trace_id(),
                    context.span_id(),
                    context.trace_flags() | RANDOM,
                    true,
                    context.trace_state().clone(),
                )
            })
        };
        let Some(with_random) = with_random else {
            return extracted;
        };
        extracted.with_remote_span_context(with_random)
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        self.inner.fields()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    #[test]
    fn traceparent_is_written_as_the_spec_spells_it() {
        let trace_id = TraceId::from_hex(TRACE).unwrap();
        let span_id = SpanId::from_hex(PARENT).unwrap();
        for (flags, digits) in [(0x00, "00"), (0x01, "01"), (0x03, "03"), (0xff, "ff")] {
            let value = traceparent(trace_id, span_id, flags);
            assert_eq!(value, format!("00-{TRACE}-{PARENT}-{digits}"));
            assert!(valid_traceparent(&value), "{value}");
        }
        // Leading zeros are kept: the ids are fixed-width, not numbers.
        let small = traceparent(TraceId::from(1u128), SpanId::from(2u64), 1);
        assert_eq!(
            small,
            format!("00-{}1-{}2-01", "0".repeat(31), "0".repeat(15))
        );
    }

    #[test]
    fn the_traceparent_grammar_of_the_spec() {
        let valid = [
            format!("00-{TRACE}-{PARENT}-01"),
            format!("00-{TRACE}-{PARENT}-00"),
            format!("00-{TRACE}-{PARENT}-09"), // unknown flags are kept, not refused
            format!("01-{TRACE}-{PARENT}-01"), // a future version, same shape
            format!("cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"),
            format!(" 00-{TRACE}-{PARENT}-01 "), // optional white space around the value
        ];
        for value in &valid {
            assert!(valid_traceparent(value), "{value:?} should be valid");
        }
        let invalid = [
            String::new(),
            "garbage".to_owned(),
            format!("00-{}-{PARENT}-01", &TRACE[1..]), // 31-digit trace id
            format!("00-{TRACE}0-{PARENT}-01"),        // 33-digit trace id
            format!("00-{TRACE}-{}-01", &PARENT[1..]), // 15-digit parent id
            format!("00-{TRACE}-{PARENT}-1"),          // 1-digit flags
            format!("00-{}-{PARENT}-01", TRACE.to_uppercase()), // upper case
            format!("00-{}-{PARENT}-01", "0".repeat(32)), // all-zero trace id
            format!("00-{TRACE}-{}-01", "0".repeat(16)), // all-zero parent id
            format!("ff-{TRACE}-{PARENT}-01"),         // version ff is forbidden
            format!("0-{TRACE}-{PARENT}-01"),          // 1-digit version
            format!("0g-{TRACE}-{PARENT}-01"),         // not hex
            format!("00-{TRACE}-{PARENT}-01-extra"),   // version 00 has no more fields
            format!("cc-{TRACE}-{PARENT}-01extra"),    // more fields need a separator
            format!("00_{TRACE}_{PARENT}_01"),         // wrong separators
            format!("00-{}-{PARENT}-01", "é".repeat(16)), // not ASCII
        ];
        for value in &invalid {
            assert!(!valid_traceparent(value), "{value:?} should be invalid");
        }
    }

    struct Headers(Vec<(&'static str, String)>);
    impl Extractor for Headers {
        fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| *k).collect()
        }
    }

    #[test]
    fn an_invalid_traceparent_hides_tracestate_and_too_long_a_tracestate_is_dropped() {
        let state = "vendor=value".to_owned();
        let bad = Headers(vec![
            ("traceparent", format!("00-{}-{PARENT}-01", &TRACE[1..])),
            ("tracestate", state.clone()),
        ]);
        assert_eq!(Strict(&bad).get("traceparent"), None);
        assert_eq!(Strict(&bad).get("tracestate"), None);
        let good = Headers(vec![
            ("traceparent", format!("00-{TRACE}-{PARENT}-01")),
            ("tracestate", state.clone()),
        ]);
        assert_eq!(Strict(&good).get("tracestate"), Some(state.as_str()));
        let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        let long = Headers(vec![
            ("traceparent", format!("00-{TRACE}-{PARENT}-01")),
            ("tracestate", members.join(",")),
        ]);
        assert_eq!(Strict(&long).get("tracestate"), None);
        assert!(
            Strict(&long).get("traceparent").is_some(),
            "the trace continues without the state"
        );
    }

    #[test]
    fn the_random_flag_travels_with_the_trace_id_and_other_unknown_flags_do_not() {
        let propagator = TraceContextLevel2::new();
        for (received, sent) in [
            ("03", "03"),
            ("02", "02"),
            ("01", "01"),
            ("00", "00"),
            ("ff", "03"),
            ("05", "01"),
        ] {
            let incoming = Headers(vec![(
                "traceparent",
                format!("00-{TRACE}-{PARENT}-{received}"),
            )]);
            let cx = propagator.extract(&incoming);
            let mut outgoing = std::collections::HashMap::new();
            propagator.inject_context(&cx, &mut outgoing);
            assert_eq!(
                outgoing["traceparent"],
                format!("00-{TRACE}-{PARENT}-{sent}"),
                "received flags {received}"
            );
        }
    }

    #[test]
    fn injected_into_grpc_metadata_with_tracestate_only_when_there_is_one() {
        let propagator = TraceContextLevel2::new();
        for (state, expected) in [
            (None, None),
            (Some("vendor=1,other=2"), Some("vendor=1,other=2")),
        ] {
            let mut fields = vec![("traceparent", format!("00-{TRACE}-{PARENT}-01"))];
            fields.extend(state.map(|state| ("tracestate", state.to_owned())));
            let cx = propagator.extract(&Headers(fields));
            let mut headers = http::HeaderMap::new();
            propagator.inject_context(&cx, &mut HeaderInjector(&mut headers));
            assert_eq!(
                headers["traceparent"],
                format!("00-{TRACE}-{PARENT}-01").as_str()
            );
            assert_eq!(
                headers.get("tracestate").map(|v| v.to_str().unwrap()),
                expected,
                "{state:?}"
            );
        }
        let mut headers = http::HeaderMap::new();
        propagator.inject_context(&Context::new(), &mut HeaderInjector(&mut headers));
        assert!(headers.is_empty(), "no span, nothing sent: {headers:?}");
    }
}
