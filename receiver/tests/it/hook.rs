//! The hook endpoint: verification, authentication, deliveries, deduplication, dead letters,
//! bad input and broker outages.

use std::time::Duration;

use hookrelay_testkit::{
    DEMO_SECRET, delivery, event_of_type, header, new_uuid, user_created_event,
};
use serde_json::{Value, json};

use crate::helpers::{assert_json_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn verification_echoes_the_challenge_as_json() {
    let app = spawn_app().await;
    let challenge = r#"We\"LcO1w-"quoted"\back"#;
    let response = app
        .http
        .get(app.hook_url())
        .header("authorization", DEMO_SECRET)
        .header("x-okta-verification-challenge", challenge)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body, json!({ "verification": challenge }));
}

#[tokio::test]
async fn verification_without_a_challenge_is_a_400() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.hook_url())
        .header("authorization", DEMO_SECRET)
        .send()
        .await
        .expect("answer");
    assert_json_error(response, 400, "bad_verification").await;
}

#[tokio::test]
async fn verification_requires_the_secret() {
    let app = spawn_app().await;
    for secret in [None, Some("Basic d3Jvbmc6d3Jvbmc="), Some("")] {
        let mut request = app
            .http
            .get(app.hook_url())
            .header("x-okta-verification-challenge", "abc");
        if let Some(secret) = secret {
            request = request.header("authorization", secret);
        }
        let response = request.send().await.expect("answer");
        assert_json_error(response, 401, "unauthorized").await;
    }
}

#[tokio::test]
async fn delivery_with_a_wrong_secret_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let body = delivery(
        &new_uuid(),
        vec![user_created_event(&new_uuid(), "jane.doe@example.com")],
    );
    let response = app
        .http
        .post(app.hook_url())
        .header("authorization", "Basic d3Jvbmc6d3Jvbmc=")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("answer");
    assert_json_error(response, 401, "unauthorized").await;
    assert!(app.stored_events().await.is_empty());
}

