//! `hookrelayctl dead-letters`: list, show and replay, against a worker whose downstream fails
//! and is then fixed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hookrelay_testkit::{
    Downstream, NatsServer, Reply, Stack, event_of_type, eventually, new_uuid, user_created_event,
};
use serde_json::Value;

use crate::helpers::ctl;

#[tokio::test]
async fn dead_letters_are_listed_shown_and_replayed_to_their_subscriber_only() {
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
    let audit = Downstream::start(|_, _| Reply::status(200)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hookrelay.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[worker.subscribers]]
name = "crm"
event_types = ["user.lifecycle.create"]
action = {{ type = "http", url = "{}" }}

[[worker.subscribers]]
name = "audit"
event_types = ["user.lifecycle.create"]
action = {{ type = "http", url = "{}" }}
"#,
            crm.url, audit.url
        ),
    )
    .expect("write config");
    let stack = Stack::on(NatsServer::start(), Some(&config), &[]).await;
    let receiver = stack.receiver().await;
    let _worker = stack.worker().await;

    let uuids: Vec<String> = (0..3).map(|_| new_uuid()).collect();
    let events = uuids
        .iter()
        .map(|u| user_created_event(u, "grace@example.com"))
        .collect();
    receiver.deliver_events(events).await;
    // And one event the receiver cannot route: its own dead letter, never replayable.
    let mut unroutable = event_of_type(&new_uuid(), "x");
    unroutable["eventType"] = Value::Null;
    receiver.deliver_events(vec![unroutable]).await;
    eventually(
        "three dead letters of crm and one of the receiver",
        || async { stack.dead_letters().await.len() == 4 },
    )
    .await;
    eventually("audit handled all three", || async {
        audit.answered().len() == 3
    })
    .await;

    // list: a table, and JSON lines.
    let run = ctl(&stack, &["dead-letters", "list"]).await.ok();
    for uuid in &uuids {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains(uuid) && l.contains("crm")),
            "{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.lines().any(|l| l.contains("receiver")),
        "{}",
        run.stdout
    );
    let run = ctl(
        &stack,
        &["dead-letters", "list", "--subscriber", "crm", "--json"],
    )
    .await
    .ok();
    let listed: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["event_type"], "user.lifecycle.create");
    assert_eq!(listed[0]["deliveries"], 1);
    assert!(
        listed[0]["reason"].as_str().unwrap().contains("400"),
        "{listed:?}"
    );

    // show: the headers and the event.
    let first = listed
        .iter()
        .find(|l| l["uuid"] == uuids[0].as_str())
        .expect("listed");
    let sequence = first["sequence"].to_string();
    let run = ctl(&stack, &["dead-letters", "show", &sequence]).await.ok();
    assert!(run.stdout.contains("Hookrelay-Error"), "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("\"uuid\": \"{}\"", uuids[0])),
        "{}",
        run.stdout
    );

    // replay needs a filter; a dry run changes nothing.
    assert!(!ctl(&stack, &["dead-letters", "replay"]).await.success);
    let run = ctl(&stack, &["dead-letters", "replay", "--all", "--dry-run"])
        .await
        .ok();
    assert!(
        run.stdout
            .contains("would replay 3 dead letters, skipped 1"),
        "{}",
        run.stdout
    );
    assert_eq!(stack.dead_letters().await.len(), 4);

    // The downstream is fixed: replay one event, then the rest.
    fixed.store(true, Ordering::SeqCst);
    let run = ctl(&stack, &["dead-letters", "replay", "--uuid", &uuids[0]])
        .await
        .ok();
    assert!(
        run.stdout.contains("replayed 1 dead letter, skipped 0"),
        "{}",
        run.stdout
    );
    eventually("crm handled the replayed event", || async {
        crm.requests_for(&uuids[0]).len() == 2
    })
    .await;
    assert_eq!(stack.dead_letters().await.len(), 3);

    let run = ctl(&stack, &["dead-letters", "replay", "--all"]).await.ok();
    assert!(
        run.stdout.contains("replayed 2 dead letters, skipped 1"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("not routable"), "{}", run.stderr);
    eventually("crm handled every event after the fix", || async {
        uuids.iter().all(|u| crm.requests_for(u).len() == 2)
    })
    .await;
    // Only the receiver's dead letter is left; audit never saw an event twice.
    let left = stack.dead_letters().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].subject.as_str(), "okta.dlq.receiver");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(audit.answered().len(), 3);
    // Replaying again finds nothing: each dead letter went once.
    let run = ctl(&stack, &["dead-letters", "replay", "--subscriber", "crm"])
        .await
        .ok();
    assert!(
        run.stdout.contains("replayed 0 dead letters"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn a_dead_letter_is_kept_when_its_replay_could_not_reach_its_subscriber() {
    // An events stream that does not take replays (made by an older hookrelay): the replay
    // is refused, and the dead letter stays.
    let stack = Stack::start().await;
    let (js, settings) = (&stack.js, &stack.settings);
    let mut events = hookrelay::broker::events_stream_config(&settings.nats);
    events.subjects.retain(|s| s.starts_with("okta.events"));
    js.create_stream(events).await.expect("events stream");
    js.create_stream(hookrelay::broker::dlq_stream_config(&settings.nats))
        .await
        .expect("dlq");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Hookrelay-Original-Subject",
        "okta.events.user.lifecycle.create",
    );
    headers.insert("Hookrelay-Event-Uuid", "u-1");
    js.publish_with_headers("okta.dlq.user-added", headers, "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let run = ctl(&stack, &["dead-letters", "replay", "--all"]).await;
    assert!(!run.success);
    assert!(
        run.stderr.contains("does not take replays"),
        "{}",
        run.stderr
    );
    assert_eq!(stack.dead_letters().await.len(), 1);

    // The stream takes replays, but no worker reads user-added's yet: its replay could wait
    // there until the stream's retention drops it, so the dead letter stays.
    hookrelay::broker::ensure_streams(js, &settings.nats)
        .await
        .expect("streams");
    let run = ctl(&stack, &["dead-letters", "replay", "--all"]).await.ok();
    assert!(
        run.stdout.contains("replayed 0 dead letters, skipped 1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("no worker has run subscriber"),
        "{}",
        run.stderr
    );
    assert_eq!(stack.dead_letters().await.len(), 1);
}
