//! The worker under faults: flaky and failing downstreams, long actions, a worker killed or
//! stopped mid-action, and two workers sharing a subscriber.

use std::collections::HashMap;
use std::time::Duration;

use hookrelay_testkit::{
    Downstream, PATIENCE, Receiver, Reply, Stack, delivery, header, new_uuid, user_created_event,
};

use crate::helpers::{CRM_SYNC_CONSUMER, http_subscriber_config, start_worker_with};

async fn deliver_one(receiver: &Receiver, login: &str) -> String {
    let uuid = new_uuid();
    receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&uuid, login)],
        ))
        .await;
    uuid
}

#[tokio::test]
async fn a_flaky_downstream_is_retried_on_the_backoff_schedule_and_the_event_delivered() {
    let stack = Stack::start().await;
    let downstream =
        Downstream::start(|_, before| Reply::status(if before < 2 { 503 } else { 200 })).await;
    let (_dir, config) = http_subscriber_config(
        &downstream.url,
        "backoff = [\"300ms\", \"700ms\"]\nmax_deliver = 5",
    );
    let receiver = stack.receiver().await;
    let _worker = start_worker_with(&stack, &config).await;

    let uuid = deliver_one(&receiver, "flaky@example.com").await;
    downstream
        .wait_until(PATIENCE, |requests| requests.len() >= 3)
        .await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;

    let attempts = downstream.requests_for(&uuid);
    assert_eq!(attempts.len(), 3, "two failures, then the success");
    assert!(
        attempts[1].at - attempts[0].at >= Duration::from_millis(300),
        "first retry waited its backoff"
    );
    assert!(
        attempts[2].at - attempts[1].at >= Duration::from_millis(700),
        "second retry waited its backoff"
    );
    for attempt in &attempts {
        assert_eq!(attempt.header("content-type"), Some("application/json"));
        assert_eq!(
            attempt.header("hookrelay-event-type"),
            Some("user.lifecycle.create")
        );
        assert_eq!(
            attempt.header("hookrelay-stored-at"),
            attempts[0].header("hookrelay-stored-at"),
            "the stored time is the stream's, the same on every attempt"
        );
        let event: serde_json::Value = serde_json::from_slice(&attempt.body).expect("JSON");
        assert_eq!(event["uuid"], uuid.as_str());
    }
    let stored_at = attempts[0]
        .header("hookrelay-stored-at")
        .expect("stored-at");
    let stored_at = humantime::parse_rfc3339(stored_at).expect("RFC 3339");
    assert!(stored_at <= std::time::SystemTime::now());
    assert!(
        stack.dead_letters().await.is_empty(),
        "a delivered event is not dead-lettered"
    );
}

#[tokio::test]
async fn a_permanent_4xx_is_dead_lettered_with_the_reason_and_not_retried() {
    let stack = Stack::start().await;
    let downstream = Downstream::start(|_, _| Reply::status(422)).await;
    let (_dir, config) = http_subscriber_config(&downstream.url, "backoff = [\"100ms\"]");
    let receiver = stack.receiver().await;
    let _worker = start_worker_with(&stack, &config).await;

    let uuid = deliver_one(&receiver, "rejected@example.com").await;
    let dead = stack.wait_for_dead_letters(1).await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;
    // Longer than the backoff: a retry would have come by now.
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(downstream.requests_for(&uuid).len(), 1, "not retried");
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.subject.as_str(), "okta.dlq.crm-sync");
    assert_eq!(header(letter, "Hookrelay-Event-Uuid"), Some(uuid.as_str()));
    assert_eq!(header(letter, "Hookrelay-Delivery-Count"), Some("1"));
    let error = header(letter, "Hookrelay-Error").expect("a reason");
    assert!(error.contains("422"), "{error}");
}

#[tokio::test]
async fn an_event_out_of_attempts_is_dead_lettered_with_its_delivery_count() {
    let stack = Stack::start().await;
    let downstream = Downstream::start(|_, _| Reply::status(503)).await;
    let (_dir, config) =
        http_subscriber_config(&downstream.url, "backoff = [\"100ms\"]\nmax_deliver = 3");
    let receiver = stack.receiver().await;
    let _worker = start_worker_with(&stack, &config).await;

    let uuid = deliver_one(&receiver, "down@example.com").await;
    let dead = stack.wait_for_dead_letters(1).await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(
        downstream.requests_for(&uuid).len(),
        3,
        "max_deliver attempts, no more"
    );
    assert_eq!(header(&dead[0], "Hookrelay-Delivery-Count"), Some("3"));
    assert!(header(&dead[0], "Hookrelay-Error").is_some_and(|e| e.contains("503")));
}

