//! OTLP in: the collector's gRPC `TraceService` and OTLP/HTTP's `POST /v1/traces` (binary
//! protobuf), both into the one store. A request that is malformed or over the size limit is
//! refused whole with OTLP's error answer and changes nothing stored.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

use crate::Viewer;

/// The gRPC side.
#[derive(Clone)]
pub struct Grpc(pub Arc<Viewer>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.insert(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The gRPC service, refusing messages over `max_bytes` (tonic answers them with an error
/// status before they reach the store, as it does a message that does not decode).
pub fn grpc_service(viewer: Arc<Viewer>, max_bytes: usize) -> TraceServiceServer<Grpc> {
    TraceServiceServer::new(Grpc(viewer)).max_decoding_message_size(max_bytes)
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// The gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What was wrong.
    #[prost(string, tag = "2")]
    pub message: String,
}

const PROTOBUF: &str = "application/x-protobuf";

/// An OTLP/HTTP error answer: `status` with a `google.rpc.Status` body.
fn refuse(status: StatusCode, code: tonic::Code, message: String) -> Response {
    let body = RpcStatus {
        code: code as i32,
        message,
    }
    .encode_to_vec();
    (status, [(header::CONTENT_TYPE, PROTOBUF)], body).into_response()
}

/// `POST /v1/traces`.
async fn export_http(
    State(viewer): State<Arc<Viewer>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim() == PROTOBUF));
    if !protobuf {
        viewer.reject("unsupported_media_type");
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            format!("this receiver takes {PROTOBUF} (OTLP/HTTP binary protobuf)"),
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            viewer.reject("too_large");
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                tonic::Code::ResourceExhausted,
                "the request is over VIEWER_MAX_REQUEST_BYTES".into(),
            );
        }
        Err(rejection) => {
            viewer.reject("malformed");
            return refuse(
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
                rejection.body_text(),
            );
        }
    };
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            viewer.insert(request);
            let answer = ExportTraceServiceResponse {
                partial_success: None,
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, PROTOBUF)],
                answer.encode_to_vec(),
            )
                .into_response()
        }
        Err(error) => {
            viewer.reject("malformed");
            refuse(
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
                format!("not an ExportTraceServiceRequest: {error}"),
            )
        }
    }
}

/// OTLP/HTTP: `POST /v1/traces`, bodies up to `max_bytes`.
pub fn http_router(viewer: Arc<Viewer>, max_bytes: usize) -> axum::Router {
    axum::Router::new()
        .route("/v1/traces", axum::routing::post(export_http))
        .layer(DefaultBodyLimit::max(max_bytes))
        .with_state(viewer)
}
