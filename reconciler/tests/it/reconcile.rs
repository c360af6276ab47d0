//! What the reconciler promises: every event of a subscribed type in the System Log reaches
//! every subscriber, whether or not the hook delivered it, and none is stored twice.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hookrelay_testkit::okta_org::{OktaOrg, P256, ServiceApp, key_pair};
use hookrelay_testkit::system_log::{self, Limits, SystemLog};
use hookrelay_testkit::{
    InProcess, Process, Stack, delivery, eventually, metric, new_uuid, scrape, user_created_event,
};
use serde_json::Value;

/// A System Log event of `event_type`, published `seconds_ago`.
fn logged(event_type: &str, seconds_ago: u64) -> Value {
    let mut event = user_created_event(&new_uuid(), &format!("{}@example.com", new_uuid()));
    event["eventType"] = event_type.into();
    let published = SystemTime::now() - Duration::from_secs(seconds_ago);
    event["published"] = humantime::format_rfc3339_millis(published)
        .to_string()
        .into();
    event
}

fn created(count: usize) -> Vec<Value> {
    // Okta orders by persistence, not `published`: these go backwards and forwards.
    (0..count)
        .map(|i| {
            logged(
                "user.lifecycle.create",
                [300, 60, 900, 30][i % 4] + i as u64,
            )
        })
        .collect()
}

/// A stack whose `[okta]` section points at `log`, polling every second, with `overrides`.
async fn stack_for(log: &SystemLog, overrides: &[(&str, &str)]) -> Stack {
    let url = log.url();
    let mut all = vec![
        ("HOOKRELAY__OKTA__ORG_URL", url.as_str()),
        ("HOOKRELAY__OKTA__API_TOKEN", system_log::TOKEN),
        ("HOOKRELAY__RECONCILER__POLL_INTERVAL", "1s"),
    ];
    all.extend_from_slice(overrides);
    Stack::with(&all).await
}

/// A reconciler in this process, and its admin address.
async fn start(stack: &Stack) -> (InProcess, SocketAddr) {
    let reconciler = reconciler::Reconciler::build(&stack.settings)
        .await
        .expect("the reconciler starts");
    let admin = reconciler.admin_addr();
    (InProcess::spawn(|shutdown| reconciler.run(shutdown)), admin)
}

async fn metric_of(stack: &Stack, admin: SocketAddr, name: &str) -> f64 {
    let text = scrape(&stack.http, admin).await;
    metric(&text, &format!("hookrelay_reconciler_{name}"), &[]).unwrap_or(0.0)
}

fn uuids(events: &[Value]) -> HashSet<String> {
    (events.iter())
        .map(|e| e["uuid"].as_str().expect("a uuid").to_owned())
        .collect()
}

async fn stored_uuids(stack: &Stack) -> Vec<String> {
    (stack.stored_events().await.iter())
        .map(|m| m.headers.get("Nats-Msg-Id").expect("a msg id").to_string())
        .collect()
}

/// Waits until the stream holds exactly `events`, each once.
async fn wait_until_stored(stack: &Stack, events: &[Value]) {
    let wanted = uuids(events);
    eventually(&format!("{} events stored", wanted.len()), || async {
        stored_uuids(stack).await.len() >= wanted.len()
    })
    .await;
    let stored = stored_uuids(stack).await;
    assert_eq!(stored.len(), wanted.len(), "nothing stored twice or extra");
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), wanted);
}

