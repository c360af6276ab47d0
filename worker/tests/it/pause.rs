//! Pausing a subscriber (`hookrelay::pause`, which the console and `hookrelayctl subscribers`
//! write): every worker running it stops starting events, the one running finishes, events keep
//! being stored and wait, the pause survives a worker restart, and resuming drains them.

use std::time::Duration;

use futures::StreamExt as _;

use hookrelay_testkit::{
    Downstream, PATIENCE, Reply, Stack, eventually, metric, new_uuid, scrape, user_created_event,
};

use crate::helpers::{CRM_SYNC_CONSUMER, http_subscriber_config, worker_with_admin};

/// Whether the worker at `admin` reports `crm-sync` paused (1) or running (0).
async fn reports_paused(admin: std::net::SocketAddr, paused: bool) -> bool {
    let text = scrape(&hookrelay_testkit::http_client(), admin).await;
    metric(
        &text,
        "hookrelay_worker_subscriber_paused",
        &[("subscriber", "crm-sync")],
    ) == Some(f64::from(u8::from(paused)))
}

#[tokio::test]
async fn a_paused_subscriber_holds_its_events_on_every_worker_until_it_is_resumed() {
    let stack = Stack::start().await;
    let slow = new_uuid();
    let slow_key = slow.clone();
    // The first event's action is still running when the pause comes.
    let downstream = Downstream::start(move |request, _| {
        Reply::status(200).after(if request.key() == slow_key {
            Duration::from_millis(1500)
        } else {
            Duration::ZERO
        })
    })
    .await;
    let (_dir, config) = http_subscriber_config(&downstream.url, "");
    let receiver = stack.receiver().await;
    let (_first, first_admin) = worker_with_admin(&stack, &config).await;
    let (mut second, second_admin) = worker_with_admin(&stack, &config).await;
    let pauses = hookrelay::pause::open(&stack.js, &stack.settings.nats)
        .await
        .expect("the bucket");

    receiver
        .deliver_events(vec![user_created_event(&slow, "slow@example.com")])
        .await;
    downstream
        .wait_until(PATIENCE, |requests| requests.len() == 1)
        .await;
    hookrelay::pause::set(&pauses, "crm-sync", true, "the test")
        .await
        .expect("paused");
    for admin in [first_admin, second_admin] {
        eventually("both workers report the pause", || {
            reports_paused(admin, true)
        })
        .await;
    }
    // The running action finishes and its event is acknowledged.
    eventually("the running action finishes", || async {
        downstream.answered().len() == 1
    })
    .await;

    let held: Vec<String> = (0..3).map(|_| new_uuid()).collect();
    for uuid in &held {
        receiver
            .deliver_events(vec![user_created_event(uuid, "held@example.com")])
            .await;
    }
    let stream = stack.events_stream().await;
    eventually(
        "the held events stored, the slow one acknowledged",
        || async {
            let info = stream.consumer_info(CRM_SYNC_CONSUMER).await.expect("info");
            info.ack_floor.stream_sequence == 1 && stack.stored_events().await.len() == 4
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        downstream.requests().len(),
        1,
        "nothing started while paused"
    );

    // A worker that starts while the subscriber is paused starts paused.
    second.terminate().await;
    let (_third, third_admin) = worker_with_admin(&stack, &config).await;
    assert!(
        reports_paused(third_admin, true).await,
        "paused from the start"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        downstream.requests().len(),
        1,
        "still nothing after a restart"
    );

    hookrelay::pause::set(&pauses, "crm-sync", false, "the test")
        .await
        .expect("resumed");
    downstream
        .wait_until(PATIENCE, |requests| requests.len() == 4)
        .await;
    stack.wait_until_settled(CRM_SYNC_CONSUMER).await;
    for uuid in &held {
        assert_eq!(downstream.requests_for(uuid).len(), 1, "each once");
    }
    for admin in [first_admin, third_admin] {
        eventually("the workers report it running", || {
            reports_paused(admin, false)
        })
        .await;
    }
    let history = (pauses.history("crm-sync").await).expect("history");
    let changes: Vec<_> = history
        .filter_map(|e| async move { hookrelay::pause::read(e.ok().as_ref()) })
        .map(|s| (s.paused, s.by))
        .collect()
        .await;
    assert_eq!(
        changes,
        [
            (true, "the test".to_owned()),
            (false, "the test".to_owned())
        ],
        "who paused and resumed is kept"
    );
}
