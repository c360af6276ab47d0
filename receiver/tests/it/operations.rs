//! What an operator sees: `/metrics` and `/readyz`.

use hookrelay_testkit::{
    DEMO_SECRET, delivery, event_of_type, metric, new_uuid, scrape, user_created_event,
};
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn metrics_count_requests_events_and_rejections() {
    let app = spawn_app().await;
    let created = user_created_event(&new_uuid(), "jane@example.com");
    let body = delivery(
        &new_uuid(),
        vec![
            created.clone(),
            event_of_type(&new_uuid(), "user.session.start"),
            json!({"eventType": "no.uuid"}),
        ],
    );
    assert_eq!(app.deliver(&body).await.status(), 200);
    // Okta's retry: the same events again.
    assert_eq!(app.deliver(&body).await.status(), 200);
    let unauthorized = app
        .http
        .post(app.hook_url())
        .header("authorization", "Basic wrong")
        .send()
        .await
        .expect("an answer");
    assert_eq!(unauthorized.status(), 401);
    let invalid = app
        .http
        .post(app.hook_url())
        .header("authorization", DEMO_SECRET)
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .expect("an answer");
    assert_eq!(invalid.status(), 400);
    let unmatched = app
        .http
        .get(format!("http://{}/nowhere", app.addr))
        .send()
        .await
        .expect("an answer");
    assert_eq!(unmatched.status(), 404);

    let text = scrape(&app.http, app.admin_addr).await;
    let value = |name: &str, labels: &[(&str, &str)]| {
        metric(&text, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} in\n{text}"))
    };
    let hook = ("route", "hook");
    assert_eq!(
        value(
            "hookrelay_receiver_requests_total",
            &[hook, ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "hookrelay_receiver_requests_total",
            &[hook, ("status", "401")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "hookrelay_receiver_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    for (reason, count) in [
        ("unauthorized", 1.0),
        ("invalid_delivery", 1.0),
        ("not_found", 1.0),
    ] {
        assert_eq!(
            value(
                "hookrelay_receiver_deliveries_rejected_total",
                &[("reason", reason)]
            ),
            count,
            "{reason}"
        );
    }
    for (event_type, outcome) in [
        ("user.lifecycle.create", "stored"),
        ("user.lifecycle.create", "duplicate"),
        ("user.session.start", "stored"),
        ("user.session.start", "duplicate"),
    ] {
        assert_eq!(
            value(
                "hookrelay_receiver_events_published_total",
                &[("event_type", event_type), ("outcome", outcome)]
            ),
            1.0,
            "{event_type} {outcome}"
        );
    }
    assert_eq!(
        value(
            "hookrelay_receiver_events_dead_lettered_total",
            &[("reason", "unroutable")]
        ),
        1.0,
        "the retry's dead letter is a duplicate, not counted again"
    );
    assert_eq!(
        value("hookrelay_receiver_publish_duration_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        value("hookrelay_receiver_request_duration_seconds_count", &[hook]),
        4.0
    );
    assert!(!text.contains(DEMO_SECRET), "no secret in the metrics");
}

#[tokio::test]
async fn readyz_requires_the_streams() {
    let app = spawn_app().await;
    let ready = format!("http://{}/readyz", app.admin_addr);
    assert_eq!(
        app.http.get(&ready).send().await.expect("answer").status(),
        200
    );

    app.js
        .delete_stream(&app.settings.nats.dlq_stream)
        .await
        .expect("deleted");
    let response = app.http.get(&ready).send().await.expect("answer");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains(app.settings.nats.dlq_stream.as_str())),
        "{body}"
    );
}

#[tokio::test]
async fn a_changed_stream_setting_is_applied_at_the_next_start() {
    let stack = hookrelay_testkit::Stack::start().await;
    drop(stack.receiver().await);
    let mut stream = stack.events_stream().await;
    let info = stream.info().await.expect("info");
    assert_eq!(info.config.max_age, stack.settings.nats.retention);

    let mut settings = stack.settings.clone();
    settings.nats.retention = std::time::Duration::from_secs(2 * 24 * 3600);
    drop(hookrelay_testkit::Receiver::start(&settings).await);
    let info = stream.info().await.expect("info");
    assert_eq!(info.config.max_age, settings.nats.retention);
}
