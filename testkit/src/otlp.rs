//! An OTLP/HTTP receiver in the test's process, standing in for an OpenTelemetry Collector:
//! hookrelay's processes export their traces to it and the test reads back the spans, decoded
//! with `opentelemetry-proto` and flattened to strings.
//!
//! It speaks what the OTLP specification (`opentelemetry-proto`'s `docs/specification.md`,
//! "OTLP/HTTP") asks of a server for binary protobuf: `POST /v1/traces`, `Content-Type:
//! application/x-protobuf`, a body that is an `ExportTraceServiceRequest`; `200` with an empty
//! `ExportTraceServiceResponse` on success, `400` for a body that does not decode, and a
//! protobuf `google.rpc.Status` as the body of every failure.
//!
//! It does not speak:
//! - OTLP/JSON (`Content-Type: application/json`): answered `415`, with a JSON `Status`.
//!   Exporters must use `Protocol::HttpBinary` (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`).
//! - Compressed bodies (`Content-Encoding: gzip`, `zstd`): answered `415`. The workspace has
//!   no gzip crate (`flate2`) to inflate them with, so exporters must send uncompressed.
//! - Metrics and logs (`/v1/metrics`, `/v1/logs`): `404`.
//!
//! [`OtlpReceiver::start_grpc`] speaks OTLP/gRPC instead (the `TraceService`), for exporters
//! set to `grpc`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message;
use tokio::sync::Notify;

use crate::PATIENCE;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// One span as the receiver got it, with its resource's attributes beside it so a test can
/// ask which process sent it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The resource attribute `service.name` ("" when the exporter sent none).
    pub service: String,
    /// Every resource attribute, values rendered as [`ReceivedSpan::attributes`] are.
    pub resource: Vec<(String, String)>,
    /// Lowercase hex, 32 characters.
    pub trace_id: String,
    /// Lowercase hex, 16 characters.
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    /// "server", "client", "producer", "consumer", "internal" or "unspecified".
    pub kind: &'static str,
    /// Strings as they are; integers, booleans and doubles through `to_string`; arrays and
    /// key-value lists as JSON; bytes as lowercase hex.
    pub attributes: Vec<(String, String)>,
    /// "unset", "ok" or "error".
    pub status: &'static str,
    /// The status description ("" unless the status is "error" and one was given).
    pub status_message: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// Span events (what `tracing-opentelemetry` makes of a `tracing` event inside a span).
    pub events: Vec<ReceivedEvent>,
    /// (trace id, span id) of every linked span.
    pub links: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// The attribute `key`, rendered as a string.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        find(&self.attributes, key)
    }

    /// The one span of `spans` satisfying `is`, failing the test with every span otherwise.
    pub fn one<'a>(spans: &'a [ReceivedSpan], what: &str, is: impl Fn(&Self) -> bool) -> &'a Self {
        let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| is(s)).collect();
        assert_eq!(found.len(), 1, "one {what} span; all spans: {spans:#?}");
        found[0]
    }
}

/// An event recorded on a span.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub name: String,
    /// Rendered as [`ReceivedSpan::attributes`] are.
    pub attributes: Vec<(String, String)>,
}

impl ReceivedEvent {
    /// The attribute `key`, rendered as a string.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        find(&self.attributes, key)
    }
}

fn find<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

struct Shared {
    spans: Mutex<Vec<ReceivedSpan>>,
    requests: AtomicUsize,
    /// The status every export is answered with instead of being accepted.
    forced: Mutex<Option<StatusCode>>,
    changed: Notify,
}

