//! The OTLP receiver against the real OpenTelemetry SDK and OTLP/HTTP exporter, the ones
//! hookrelay's processes use: what they send arrives as spans, and the receiver answers as a
//! collector does.

use hookrelay_testkit::http_client;
use hookrelay_testkit::otlp::OtlpReceiver;
use opentelemetry::trace::{
    Link, Span, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer, TracerProvider,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanEvents, SpanExporter, SpanLinks};

/// An exporter as hookrelay builds one, sending binary protobuf to `receiver`.
fn exporter(receiver: &OtlpReceiver, retries: RetryPolicy) -> opentelemetry_otlp::SpanExporter {
    // The exporter builds its own reqwest client, which (with the workspace's reqwest features)
    // panics unless a rustls crypto provider is installed, even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", receiver.endpoint()))
        .with_retry_policy(retries)
        .build()
        .expect("an HTTP exporter builds with the reqwest-client feature")
}

fn resource() -> Resource {
    Resource::builder()
        .with_service_name("test-service")
        .build()
}

/// One finished span, built by hand, to hand straight to an exporter and see its result.
fn finished_span(name: &'static str) -> SpanData {
    let now = std::time::SystemTime::now();
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            SpanId::from(0x0123_4567_89ab_cdef),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: name.into(),
        start_time: now,
        end_time: now,
        attributes: vec![KeyValue::new("attempt", true)],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("otlp-test").build(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parent_and_its_child_exported_by_the_sdk_arrive_as_one_trace_with_their_service() {
    let receiver = OtlpReceiver::start().await;
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter(&receiver, RetryPolicy::recommended()))
        .with_resource(resource())
        .build();
    let linked = SpanContext::new(
        TraceId::from(0xfeed_u128),
        SpanId::from(0xbeef_u64),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    // The simple processor exports inside `end()` with `futures_executor::block_on`: on a
    // current-thread runtime that blocks the only thread, which the receiver and reqwest need,
    // and hangs. A blocking thread keeps it off the runtime's workers whatever the flavor.
    let (trace_id, parent_id, child_id) = tokio::task::spawn_blocking(move || {
        let tracer = provider.tracer("otlp-test");
        let parent = tracer
            .span_builder("receive delivery")
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("event.type", "user.lifecycle.create")])
            .start(&tracer);
        let parent_cx = Context::current_with_span(parent);
        let mut child = tracer
            .span_builder("call downstream")
            .with_kind(SpanKind::Client)
            .with_attributes([KeyValue::new("http.response.status_code", 503_i64)])
            .with_links(vec![Link::with_context(linked)])
            .start_with_context(&tracer, &parent_cx);
        child.add_event("retrying", vec![KeyValue::new("attempt", 2_i64)]);
        child.set_status(Status::error("downstream unavailable"));
        let ids = (
            parent_cx.span().span_context().trace_id().to_string(),
            parent_cx.span().span_context().span_id().to_string(),
            child.span_context().span_id().to_string(),
        );
        child.end();
        parent_cx.span().end();
        provider.force_flush().expect("the provider flushes");
        provider.shutdown().expect("the provider shuts down");
        ids
    })
    .await
    .expect("the spans are made without panicking");

    receiver
        .wait_until("a parent and a child", |spans| spans.len() == 2)
        .await;
    let spans = receiver.spans();
    let parent = spans
        .iter()
        .find(|s| s.name == "receive delivery")
        .expect("the parent span arrived");
    let child = spans
        .iter()
        .find(|s| s.name == "call downstream")
        .expect("the child span arrived");

    assert_eq!(parent.trace_id, trace_id);
    assert_eq!(child.trace_id, trace_id);
    assert_eq!(trace_id.len(), 32);
    assert_eq!(parent.span_id, parent_id);
    assert_eq!(child.span_id, child_id);
    assert_eq!(parent.parent_span_id, None);
    assert_eq!(child.parent_span_id.as_deref(), Some(parent_id.as_str()));

    assert_eq!(parent.kind, "server");
    assert_eq!(child.kind, "client");
    assert_eq!(
        parent.attribute("event.type"),
        Some("user.lifecycle.create")
    );
    assert_eq!(child.attribute("http.response.status_code"), Some("503"));
    assert_eq!(parent.status, "unset");
    assert_eq!(child.status, "error");
    assert_eq!(child.status_message, "downstream unavailable");
    assert_eq!(child.events.len(), 1, "{:?}", child.events);
    assert_eq!(child.events[0].name, "retrying");
    assert_eq!(child.events[0].attribute("attempt"), Some("2"));
    assert_eq!(
        child.links,
        vec![(format!("{:032x}", 0xfeed), format!("{:016x}", 0xbeef))]
    );
    assert!(child.start_unix_nanos > 0 && child.start_unix_nanos <= child.end_unix_nanos);

    for span in [parent, child] {
        assert_eq!(span.service, "test-service");
        let sdk_language = span
            .resource
            .iter()
            .find(|(k, _)| k == "telemetry.sdk.language");
        assert_eq!(
            sdk_language.map(|(_, v)| v.as_str()),
            Some("rust"),
            "{:?}",
            span.resource
        );
    }
    assert_eq!(
        receiver.requests(),
        2,
        "the simple processor sends each span alone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_answered_503_fails_and_is_counted_and_succeeds_once_accepted_again() {
    let receiver = OtlpReceiver::start().await;
    let mut exporter = exporter(&receiver, RetryPolicy::disabled());
    exporter.set_resource(&resource());

    receiver.answer_with(Some(503));
    let refused = exporter.export(vec![finished_span("refused")]).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(receiver.requests(), 1);
    assert!(receiver.spans().is_empty(), "{:?}", receiver.spans());

    receiver.answer_with(None);
    let accepted = exporter.export(vec![finished_span("accepted")]).await;
    assert!(accepted.is_ok(), "{accepted:?}");
    assert_eq!(receiver.requests(), 2);
    let spans = receiver.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].name, "accepted");
    assert_eq!(spans[0].service, "test-service");
    assert_eq!(spans[0].kind, "internal");
    assert_eq!(spans[0].attribute("attempt"), Some("true"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exporter_retries_a_503_as_otlp_asks_before_giving_up() {
    let receiver = OtlpReceiver::start().await;
    let retries = RetryPolicy::recommended()
        .with_max_retries(2)
        .with_initial_delay(std::time::Duration::from_millis(10))
        .with_max_jitter(std::time::Duration::ZERO);
    let exporter = exporter(&receiver, retries);

    receiver.answer_with(Some(503));
    let refused = exporter.export(vec![finished_span("refused")]).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(receiver.requests(), 3, "one attempt and two retries");
}

#[tokio::test]
async fn a_body_that_is_not_protobuf_is_answered_400_like_a_collector() {
    let receiver = OtlpReceiver::start().await;
    let response = http_client()
        .post(format!("{}/v1/traces", receiver.endpoint()))
        .header("content-type", "application/x-protobuf")
        .body(b"\xff\xff\xff\xff this is not protobuf".to_vec())
        .send()
        .await
        .expect("the receiver answers");

    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/x-protobuf",
        "the failure is a protobuf google.rpc.Status"
    );
    assert_eq!(receiver.requests(), 1);
    assert!(receiver.spans().is_empty());
}

#[tokio::test]
async fn otlp_json_and_gzip_bodies_are_refused_as_unsupported_media() {
    let receiver = OtlpReceiver::start().await;
    let http = http_client();
    let url = format!("{}/v1/traces", receiver.endpoint());

    let json = http
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"resourceSpans":[]}"#)
        .send()
        .await
        .expect("the receiver answers");
    assert_eq!(json.status(), 415);
    assert_eq!(json.headers()["content-type"], "application/json");

    let gzip = http
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .expect("the receiver answers");
    assert_eq!(gzip.status(), 415);

    // An empty protobuf body is an empty, valid request: accepted, as the spec asks.
    let empty = http
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .send()
        .await
        .expect("the receiver answers");
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.headers()["content-type"], "application/x-protobuf");
    assert_eq!(receiver.requests(), 3);
}
