//! One trace per event (OpenTelemetry): the receiver in this process exports as
//! `hookrelay-receiver`, the `worker` binary as `hookrelay-worker`, both to an OTLP/HTTP
//! receiver in this process that decodes what they send. Tracing is process-wide, so each test
//! here is a process of its own (nextest runs every test that way).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use hookrelay::config::{LogSettings, TelemetrySettings};
use hookrelay_testkit::{
    DEMO_SECRET, Downstream, OtlpReceiver, PATIENCE, Process, ReceivedSpan, Reply, Stack, delivery,
    free_port, metric, new_uuid, okta_post, scrape, user_created_event,
};

use crate::helpers::CRM_SYNC_CONSUMER;

const EVENT_SUBJECT: &str = "okta.events.user.lifecycle.create";

/// Traces of this process (the in-process receiver's) exported to `otlp`, quickly.
fn trace_this_process(otlp: &OtlpReceiver) -> hookrelay::telemetry::Guard {
    let telemetry = TelemetrySettings {
        endpoint: otlp.endpoint(),
        bsp_schedule_delay: Duration::from_millis(100),
        ..TelemetrySettings::default()
    };
    hookrelay::telemetry::init(&LogSettings::default(), &telemetry, "hookrelay-receiver")
        .expect("tracing starts")
}