#[tokio::test]
async fn every_event_of_a_batch_lands_on_the_subject_of_its_type() {
    let app = spawn_app().await;
    let delivery_id = new_uuid();
    let events = vec![
        user_created_event(&new_uuid(), "jane.doe@example.com"),
        event_of_type(&new_uuid(), "user.session.start"),
        user_created_event(&new_uuid(), "john.doe@example.com"),
    ];
    let response = app.deliver(&delivery(&delivery_id, events.clone())).await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.expect("body").is_empty());

    let stored = app.stored_events().await;
    assert_eq!(stored.len(), 3);
    for (message, event) in stored.iter().zip(&events) {
        let uuid = event["uuid"].as_str().expect("uuid");
        let event_type = event["eventType"].as_str().expect("type");
        assert_eq!(
            message.subject.as_str(),
            format!("okta.events.{event_type}")
        );
        assert_eq!(header(message, "Nats-Msg-Id"), Some(uuid));
        assert_eq!(
            header(message, "Hookrelay-Delivery-Id"),
            Some(delivery_id.as_str())
        );
        assert_eq!(
            header(message, "Hookrelay-Okta-Request-Id"),
            Some("okta-req-1")
        );
        let mut names: Vec<&str> = message
            .headers
            .iter()
            .map(|(name, _)| name.as_ref())
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "Hookrelay-Delivery-Id",
                "Hookrelay-Okta-Request-Id",
                "Nats-Msg-Id"
            ],
            "nothing the subject or the stream already says (each header costs the broker)"
        );
        let payload: Value = serde_json::from_slice(&message.payload).expect("JSON event");
        assert_eq!(&payload, event, "the event is stored as Okta sent it");
    }
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn the_sample_delivery_is_stored_byte_for_byte() {
    let app = spawn_app().await;
    let sample = include_str!("../../../testdata/sample-user-lifecycle-create.json");
    let response = app
        .http
        .post(app.hook_url())
        .header("authorization", DEMO_SECRET)
        .header("content-type", "application/json; charset=utf-8")
        .body(sample)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let stored = app.stored_events().await;
    assert_eq!(stored.len(), 1);
    let start = sample.find(r#"{"uuid""#).expect("the event starts here");
    let stored_text = std::str::from_utf8(&stored[0].payload).expect("UTF-8");
    assert!(sample[start..].starts_with(stored_text));
    assert_eq!(
        stored[0].subject.as_str(),
        "okta.events.user.lifecycle.create"
    );
}

#[tokio::test]
async fn oktas_retry_of_a_delivery_is_stored_once() {
    let app = spawn_app().await;
    let body = delivery(
        &new_uuid(),
        vec![
            user_created_event(&new_uuid(), "a@example.com"),
            user_created_event(&new_uuid(), "b@example.com"),
        ],
    );
    for _ in 0..3 {
        assert_eq!(app.deliver(&body).await.status(), 200);
    }
    // The same events in a different delivery (Okta's at-least-once duplicates) too.
    let again = delivery(
        &new_uuid(),
        body["data"]["events"].as_array().expect("events").clone(),
    );
    assert_eq!(app.deliver(&again).await.status(), 200);
    assert_eq!(app.stored_events().await.len(), 2);
}

#[tokio::test]
async fn an_empty_batch_is_accepted_and_stores_nothing() {
    let app = spawn_app().await;
    let response = app.deliver(&delivery(&new_uuid(), vec![])).await;
    assert_eq!(response.status(), 200);
    assert!(app.stored_events().await.is_empty());
}

#[tokio::test]
async fn unroutable_events_are_dead_lettered_and_the_rest_of_the_delivery_is_stored() {
    let app = spawn_app().await;
    let delivery_id = new_uuid();
    let good = user_created_event(&new_uuid(), "jane.doe@example.com");
    let body = delivery(
        &delivery_id,
        vec![
            json!({"eventType": "user.lifecycle.create"}),
            good.clone(),
            event_of_type(&new_uuid(), "user.*"),
            event_of_type("bad\r\nuuid", "user.lifecycle.create"),
            json!("not an event"),
        ],
    );
    let response = app.deliver(&body).await;
    assert_eq!(response.status(), 200);

    let stored = app.stored_events().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(header(&stored[0], "Nats-Msg-Id"), good["uuid"].as_str());

    let dead = app.dead_letters().await;
    assert_eq!(dead.len(), 4);
    for message in &dead {
        assert_eq!(message.subject.as_str(), "okta.dlq.receiver");
        assert_eq!(
            header(message, "Hookrelay-Dead-Lettered-By"),
            Some("receiver")
        );
        assert_eq!(
            header(message, "Hookrelay-Delivery-Id"),
            Some(delivery_id.as_str())
        );
        assert!(header(message, "Hookrelay-Error").is_some_and(|e| !e.is_empty()));
    }
    assert!(header(&dead[0], "Hookrelay-Error").is_some_and(|e| e.contains("uuid")));
    assert!(header(&dead[1], "Hookrelay-Error").is_some_and(|e| e.contains("eventType")));

    // Okta's retry of the same delivery stores no second dead letter.
    assert_eq!(app.deliver(&body).await.status(), 200);
    assert_eq!(app.dead_letters().await.len(), 4);
}

#[tokio::test]
async fn a_broker_outage_is_a_503_and_service_resumes_when_it_is_back() {
    let mut app = spawn_app_with(&[("HOOKRELAY__RECEIVER__PUBLISH_TIMEOUT", "500ms")]).await;
    let ready = format!("http://{}/readyz", app.admin_addr);
    assert_eq!(
        app.http.get(&ready).send().await.expect("answer").status(),
        200
    );

    app.nats.kill();
    let body = delivery(
        &new_uuid(),
        vec![user_created_event(&new_uuid(), "a@example.com")],
    );
    assert_json_error(app.deliver(&body).await, 503, "unavailable").await;
    assert_eq!(
        app.http.get(&ready).send().await.expect("answer").status(),
        503
    );

    app.nats.restart();
    let mut status = 0;
    for _ in 0..50 {
        status = app.deliver(&body).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200, "the receiver reconnects on its own");
    assert_eq!(
        app.http.get(&ready).send().await.expect("answer").status(),
        200
    );
    let client = async_nats::connect(app.nats.url())
        .await
        .expect("reconnect");
    let js = async_nats::jetstream::new(client);
    assert_eq!(
        hookrelay_testkit::stored_messages(&js, &app.settings.nats.stream)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn healthz_answers_while_the_process_lives() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("http://{}/healthz", app.admin_addr))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    assert!(
        hookrelay::admin::probe(app.admin_addr, "/readyz")
            .await
            .is_ok()
    );
}
