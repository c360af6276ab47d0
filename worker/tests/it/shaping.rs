//! A subscriber's `filter`, the `http` action's `transform`, `method` and `content_type`, and a
//! downstream's `Retry-After`, through the real worker binary.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use hookrelay_testkit::{
    Downstream, Reply, Stack, delivery, event_of_type, header, metric, new_uuid, scrape,
    user_created_event,
};
use serde_json::json;

use crate::helpers::{CRM_SYNC_CONSUMER, http_subscriber_config, worker_with_admin};

#[tokio::test]
async fn a_filter_skips_events_and_dead_letters_the_one_it_fails_on() {
    let stack = Stack::start().await;
    let downstream = Downstream::start(|_, _| Reply::status(200)).await;
    let (_dir, config) = http_subscriber_config(
        &downstream.url,
        r#"filter = '.target[0].alternateId | endswith("@example.com")'"#,
    );
    let receiver = stack.receiver().await;
    let (mut worker, admin) = worker_with_admin(&stack, &config).await;

    let kept = new_uuid();
    // No target: `.target[0].alternateId` is null, and `endswith` fails on null.
    let failing = event_of_type(&new_uuid(), "user.lifecycle.create");
    receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![
                user_created_event(&kept, "kept@example.com"),
                user_created_event(&new_uuid(), "skipped@partner.example"),
                failing.clone(),
            ],
        ))
        .await;
    let dead = stack.wait_for_dead_letters(1).await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;

    let requests = downstream.requests();
    assert_eq!(requests.len(), 1, "only the kept event is forwarded");
    assert_eq!(requests[0].key(), kept);
    assert_eq!(
        header(&dead[0], "Hookrelay-Event-Uuid"),
        failing["uuid"].as_str()
    );
    let error = header(&dead[0], "Hookrelay-Error").unwrap_or_default();
    assert!(error.starts_with("filter: jq: "), "{error}");

    let text = scrape(&hookrelay_testkit::http_client(), admin).await;
    for (outcome, count) in [("ok", 1.0), ("filtered", 1.0), ("dead_lettered", 1.0)] {
        assert_eq!(
            metric(
                &text,
                "hookrelay_worker_events_handled_total",
                &[("subscriber", "crm-sync"), ("outcome", outcome)]
            ),
            Some(count),
            "{outcome}\n{text}"
        );
    }
    assert!(worker.is_running(), "a failing filter is not a crash");
}

#[tokio::test]
async fn a_transformed_body_is_sent_as_configured_and_signed() {
    let stack = Stack::start().await;
    let downstream = Downstream::start(|_, _| Reply::status(200)).await;
    let secret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hookrelay.toml");
    std::fs::write(
        &config,
        format!(
            "[[worker.subscribers]]\nname = \"crm-sync\"\nevent_types = [\"user.lifecycle.create\"]\n\
             action = {{ type = \"http\", url = \"{}\", method = \"PUT\", content_type = \"application/vnd.crm+json\", \
             signing_secret = \"whsec_{secret}\", transform = '{{login: .target[0].alternateId, at: .published}}' }}\n",
            downstream.url
        ),
    )
    .expect("write");
    let receiver = stack.receiver().await;
    let _worker = crate::helpers::start_worker_with(&stack, &config).await;

    let uuid = new_uuid();
    let event = user_created_event(&uuid, "shaped@example.com");
    receiver
        .deliver(&delivery(&new_uuid(), vec![event.clone()]))
        .await;
    downstream
        .wait_until(hookrelay_testkit::PATIENCE, |r| !r.is_empty())
        .await;

    let request = &downstream.requests()[0];
    assert_eq!(request.method, "PUT");
    assert_eq!(
        request.header("content-type"),
        Some("application/vnd.crm+json")
    );
    assert_eq!(request.key(), uuid, "the idempotency key stays");
    let body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON");
    assert_eq!(
        body,
        json!({"login": "shaped@example.com", "at": event["published"]})
    );
    // The signature covers the body sent.
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .expect("base64");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let timestamp = request.header("webhook-timestamp").expect("timestamp");
    let signed = [
        uuid.as_bytes(),
        b".",
        timestamp.as_bytes(),
        b".",
        &request.body,
    ]
    .concat();
    let tag = ring::hmac::sign(&key, &signed);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    );
    assert_eq!(request.header("webhook-signature"), Some(expected.as_str()));
}

#[tokio::test]
async fn retry_after_pauses_the_whole_subscriber() {
    let stack = Stack::start().await;
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    // The first request of all is told to come back in 2 s; every other one succeeds.
    let downstream = Downstream::start(move |_, _| match count.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::status(429).retry_after("2"),
        _ => Reply::status(200),
    })
    .await;
    let (_dir, config) =
        http_subscriber_config(&downstream.url, "concurrency = 1\nbackoff = [\"100ms\"]");
    let receiver = stack.receiver().await;
    let _worker = crate::helpers::start_worker_with(&stack, &config).await;

    let events: Vec<_> = (0..2)
        .map(|i| user_created_event(&new_uuid(), &format!("paced{i}@example.com")))
        .collect();
    receiver.deliver(&delivery(&new_uuid(), events)).await;
    downstream
        .wait_until(Duration::from_secs(20), |r| r.len() >= 3)
        .await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;

    let requests = downstream.requests();
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(
        gap >= Duration::from_millis(1900),
        "the next request, of any event, waited out Retry-After: {gap:?}"
    );
    assert_eq!(
        requests.len(),
        3,
        "the throttled event once more, the other once"
    );
    assert_eq!(
        downstream.requests_for(requests[0].key()).len(),
        2,
        "the throttled event is retried"
    );
}

#[tokio::test]
async fn events_waiting_for_the_rate_limit_are_not_delivered_again() {
    let stack = Stack::start().await;
    let downstream = Downstream::start(|_, _| Reply::status(200)).await;
    // Two starts a second and a 1 s ack_wait: the last of five events waits about 2 s, twice
    // its ack_wait, holding a slot.
    let (_dir, config) = http_subscriber_config(
        &downstream.url,
        "rate_limit = \"2/s\"\nack_wait = \"1s\"\nconcurrency = 5",
    );
    let receiver = stack.receiver().await;
    let events: Vec<_> = (0..5)
        .map(|i| user_created_event(&new_uuid(), &format!("limited{i}@example.com")))
        .collect();
    receiver.deliver(&delivery(&new_uuid(), events)).await;
    let _worker = crate::helpers::start_worker_with(&stack, &config).await;

    downstream
        .wait_until(Duration::from_secs(20), |r| r.len() >= 5)
        .await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;
    let requests = downstream.requests();
    assert_eq!(requests.len(), 5, "each event once");
    let spread = requests[4].at.duration_since(requests[0].at);
    assert!(
        spread >= Duration::from_millis(1900),
        "five starts at 2/s: {spread:?}"
    );
    let info = (stack.events_stream().await)
        .consumer_info(CRM_SYNC_CONSUMER)
        .await
        .expect("consumer info");
    assert_eq!(
        info.delivered.consumer_sequence, 5,
        "no event delivered a second time while it waited"
    );
}