/// The `worker` binary exporting to `otlp` as `instance`, logging JSON, with `extra` variables.
async fn traced_worker(
    stack: &Stack,
    config: &Path,
    otlp: &str,
    instance: &str,
    extra: &[(&str, &str)],
) -> (Process, std::net::SocketAddr) {
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut env = stack.env.clone();
    env.extend(
        [
            (
                "HOOKRELAY__WORKER__ADMIN_LISTEN",
                admin.to_string().as_str(),
            ),
            ("HOOKRELAY__LOG__FORMAT", "json"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                &format!("service.instance.id={instance}"),
            ),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let binary = Path::new(env!("CARGO_BIN_EXE_worker"));
    (
        Process::start(binary, config, &env, "worker ready").await,
        admin,
    )
}

/// Subscribers `crm-sync` (sends `traceparent`) and `audit` (`propagate_trace = false`),
/// each POSTing to a downstream URL with a secret path and query and a secret header.
fn config(crm: &str, audit: &str, backoff: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hookrelay.toml");
    let subscriber = |name: &str, url: &str, extra: &str| {
        format!(
            "[[worker.subscribers]]\nname = \"{name}\"\nevent_types = [\"user.lifecycle.create\"]\n\
             action = {{ type = \"http\", url = \"{url}/path-secret-1f3e?token=query-secret-9b2d\", \
             headers = {{ \"x-api-key\" = \"header-secret-77c1\" }}{extra} }}\n\
             backoff = [\"{backoff}\"]\nmax_deliver = 5\n"
        )
    };
    let text =
        subscriber("crm-sync", crm, "") + &subscriber("audit", audit, ", propagate_trace = false");
    std::fs::write(&path, text).expect("write the config");
    (dir, path)
}

/// The trace id and parent span id a `traceparent` names.
fn traceparent_ids(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "a W3C traceparent: {value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// No span attribute, resource attribute or span event attribute holds any of `secrets`.
fn assert_nothing_secret(spans: &[ReceivedSpan], secrets: &[&str]) {
    for span in spans {
        let values = (span.attributes.iter())
            .chain(&span.resource)
            .chain(span.events.iter().flat_map(|e| &e.attributes))
            .map(|(k, v)| format!("{k}={v}"))
            .chain(std::iter::once(span.name.clone()))
            .chain(std::iter::once(span.status_message.clone()));
        for value in values {
            for secret in secrets {
                assert!(
                    !value.contains(secret),
                    "span {:?} of {} carries {secret:?}: {value}",
                    span.name,
                    span.service
                );
            }
        }
    }
}

fn consumer_spans<'a>(spans: &'a [ReceivedSpan], subscriber: &str) -> Vec<&'a ReceivedSpan> {
    let mut found: Vec<&ReceivedSpan> = (spans.iter())
        .filter(|s| s.kind == "consumer")
        .filter(|s| s.attribute("messaging.consumer.group.name") == Some(subscriber))
        .collect();
    found.sort_by_key(|s| s.attribute("attempt").map(str::to_owned));
    found
}

#[tokio::test]
async fn one_event_is_one_trace_from_okta_s_post_to_the_downstream_s_answer() {
    let otlp = OtlpReceiver::start().await;
    let _tracing = trace_this_process(&otlp);
    let stack = Stack::start().await;
    // The first attempt fails with a 503, the retry succeeds.
    let crm =
        Downstream::start(|_, before| Reply::status(if before == 0 { 503 } else { 200 })).await;
    let audit = Downstream::start(|_, _| Reply::status(200)).await;
    let (_dir, config) = config(&crm.url, &audit.url, "200ms");
    let receiver = stack.receiver().await;
    let (worker, _) = traced_worker(&stack, &config, &otlp.endpoint(), "worker-1", &[]).await;

    // A proxy in front of the receiver started the trace.
    let (proxy_trace, proxy_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let uuid = new_uuid();
    let login = "traced.user@example.com";
    let answer = okta_post(
        &stack.http,
        &receiver.url,
        &delivery(&new_uuid(), vec![user_created_event(&uuid, login)]),
    )
    .header("traceparent", format!("00-{proxy_trace}-{proxy_span}-01"))
    .header("x-okta-request-id", "okta-request-5d1c")
    .header("x-forwarded-for", "203.0.113.9")
    .send()
    .await
    .expect("the receiver answers");
    assert_eq!(answer.status(), 200);
    crm.wait_until(PATIENCE, |r| r.len() >= 2).await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;
    stack
        .wait_until_settled("audit_user_lifecycle_create")
        .await;

    let spans = otlp
        .wait_until(
            "the server, producer, 3 consumer and 3 client spans",
            |spans| {
                let kinds = |kind| spans.iter().filter(|s| s.kind == kind).count();
                kinds("server") >= 1
                    && kinds("producer") >= 1
                    && kinds("consumer") >= 3
                    && kinds("client") >= 3
            },
        )
        .await;
    // `TRACE_PICTURE=docs/tracing/one-event.svg` draws this trace (the README's picture).
    if let Some(path) = std::env::var_os("TRACE_PICTURE") {
        let title = "One Okta event: a 503, a retry 200 ms later, and a second subscriber";
        std::fs::write(
            path,
            hookrelay_testkit::trace_picture::waterfall_svg(&spans, title),
        )
        .expect("the picture is written");
    }
    let traces: HashSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(
        traces,
        HashSet::from([proxy_trace]),
        "every span is in the proxy's one trace"
    );

    let server = ReceivedSpan::one(&spans, "server", |s| s.kind == "server");
    assert_eq!(server.service, "hookrelay-receiver");
    assert_eq!(
        server.parent_span_id.as_deref(),
        Some(proxy_span),
        "the proxy's traceparent is honoured"
    );
    assert_eq!(
        server.attribute("okta.request_id"),
        Some("okta-request-5d1c")
    );
    assert_eq!(server.attribute("http.response.status_code"), Some("200"));

    let producer = ReceivedSpan::one(&spans, "producer", |s| s.kind == "producer");
    assert_eq!(producer.service, "hookrelay-receiver");
    assert_eq!(producer.name, format!("send {EVENT_SUBJECT}"));
    assert_eq!(
        producer.parent_span_id.as_deref(),
        Some(server.span_id.as_str())
    );
    assert_eq!(producer.attribute("messaging.system"), Some("nats"));
    assert_eq!(
        producer.attribute("messaging.destination.name"),
        Some(EVENT_SUBJECT)
    );
    assert_eq!(
        producer.attribute("messaging.message.id"),
        Some(uuid.as_str())
    );
    assert_eq!(
        producer.attribute("okta.event_type"),
        Some("user.lifecycle.create")
    );

    // crm-sync: two attempts, each a CONSUMER span under the producer with its CLIENT call.
    let attempts = consumer_spans(&spans, "crm-sync");
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    let requests = crm.requests();
    for (n, (attempt, outcome, status)) in [("1", "retried", "503"), ("2", "ok", "200")]
        .into_iter()
        .enumerate()
    {
        let consumer = attempts[n];
        assert_eq!(consumer.service, "hookrelay-worker");
        assert_eq!(consumer.name, format!("process {EVENT_SUBJECT}"));
        assert_eq!(
            consumer.parent_span_id.as_deref(),
            Some(producer.span_id.as_str())
        );
        assert_eq!(consumer.attribute("attempt"), Some(attempt));
        assert_eq!(consumer.attribute("hookrelay.outcome"), Some(outcome));
        assert_eq!(
            consumer.attribute("messaging.message.id"),
            Some(uuid.as_str())
        );
        assert_eq!(
            consumer.attribute("messaging.destination.name"),
            Some(EVENT_SUBJECT)
        );
        let client = ReceivedSpan::one(&spans, "client", |s| {
            s.parent_span_id.as_deref() == Some(consumer.span_id.as_str())
        });
        assert_eq!(client.kind, "client");
        assert_eq!(client.attribute("http.response.status_code"), Some(status));
        assert_eq!(client.attribute("server.address"), Some("127.0.0.1"));
        // The downstream got this attempt's CLIENT span as its parent: its spans join the trace.
        let sent = requests[n]
            .header("traceparent")
            .expect("the downstream gets a traceparent");
        assert_eq!(
            traceparent_ids(sent),
            (proxy_trace.to_owned(), client.span_id.clone())
        );
    }
    assert_eq!(
        attempts[0].status, "error",
        "the failed attempt is an error"
    );

    // audit: in the same trace, but its downstream is not told.
    let audit_attempts = consumer_spans(&spans, "audit");
    assert_eq!(audit_attempts.len(), 1);
    assert_eq!(
        audit_attempts[0].parent_span_id.as_deref(),
        Some(producer.span_id.as_str())
    );
    let audit_requests = audit.requests();
    assert_eq!(audit_requests.len(), 1);
    assert_eq!(
        audit_requests[0].header("traceparent"),
        None,
        "propagate_trace = false"
    );

    // The stored event carries the producer's context; the worker's log lines carry the trace.
    let stored = stack.stored_events().await;
    let stored_traceparent =
        hookrelay_testkit::header(&stored[0], "traceparent").expect("stored with its trace");
    assert_eq!(
        traceparent_ids(stored_traceparent),
        (proxy_trace.to_owned(), producer.span_id.clone())
    );
    let logged = worker.lines_where(|l| l.contains(&format!("\"trace_id\":\"{proxy_trace}\"")));
    assert!(
        !logged.is_empty(),
        "the worker's JSON lines in the event's spans carry its trace id"
    );
    assert!(
        logged.iter().all(|l| l.contains("\"span_id\":\"")),
        "{logged:#?}"
    );

    assert_nothing_secret(
        &spans,
        &[
            DEMO_SECRET,
            "YWRtaW46c3VwZXJzZWNyZXQ",
            "path-secret-1f3e",
            "query-secret-9b2d",
            "header-secret-77c1",
            "203.0.113.9",
            login,
            "Create okta user",
            "admin@example.com",
        ],
    );
}

#[tokio::test]
async fn a_worker_restarted_mid_retry_keeps_the_event_in_its_trace() {
    let otlp = OtlpReceiver::start().await;
    let _tracing = trace_this_process(&otlp);
    let stack = Stack::start().await;
    let crm =
        Downstream::start(|_, before| Reply::status(if before == 0 { 503 } else { 200 })).await;
    let audit = Downstream::start(|_, _| Reply::status(200)).await;
    let (_dir, config) = config(&crm.url, &audit.url, "3s");
    let receiver = stack.receiver().await;
    // Spans leave this worker only when it flushes them on SIGTERM: its schedule is a minute.
    let (mut first, _) = traced_worker(
        &stack,
        &config,
        &otlp.endpoint(),
        "worker-1",
        &[("OTEL_BSP_SCHEDULE_DELAY", "60000")],
    )
    .await;

    let uuid = new_uuid();
    receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&uuid, "restart@example.com")],
        ))
        .await;
    crm.wait_until(PATIENCE, |r| !r.is_empty()).await;
    // The 503 is being retried (in 3 s): stop this worker now, and start another.
    first
        .wait_for_line(|l| l.contains("action failed; retrying later"))
        .await;
    assert_eq!(first.terminate().await, Some(0), "a clean stop");
    let (_second, _) = traced_worker(&stack, &config, &otlp.endpoint(), "worker-2", &[]).await;
    crm.wait_until(PATIENCE, |r| r.len() >= 2).await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;

    let spans = otlp
        .wait_until("both workers' crm-sync attempts", |spans| {
            consumer_spans(spans, "crm-sync").len() >= 2
        })
        .await;
    let producer = ReceivedSpan::one(&spans, "producer", |s| s.kind == "producer");
    let attempts = consumer_spans(&spans, "crm-sync");
    let instance = |s: &ReceivedSpan| {
        (s.resource.iter())
            .find(|(k, _)| k == "service.instance.id")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        attempts.iter().map(|s| instance(s)).collect::<Vec<_>>(),
        [Some("worker-1".to_owned()), Some("worker-2".to_owned())],
        "the first attempt from the stopped worker (flushed on SIGTERM), the retry from the new one"
    );
    for attempt in &attempts {
        assert_eq!(
            attempt.trace_id, producer.trace_id,
            "one trace across the restart"
        );
        assert_eq!(
            attempt.parent_span_id.as_deref(),
            Some(producer.span_id.as_str())
        );
    }
    assert_eq!(
        attempts
            .iter()
            .map(|s| s.attribute("hookrelay.outcome"))
            .collect::<Vec<_>>(),
        [Some("retried"), Some("ok")]
    );
}