#[tokio::test]
async fn a_long_action_keeps_its_event_and_runs_once() {
    let stack = Stack::start().await;
    // Each request takes 2.5 times ack_wait.
    let downstream =
        Downstream::start(|_, _| Reply::status(200).after(Duration::from_millis(2500))).await;
    let (_dir, config) = http_subscriber_config(&downstream.url, "ack_wait = \"1s\"");
    let receiver = stack.receiver().await;
    let _worker = start_worker_with(&stack, &config).await;

    let uuid = deliver_one(&receiver, "slow@example.com").await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;
    assert_eq!(
        downstream.requests_for(&uuid).len(),
        1,
        "never redelivered while running"
    );
}

#[tokio::test]
async fn events_pulled_ahead_of_a_free_slot_are_not_delivered_again_while_they_wait() {
    let stack = Stack::start().await;
    // One slot, and each request takes 0.7 × ack_wait: the worker pulls all four events at
    // once, and the last waits 2.1 s, twice its ack_wait, before it starts.
    let downstream =
        Downstream::start(|_, _| Reply::status(200).after(Duration::from_millis(700))).await;
    let (_dir, config) =
        http_subscriber_config(&downstream.url, "ack_wait = \"1s\"\nconcurrency = 1");
    let receiver = stack.receiver().await;
    let uuids: Vec<String> = (0..4).map(|_| new_uuid()).collect();
    let events = (uuids.iter().enumerate())
        .map(|(i, uuid)| user_created_event(uuid, &format!("waiting{i}@example.com")))
        .collect();
    receiver.deliver(&delivery(&new_uuid(), events)).await;
    let _worker = start_worker_with(&stack, &config).await;

    downstream.wait_until(PATIENCE, |r| r.len() >= 4).await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;
    let info = (stack.events_stream().await)
        .consumer_info(CRM_SYNC_CONSUMER)
        .await
        .expect("consumer info");
    // The consumer's sequence counts redeliveries too.
    assert_eq!(
        info.delivered.consumer_sequence, 4,
        "each event delivered once"
    );
    for uuid in &uuids {
        assert_eq!(
            downstream.requests_for(uuid).len(),
            1,
            "{uuid} forwarded once"
        );
    }
}

