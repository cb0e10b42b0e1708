//! A trace in the terminal: an indented tree (service, kind, name, duration, status, the
//! attributes a reader needs) with a duration bar per span on one time axis, and under it the
//! trace's log lines from every service, ordered by time.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::store::Span;

/// The attributes worth a reader's eye, in the order shown.
pub const SHOWN_ATTRIBUTES: [&str; 9] = [
    "http.request.method",
    "http.route",
    "http.response.status_code",
    "rpc.method",
    "rpc.grpc.status_code",
    "db.system.name",
    "db.operation.name",
    "db.collection.name",
    "error.type",
];

/// Width of the duration bar's track, in characters.
const TRACK: usize = 24;

/// One log line of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The line's `ts` (RFC 3339, UTC, as the services write it).
    pub ts: String,
    /// The service that wrote it.
    pub service: String,
    /// Its level.
    pub level: String,
    /// Its message.
    pub msg: String,
    /// The span it was written in.
    pub span_id: String,
    /// Every other field, `key=value`, in a stable order.
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    /// A service's JSON log line, if it is one of trace `trace_id` (either form).
    pub fn parse(line: &str, trace_id: &str) -> Option<Self> {
        let Value::Object(fields) = serde_json::from_str::<Value>(line).ok()? else {
            return None;
        };
        let text = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        if !same_trace(&text("trace_id"), trace_id) {
            return None;
        }
        let mut rest: Vec<(String, String)> = fields
            .iter()
            .filter(|(k, _)| {
                !["ts", "service", "level", "msg", "trace_id", "span_id"].contains(&k.as_str())
            })
            .map(|(k, v)| {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (k.clone(), v)
            })
            .collect();
        rest.sort();
        Some(Self {
            ts: text("ts"),
            service: text("service"),
            level: text("level"),
            msg: text("msg"),
            span_id: text("span_id"),
            fields: rest,
        })
    }
}

/// Whether two trace ids are the same, with or without leading zeros.
pub fn same_trace(a: &str, b: &str) -> bool {
    let strip = |id: &str| id.trim().trim_start_matches('0').to_ascii_lowercase();
    !a.trim().is_empty() && strip(a) == strip(b)
}

