//! The page and what it reads: `/` lists the recent traces, `/trace/<id>` draws one as a
//! waterfall; both are one self-contained HTML file (no build step, nothing fetched from
//! elsewhere) that reads the JSON API: `/api/traces?limit=N` and `/api/traces/<id>`. And
//! `/metrics`, the budget and what was evicted.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::Viewer;

/// The page, embedded at build time.
const PAGE: &str = include_str!("page.html");

fn json_answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything it needs is in it: no script or style from anywhere else.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        PAGE,
    )
        .into_response()
}

async fn list(State(viewer): State<Arc<Viewer>>, RawQuery(query): RawQuery) -> Response {
    let limit = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("limit="))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(100)
        .min(1000);
    let store = viewer.store();
    let budget = store.budget();
    json_answer(
        StatusCode::OK,
        json!({
            "traces": store.summaries(limit),
            "held": {"traces": store.len(), "bytes": store.bytes()},
            "budget": {"traces": budget.traces, "bytes": budget.bytes},
        }),
    )
}

async fn one(State(viewer): State<Arc<Viewer>>, Path(id): Path<String>) -> Response {
    if crate::store::parse_trace_id(&id).is_none() {
        return json_answer(
            StatusCode::BAD_REQUEST,
            json!({"code": "invalid_trace_id", "message": "a trace id is up to 32 hex digits"}),
        );
    }
    match viewer.store().trace(&id) {
        Some(spans) => json_answer(
            StatusCode::OK,
            json!({
                "trace_id": format!("{:0>32}", id.to_ascii_lowercase()),
                "spans": spans.iter().map(crate::store::Span::to_json).collect::<Vec<_>>(),
            }),
        ),
        None => json_answer(
            StatusCode::NOT_FOUND,
            json!({"code": "trace_not_found", "message": format!("no trace {id} here (evicted, or never received)")}),
        ),
    }
}

async fn metrics(State(viewer): State<Arc<Viewer>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        viewer.metrics_text(),
    )
        .into_response()
}

/// The page, the JSON API and `/metrics`.
pub fn router(viewer: Arc<Viewer>) -> axum::Router {
    axum::Router::new()
        .route("/", get(page))
        .route("/trace/{id}", get(page))
        .route("/api/traces", get(list))
        .route("/api/traces/{id}", get(one))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(viewer)
}
