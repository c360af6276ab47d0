//! Okta → receiver → JetStream → worker, end to end, as a user following the guide sees it.

use hookrelay_testkit::{Stack, delivery, event_of_type, header, new_uuid, user_created_event};
use serde_json::json;

use crate::helpers::{start_worker, start_worker_with};

fn guide_line(login: &str) -> String {
    format!("The user {login} has been added to the Okta org!")
}

/// Whether `line` is the guide's line for `login`, as a user reads it in an 80-column terminal:
/// after the time and the level (`05:49:50  INFO event: `), before the span's fields.
fn logs_guide_line(line: &str, login: &str) -> bool {
    line.find(&guide_line(login)).is_some_and(|at| at <= 22)
}

#[tokio::test]
async fn the_guides_line_is_logged_for_every_user_of_a_batch() {
    let stack = Stack::start().await;
    let receiver = stack.receiver().await;
    let worker = start_worker(&stack).await;

    let users = [
        "jane.doe@example.com",
        "john.doe@example.com",
        "ann.lee@example.com",
    ];
    let mut events: Vec<_> = users
        .iter()
        .map(|login| user_created_event(&new_uuid(), login))
        .collect();
    events.push(event_of_type(&new_uuid(), "user.session.start"));
    receiver.deliver(&delivery(&new_uuid(), events)).await;

    for login in users {
        worker
            .wait_for_line(|line| logs_guide_line(line, login))
            .await;
    }
    // Okta's retry of the same delivery changes nothing.
    let again = user_created_event(&new_uuid(), "retry@example.com");
    let retried = delivery(&new_uuid(), vec![again]);
    receiver.deliver(&retried).await;
    receiver.deliver(&retried).await;
    worker
        .wait_for_line(|line| logs_guide_line(line, "retry@example.com"))
        .await;
    receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&new_uuid(), "last@example.com")],
        ))
        .await;
    worker
        .wait_for_line(|line| logs_guide_line(line, "last@example.com"))
        .await;
    for login in users.iter().chain(&["retry@example.com"]) {
        let seen = worker.lines_where(|line| logs_guide_line(line, login));
        assert_eq!(seen.len(), 1, "{login} reported once: {seen:?}");
    }
}

#[tokio::test]
async fn events_stored_before_the_worker_starts_are_handled_when_it_does() {
    let stack = Stack::start().await;
    let receiver = stack.receiver().await;
    receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&new_uuid(), "early@example.com")],
        ))
        .await;
    let worker = start_worker(&stack).await;
    worker
        .wait_for_line(|line| logs_guide_line(line, "early@example.com"))
        .await;
}

#[tokio::test]
async fn the_previews_event_without_target_is_dead_lettered_and_the_worker_carries_on() {
    let stack = Stack::start().await;
    let receiver = stack.receiver().await;
    let mut worker = start_worker(&stack).await;

    let preview = event_of_type(&new_uuid(), "user.lifecycle.create");
    assert_eq!(preview["target"], json!(null));
    receiver
        .deliver(&delivery(&new_uuid(), vec![preview.clone()]))
        .await;

    worker
        .wait_for_line(|line| line.contains("ERROR") && line.contains("no target"))
        .await;
    let dead = stack.wait_for_dead_letters(1).await;
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.subject.as_str(), "okta.dlq.user-added");
    assert_eq!(
        header(letter, "Hookrelay-Dead-Lettered-By"),
        Some("user-added")
    );
    assert_eq!(
        header(letter, "Hookrelay-Event-Uuid"),
        preview["uuid"].as_str()
    );
    assert_eq!(header(letter, "Hookrelay-Delivery-Count"), Some("1"));
    assert_eq!(
        header(letter, "Hookrelay-Original-Subject"),
        Some("okta.events.user.lifecycle.create")
    );
    assert!(header(letter, "Hookrelay-Error").is_some_and(|e| e.contains("no target")));
    let payload: serde_json::Value = serde_json::from_slice(&letter.payload).expect("JSON");
    assert_eq!(payload, preview, "the dead letter keeps the original event");

    assert!(worker.is_running());
    receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&new_uuid(), "after.preview@example.com")],
        ))
        .await;
    worker
        .wait_for_line(|line| logs_guide_line(line, "after.preview@example.com"))
        .await;
    // Dead-lettered once, not retried.
    assert_eq!(stack.dead_letters().await.len(), 1);
}

#[tokio::test]
async fn every_subscriber_gets_every_event_of_its_types() {
    let stack = Stack::start().await;
    let receiver = stack.receiver().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hookrelay.toml");
    std::fs::write(
        &config,
        r#"
[[worker.subscribers]]
name = "user-added"
event_types = ["user.lifecycle.create"]
action = { type = "user_added" }

[[worker.subscribers]]
name = "audit"
event_types = ["user.lifecycle.create", "user.session.start"]
action = { type = "log" }
"#,
    )
    .expect("write config");
    let worker = start_worker_with(&stack, &config).await;

    let created = new_uuid();
    let session = new_uuid();
    receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![
                user_created_event(&created, "fan.out@example.com"),
                event_of_type(&session, "user.session.start"),
            ],
        ))
        .await;
    worker
        .wait_for_line(|line| logs_guide_line(line, "fan.out@example.com"))
        .await;
    worker
        .wait_for_line(|line| line.contains("event received") && line.contains(&created))
        .await;
    worker
        .wait_for_line(|line| line.contains("event received") && line.contains(&session))
        .await;
}

#[tokio::test]
async fn sigterm_stops_the_worker_cleanly() {
    let stack = Stack::start().await;
    let mut worker = start_worker(&stack).await;
    assert_eq!(worker.terminate().await, Some(0));
    worker
        .wait_for_line(|line| line.contains("worker stopped"))
        .await;
}

/// The README's example of a new end-to-end test, kept compiling and passing.
#[tokio::test]
async fn an_event_delivered_to_the_stack_settles_its_subscriber() {
    let stack = Stack::start().await;
    let receiver = stack.receiver().await;
    let _worker = stack.worker().await;
    receiver
        .deliver_events(vec![user_created_event(&new_uuid(), "ada@example.com")])
        .await;
    stack
        .wait_until_settled("user-added_user_lifecycle_create")
        .await;
}