fn duration(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// The bar of a span from `start` lasting `length` on a trace of `total` starting at `t0`.
fn bar(t0: u64, total: u64, start: u64, length: u64) -> String {
    let total = total.max(1) as f64;
    let offset = ((start.saturating_sub(t0)) as f64 / total * TRACK as f64).floor() as usize;
    let offset = offset.min(TRACK - 1);
    let width = ((length as f64 / total * TRACK as f64).round() as usize).clamp(1, TRACK - offset);
    format!(
        "{}{}{}",
        "·".repeat(offset),
        "█".repeat(width),
        "·".repeat(TRACK - offset - width)
    )
}

/// `trace_id`'s spans as a tree, then `logs` by time.
pub fn render(trace_id: &str, spans: &[Span], logs: &[LogLine]) -> String {
    let mut out = String::new();
    if spans.is_empty() {
        let _ = writeln!(out, "trace {trace_id}: no spans");
        return out;
    }
    let t0 = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
    let total = end.saturating_sub(t0);
    let mut services: Vec<&str> = Vec::new();
    for s in spans {
        if !services.contains(&s.service.as_str()) {
            services.push(&s.service);
        }
    }
    let _ = writeln!(
        out,
        "trace {trace_id}  {} spans  {}  {}",
        spans.len(),
        services.join(", "),
        duration(total)
    );
    let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<&Span>> = HashMap::new();
    for span in spans {
        let parent = if ids.contains(&span.parent_span_id.as_str()) {
            span.parent_span_id.as_str()
        } else {
            ""
        };
        children.entry(parent).or_default().push(span);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.start_unix_nano);
    }
    let mut rows: Vec<(String, &Span)> = Vec::new();
    fn walk<'a>(
        parent: &str,
        prefix: &str,
        children: &HashMap<&str, Vec<&'a Span>>,
        rows: &mut Vec<(String, &'a Span)>,
    ) {
        let list = children.get(parent).map(Vec::as_slice).unwrap_or(&[]);
        for (i, span) in list.iter().enumerate() {
            let last = i + 1 == list.len();
            let (branch, next) = match (parent.is_empty(), last) {
                (true, _) => ("", String::new()),
                (false, true) => ("└─ ", format!("{prefix}   ")),
                (false, false) => ("├─ ", format!("{prefix}│  ")),
            };
            rows.push((format!("{prefix}{branch}{}", span.name), span));
            walk(&span.span_id, &next, children, rows);
        }
    }
    walk("", "", &children, &mut rows);
    let name_width = rows
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    for (name, span) in &rows {
        let pad = name_width - name.chars().count();
        let status = match span.status {
            "error" if span.status_message.is_empty() => "error".to_owned(),
            "error" => format!("error: {}", span.status_message),
            other => other.to_owned(),
        };
        let shown: Vec<String> = SHOWN_ATTRIBUTES
            .iter()
            .filter_map(|key| {
                span.attributes
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(k, v)| format!("{k}={v}"))
            })
            .collect();
        let _ = writeln!(
            out,
            "  {name}{}  {:<8} {:<8} {:>9} {} {status}  {}",
            " ".repeat(pad),
            span.service,
            span.kind,
            duration(span.duration_ns()),
            bar(t0, total, span.start_unix_nano, span.duration_ns()),
            shown.join(" ")
        );
    }
    let mut logs: Vec<&LogLine> = logs.iter().collect();
    logs.sort_by(|a, b| a.ts.cmp(&b.ts));
    let _ = writeln!(out, "\nlogs: {} lines, by time", logs.len());
    for line in logs {
        let time = line
            .ts
            .split('T')
            .nth(1)
            .unwrap_or(&line.ts)
            .trim_end_matches('Z');
        let fields: Vec<String> = line
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "  {time:<15}  {:<8} {:<5} {}  {}",
            line.service,
            line.level,
            line.msg,
            fields.join(" ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: &str, service: &str, name: &str, start: u64, end: u64) -> Span {
        Span {
            span_id: id.into(),
            parent_span_id: parent.into(),
            service: service.into(),
            name: name.into(),
            kind: "server",
            start_unix_nano: start,
            end_unix_nano: end,
            status: "unset",
            status_message: String::new(),
            attributes: vec![
                ("http.route".into(), "/x".into()),
                ("noise".into(), "1".into()),
            ],
            events: Vec::new(),
        }
    }

    #[test]
    fn a_tree_with_bars_on_one_axis_and_logs_by_time() {
        let spans = [
            span("b", "a", "auth", "Signup", 1_000_000, 9_000_000),
            span("a", "00000000000000ff", "gateway", "POST /x", 0, 10_000_000),
            span("c", "b", "user", "CreateUser", 2_000_000, 3_000_000),
            span("d", "a", "gateway", "late", 9_000_000, 10_000_000),
        ];
        let logs = [
            LogLine::parse(r#"{"ts":"2026-12-03T10:00:00.000002Z","service":"user","level":"INFO","msg":"user created","trace_id":"00ab","span_id":"c"}"#, "ab").unwrap(),
            LogLine::parse(r#"{"ts":"2026-12-03T10:00:00.000001Z","service":"gateway","level":"INFO","msg":"in","trace_id":"00ab","span_id":"a","n":3}"#, "00ab").unwrap(),
        ];
        assert!(LogLine::parse(r#"{"trace_id":"cd"}"#, "ab").is_none());
        let text = render("00ab", &spans, &logs);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("trace 00ab  4 spans  auth, gateway, user  10.0 ms"),
            "{text}"
        );
        assert!(lines[1].starts_with("  POST /x "), "{text}");
        assert!(lines[2].starts_with("  ├─ Signup "), "{text}");
        assert!(lines[3].starts_with("  │  └─ CreateUser "), "{text}");
        assert!(lines[4].starts_with("  └─ late "), "{text}");
        assert!(
            lines[1].contains("████████████████████████") && lines[1].contains("http.route=/x")
        );
        assert!(!lines[1].contains("noise"));
        // The late span's bar sits at the end of the axis.
        assert!(lines[4].contains("·····················██"), "{text}");
        let logs_at = lines
            .iter()
            .position(|l| l.starts_with("logs: 2 lines"))
            .unwrap();
        assert!(lines[logs_at + 1].contains("gateway") && lines[logs_at + 1].contains("n=3"));
        assert!(lines[logs_at + 2].contains("user created"));
    }
}
