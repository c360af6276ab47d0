//! `fake-jaeger`, the compose smoke test's stand-in for Jaeger: what an OTLP exporter sends
//! it comes back from the part of Jaeger's query API the smoke test reads, in Jaeger's JSON.

use hookrelay_testkit::http_client;
use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};

/// A finished span of trace 0123…cdef, built by hand.
fn finished_span(name: &'static str, id: u64, parent: SpanId) -> SpanData {
    let now = std::time::SystemTime::now();
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            SpanId::from(id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: opentelemetry::trace::SpanKind::Internal,
        name: name.into(),
        start_time: now,
        end_time: now,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: opentelemetry::trace::Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("jaeger-test").build(),
    }
}

#[tokio::test]
async fn the_fake_jaeger_answers_its_query_api_with_what_was_exported() {
    let (otlp, query) = (
        hookrelay_testkit::free_port(),
        hookrelay_testkit::free_port(),
    );
    let addr = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    tokio::spawn(hookrelay_testkit::jaeger::serve(addr(otlp), addr(query)));
    hookrelay_testkit::eventually("the query API listens", || async {
        tokio::net::TcpStream::connect(addr(query)).await.is_ok()
    })
    .await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("http://127.0.0.1:{otlp}/v1/traces"))
        .build()
        .expect("an exporter");
    exporter.set_resource(
        &Resource::builder()
            .with_service_name("test-service")
            .build(),
    );
    let parent = finished_span("parent", 0x0123_4567_89ab_cdef, SpanId::INVALID);
    let child = finished_span("child", 0x42, SpanId::from(0x0123_4567_89ab_cdef));
    exporter
        .export(vec![parent, child])
        .await
        .expect("exported");

    let http = http_client();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let response = http
                .get(format!("http://127.0.0.1:{query}{path}"))
                .send()
                .await
                .expect("answers");
            (
                response.status().as_u16(),
                response.json::<serde_json::Value>().await.expect("JSON"),
            )
        }
    };
    let (_, services) = get("/api/services".into()).await;
    assert_eq!(services["data"], serde_json::json!(["test-service"]));
    let (_, found) = get("/api/traces?service=test-service&limit=5".into()).await;
    let trace = &found["data"][0];
    assert_eq!(trace["traceID"], "0123456789abcdef0123456789abcdef");
    assert_eq!(trace["processes"]["p1"]["serviceName"], "test-service");
    let spans = trace["spans"].as_array().expect("spans");
    let child = spans
        .iter()
        .find(|s| s["operationName"] == "child")
        .expect("the child");
    assert_eq!(child["references"][0]["refType"], "CHILD_OF");
    assert_eq!(child["references"][0]["spanID"], "0123456789abcdef");
    let (status, one) = get("/api/traces/0123456789abcdef0123456789abcdef".into()).await;
    assert_eq!(
        (status, one["data"][0]["spans"].as_array().map(Vec::len)),
        (200, Some(2))
    );
    let (status, _) = get("/api/traces/00000000000000000000000000000001".into()).await;
    assert_eq!(status, 404);
    let (_, none) = get("/api/traces?service=nobody".into()).await;
    assert_eq!(none["data"], serde_json::json!([]));
}