#[tokio::test]
async fn events_the_hook_never_delivered_are_recovered_once_and_every_subscriber_runs() {
    // The receiver is down: nothing reaches the hook while these happen.
    let events = created(5);
    // Okta's rate limit answers the second request 429: it is waited out and asked again.
    let limits = Limits {
        too_many_on: vec![2],
        ..Limits::default()
    };
    let log = SystemLog::polling(events.clone(), limits).await;
    let mut noise = vec![logged("user.session.start", 20)];
    let mut failure = logged(reconciler::HOOK_DELIVERY_FAILED, 10);
    failure["displayMessage"] = "Event hook delivery failed".into();
    failure["outcome"] = serde_json::json!({"result": "FAILURE", "reason": "Read timed out"});
    noise.push(failure);
    log.push(noise);
    let stack = stack_for(&log, &[]).await;
    let _worker = stack.worker().await;
    let (_reconciler, admin) = start(&stack).await;

    wait_until_stored(&stack, &events).await;
    stack
        .wait_until_settled("user-added_user_lifecycle_create")
        .await;
    // More happen later: the next polls get them.
    let later = created(2);
    log.push(later.clone());
    let all: Vec<Value> = events.iter().chain(&later).cloned().collect();
    wait_until_stored(&stack, &all).await;

    let stored = stack.stored_events().await;
    assert!(
        stored
            .iter()
            .all(|m| m.headers.get("Hookrelay-Source").map(|v| v.as_str()) == Some("system-log")),
        "provenance is marked"
    );
    eventually("the metrics count what was recovered", || async {
        metric_of(&stack, admin, "events_recovered_total").await == 7.0
    })
    .await;
    assert_eq!(
        metric_of(&stack, admin, "hook_delivery_failures_total").await,
        1.0
    );
    // Kept for the console's Okta page, with Okta's reason.
    let bucket = (stack
        .js
        .get_key_value(&stack.settings.reconciler.bucket)
        .await)
        .expect("bucket");
    let kept = (bucket.get(hookrelay::okta::HOOK_FAILURES_KEY).await)
        .expect("read")
        .expect("the failed deliveries are kept");
    let kept: Vec<hookrelay::okta::HookFailure> = serde_json::from_slice(&kept).expect("JSON");
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].message.as_str(), kept[0].reason.as_str()),
        ("Event hook delivery failed", "Read timed out")
    );
    assert_eq!(metric_of(&stack, admin, "leader").await, 1.0);
    assert!(metric_of(&stack, admin, "rate_limit_waits_total").await >= 1.0);
    assert_eq!(
        (log.requests().iter()).filter(|r| r.status == 429).count(),
        1,
        "one 429, then the same page again"
    );
    // The first request asked as Okta says to poll; the following ones only followed links.
    let requests = log.requests();
    assert_eq!(requests[0].param("sortOrder"), Some("ASCENDING"));
    assert!(requests[0].param("since").is_some() && requests[0].param("until").is_none());
    assert!(
        requests[1..].iter().all(|r| r.param("after").is_some()),
        "every later page comes from a next link"
    );
    assert!(
        requests[0].param("filter").is_some_and(
            |f| f.contains("user.lifecycle.create") && f.contains("event_hook.delivery")
        ),
        "{:?}",
        requests[0].param("filter")
    );
}

/// The hook delivers `count` events, which are also in the System Log; after `wait`, a
/// reconciler starts. It must find every one already stored and recover none.
async fn hook_first_then_reconciler(count: usize, overrides: &[(&str, &str)], wait: Duration) {
    let events = created(count);
    let log = SystemLog::polling(Vec::new(), Limits::default()).await;
    let stack = stack_for(&log, overrides).await;
    let receiver = stack.receiver().await;
    receiver
        .deliver(&delivery(&new_uuid(), events.clone()))
        .await;
    log.push(events.clone());
    tokio::time::sleep(wait).await;
    let (_reconciler, admin) = start(&stack).await;

    eventually("the reconciler read the hook's events", || async {
        metric_of(&stack, admin, "events_already_stored_total").await == count as f64
    })
    .await;
    wait_until_stored(&stack, &events).await;
    assert_eq!(
        metric_of(&stack, admin, "events_recovered_total").await,
        0.0
    );
    assert!(
        (stack.stored_events().await.iter()).all(|m| m.headers.get("Hookrelay-Source").is_none()),
        "the hook's copies are the ones kept"
    );
}

#[tokio::test]
async fn a_day_with_the_hook_working_recovers_nothing_and_stores_nothing_twice() {
    hook_first_then_reconciler(4, &[], Duration::ZERO).await;
}