#[tokio::test]
async fn a_dead_collector_costs_events_nothing_but_a_counter() {
    // A collector that accepts connections and never answers: the worst kind.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let hanging_url = format!("http://{}", hanging.local_addr().expect("bound"));
    let _hang = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            held.push(socket);
        }
    });
    let telemetry = TelemetrySettings {
        endpoint: hanging_url,
        bsp_schedule_delay: Duration::from_millis(50),
        bsp_export_timeout: Duration::from_millis(300),
        bsp_max_queue_size: 8,
        bsp_max_export_batch_size: 4,
        ..TelemetrySettings::default()
    };
    let _tracing =
        hookrelay::telemetry::init(&LogSettings::default(), &telemetry, "hookrelay-receiver")
            .expect("tracing starts");
    let stack = Stack::start().await;
    let crm = Downstream::start(|_, _| Reply::status(200)).await;
    let audit = Downstream::start(|_, _| Reply::status(200)).await;
    let (_dir, config) = config(&crm.url, &audit.url, "1s");
    let receiver = stack.receiver().await;
    // The worker's collector refuses connections.
    let refused = format!("http://127.0.0.1:{}", free_port());
    let (_worker, worker_admin) = traced_worker(
        &stack,
        &config,
        &refused,
        "worker-1",
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "300"),
        ],
    )
    .await;

    let events = 60;
    for n in 0..events {
        receiver
            .deliver(&delivery(
                &new_uuid(),
                vec![user_created_event(
                    &new_uuid(),
                    &format!("u{n}@example.com"),
                )],
            ))
            .await;
    }
    crm.wait_until(PATIENCE, |r| r.len() >= events).await;
    audit.wait_until(PATIENCE, |r| r.len() >= events).await;
    assert_eq!(
        stack.stored_events().await.len(),
        events,
        "every event stored"
    );

    let dropped =
        |text: &str| metric(text, "hookrelay_telemetry_spans_dropped_total", &[]).unwrap_or(0.0);
    let failed =
        |text: &str| metric(text, "hookrelay_telemetry_exports_failed_total", &[]).unwrap_or(0.0);
    hookrelay_testkit::eventually("the receiver counts its dropped spans", || async {
        let text = scrape(&stack.http, receiver.admin_addr).await;
        dropped(&text) >= (events / 2) as f64 && failed(&text) >= 1.0
    })
    .await;
    hookrelay_testkit::eventually("the worker counts its failed exports", || async {
        let text = scrape(&stack.http, worker_admin).await;
        dropped(&text) >= 1.0 && failed(&text) >= 1.0
    })
    .await;
    // Events still carry their trace for the next process: tracing is on, only export failed.
    let stored = stack.stored_events().await;
    assert!(hookrelay_testkit::header(&stored[0], "traceparent").is_some());
}

