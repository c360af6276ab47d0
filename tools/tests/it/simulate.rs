//! `hookrelayctl simulate` against a real receiver, and against receivers that get Okta wrong.

use axum::routing::get;
use hookrelay_testkit::Stack;
use serde_json::Value;

use crate::helpers::{ctl, ctl_with};

#[tokio::test]
async fn it_verifies_and_delivers_preview_like_events_that_the_receiver_stores() {
    let stack = Stack::start().await;
    let receiver = stack.receiver().await;

    let run = ctl(
        &stack,
        &[
            "simulate",
            "--url",
            &receiver.url,
            "--count",
            "5",
            "--batch",
            "2",
            "--alternate-id",
            "ada@example.com",
        ],
    )
    .await
    .ok();
    assert!(run.stdout.contains("verification ok"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("3 deliveries (5 events): 3 answered 2xx, 0 retried, 0 failed"),
        "{}",
        run.stdout
    );

    // The preview's sample without a real event.
    ctl(
        &stack,
        &[
            "simulate",
            "--url",
            &receiver.url,
            "--null-target",
            "--skip-verification",
        ],
    )
    .await
    .ok();

    let stored = stack.stored_events().await;
    assert_eq!(stored.len(), 6);
    let events: Vec<Value> = (stored.iter())
        .map(|m| serde_json::from_slice(&m.payload).expect("JSON"))
        .collect();
    for event in &events[..5] {
        assert_eq!(event["eventType"], "user.lifecycle.create");
        assert_eq!(event["target"][0]["alternateId"], "ada@example.com");
    }
    assert!(events[5]["target"].is_null());
    assert!(
        stored
            .iter()
            .all(|m| m.subject.as_str() == "okta.events.user.lifecycle.create")
    );
}

/// A second shell beside `scripts/run-local` or `docker compose up`, with no secret exported:
/// the receiver runs with the guide's demo secret, and so does the tool, saying so.
#[tokio::test]
async fn with_no_secret_configured_it_sends_the_demo_secret_and_says_so() {
    let stack = Stack::start().await;
    let receiver = stack.receiver().await;
    let mut bare = stack.env.clone();
    bare.remove("HOOKRELAY__RECEIVER__AUTH__SECRET");

    let run = ctl_with(&stack.config, &bare, &["simulate", "--url", &receiver.url]).await;
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("no secret configured: sending the demo secret"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(hookrelay_testkit::DEMO_SECRET)
            && !run.stdout.contains(hookrelay_testkit::DEMO_SECRET),
        "the secret itself is never printed"
    );

    // A receiver with a secret of its own refuses it, and the run says so.
    let mut own = stack.settings.clone();
    own.receiver.auth.secret = "Basic b3duOnNlY3JldA==".to_owned().into();
    let guarded = hookrelay_testkit::Receiver::start(&own).await;
    let run = ctl_with(&stack.config, &bare, &["simulate", "--url", &guarded.url]).await;
    assert!(!run.success);
    assert!(run.stdout.contains("refused the secret"), "{}", run.stdout);
}

#[tokio::test]
async fn a_secret_the_receiver_refuses_fails_the_run_and_says_so() {
    let stack = Stack::start().await;
    let receiver = stack.receiver().await;
    let mut wrong = stack.env.clone();
    wrong.insert(
        "HOOKRELAY__RECEIVER__AUTH__SECRET".into(),
        "Basic bm90OnRoaXM=".into(),
    );

    let run = ctl_with(&stack.config, &wrong, &["simulate", "--url", &receiver.url]).await;
    assert!(!run.success);
    assert!(run.stdout.contains("verification FAILED"), "{}", run.stdout);
    assert!(run.stdout.contains("401"), "{}", run.stdout);
    assert!(run.stdout.contains("refused the secret"), "{}", run.stdout);

    let run = ctl_with(
        &stack.config,
        &wrong,
        &["simulate", "--url", &receiver.url, "--skip-verification"],
    )
    .await;
    assert!(!run.success);
    assert!(run.stdout.contains("1 failed"), "{}", run.stdout);
    assert!(
        run.stderr.contains("Okta would not retry it"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_challenge_echoed_as_plain_text_fails_verification() {
    // The guide's most common mistake: the challenge sent back, but not as JSON.
    let app = axum::Router::new().route(
        "/hook",
        get(|headers: axum::http::HeaderMap| async move {
            headers["x-okta-verification-challenge"]
                .to_str()
                .unwrap()
                .to_owned()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let stack = Stack::start().await;

    let run = ctl(&stack, &["simulate", "--url", &url]).await;
    assert!(!run.success);
    assert!(run.stdout.contains("verification FAILED"), "{}", run.stdout);
    assert!(
        run.stdout.contains("not as the JSON body"),
        "{}",
        run.stdout
    );
    // Okta sends nothing to a hook that failed verification; neither does the simulation.
    assert!(run.stdout.contains("0 deliveries"), "{}", run.stdout);
}
