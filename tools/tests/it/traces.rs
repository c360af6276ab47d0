//! The `hookrelayctl` commands that publish, traced: a simulated delivery is the root of its
//! event's trace (linked to the command's own span), and a dead letter's replay continues the
//! trace from the attempt that gave up. The receiver and the worker run in this process,
//! exporting as `hookrelay-receiver`; `hookrelayctl` exports as itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hookrelay::config::{LogSettings, TelemetrySettings};
use hookrelay_testkit::{
    Downstream, NatsServer, OtlpReceiver, ReceivedSpan, Reply, Stack, eventually,
};

use crate::helpers::ctl_with;

fn linked_to(span: &ReceivedSpan, to: &ReceivedSpan) -> bool {
    span.links
        .contains(&(to.trace_id.clone(), to.span_id.clone()))
}

#[tokio::test]
async fn a_simulated_event_and_its_replayed_dead_letter_are_one_trace() {
    let otlp = OtlpReceiver::start().await;
    let telemetry = TelemetrySettings {
        endpoint: otlp.endpoint(),
        bsp_schedule_delay: Duration::from_millis(100),
        ..TelemetrySettings::default()
    };
    let _tracing =
        hookrelay::telemetry::init(&LogSettings::default(), &telemetry, "hookrelay-receiver")
            .expect("tracing starts");
    let fixed = Arc::new(AtomicBool::new(false));
    let crm = {
        let fixed = fixed.clone();
        // 400 is permanent: dead-lettered at once, until the downstream is fixed.
        Downstream::start(move |_, _| {
            Reply::status(if fixed.load(Ordering::SeqCst) {
                200
            } else {
                400
            })
        })
        .await
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hookrelay.toml");
    let text = format!(
        "[[worker.subscribers]]\nname = \"crm\"\nevent_types = [\"user.lifecycle.create\"]\n\
         action = {{ type = \"http\", url = \"{}\" }}\n\
         [console]\ntrace_url = \"http://jaeger.example:16686/trace/{{trace_id}}\"\n\
         [[console.users]]\nname = \"ops\"\nrole = \"viewer\"\npassword_hash = \"{}\"\n",
        crm.url,
        hookrelay::passwords::hash("a long enough passphrase"),
    );
    std::fs::write(&config, text).expect("write config");
    let stack = Stack::on(NatsServer::start(), Some(&config), &[]).await;
    let receiver = stack.receiver().await;
    let _worker = stack.worker().await;
    let mut env = stack.env.clone();
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), otlp.endpoint());

    let args = [
        "simulate",
        "--url",
        &receiver.url,
        "--skip-verification",
        "--alternate-id",
        "sim@example.com",
    ];
    ctl_with(&config, &env, &args).await.ok();
    stack.wait_for_dead_letters(1).await;
    fixed.store(true, Ordering::SeqCst);
    let replayed = ctl_with(&config, &env, &["dead-letters", "replay", "--all"])
        .await
        .ok();
    assert!(
        replayed.stdout.contains("replayed 1 dead letter"),
        "{}",
        replayed.stdout
    );
    eventually("crm handled the replay", || async {
        crm.requests().len() == 2
    })
    .await;

    let spans = otlp
        .wait_until("the replay's attempt", |spans| {
            (spans.iter())
                .any(|s| s.kind == "consumer" && s.attribute("hookrelay.outcome") == Some("ok"))
        })
        .await;
    let simulate = ReceivedSpan::one(&spans, "simulate command", |s| {
        s.name == "hookrelayctl simulate"
    });
    let replay_command = ReceivedSpan::one(&spans, "replay command", |s| {
        s.name == "hookrelayctl dead-letters"
    });
    for command in [simulate, replay_command] {
        assert_eq!(command.service, "hookrelayctl");
        assert_eq!(command.parent_span_id, None);
    }
    // The delivery: the root of the event's trace, linked to the command that sent it.
    let deliver = ReceivedSpan::one(&spans, "delivery", |s| {
        s.kind == "client" && s.service == "hookrelayctl"
    });
    assert_eq!(deliver.parent_span_id, None);
    assert!(linked_to(deliver, simulate), "{deliver:#?}");
    assert_eq!(deliver.attribute("http.response.status_code"), Some("200"));
    let trace = deliver.trace_id.as_str();
    let server = ReceivedSpan::one(&spans, "server", |s| s.kind == "server");
    assert_eq!(
        server.parent_span_id.as_deref(),
        Some(deliver.span_id.as_str()),
        "the receiver joins it"
    );
    let send = ReceivedSpan::one(&spans, "hook's send", |s| {
        s.kind == "producer" && s.service == "hookrelay-receiver"
    });
    assert_eq!(
        send.parent_span_id.as_deref(),
        Some(server.span_id.as_str())
    );
    let gave_up = ReceivedSpan::one(&spans, "dead-lettered attempt", |s| {
        s.attribute("hookrelay.outcome") == Some("dead_lettered")
    });
    assert_eq!(
        gave_up.parent_span_id.as_deref(),
        Some(send.span_id.as_str())
    );
    // The replay: a send from hookrelayctl, child of the attempt that gave up, linked to the
    // command; the replayed attempt is its child.
    let replay = ReceivedSpan::one(&spans, "replay's send", |s| {
        s.kind == "producer" && s.service == "hookrelayctl"
    });
    assert_eq!(replay.name, "send okta.replay.crm.user.lifecycle.create");
    assert_eq!(
        replay.parent_span_id.as_deref(),
        Some(gave_up.span_id.as_str())
    );
    assert!(linked_to(replay, replay_command), "{replay:#?}");
    let uuid = send
        .attribute("messaging.message.id")
        .expect("the event's uuid");
    assert_eq!(replay.attribute("messaging.message.id"), Some(uuid));
    let handled = ReceivedSpan::one(&spans, "replayed attempt", |s| {
        s.kind == "consumer" && s.attribute("hookrelay.outcome") == Some("ok")
    });
    assert_eq!(
        handled.parent_span_id.as_deref(),
        Some(replay.span_id.as_str())
    );
    let event_spans = [deliver, server, send, gave_up, replay, handled];
    let traces: HashSet<&str> = event_spans.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(
        traces,
        HashSet::from([trace]),
        "one trace, from the simulated POST to the replay"
    );

    // `events show` names the trace; the console links it to the trace viewer.
    let shown = ctl_with(&config, &env, &["events", "show", uuid])
        .await
        .ok();
    assert!(
        shown.stdout.contains(&format!("trace:   {trace}")),
        "{}",
        shown.stdout
    );
    let console = stack.console().await;
    let ops = console
        .client()
        .signed_in("ops", "a long enough passphrase")
        .await;
    let (status, page) = ops.get_json(&format!("/events/{uuid}")).await;
    assert_eq!(status, 200);
    assert_eq!(page["trace_id"], trace);
    // Both attempts' records (the dead-lettered one and the replay's) name the trace.
    let attempts = page["subscribers"][0]["attempts"]
        .as_array()
        .expect("attempts")
        .clone();
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert!(
        attempts.iter().all(|a| a["trace_id"] == trace),
        "{attempts:#?}"
    );
    let link = format!("http://jaeger.example:16686/trace/{trace}");
    assert_eq!(page["trace_link"], link.as_str());
    let html = ops
        .get(&format!("/events/{uuid}"))
        .await
        .text()
        .await
        .expect("the page");
    assert!(
        html.contains(&format!("<a href=\"{link}\"")),
        "the page links the trace"
    );
}