/// The running receiver, on a free loopback port; stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl OtlpReceiver {
    /// Starts on a free loopback port, accepting every well-formed export.
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (`0.0.0.0:4318` in a container standing in for a collector).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let shared = Arc::new(Shared {
            spans: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            forced: Mutex::new(None),
            changed: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("the OTLP receiver listens on {addr}: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let app = axum::Router::new()
            .route("/v1/traces", post(export))
            // A collector takes bodies up to 20 MiB (confighttp's default), axum only 2 MB.
            .layer(DefaultBodyLimit::max(20 * 1024 * 1024))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the OTLP receiver serves until dropped");
        });
        OtlpReceiver {
            addr,
            shared,
            server,
        }
    }

    /// Starts an OTLP/gRPC receiver (`opentelemetry.proto.collector.trace.v1.TraceService`)
    /// on a free loopback port: what an exporter with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`
    /// sends to. [`OtlpReceiver::answer_with`] makes it refuse exports as `UNAVAILABLE` (a
    /// status of 5xx or 429) or `INVALID_ARGUMENT` (any other).
    pub async fn start_grpc() -> Self {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
        let shared = Arc::new(Shared {
            spans: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            forced: Mutex::new(None),
            changed: Notify::new(),
        });
        let incoming =
            tonic::transport::server::TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .expect("the OS hands out a free loopback port");
        let addr = incoming
            .local_addr()
            .expect("a bound listener has an address");
        let service = TraceServiceServer::new(Grpc(shared.clone()));
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
                .expect("the OTLP/gRPC receiver serves until dropped");
        });
        OtlpReceiver {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, what `OTEL_EXPORTER_OTLP_ENDPOINT` takes: the exporter appends
    /// `/v1/traces` to it. A URL given to the exporter's builder (`with_endpoint`) or to
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as it is, so it needs the path too.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span accepted so far, in the order received, each with its resource's
    /// `service.name`.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared
            .spans
            .lock()
            .expect("no handler panics while holding the span list")
            .clone()
    }

    /// Waits (at most [`PATIENCE`]) until `done` holds for the spans received and returns them;
    /// fails the test saying `what` it waited for and listing the spans it got.
    pub async fn wait_until(
        &self,
        what: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                // Created before the check, so an export between the check and the await
                // still wakes it.
                let changed = self.shared.changed.notified();
                let spans = self.spans();
                if done(&spans) {
                    return spans;
                }
                changed.await;
            }
        })
        .await;
        match waited {
            Ok(spans) => spans,
            Err(_) => {
                let got: Vec<String> = self
                    .spans()
                    .iter()
                    .map(|s| format!("{:?} from {:?} in trace {}", s.name, s.service, s.trace_id))
                    .collect();
                panic!(
                    "waited {PATIENCE:?} in vain for spans: {what}; {} requests brought {} spans: {got:#?}",
                    self.requests(),
                    got.len()
                );
            }
        }
    }

    /// From now on, answers every export with `status` (503 for a collector that is down,
    /// 429 for one that throttles) and keeps none of its spans; `None` accepts again.
    pub fn answer_with(&self, status: Option<u16>) {
        let status = status.map(|code| {
            StatusCode::from_u16(code)
                .unwrap_or_else(|_| panic!("{code} is not an HTTP status code"))
        });
        *self
            .shared
            .forced
            .lock()
            .expect("no handler panics while holding the forced answer") = status;
    }

    /// How many requests reached `/v1/traces`, whatever they were answered (retries count).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

async fn export(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let response = accept(&shared, &headers, &body);
    shared.changed.notify_waiters();
    response
}