#[tokio::test]
async fn down_longer_than_the_duplicate_window_it_stores_nothing_twice() {
    // JetStream forgets a uuid after a second; the reconciler starts well after that.
    let window = [("HOOKRELAY__NATS__DUPLICATE_WINDOW", "1s")];
    hook_first_then_reconciler(3, &window, Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn a_reconciler_killed_mid_read_resumes_from_its_cursor_without_a_gap() {
    let events = created(12);
    let log = SystemLog::polling(events.clone(), Limits::default()).await;
    // The killed one's lease expires after 3 s; the restarted one takes over then.
    let stack = stack_for(
        &log,
        &[
            ("HOOKRELAY__RECONCILER__PAGE_SIZE", "2"),
            ("HOOKRELAY__RECONCILER__LEASE_TTL", "3s"),
        ],
    )
    .await;
    let binary = Path::new(env!("CARGO_BIN_EXE_reconciler"));
    let mut first = Process::start(binary, &stack.config, &stack.env, "reconciler ready").await;
    eventually("some pages stored", || async {
        stack.stored_events().await.len() >= 4
    })
    .await;
    first.kill().await;
    let read_before = log.requests().len();
    // Events go on happening while it is down.
    let later = created(3);
    log.push(later.clone());

    let _second = Process::start(binary, &stack.config, &stack.env, "reconciler ready").await;
    let all: Vec<Value> = events.iter().chain(&later).cloned().collect();
    wait_until_stored(&stack, &all).await;
    let resumed = &log.requests()[read_before];
    assert!(
        resumed.param("after").is_some() && resumed.param("since").is_some(),
        "the restarted reconciler follows its saved next link, not a new since: {:?}",
        resumed.query
    );
}

#[tokio::test]
async fn of_two_reconcilers_one_polls_and_the_other_stands_by() {
    let events = created(3);
    let log = SystemLog::polling(events.clone(), Limits::default()).await;
    let stack = stack_for(&log, &[]).await;
    let (_a, admin_a) = start(&stack).await;
    let (_b, admin_b) = start(&stack).await;

    wait_until_stored(&stack, &events).await;
    eventually("one leader", || async {
        metric_of(&stack, admin_a, "leader").await + metric_of(&stack, admin_b, "leader").await
            == 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polls = [
        metric_of(&stack, admin_a, "polls_total").await,
        metric_of(&stack, admin_b, "polls_total").await,
    ];
    assert!(
        polls.contains(&0.0) && polls.iter().any(|p| *p >= 2.0),
        "one polls, one stands by: {polls:?}"
    );
    assert_eq!(
        metric_of(&stack, admin_a, "events_recovered_total").await
            + metric_of(&stack, admin_b, "events_recovered_total").await,
        3.0
    );
}

#[tokio::test]
async fn without_okta_access_it_idles_ready_and_half_a_configuration_is_refused() {
    let stack = Stack::start().await;
    let (_idle, admin) = start(&stack).await;
    let ready = stack
        .http
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .expect("/readyz answers");
    assert_eq!(ready.status(), 200, "idle is healthy");
    assert_eq!(metric_of(&stack, admin, "leader").await, 0.0);

    let half = Stack::with(&[("HOOKRELAY__OKTA__ORG_URL", "https://dev-1.okta.com")]).await;
    let Err(error) = reconciler::Reconciler::build(&half.settings).await else {
        panic!("an org without a token is refused");
    };
    assert!(error.to_string().contains("okta.api_token"), "{error}");
}

#[tokio::test]
async fn when_the_event_types_change_it_reads_the_new_ones_from_where_it_had_got_to() {
    let events = created(3);
    let log = SystemLog::polling(events.clone(), Limits::default()).await;
    let stack = stack_for(&log, &[]).await;
    let (mut first, _) = start(&stack).await;
    wait_until_stored(&stack, &events).await;
    first.stop().await.expect("joined").expect("a clean stop");

    // A subscriber of sign-ins is added; sign-ins happen.
    let sessions = vec![
        logged("user.session.start", 5),
        logged("user.session.start", 1),
    ];
    log.push(sessions.clone());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("hookrelay.toml");
    let text = "[reconciler]\nevent_types = [\"user.lifecycle.create\", \"user.session.start\"]\n";
    std::fs::write(&config, text).expect("config written");
    let settings = hookrelay::Settings::load_from(Some(&config), Some(stack.env.clone()))
        .expect("valid settings");
    let second = reconciler::Reconciler::build(&settings)
        .await
        .expect("the reconciler starts");
    let _second = InProcess::spawn(|shutdown| second.run(shutdown));

    let all: Vec<Value> = events.iter().chain(&sessions).cloned().collect();
    wait_until_stored(&stack, &all).await;
    let last = log.requests().pop().expect("requests");
    assert!(
        last.param("filter")
            .is_some_and(|f| f.contains("user.session.start")),
        "the new read asks for the new types: {:?}",
        last.query
    );
}

#[tokio::test]
async fn an_api_service_app_with_dpop_reads_the_system_log_on_one_cached_token() {
    let events = created(3);
    let (org, log) = OktaOrg::with_system_log(events.clone()).await;
    let dir = tempfile::tempdir().expect("a directory");
    let (private_key, public_key_pem) = key_pair(dir.path(), &P256);
    org.register(ServiceApp {
        client_id: "0oareconciler".into(),
        key_id: "kid".into(),
        public_key_pem,
        dpop: true,
        scopes: vec!["okta.logs.read".into()],
    });
    let url = org.url();
    let stack = Stack::with(&[
        ("HOOKRELAY__OKTA__ORG_URL", url.as_str()),
        ("HOOKRELAY__OKTA__CLIENT_ID", "0oareconciler"),
        ("HOOKRELAY__OKTA__KEY_ID", "kid"),
        ("HOOKRELAY__OKTA__PRIVATE_KEY_FILE", private_key.as_str()),
        ("HOOKRELAY__RECONCILER__POLL_INTERVAL", "1s"),
    ])
    .await;
    let (_reconciler, _) = start(&stack).await;
    wait_until_stored(&stack, &events).await;
    let later = created(2);
    log.push(later.clone());
    let all: Vec<Value> = events.iter().chain(&later).cloned().collect();
    wait_until_stored(&stack, &all).await;
    assert!(log.requests().len() >= 2, "polled more than once");
    assert!(log.requests().iter().all(|r| r.status == 200));
    assert_eq!(org.tokens_issued(), 1, "one token for every poll");
    let authorization = log.requests()[0].authorization.clone().unwrap_or_default();
    assert!(authorization.starts_with("DPoP "), "{authorization}");
}

#[tokio::test]
async fn with_tracing_on_each_poll_is_a_trace_with_the_events_it_recovers() {
    let otlp = hookrelay_testkit::OtlpReceiver::start().await;
    let events = created(3);
    let log = SystemLog::polling(events.clone(), Limits::default()).await;
    let stack = stack_for(&log, &[]).await;
    let mut env = stack.env.clone();
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), otlp.endpoint());
    env.insert("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into());
    let binary = Path::new(env!("CARGO_BIN_EXE_reconciler"));
    let _reconciler = Process::start(binary, &stack.config, &env, "reconciler ready").await;
    wait_until_stored(&stack, &events).await;

    let spans = otlp
        .wait_until("a poll and its 3 sends", |spans| {
            spans.iter().filter(|s| s.kind == "producer").count() >= 3
                && (spans.iter()).any(|s| s.attribute("hookrelay.recovered") == Some("3"))
        })
        .await;
    let sends: Vec<_> = spans.iter().filter(|s| s.kind == "producer").collect();
    let poll = (spans.iter())
        .find(|s| Some(s.span_id.as_str()) == sends[0].parent_span_id.as_deref())
        .expect("the sends' parent was exported");
    assert_eq!(poll.name, "poll system log");
    assert_eq!(poll.service, "hookrelay-reconciler");
    assert_eq!(poll.parent_span_id, None, "each poll is a trace of its own");
    assert_eq!(poll.attribute("hookrelay.recovered"), Some("3"));
    for send in &sends {
        assert_eq!(send.parent_span_id.as_deref(), Some(poll.span_id.as_str()));
        assert_eq!(send.trace_id, poll.trace_id);
    }
    let recovered: HashSet<String> = (sends.iter())
        .map(|s| {
            s.attribute("messaging.message.id")
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(recovered, uuids(&events));
    // What the subscribers run continues each event's trace from its send.
    for message in stack.stored_events().await {
        let traceparent = message
            .headers
            .get("traceparent")
            .expect("stored with its trace");
        assert!(
            traceparent.as_str().contains(&poll.trace_id),
            "{traceparent}"
        );
    }
}
