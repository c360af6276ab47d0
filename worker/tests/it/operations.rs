//! What an operator sees of the worker: `/metrics` and `/readyz`, from the real binary.

use hookrelay_testkit::{
    Downstream, PATIENCE, Reply, Stack, delivery, metric, new_uuid, scrape, user_created_event,
};

use crate::helpers::{CRM_SYNC_CONSUMER, http_subscriber_config, worker_with_admin};

#[tokio::test]
async fn metrics_count_outcomes_and_show_each_consumers_lag() {
    let stack = Stack::start().await;
    // `reject@…` is refused for good; every other event fails once, then succeeds.
    let downstream = Downstream::start(|request, before| {
        let body = String::from_utf8_lossy(&request.body);
        Reply::status(match (body.contains("reject@"), before) {
            (true, _) => 422,
            (false, 0) => 503,
            (false, _) => 200,
        })
    })
    .await;
    let (_dir, config) = http_subscriber_config(&downstream.url, "backoff = [\"100ms\"]");
    let receiver = stack.receiver().await;
    let (_worker, admin) = worker_with_admin(&stack, &config).await;

    receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![
                user_created_event(&new_uuid(), "ok@example.com"),
                user_created_event(&new_uuid(), "reject@example.com"),
            ],
        ))
        .await;
    stack.wait_for_dead_letters(1).await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;

    let http = hookrelay_testkit::http_client();
    let text = scrape(&http, admin).await;
    let value = |name: &str, labels: &[(&str, &str)]| {
        metric(&text, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} in\n{text}"))
    };
    let crm = ("subscriber", "crm-sync");
    for (outcome, count) in [("ok", 1.0), ("retried", 1.0), ("dead_lettered", 1.0)] {
        assert_eq!(
            value(
                "hookrelay_worker_events_handled_total",
                &[crm, ("outcome", outcome)]
            ),
            count,
            "{outcome}"
        );
    }
    assert_eq!(
        value("hookrelay_worker_action_duration_seconds_count", &[crm]),
        3.0
    );
    assert_eq!(value("hookrelay_worker_actions_in_flight", &[crm]), 0.0);
    let consumer = [crm, ("event_type", "user.lifecycle.create")];
    assert_eq!(value("hookrelay_worker_consumer_pending", &consumer), 0.0);
    assert_eq!(
        value("hookrelay_worker_consumer_ack_pending", &consumer),
        0.0
    );
    // The guide's subscriber is not configured here: no series for it.
    assert!(!text.contains("user-added"));
}

#[tokio::test]
async fn lag_shows_events_waiting_for_a_busy_subscriber_and_readyz_needs_its_consumers() {
    let stack = Stack::start().await;
    // `concurrency = 1` and a slow action: the rest of the batch waits in the stream.
    let downstream_slow =
        Downstream::start(|_, _| Reply::status(200).after(std::time::Duration::from_secs(30)))
            .await;
    let (_dir, config) = http_subscriber_config(&downstream_slow.url, "concurrency = 1");
    let receiver = stack.receiver().await;
    let (_worker, admin) = worker_with_admin(&stack, &config).await;
    let events = (0..5)
        .map(|i| user_created_event(&new_uuid(), &format!("u{i}@example.com")))
        .collect();
    receiver.deliver(&delivery(&new_uuid(), events)).await;
    downstream_slow
        .wait_until(PATIENCE, |requests| !requests.is_empty())
        .await;

    let http = hookrelay_testkit::http_client();
    let text = scrape(&http, admin).await;
    let consumer = [
        ("subscriber", "crm-sync"),
        ("event_type", "user.lifecycle.create"),
    ];
    let pending = metric(&text, "hookrelay_worker_consumer_pending", &consumer).expect("pending");
    let ack_pending =
        metric(&text, "hookrelay_worker_consumer_ack_pending", &consumer).expect("ack pending");
    assert_eq!(
        pending + ack_pending,
        5.0,
        "every event is waiting or running\n{text}"
    );
    assert!(ack_pending >= 1.0);
    assert_eq!(
        metric(
            &text,
            "hookrelay_worker_actions_in_flight",
            &[("subscriber", "crm-sync")]
        ),
        Some(1.0)
    );

    // Not ready once a consumer is gone.
    let ready = format!("http://{admin}/readyz");
    assert_eq!(http.get(&ready).send().await.expect("answer").status(), 200);
    let stream = stack.events_stream().await;
    stream
        .delete_consumer(CRM_SYNC_CONSUMER)
        .await
        .expect("deleted");
    let response = http.get(&ready).send().await.expect("answer");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("crm-sync")),
        "{body}"
    );
}