fn accept(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    let json = media_type.eq_ignore_ascii_case(JSON);
    let forced = *shared
        .forced
        .lock()
        .expect("no handler panics while holding the forced answer");
    if let Some(status) = forced {
        return failure(
            status,
            "the test told this receiver to refuse exports",
            json,
        );
    }
    if json {
        return failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this test receiver takes OTLP/HTTP binary protobuf only (Protocol::HttpBinary)",
            true,
        );
    }
    if !media_type.eq_ignore_ascii_case(PROTOBUF) {
        return failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Content-Type {content_type:?} is not {PROTOBUF}"),
            false,
        );
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    if !encoding.eq_ignore_ascii_case("identity") {
        return failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Content-Encoding {encoding:?} is not supported: send uncompressed bodies"),
            false,
        );
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(e) => {
            return failure(
                StatusCode::BAD_REQUEST,
                &format!("the body is not an ExportTraceServiceRequest: {e}"),
                false,
            );
        }
    };
    shared
        .spans
        .lock()
        .expect("no handler panics while holding the span list")
        .extend(flatten(request));
    (
        [(header::CONTENT_TYPE, PROTOBUF)],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// The gRPC service: the same spans, the same forced answers.
struct Grpc(Arc<Shared>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let shared = &self.0;
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let forced = *shared
            .forced
            .lock()
            .expect("no handler panics while holding the forced answer");
        let answer = match forced {
            Some(status) if status.is_server_error() || status.as_u16() == 429 => Err(
                tonic::Status::unavailable("the test told this receiver to refuse exports"),
            ),
            Some(_) => Err(tonic::Status::invalid_argument(
                "the test told this receiver to refuse exports",
            )),
            None => {
                shared
                    .spans
                    .lock()
                    .expect("no handler panics while holding the span list")
                    .extend(flatten(request.into_inner()));
                Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
            }
        };
        shared.changed.notify_waiters();
        answer
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP asks for with every 4xx and 5xx.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// A failure answered in the request's own encoding, as OTLP/HTTP asks.
fn failure(status: StatusCode, message: &str, json: bool) -> Response {
    if json {
        let body = serde_json::json!({ "message": message }).to_string();
        return (status, [(header::CONTENT_TYPE, JSON)], body).into_response();
    }
    let body = RpcStatus {
        code: 0,
        message: message.to_owned(),
    }
    .encode_to_vec();
    (status, [(header::CONTENT_TYPE, PROTOBUF)], body).into_response()
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = rendered(
            &resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        let service = find(&resource, "service.name")
            .unwrap_or_default()
            .to_owned();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                out.push(received(span, &service, &resource));
            }
        }
    }
    out
}

fn received(span: Span, service: &str, resource: &[(String, String)]) -> ReceivedSpan {
    let kind = match span::SpanKind::try_from(span.kind) {
        Ok(span::SpanKind::Server) => "server",
        Ok(span::SpanKind::Client) => "client",
        Ok(span::SpanKind::Producer) => "producer",
        Ok(span::SpanKind::Consumer) => "consumer",
        Ok(span::SpanKind::Internal) => "internal",
        Ok(span::SpanKind::Unspecified) | Err(_) => "unspecified",
    };
    let (status, status_message) = match span.status {
        Some(s) => match status::StatusCode::try_from(s.code) {
            Ok(status::StatusCode::Ok) => ("ok", s.message),
            Ok(status::StatusCode::Error) => ("error", s.message),
            Ok(status::StatusCode::Unset) | Err(_) => ("unset", s.message),
        },
        None => ("unset", String::new()),
    };
    ReceivedSpan {
        service: service.to_owned(),
        resource: resource.to_vec(),
        trace_id: hex(&span.trace_id),
        span_id: hex(&span.span_id),
        parent_span_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
        name: span.name,
        kind,
        attributes: rendered(&span.attributes),
        status,
        status_message,
        start_unix_nanos: span.start_time_unix_nano,
        end_unix_nanos: span.end_time_unix_nano,
        events: span
            .events
            .into_iter()
            .map(|event| ReceivedEvent {
                attributes: rendered(&event.attributes),
                name: event.name,
            })
            .collect(),
        links: span
            .links
            .iter()
            .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
            .collect(),
    }
}

fn rendered(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
        .collect()
}

/// A string as it is, a scalar through `to_string`, anything nested as JSON.
fn render(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(bytes)) => hex(bytes),
        Some(any_value::Value::StringValueStrindex(index)) => index.to_string(),
        Some(nested) => json(Some(nested)).to_string(),
        None => String::new(),
    }
}

fn json(value: Option<&any_value::Value>) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Some(any_value::Value::StringValue(s)) => Value::from(s.as_str()),
        Some(any_value::Value::BoolValue(b)) => Value::from(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        // NaN and infinities have no JSON number: null.
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::BytesValue(bytes)) => Value::from(hex(bytes)),
        Some(any_value::Value::StringValueStrindex(index)) => Value::from(*index),
        Some(any_value::Value::ArrayValue(array)) => array
            .values
            .iter()
            .map(|v| json(v.value.as_ref()))
            .collect(),
        Some(any_value::Value::KvlistValue(list)) => Value::Object(
            list.values
                .iter()
                .map(|kv| {
                    let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
                    (kv.key.clone(), json(value))
                })
                .collect(),
        ),
        None => Value::Null,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
