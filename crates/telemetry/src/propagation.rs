//! Extraction of the caller's trace context that keeps W3C Trace Context to the letter.
//!
//! The OpenTelemetry propagator parses `traceparent`'s fields as numbers without checking their
//! lengths or case, so `00-<31 hex digits>-...` was continued, left-padded with a zero. The
//! spec says such a header is invalid: the receiver starts a new trace and ignores
//! `tracestate`. [`extract`] hides a `traceparent` that breaks the grammar (and then
//! `tracestate` too, and a `tracestate` of more than 32 members) from the propagator, which
//! handles everything else (flags, `tracestate`'s key and value rules, baggage).

use opentelemetry::propagation::Extractor;

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
    let fields: Vec<&str> = head.split('-').collect();
    let [_, trace_id, parent_id, flags] = fields[..] else {
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

/// The caller's context from `headers`, through the global propagator, invalid trace headers
/// ignored as the spec says (a new trace starts).
pub fn extract(headers: &impl Extractor) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Strict(headers))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

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
}