#[tokio::test]
async fn a_broker_restarted_under_the_worker_loses_nothing_and_the_worker_pulls_again() {
    let mut stack = Stack::start().await;
    let downstream = Downstream::start(|_, _| Reply::status(200)).await;
    let (_dir, config) = http_subscriber_config(&downstream.url, "ack_wait = \"2s\"");
    let receiver = stack.receiver().await;
    let _worker = start_worker_with(&stack, &config).await;
    let before = deliver_one(&receiver, "before@example.com").await;
    downstream
        .wait_until(PATIENCE, |r| r.iter().any(|r| r.key() == before))
        .await;

    // A crash of the broker while the worker's pull waits at it: the pull is lost with it.
    stack.nats.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.nats.restart();
    // The receiver answers 503 until it has reconnected; Okta would retry, and so does this.
    let after = new_uuid();
    let retried = delivery(
        &new_uuid(),
        vec![user_created_event(&after, "after@example.com")],
    );
    hookrelay_testkit::eventually("the receiver stores again", || async {
        receiver
            .post(&retried)
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    downstream
        .wait_until(PATIENCE, |r| r.iter().any(|r| r.key() == after))
        .await;
    assert_eq!(downstream.requests_for(&before).len(), 1, "not redone");
}

#[tokio::test]
async fn a_worker_killed_mid_action_gets_the_event_again_after_restart() {
    let stack = Stack::start().await;
    // The first attempt hangs (the worker dies during it); later ones succeed.
    let downstream = Downstream::start(|_, before| {
        Reply::status(200).after(if before == 0 {
            Duration::from_secs(60)
        } else {
            Duration::ZERO
        })
    })
    .await;
    let (_dir, config) = http_subscriber_config(&downstream.url, "ack_wait = \"2s\"");
    let receiver = stack.receiver().await;
    let mut worker = start_worker_with(&stack, &config).await;

    let uuid = deliver_one(&receiver, "crash@example.com").await;
    downstream.wait_until(PATIENCE, |r| r.len() == 1).await;
    worker.kill().await;

    let _restarted = start_worker_with(&stack, &config).await;
    downstream.wait_until(PATIENCE, |r| r.len() >= 2).await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;
    let attempts = downstream.requests_for(&uuid);
    assert_eq!(attempts.len(), 2, "delivered again after the crash, once");
    assert_eq!(
        attempts[0].key(),
        attempts[1].key(),
        "with the same idempotency key"
    );
    assert!(stack.dead_letters().await.is_empty());
}

#[tokio::test]
async fn sigterm_mid_action_lets_it_finish_once_and_it_is_not_redone() {
    sigterm_mid_action("").await;
}

/// One slot: the worker runs the event in its consume loop rather than on a task.
#[tokio::test]
async fn sigterm_mid_action_of_a_one_slot_subscriber_lets_it_finish_once() {
    sigterm_mid_action("concurrency = 1").await;
}

async fn sigterm_mid_action(extra: &str) {
    let stack = Stack::start().await;
    let downstream =
        Downstream::start(|_, _| Reply::status(200).after(Duration::from_millis(1500))).await;
    let (_dir, config) =
        http_subscriber_config(&downstream.url, &format!("ack_wait = \"1s\"\n{extra}"));
    let receiver = stack.receiver().await;
    let mut worker = start_worker_with(&stack, &config).await;

    let uuid = deliver_one(&receiver, "term@example.com").await;
    downstream.wait_until(PATIENCE, |r| r.len() == 1).await;
    assert_eq!(worker.terminate().await, Some(0), "a clean exit");
    assert_eq!(
        downstream.answered().len(),
        1,
        "the action finished before the exit"
    );
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;

    let restarted = start_worker_with(&stack, &config).await;
    // Longer than ack_wait: an unacknowledged event would be back by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        downstream.requests_for(&uuid).len(),
        1,
        "not redone after restart"
    );
    drop(restarted);
}

#[tokio::test]
async fn two_workers_on_one_subscriber_handle_each_event_exactly_once() {
    let stack = Stack::start().await;
    let downstream =
        Downstream::start(|_, _| Reply::status(200).after(Duration::from_millis(20))).await;
    // Identical subscribers but for a header that tells the two processes apart.
    let (_dir_a, config_a) = http_subscriber_config(&downstream.url, "concurrency = 4");
    let (_dir_b, config_b) = http_subscriber_config(&downstream.url, "concurrency = 4");
    for (path, name) in [(&config_a, "a"), (&config_b, "b")] {
        let text = std::fs::read_to_string(path).expect("config");
        let text = text.replace(
            "timeout = \"10s\"",
            &format!("timeout = \"10s\", headers = {{ x-worker = \"{name}\" }}"),
        );
        std::fs::write(path, text).expect("config");
    }
    let receiver = stack.receiver().await;
    let _a = start_worker_with(&stack, &config_a).await;
    let _b = start_worker_with(&stack, &config_b).await;

    let mut uuids = Vec::new();
    for batch in 0..10 {
        let events: Vec<_> = (0..10)
            .map(|i| {
                let uuid = new_uuid();
                uuids.push(uuid.clone());
                user_created_event(&uuid, &format!("user{batch}-{i}@example.com"))
            })
            .collect();
        receiver.deliver(&delivery(&new_uuid(), events)).await;
    }
    downstream
        .wait_until(PATIENCE, |r| r.len() >= uuids.len())
        .await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;

    let requests = downstream.requests();
    let mut per_event: HashMap<&str, usize> = HashMap::new();
    let mut per_worker: HashMap<&str, usize> = HashMap::new();
    for request in &requests {
        *per_event.entry(request.key()).or_default() += 1;
        *per_worker
            .entry(request.header("x-worker").unwrap_or("?"))
            .or_default() += 1;
    }
    for uuid in &uuids {
        assert_eq!(
            per_event.get(uuid.as_str()),
            Some(&1),
            "{uuid} handled exactly once"
        );
    }
    assert_eq!(requests.len(), uuids.len());
    eprintln!("events per worker: {per_worker:?}");
    assert!(
        per_worker.get("a").is_some_and(|n| *n > 0) && per_worker.get("b").is_some_and(|n| *n > 0),
        "both workers took part: {per_worker:?}"
    );
}
