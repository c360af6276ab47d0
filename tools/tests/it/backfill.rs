//! `hookrelayctl backfill` against a fake of Okta's System Log that pages, rate-limits and
//! answers 429, with the real receiver's publishing path and a real nats-server.

use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use hookrelay_testkit::system_log::{self, Limits, SystemLog};
use hookrelay_testkit::{Stack, new_uuid, user_created_event};
use serde_json::Value;

use crate::helpers::ctl;

/// A System Log event of `event_type`, `minutes_ago` old.
fn logged(event_type: &str, minutes_ago: u64) -> Value {
    let mut event = user_created_event(&new_uuid(), "backfilled@example.com");
    event["eventType"] = event_type.into();
    let published = SystemTime::now() - Duration::from_secs(60 * minutes_ago);
    event["published"] = humantime::format_rfc3339_millis(published)
        .to_string()
        .into();
    event
}

fn uuids(messages: &[jetstream::message::StreamMessage]) -> Vec<String> {
    let mut uuids: Vec<String> = (messages.iter())
        .map(|m| m.headers.get("Nats-Msg-Id").expect("a msg id").to_string())
        .collect();
    uuids.sort();
    uuids
}

#[tokio::test]
async fn it_stores_what_the_hook_missed_once_and_a_second_run_changes_nothing() {
    // A one-second dedupe window, waited out below: only the backfill's own check can keep
    // events the hook delivered from being stored twice.
    let mut stack = Stack::with(&[("HOOKRELAY__NATS__DUPLICATE_WINDOW", "1s")]).await;
    let receiver = stack.receiver().await;

    // 10 creations in the System Log over the last 50 minutes, and 5 sign-ins in between.
    let mut log = Vec::new();
    for i in 0..15 {
        let event_type = if i % 3 == 2 {
            "user.session.start"
        } else {
            "user.lifecycle.create"
        };
        log.push(logged(event_type, 50 - 3 * i as u64));
    }
    let created: Vec<&Value> = log
        .iter()
        .filter(|e| e["eventType"] == "user.lifecycle.create")
        .collect();
    // The hook delivered the first 4 creations before the receiver went down.
    let delivered: Vec<Value> = created[..4].iter().map(|e| (*e).clone()).collect();
    receiver.deliver_events(delivered).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Pages of 3: the 2nd request gets a 429, the 4th uses up the rate limit.
    let fake = SystemLog::start(
        log.clone(),
        Limits {
            too_many_on: vec![2],
            exhausted_on: vec![4],
        },
    )
    .await;
    stack
        .env
        .insert("OKTA_API_TOKEN".into(), system_log::TOKEN.into());
    let args = [
        "backfill",
        "--okta-url",
        &fake.url(),
        "--since",
        "2h",
        "--event-type",
        "user.lifecycle.create",
        "--page-size",
        "3",
    ];
    let run = ctl(&stack, &args).await.ok();
    assert!(
        run.stdout
            .contains("10 events read: 4 already stored, 6 stored, 0 duplicates"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains("2 rate-limit waits, 1 retry"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("answered 429 Too Many Requests (rate limited): waiting, 2s left"),
        "a wait longer than a second says so: {}",
        run.stderr
    );

    let stored = stack.stored_events().await;
    let mut expected: Vec<String> = (created.iter())
        .map(|e| e["uuid"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(uuids(&stored), expected, "every creation once, no sign-in");
    for message in &stored {
        let event: Value = serde_json::from_slice(&message.payload).expect("JSON");
        assert!(
            log.contains(&event),
            "stored as the System Log has it: {event}"
        );
    }
    let backfilled = stored.iter().filter(|m| {
        m.headers
            .get("Hookrelay-Delivery-Id")
            .is_some_and(|id| id.as_str().starts_with("backfill-"))
    });
    assert_eq!(backfilled.count(), 6);

    // What the fake saw: the token, the filter, pages until no next link, the 429 retried.
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.authorization.as_deref() == Some("SSWS test-api-token"))
    );
    assert_eq!(
        requests[0].param("filter"),
        Some("eventType eq \"user.lifecycle.create\"")
    );
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 429, 200, 200, 200]
    );
    assert_eq!(
        requests[1].query, requests[2].query,
        "the page after the 429 is asked again"
    );

    // Twice changes nothing (the dedupe window is long gone: the stream check does it).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run = ctl(&stack, &args).await.ok();
    assert!(
        run.stdout
            .contains("10 events read: 10 already stored, 0 stored"),
        "{}",
        run.stdout
    );
    assert_eq!(stack.stored_events().await.len(), 10);
}

#[tokio::test]
async fn it_refuses_to_start_before_what_the_stream_remembers() {
    let mut stack = Stack::start().await;
    let receiver = stack.receiver().await;
    for _ in 0..2 {
        let event = user_created_event(&new_uuid(), "old@example.com");
        receiver.deliver_events(vec![event]).await;
    }
    // The oldest event leaves the stream (as retention would make it).
    let stream = stack.events_stream().await;
    assert!(stream.delete_message(1).await.unwrap());

    let fake = SystemLog::start(vec![logged("user.lifecycle.create", 30)], Limits::default()).await;
    stack
        .env
        .insert("OKTA_API_TOKEN".into(), system_log::TOKEN.into());
    let run = ctl(
        &stack,
        &["backfill", "--okta-url", &fake.url(), "--since", "1h"],
    )
    .await;
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("only remembers the events stored since"),
        "{}",
        run.stderr
    );
    assert!(fake.requests().is_empty(), "nothing was fetched");
    assert_eq!(stack.stored_events().await.len(), 1);
}

#[tokio::test]
async fn a_token_okta_refuses_stops_the_backfill_with_okta_s_reason() {
    let mut stack = Stack::start().await;
    let _receiver = stack.receiver().await;
    let fake = SystemLog::start(vec![logged("user.lifecycle.create", 30)], Limits::default()).await;
    stack
        .env
        .insert("OKTA_API_TOKEN".into(), "not-the-token-4711".into());
    let run = ctl(
        &stack,
        &["backfill", "--okta-url", &fake.url(), "--since", "1h"],
    )
    .await;
    assert!(!run.success);
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Invalid token provided"),
        "{}",
        run.stderr
    );
    // Nothing about the token itself is printed.
    assert!(
        !run.stderr.contains("4711") && !run.stdout.contains("4711"),
        "{}",
        run.stderr
    );
}
