//! The viewer under load and under bad input: it keeps to its budget (resident memory measured),
//! lets the oldest traces go first and counts them, and refuses a malformed or oversized request
//! whole with OTLP's error answer.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use viewer::receive::RpcStatus;

use crate::ViewerProcess;

const SPANS_PER_TRACE: u64 = 10;

fn string(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// Traces `first..first + traces`, each of [`SPANS_PER_TRACE`] gateway-shaped spans.
fn batch(first: u64, traces: u64) -> ExportTraceServiceRequest {
    let mut spans = Vec::new();
    for t in first..first + traces {
        for s in 0..SPANS_PER_TRACE {
            spans.push(Span {
                trace_id: u128::from(t + 1).to_be_bytes().to_vec(),
                span_id: (s + 1).to_be_bytes().to_vec(),
                parent_span_id: if s == 0 {
                    Vec::new()
                } else {
                    1u64.to_be_bytes().to_vec()
                },
                name: format!("GET /api/v1/users/{s}"),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_000 + s * 1000,
                end_time_unix_nano: 1_700_000_000_000_000_000 + s * 1000 + 500,
                attributes: vec![
                    string("http.request.method", "GET".into()),
                    string("http.route", "/api/v1/users/me".into()),
                    string("url.path", format!("/api/v1/users/{t}")),
                    string(
                        "user_agent.original",
                        "load/1.0 (the viewer's budget test)".into(),
                    ),
                    string("server.address", "127.0.0.1".into()),
                ],
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string("service.name", "gateway".into())],
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

fn hex_id(trace: u64) -> String {
    format!("{:032x}", u128::from(trace + 1))
}

#[tokio::test]
async fn twenty_thousand_spans_a_second_for_ten_seconds_keep_to_the_budget_oldest_first() {
    const BUDGET: usize = 16 << 20;
    let viewer = ViewerProcess::start(&[
        ("VIEWER_MAX_BYTES", BUDGET.to_string()),
        ("VIEWER_MAX_TRACES", "1000000".into()),
    ])
    .await;
    let idle_kib = viewer.process.rss_kib().unwrap();
    let mut client = TraceServiceClient::connect(viewer.otlp_grpc.clone())
        .await
        .unwrap();

    // 50 traces of 10 spans every 25 ms: 20,000 spans a second, 400 batches, 200,000 spans.
    let traces_per_batch = 50;
    let batches = 400;
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    let mut peak_kib = idle_kib;
    for b in 0..batches {
        tick.tick().await;
        client
            .export(batch(b * traces_per_batch, traces_per_batch))
            .await
            .unwrap();
        if b % 20 == 0 {
            peak_kib = peak_kib.max(viewer.process.rss_kib().unwrap());
        }
    }
    peak_kib = peak_kib.max(viewer.process.rss_kib().unwrap());
    let sent = (batches * traces_per_batch * SPANS_PER_TRACE) as f64;

    // Everything counted: what came, what went to stay within the budget, what is held.
    assert_eq!(viewer.metric("viewer_spans_received_total").await, sent);
    let held_bytes = viewer.metric("viewer_store_bytes").await;
    assert!(held_bytes <= BUDGET as f64, "{held_bytes} bytes held");
    assert!(
        held_bytes > BUDGET as f64 * 0.8,
        "the budget is used: {held_bytes}"
    );
    assert_eq!(viewer.metric("viewer_budget_bytes").await, BUDGET as f64);
    let evicted = viewer.metric("viewer_traces_evicted_total").await;
    let held = viewer.metric("viewer_traces").await;
    assert!(evicted > 0.0);
    assert_eq!(evicted + held, (batches * traces_per_batch) as f64);
    assert_eq!(
        viewer.metric("viewer_spans_evicted_total").await,
        evicted * SPANS_PER_TRACE as f64
    );

    // Oldest first: the first traces sent are gone, the last ones are whole.
    let get = |trace: u64| {
        let url = format!("{}/api/traces/{}", viewer.url, hex_id(trace));
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    let total = batches * traces_per_batch;
    assert_eq!(get(0).await, 404);
    assert_eq!(get(evicted as u64 - 1).await, 404);
    assert_eq!(get(evicted as u64).await, 200);
    assert_eq!(get(total - 1).await, 200);

    // Resident memory: the budget, plus what a process of this kind needs without any traces
    // (runtime, buffers, allocator arenas): at most twice its idle size.
    let peak = peak_kib as f64 * 1024.0;
    let allowed = BUDGET as f64 + 2.0 * idle_kib as f64 * 1024.0;
    assert!(
        peak <= allowed,
        "peak RSS {:.1} MiB over {:.1} MiB (budget {} MiB, idle {:.1} MiB)",
        peak / 1048576.0,
        allowed / 1048576.0,
        BUDGET >> 20,
        idle_kib as f64 / 1024.0
    );
    println!(
        "viewer under load: idle {:.1} MiB, peak {:.1} MiB, budget {} MiB, {evicted} traces evicted",
        idle_kib as f64 / 1024.0,
        peak / 1048576.0,
        BUDGET >> 20
    );
}

#[tokio::test]
async fn a_malformed_or_oversized_request_gets_otlps_error_and_changes_nothing() {
    let viewer = ViewerProcess::start(&[("VIEWER_MAX_REQUEST_BYTES", "65536".into())]).await;
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>, content_type: &'static str| {
        http.post(&viewer.otlp_http)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    // One good trace over HTTP, the way an OTLP/HTTP exporter sends it.
    let good = post(batch(0, 1).encode_to_vec(), "application/x-protobuf")
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    assert_eq!(viewer.metric("viewer_traces").await, 1.0);

    // Malformed: not a protobuf message.
    let answer = post(
        b"\xff\xff\xff\xff not protobuf".to_vec(),
        "application/x-protobuf",
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 400);
    let status = RpcStatus::decode(answer.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 3, "INVALID_ARGUMENT: {}", status.message);

    // Oversized: over VIEWER_MAX_REQUEST_BYTES, over HTTP and over gRPC.
    let big = batch(100, 60);
    assert!(big.encoded_len() > 65536);
    let answer = post(big.encode_to_vec(), "application/x-protobuf")
        .await
        .unwrap();
    assert_eq!(answer.status(), 413);
    let status = RpcStatus::decode(answer.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 8, "RESOURCE_EXHAUSTED: {}", status.message);
    let mut client = TraceServiceClient::connect(viewer.otlp_grpc.clone())
        .await
        .unwrap();
    let refused = client.export(big).await.unwrap_err();
    assert_ne!(refused.code(), tonic::Code::Ok);

    // Not protobuf at all.
    let answer = post(b"{}".to_vec(), "application/json").await.unwrap();
    assert_eq!(answer.status(), 415);

    // Nothing changed: still the one trace and its spans; the refusals counted.
    assert_eq!(viewer.metric("viewer_traces").await, 1.0);
    assert_eq!(
        viewer.metric("viewer_spans_received_total").await,
        SPANS_PER_TRACE as f64
    );
    let metrics = viewer.metrics().await;
    for reason in ["malformed", "too_large", "unsupported_media_type"] {
        assert!(
            metrics.contains(&format!(
                "viewer_requests_rejected_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}:\n{metrics}"
        );
    }
}
