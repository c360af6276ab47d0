//! Hostile and broken input over real HTTP: every case gets its JSON answer, and what reached
//! JetStream is checked. Also the connection limits, secret rotation and events too large for
//! the broker.

use std::time::Duration;

use hookrelay_testkit::{
    DEMO_SECRET, NatsServer, delivery, event_of_type, header, new_uuid, user_created_event,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, assert_json_error, spawn_app, spawn_app_on, spawn_app_with};

/// How long a test waits for something that should happen well before.
const PATIENCE: Duration = Duration::from_secs(10);

async fn post(app: &TestApp, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.http
        .post(app.hook_url())
        .header("authorization", DEMO_SECRET)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("an answer")
}

#[tokio::test]
async fn malformed_deliveries_get_a_json_400_and_store_nothing() {
    let app = spawn_app().await;
    let deep = format!(
        "{{\"data\":{{\"events\":[{}{}]}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", Vec::new()),
        ("not JSON", b"{not json".to_vec()),
        ("trailing bytes", br#"{"data":{"events":[]}} x"#.to_vec()),
        ("a JSON array", b"[1,2,3]".to_vec()),
        ("null", b"null".to_vec()),
        ("no data", br#"{"eventId":"e1"}"#.to_vec()),
        (
            "events not an array",
            br#"{"data":{"events":{"uuid":"u"}}}"#.to_vec(),
        ),
        ("events a string", br#"{"data":{"events":"x"}}"#.to_vec()),
        ("data an array", br#"{"data":[]}"#.to_vec()),
        ("invalid UTF-8", vec![b'{', 0xff, b'}']),
        (
            "invalid UTF-8 in a string",
            b"{\"data\":{\"events\":[{\"uuid\":\"\xc3\x28\",\"eventType\":\"a.b\"}]}}".to_vec(),
        ),
        ("truncated", br#"{"data":{"events":[{"uuid":"u1""#.to_vec()),
        ("pathological nesting", deep.into_bytes()),
    ];
    for (case, body) in cases {
        let response = post(&app, "application/json", body).await;
        assert_eq!(response.status(), 400, "{case}");
        assert_json_error(response, 400, "invalid_delivery").await;
    }
    assert!(app.stored_events().await.is_empty());
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn media_types_methods_paths_and_sizes_get_their_json_4xx() {
    let app = spawn_app_with(&[("HOOKRELAY__RECEIVER__MAX_BODY_BYTES", "4096")]).await;
    let empty = br#"{"data":{"events":[]}}"#.to_vec();
    for content_type in [
        "text/plain",
        "application/jsonx",
        "application/x-www-form-urlencoded",
        "",
    ] {
        let response = post(&app, content_type, empty.clone()).await;
        assert_json_error(response, 415, "unsupported_media_type").await;
    }
    // Parameters and case do not matter.
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        assert_eq!(post(&app, content_type, empty.clone()).await.status(), 200);
    }
    // Over the limit, declared or not.
    let response = post(&app, "application/json", vec![b' '; 5000]).await;
    assert_json_error(response, 413, "bad_body").await;
    let head = format!(
        "POST /okta/events HTTP/1.1\r\nHost: x\r\nAuthorization: {DEMO_SECRET}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut chunked = connect_and_send(&app, head.as_bytes()).await;
    for _ in 0..2 {
        let chunk = format!("bb8\r\n{}\r\n", " ".repeat(3000));
        let _ = chunked.write_all(chunk.as_bytes()).await;
    }
    let answer = read_until_closed_or_answered(&mut chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""error":"bad_body""#), "{answer}");

    for method in [
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let response = app
            .http
            .request(method, app.hook_url())
            .header("authorization", DEMO_SECRET)
            .send()
            .await
            .expect("an answer");
        assert_json_error(response, 405, "method_not_allowed").await;
    }
    for path in ["/", "/okta", "/okta/events/x", "/userCreated"] {
        let response = app
            .http
            .post(format!("http://{}{path}", app.addr))
            .header("authorization", DEMO_SECRET)
            .send()
            .await
            .expect("an answer");
        assert_json_error(response, 404, "not_found").await;
    }
    assert!(app.stored_events().await.is_empty());
}

#[tokio::test]
async fn the_secret_is_checked_before_the_body_is_read() {
    let app = spawn_app_with(&[("HOOKRELAY__RECEIVER__MAX_BODY_BYTES", "4096")]).await;
    for secret in [None, Some("Basic wrong"), Some("")] {
        let mut request = app
            .http
            .post(app.hook_url())
            .header("content-type", "text/plain")
            .body(vec![0xffu8; 100_000]);
        if let Some(secret) = secret {
            request = request.header("authorization", secret);
        }
        // Neither 415 nor 413: nothing about the request matters before the secret.
        let response = request.send().await.expect("an answer");
        assert_json_error(response, 401, "unauthorized").await;
    }
    assert!(app.stored_events().await.is_empty());
}

#[tokio::test]
async fn unsafe_events_are_dead_lettered_and_nothing_unsafe_reaches_a_subject_or_header() {
    let app = spawn_app().await;
    let good = user_created_event(&new_uuid(), "jane.doe@example.com");
    let long_type = vec!["a"; 100].join(".");
    let bad: Vec<(Value, &str)> = vec![
        (json!({"eventType": "user.lifecycle.create"}), "uuid"),
        (json!({"uuid": new_uuid()}), "eventType"),
        (event_of_type(&new_uuid(), "user.>"), "eventType"),
        (event_of_type(&new_uuid(), "user.*.create"), "eventType"),
        (event_of_type(&new_uuid(), "user lifecycle"), "eventType"),
        (event_of_type(&new_uuid(), "user..create"), "eventType"),
        (event_of_type(&new_uuid(), ".user"), "eventType"),
        (event_of_type(&new_uuid(), "user\u{0}create"), "eventType"),
        (event_of_type(&new_uuid(), "usér.create"), "eventType"),
        (event_of_type(&new_uuid(), &long_type), "eventType"),
        (event_of_type("a uuid", "user.lifecycle.create"), "uuid"),
        (
            event_of_type("a\r\nNats-Msg-Id: x", "user.lifecycle.create"),
            "uuid",
        ),
        (
            event_of_type(&"u".repeat(500), "user.lifecycle.create"),
            "uuid",
        ),
        (json!({"uuid": 42, "eventType": "a.b"}), "uuid"),
        (json!(["not", "an", "object"]), "object"),
    ];
    let mut events = vec![good.clone()];
    events.extend(bad.iter().map(|(event, _)| event.clone()));
    let response = post(
        &app,
        "application/json",
        delivery(&new_uuid(), events).to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        response.status(),
        200,
        "an authenticated delivery is never dropped"
    );

    let stored = app.stored_events().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].subject.as_str(),
        "okta.events.user.lifecycle.create"
    );
    let dead = app.dead_letters().await;
    assert_eq!(dead.len(), bad.len());
    for (letter, (event, why)) in dead.iter().zip(&bad) {
        assert_eq!(letter.subject.as_str(), "okta.dlq.receiver");
        let error = header(letter, "Hookrelay-Error").expect("a reason");
        assert!(error.contains(why), "{event}: {error}");
        let payload: Value = serde_json::from_slice(&letter.payload).expect("JSON");
        assert_eq!(&payload, event, "the dead letter keeps the event as sent");
        for (_, values) in letter.headers.iter() {
            for value in values {
                assert!(
                    value
                        .as_str()
                        .bytes()
                        .all(|b| b.is_ascii_graphic() || b == b' '),
                    "header value {:?}",
                    value.as_str()
                );
            }
        }
    }
    // A uuid that is valid JSON but no valid Unicode (a lone surrogate) is not routed either.
    let body = br#"{"data":{"events":[{"uuid":"\ud800","eventType":"a.b"}]}}"#.to_vec();
    assert_eq!(post(&app, "application/json", body).await.status(), 200);
    assert_eq!(app.stored_events().await.len(), 1);
    assert_eq!(app.dead_letters().await.len(), bad.len() + 1);
}

#[tokio::test]
async fn an_event_too_large_for_the_broker_is_dead_lettered_truncated() {
    let nats = NatsServer::start_with_config("max_payload: 65536\n");
    let app = spawn_app_on(nats, &[]).await;
    let small = user_created_event(&new_uuid(), "small@example.com");
    let uuid = new_uuid();
    let mut large = user_created_event(&uuid, "large@example.com");
    large["padding"] = json!("x".repeat(100_000));
    let body = delivery(&new_uuid(), vec![small.clone(), large.clone()]);
    let size = serde_json::to_vec(&large).expect("JSON").len();

    for _ in 0..2 {
        // Okta's retry stores nothing twice.
        let response = app.deliver(&body).await;
        assert_eq!(response.status(), 200);
    }
    let stored = app.stored_events().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(header(&stored[0], "Nats-Msg-Id"), small["uuid"].as_str());
    let dead = app.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(header(letter, "Hookrelay-Event-Uuid"), Some(uuid.as_str()));
    assert_eq!(
        header(letter, "Hookrelay-Truncated-From"),
        Some(size.to_string().as_str())
    );
    assert!(header(letter, "Hookrelay-Error").is_some_and(|e| e.contains("larger")));
    assert!(letter.payload.len() < 65536);
    let original = serde_json::to_vec(&large).expect("JSON");
    assert!(
        original.starts_with(&letter.payload),
        "the start of the event is kept"
    );
}

#[tokio::test]
async fn every_configured_secret_is_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("okta-secret");
    std::fs::write(&file, "Basic from-file-1\nBasic from-file-2\n").expect("written");
    let app = spawn_app_with(&[
        ("HOOKRELAY__RECEIVER__AUTH__SECRET", "Basic from-env"),
        (
            "HOOKRELAY__RECEIVER__AUTH__SECRET_FILE",
            file.to_str().expect("UTF-8 path"),
        ),
    ])
    .await;
    let body = delivery(&new_uuid(), vec![]).to_string();
    for (secret, status) in [
        ("Basic from-env", 200),
        ("Basic from-file-1", 200),
        ("Basic from-file-2", 200),
        ("Basic from-file", 401),
        (DEMO_SECRET, 401),
    ] {
        let response = app
            .http
            .post(app.hook_url())
            .header("authorization", secret)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), status, "{secret}");
    }
}

/// Sends `bytes` on a new connection to the receiver and returns it.
async fn connect_and_send(app: &TestApp, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).await.expect("connects");
    stream.write_all(bytes).await.expect("sent");
    stream
}

