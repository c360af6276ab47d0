//! The receiver while the broker fails: killed and restarted under continuous deliveries, and
//! a shutdown while a delivery waits for it.

use std::time::Duration;

use hookrelay_testkit::load::{Load, assert_nothing_acknowledged_lost};
use hookrelay_testkit::{delivery, new_uuid, okta_post, stored_messages, user_created_event};

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_broker_killed_under_load_loses_nothing_acknowledged() {
    let mut app = spawn_app().await;
    let load = Load::start(&[app.hook_url()], 4);
    load.wait_for_more_accepted(40).await;
    let fault = std::time::Instant::now();
    app.nats.kill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.nats.restart();
    load.wait_for_more_accepted(40).await;
    let outcomes = load.finish().await;

    let client = async_nats::connect(app.nats.url()).await.expect("connects");
    let stored = stored_messages(
        &async_nats::jetstream::new(client),
        &app.settings.nats.stream,
    )
    .await;
    let stored_ids: Vec<&str> = stored
        .iter()
        .filter_map(|m| m.headers.get("Nats-Msg-Id").map(|v| v.as_str()))
        .collect();
    let (accepted, unavailable) = assert_nothing_acknowledged_lost(&outcomes, &stored_ids);
    assert!(unavailable > 0, "the outage was seen");
    eprintln!("{}", hookrelay_testkit::load::summary(&outcomes, fault));
    assert!(accepted > unavailable);
}

#[tokio::test]
async fn shutdown_lets_a_waiting_delivery_get_its_answer() {
    let mut app = spawn_app().await;
    app.nats.kill();
    let url = app.hook_url();
    let request = tokio::spawn(async move {
        let body = delivery(
            &new_uuid(),
            vec![user_created_event(&new_uuid(), "x@example.com")],
        );
        okta_post(&hookrelay_testkit::http_client(), &url, &body)
            .send()
            .await
            .map(|response| response.status().as_u16())
    });
    // The delivery is now waiting for the broker; ask the receiver to stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = app.stop();
    let answer = request
        .await
        .expect("joined")
        .expect("an answer, not a reset");
    assert_eq!(answer, 503);
    stopped.await.expect("the receiver stops").expect("cleanly");
}

/// A publish the receiver answered 503 for can be stored after all: the NATS client keeps what
/// it could not send while the broker was away and sends it on reconnecting. Okta retries the
/// delivery it got a 503 for, and JetStream's duplicate window (the event's uuid is the
/// `Nats-Msg-Id`) keeps that one event once.
#[tokio::test]
async fn a_503_stored_after_all_is_stored_once_when_okta_retries() {
    let mut app = spawn_app().await;
    let uuid = new_uuid();
    let body = delivery(
        &new_uuid(),
        vec![user_created_event(&uuid, "late@example.com")],
    );
    let http = hookrelay_testkit::http_client();
    app.nats.kill();
    let first = okta_post(&http, &app.hook_url(), &body)
        .send()
        .await
        .expect("an answer");
    assert_eq!(first.status().as_u16(), 503, "the broker is away");
    app.nats.restart();

    let client = async_nats::connect(app.nats.url()).await.expect("connects");
    let js = async_nats::jetstream::new(client);
    let stream = app.settings.nats.stream.clone();
    let copies = |stored: &[async_nats::jetstream::message::StreamMessage]| {
        (stored.iter())
            .filter(|m| m.headers.get("Nats-Msg-Id").map(|v| v.as_str()) == Some(uuid.as_str()))
            .count()
    };
    hookrelay_testkit::eventually("the event answered 503 is stored after all", || async {
        copies(&stored_messages(&js, &stream).await) == 1
    })
    .await;

    // Okta's retry of the same delivery, once the receiver has its broker again.
    hookrelay_testkit::eventually("Okta's retry is answered 200", || async {
        okta_post(&http, &app.hook_url(), &body)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert_eq!(
        copies(&stored_messages(&js, &stream).await),
        1,
        "one stored copy of the event"
    );
}