#[tokio::test]
async fn each_backfilled_page_is_a_trace_linked_to_the_command() {
    let otlp = OtlpReceiver::start().await;
    let mut stack = Stack::start().await;
    let _receiver = stack.receiver().await;
    let log: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            let mut event = hookrelay_testkit::user_created_event(
                &hookrelay_testkit::new_uuid(),
                "b@example.com",
            );
            let published = std::time::SystemTime::now() - Duration::from_secs(60 * (10 - i));
            event["published"] = humantime::format_rfc3339_millis(published)
                .to_string()
                .into();
            event
        })
        .collect();
    let fake = hookrelay_testkit::system_log::SystemLog::start(log, Default::default()).await;
    stack.env.insert(
        "OKTA_API_TOKEN".into(),
        hookrelay_testkit::system_log::TOKEN.into(),
    );
    stack
        .env
        .insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), otlp.endpoint());
    let args = [
        "backfill",
        "--okta-url",
        &fake.url(),
        "--since",
        "1h",
        "--event-type",
        "user.lifecycle.create",
        "--page-size",
        "2",
    ];
    ctl_with(&stack.config, &stack.env, &args).await.ok();

    // The command flushed its spans before it exited: they are all here already.
    let spans = otlp.spans();
    let command = ReceivedSpan::one(&spans, "backfill command", |s| {
        s.name == "hookrelayctl backfill"
    });
    let pages: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "backfill page").collect();
    assert_eq!(pages.len(), 3, "5 events in pages of 2: {spans:#?}");
    let sends: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.kind == "producer").collect();
    assert_eq!(sends.len(), 5);
    for page in &pages {
        assert_eq!(page.parent_span_id, None, "each page is a trace of its own");
        assert!(linked_to(page, command));
        assert_ne!(page.trace_id, command.trace_id);
    }
    for send in &sends {
        let page = (pages.iter())
            .find(|p| Some(p.span_id.as_str()) == send.parent_span_id.as_deref())
            .expect("each send is a page's child");
        assert_eq!(send.trace_id, page.trace_id);
    }
}