/// Reads until the server closes the connection (or `PATIENCE` runs out, which fails).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_client_that_dribbles_its_headers_is_disconnected() {
    let app = spawn_app_with(&[("HOOKRELAY__RECEIVER__HEADER_READ_TIMEOUT", "300ms")]).await;
    let mut slow = connect_and_send(&app, b"POST /okta/events HTTP/1.1\r\nHost: x\r\n").await;
    read_until_closed(&mut slow).await;
    // An idle keep-alive connection is closed too.
    let mut idle = connect_and_send(&app, b"").await;
    read_until_closed(&mut idle).await;
}

#[tokio::test]
async fn a_client_that_dribbles_its_body_gets_a_408() {
    let app = spawn_app_with(&[("HOOKRELAY__RECEIVER__BODY_READ_TIMEOUT", "300ms")]).await;
    let head = format!(
        "POST /okta/events HTTP/1.1\r\nHost: x\r\nAuthorization: {DEMO_SECRET}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"data\":"
    );
    let mut slow = connect_and_send(&app, head.as_bytes()).await;
    let answer = read_until_closed_or_answered(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"body_timeout""#), "{answer}");
    assert!(app.stored_events().await.is_empty());
}

/// Reads one answer's head and JSON body, or until the server closes the connection.
async fn read_until_closed_or_answered(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
            if answer.ends_with(b"}") {
                break;
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("an answer in time");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn slow_clients_holding_every_connection_cannot_keep_okta_out() {
    let app = spawn_app_with(&[
        ("HOOKRELAY__RECEIVER__MAX_CONNECTIONS", "2"),
        ("HOOKRELAY__RECEIVER__HEADER_READ_TIMEOUT", "500ms"),
    ])
    .await;
    let mut hogs = Vec::new();
    for _ in 0..2 {
        hogs.push(connect_and_send(&app, b"POST /okta/events HTTP/1.1\r\n").await);
    }
    // Okta's delivery waits for a slot, which the header timeout frees.
    let uuid = new_uuid();
    let body = delivery(
        &new_uuid(),
        vec![user_created_event(&uuid, "jane@example.com")],
    );
    let response = tokio::time::timeout(PATIENCE, app.deliver(&body))
        .await
        .expect("the delivery gets a connection once the slow clients are cut off");
    assert_eq!(response.status(), 200);
    for hog in &mut hogs {
        read_until_closed(hog).await;
    }
    assert_eq!(app.stored_events().await.len(), 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let app = spawn_app_with(&[
        ("HOOKRELAY__RECEIVER__MAX_CONNECTIONS", "1"),
        ("HOOKRELAY__RECEIVER__HEADER_READ_TIMEOUT", "60s"),
    ])
    .await;
    let hog = connect_and_send(&app, b"POST /okta/events HTTP/1.1\r\n").await;
    let body = delivery(
        &new_uuid(),
        vec![user_created_event(&new_uuid(), "jane@example.com")],
    );
    let http = app.http.clone();
    let url = app.hook_url();
    let waiting = tokio::spawn(async move {
        hookrelay_testkit::okta_post(&http, &url, &body)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served beyond the connection limit");
    drop(hog);
    let status = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("served once the slot is free")
        .expect("joined")
        .expect("an answer");
    assert_eq!(status, 200);
}
