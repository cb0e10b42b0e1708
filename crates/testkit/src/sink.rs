//! An OTLP/gRPC endpoint that accepts every export and decodes nothing: what the exporter costs
//! its process, without a collector's decoding charged to the same cores.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use tokio_stream::wrappers::TcpListenerStream;

/// A running sink; dropping it stops the server.
pub struct OtlpSink {
    addr: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl OtlpSink {
    /// Starts a sink on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sink");
        let addr = listener.local_addr().expect("sink address");
        let counts = Arc::new(Counts::default());
        let service = Discard(counts.clone());
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Self { addr, counts, task }
    }

    /// `http://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Export requests received so far, and their body bytes.
    pub fn received(&self) -> (u64, u64) {
        (
            self.counts.requests.load(Ordering::Relaxed),
            self.counts.bytes.load(Ordering::Relaxed),
        )
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The trace service, answering every call with an empty `ExportTraceServiceResponse`.
#[derive(Clone)]
struct Discard(Arc<Counts>);

impl tonic::server::NamedService for Discard {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Discard {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let counts = self.0.clone();
        Box::pin(async move {
            let mut body = request.into_body();
            let mut size = 0;
            while let Some(Ok(frame)) = body.frame().await {
                size += frame.data_ref().map_or(0, Bytes::len) as u64;
            }
            counts.requests.fetch_add(1, Ordering::Relaxed);
            counts.bytes.fetch_add(size, Ordering::Relaxed);
            // One gRPC message frame of length 0 (an empty response), then `grpc-status: 0`.
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let frames = [
                Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(&[0; 5]))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            let body = http_body_util::StreamBody::new(tokio_stream::iter(frames));
            let response = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(tonic::body::Body::new(body))
                .expect("a valid response");
            Ok(response)
        })
    }
}