#[tokio::test]
async fn with_tracing_off_nothing_is_traced_or_sent() {
    let stack = Stack::start().await;
    let crm = Downstream::start(|_, _| Reply::status(200)).await;
    let audit = Downstream::start(|_, _| Reply::status(200)).await;
    let (_dir, config) = config(&crm.url, &audit.url, "1s");
    let receiver = stack.receiver().await;
    let worker = crate::helpers::start_worker_with(&stack, &config).await;
    receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&new_uuid(), "off@example.com")],
        ))
        .await;
    crm.wait_until(PATIENCE, |r| !r.is_empty()).await;
    assert!(!hookrelay::telemetry::tracing_on());
    assert_eq!(
        crm.requests()[0].header("traceparent"),
        None,
        "no trace sent downstream"
    );
    let stored = stack.stored_events().await;
    assert_eq!(
        hookrelay_testkit::header(&stored[0], "traceparent"),
        None,
        "none stored"
    );
    assert!(
        worker
            .lines_where(|l| l.contains("exporting traces"))
            .is_empty()
    );
}

/// A collector's URL with a key in it (user information, a query): spans still go there, and
/// the log line that says where shows its origin only.
#[tokio::test]
async fn the_collector_s_url_is_logged_without_its_key() {
    let otlp = OtlpReceiver::start().await;
    let stack = Stack::start().await;
    let crm = Downstream::start(|_, _| Reply::status(200)).await;
    let audit = Downstream::start(|_, _| Reply::status(200)).await;
    let (_dir, config) = config(&crm.url, &audit.url, "1s");
    let keyed = otlp
        .endpoint()
        .replacen("http://", "http://tenant:pass-word-1@", 1)
        + "/v1/traces?api_key=key-in-query-2";
    let (worker, _) = traced_worker(
        &stack,
        &config,
        &otlp.endpoint(),
        "worker-keyed",
        &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", keyed.as_str())],
    )
    .await;
    let said = worker.lines_where(|l| l.contains("exporting traces"));
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        !said[0].contains("pass-word-1") && !said[0].contains("key-in-query-2"),
        "{}",
        said[0]
    );
    assert!(said[0].contains("http://127.0.0.1:"), "{}", said[0]);
}

#[tokio::test]
async fn traces_go_over_otlp_grpc_when_the_protocol_says_so() {
    let otlp = OtlpReceiver::start_grpc().await;
    let stack = Stack::start().await;
    let crm = Downstream::start(|_, _| Reply::status(200)).await;
    let audit = Downstream::start(|_, _| Reply::status(200)).await;
    let (_dir, config) = config(&crm.url, &audit.url, "1s");
    let receiver = stack.receiver().await;
    let (_worker, _) = traced_worker(
        &stack,
        &config,
        &otlp.endpoint(),
        "worker-grpc",
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    )
    .await;
    let uuid = new_uuid();
    receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&uuid, "grpc@example.com")],
        ))
        .await;
    let spans = otlp
        .wait_until("the worker's spans over gRPC", |spans| {
            consumer_spans(spans, "crm-sync").len() == 1
        })
        .await;
    let consumer = consumer_spans(&spans, "crm-sync")[0];
    assert_eq!(consumer.service, "hookrelay-worker");
    assert_eq!(
        consumer.attribute("messaging.message.id"),
        Some(uuid.as_str())
    );
    // The receiver here is not traced: the worker's span is the root of the event's trace.
    assert_eq!(consumer.parent_span_id, None);
}
