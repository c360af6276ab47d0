//! What the pages show and do, through their JSON (the same data as the HTML): the events list
//! with its filters and pages, an event's attempts, dead letters previewed, replayed at most as
//! confirmed and discarded, pausing and resuming, the count of new events, and Okta's hooks.

use std::time::Duration;

use hookrelay_testkit::okta_org::{API_TOKEN, OktaOrg};
use hookrelay_testkit::{
    PATIENCE, Reply, delivery, event_of_type, eventually, new_uuid, okta_post, user_created_event,
};
use serde_json::Value;

use crate::helpers::App;

fn uuids(page: &Value) -> Vec<String> {
    (page["events"].as_array().expect("events").iter())
        .map(|e| e["uuid"].as_str().expect("uuid").to_owned())
        .collect()
}

#[tokio::test]
async fn the_events_list_pages_newest_first_and_filters_by_type_source_user_and_status() {
    // crm refuses one user's events for good: they are its dead letters.
    let app = App::start(|request, _| {
        let body = String::from_utf8_lossy(&request.body);
        Reply::status(if body.contains("refused@example.com") {
            400
        } else {
            200
        })
    })
    .await;
    let mut created = Vec::new();
    for batch in 0..6 {
        let events: Vec<Value> = (0..10)
            .map(|i| {
                let uuid = new_uuid();
                created.push(uuid.clone());
                user_created_event(&uuid, &format!("user{batch}-{i}@example.com"))
            })
            .collect();
        app.receiver.deliver(&delivery(&new_uuid(), events)).await;
    }
    let session = new_uuid();
    app.receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![event_of_type(&session, "user.session.start")],
        ))
        .await;
    let refused = new_uuid();
    app.receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&refused, "refused@example.com")],
        ))
        .await;
    // Simulated, as `hookrelayctl simulate` marks its deliveries.
    let simulated = new_uuid();
    let response = okta_post(
        &app.stack.http,
        &app.receiver.url,
        &delivery(
            &new_uuid(),
            vec![user_created_event(&simulated, "sim@example.com")],
        ),
    )
    .header(hookrelay::subject::source::SIMULATE_HEADER, "1")
    .send()
    .await
    .expect("answers");
    assert_eq!(response.status(), 200);
    app.stack.wait_for_dead_letters(1).await;
    app.stack
        .wait_until_settled("crm_user_lifecycle_create")
        .await;
    let client = app.operator().await;
    eventually("the dead letter is seen", || async {
        client.get_json("/dead-letters").await.1["total"] == 1
    })
    .await;

    let (status, first) = client.get_json("/events").await;
    assert_eq!(status, 200);
    let listed = uuids(&first);
    assert_eq!(listed.len(), 50, "a page");
    assert_eq!(listed[0], simulated, "newest first");
    assert_eq!(listed[1], refused);
    let next = first["next"].as_str().expect("an older page").to_owned();
    let (_, second) = client.get_json(&next).await;
    let older = uuids(&second);
    assert_eq!(older.len(), 13, "63 events, 50 then 13");
    assert_eq!(older.last(), Some(&created[0]), "down to the first");
    assert!(second["next"].is_null());

    let (_, sessions) = client.get_json("/events?type=user.session.start").await;
    assert_eq!(uuids(&sessions), vec![session.clone()]);
    assert_eq!(
        sessions["events"][0]["subscribers"][0]["subscriber"], "audit",
        "only its subscriber"
    );
    let (_, sims) = client.get_json("/events?source=simulate").await;
    assert_eq!(uuids(&sims), vec![simulated.clone()]);
    let (_, hooks) = client
        .get_json("/events?source=hook&type=user.session.start")
        .await;
    assert_eq!(uuids(&hooks), vec![session.clone()]);

    let (_, jane) = client.get_json("/events?q=USER3-7%40example.com").await;
    assert_eq!(uuids(&jane), [created[37].clone()], "by login, in any case");
    assert_eq!(
        jane["searched"]["complete"], true,
        "and it says how far it looked"
    );
    let (_, by_uuid) = client.get_json(&format!("/events?q={}", created[5])).await;
    assert_eq!(uuids(&by_uuid), [created[5].clone()]);
    let (_, by_id) = client.get_json("/events?q=00u1").await;
    assert_eq!(
        by_id["events"].as_array().map(Vec::len),
        Some(50),
        "the actor's id: a full page"
    );

    let (_, dead) = client.get_json("/events?status=dead").await;
    assert_eq!(uuids(&dead), vec![refused.clone()]);
    assert_eq!(dead["events"][0]["status"], "dead");
    let (_, waiting) = client.get_json("/events?status=waiting").await;
    assert_eq!(uuids(&waiting), Vec::<String>::new());
    let (_, delivered) = client
        .get_json("/events?status=delivered&type=user.session.start")
        .await;
    assert_eq!(uuids(&delivered), [session]);

    let (status, bad) = client.get_json("/events?status=finished").await;
    assert_eq!(status, 400);
    assert!(
        bad["message"]
            .as_str()
            .expect("a message")
            .contains("status must be")
    );
    let (status, _) = client.get_json(&format!("/events/{}", new_uuid())).await;
    assert_eq!(status, 404, "not stored");
}

#[tokio::test]
async fn an_events_page_shows_each_attempt_with_the_downstreams_answer() {
    let app = App::start(|_, before| {
        if before == 0 {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let uuid = new_uuid();
    app.receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&uuid, "jane@example.com")],
        ))
        .await;
    app.stack
        .wait_until_settled("crm_user_lifecycle_create")
        .await;
    let client = app.operator().await;
    let (status, page) = client.get_json(&format!("/events/{uuid}")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["uuid"], uuid.as_str());
    assert_eq!(page["status"], "delivered");
    assert_eq!(
        page["event"]["target"][0]["alternateId"],
        "jane@example.com"
    );
    let crm = &page["subscribers"][0];
    assert_eq!(crm["subscriber"], "crm");
    assert_eq!(crm["status"], "delivered");
    let attempts = crm["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{crm}");
    assert_eq!(attempts[0]["outcome"], "retry");
    assert_eq!(attempts[0]["status"], 503);
    assert!(attempts[0]["next_at"].is_string());
    assert!(
        attempts[0]["error"]
            .as_str()
            .expect("why")
            .contains("/... answered 503")
    );
    assert_eq!(attempts[1]["outcome"], "ok");
    assert_eq!(attempts[1]["status"], 200);
    assert_eq!(attempts[1]["attempt"], 2);
    assert_eq!(page["subscribers"][1]["subscriber"], "audit");
    assert_eq!(page["subscribers"][1]["attempts"][0]["outcome"], "ok");

    // Replayed to crm alone, from the page.
    let replay = client
        .post_form(
            &format!("/events/{uuid}/replay"),
            &[("subscriber", "crm"), ("token", "t1")],
        )
        .await;
    assert_eq!(replay.status(), 303);
    assert_eq!(
        replay.headers()["location"],
        format!("/events/{uuid}?replayed=crm").as_str()
    );
    // The same form sent twice replays once.
    client
        .post_form(
            &format!("/events/{uuid}/replay"),
            &[("subscriber", "crm"), ("token", "t1")],
        )
        .await;
    app.downstream
        .wait_until(PATIENCE, |requests| {
            requests.iter().filter(|r| r.key() == uuid).count() == 3
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.downstream.requests_for(&uuid).len(),
        3,
        "once more, not twice"
    );
    eventually("the replay's attempt is on the page", || async {
        let (_, page) = client.get_json(&format!("/events/{uuid}")).await;
        page["subscribers"][0]["attempts"]
            .as_array()
            .is_some_and(|a| a.len() == 3)
            && page["subscribers"][0]["replay"].is_u64()
    })
    .await;
}

#[tokio::test]
async fn dead_letters_are_previewed_and_replayed_or_discarded_no_more_than_confirmed() {
    // Refused at first, taken once replayed.
    let app = App::start(|_, before| Reply::status(if before == 0 { 400 } else { 200 })).await;
    let events: Vec<String> = (0..4).map(|_| new_uuid()).collect();
    app.receiver
        .deliver(&delivery(
            &new_uuid(),
            events
                .iter()
                .map(|u| user_created_event(u, "jane@example.com"))
                .collect(),
        ))
        .await;
    app.stack.wait_for_dead_letters(4).await;
    let client = app.operator().await;
    eventually("the dead letters are seen", || async {
        client.get_json("/dead-letters?subscriber=crm").await.1["total"] == 4
    })
    .await;

    let (_, preview) = client
        .get_json("/dead-letters/replay?subscriber=crm&all=1")
        .await;
    assert_eq!(preview["count"], 4);
    assert_eq!(preview["subscriber"], "crm");
    let page = client
        .get("/dead-letters/replay?subscriber=crm&all=1")
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("Will replay 4 dead letters to crm"), "{page}");

    let without = client
        .post_form(
            "/dead-letters/replay",
            &[("subscriber", "crm"), ("all", "1")],
        )
        .await;
    assert_eq!(without.status(), 400, "no confirm: nothing");
    let replayed = client
        .post_form(
            "/dead-letters/replay",
            &[("subscriber", "crm"), ("all", "1"), ("confirm", "3")],
        )
        .await;
    assert_eq!(replayed.status(), 303);
    let to = replayed.headers()["location"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(to.contains("replayed=3"), "{to}");
    let page = client.get(&to).await.text().await.expect("page");
    assert!(page.contains("Replayed 3 dead letters to crm."), "{page}");
    app.downstream
        .wait_until(PATIENCE, |requests| requests.len() == 7)
        .await;
    assert_eq!(
        app.stack.dead_letters().await.len(),
        1,
        "at most the 3 confirmed"
    );

    // One chosen by uuid, discarded, as a script would.
    let left =
        hookrelay_testkit::header(&app.stack.dead_letters().await[0], "Hookrelay-Event-Uuid")
            .expect("its uuid")
            .to_owned();
    let (status, preview) = client
        .get_json(&format!("/dead-letters/discard?subscriber=crm&uuid={left}"))
        .await;
    assert_eq!((status, preview["count"].as_u64()), (200, Some(1)));
    let discarded = reqwest::Client::new()
        .post(format!("{}/dead-letters/discard", app.console.url))
        .header("cookie", client.cookie.clone().expect("signed in"))
        .header("accept", "application/json")
        .form(&[
            ("subscriber", "crm"),
            ("uuid", left.as_str()),
            ("confirm", "1"),
        ])
        .send()
        .await
        .expect("answers");
    assert_eq!(discarded.status(), 200);
    assert_eq!(
        discarded.json::<Value>().await.expect("JSON")["discarded"],
        1
    );
    assert!(app.stack.dead_letters().await.is_empty());
    let (_, preview) = client
        .get_json("/dead-letters/replay?subscriber=crm&all=1")
        .await;
    assert_eq!(preview["count"], 0);
    let (status, _) = client.get_json("/dead-letters/replay?all=1").await;
    assert_eq!(status, 400, "whose dead letters must be said");
}

#[tokio::test]
async fn a_subscriber_paused_from_the_console_holds_its_events_until_resumed() {
    let app = App::start(|_, _| Reply::status(200)).await;
    let client = app.operator().await;
    let paused = client.post_form("/subscribers/crm/pause", &[]).await;
    assert_eq!(paused.status(), 303);
    let (_, page) = client.get_json("/subscribers").await;
    let crm = &page["subscribers"][0];
    assert_eq!(
        (crm["name"].as_str(), crm["paused"].as_bool()),
        (Some("crm"), Some(true))
    );
    assert_eq!(crm["state"]["by"], "olivia (console)");
    assert_eq!(
        crm["destination"],
        format!("{}/...", app.downstream.url.trim_end_matches("/hook")).as_str()
    );

    let uuid = new_uuid();
    app.receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&uuid, "held@example.com")],
        ))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(app.downstream.requests().is_empty(), "paused: nothing goes");
    let (_, page) = client.get_json("/subscribers").await;
    assert_eq!(
        page["subscribers"][0]["pending"].as_u64().unwrap_or(0)
            + page["subscribers"][0]["in_flight"].as_u64().unwrap_or(0),
        1,
        "it waits"
    );
    let (_, shown) = client.get_json(&format!("/events/{uuid}")).await;
    assert_eq!(shown["subscribers"][0]["paused"], true);
    assert_eq!(shown["status"], "waiting");

    assert_eq!(
        client
            .post_form("/subscribers/crm/resume", &[])
            .await
            .status(),
        303
    );
    app.downstream.wait_until(PATIENCE, |r| r.len() == 1).await;
    let (status, _) = client.get_json("/subscribers/nobody/pause").await;
    assert_eq!(status, 405, "a pause is a POST");
    assert_eq!(
        client
            .post_form("/subscribers/nobody/pause", &[])
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn new_events_are_counted_for_an_open_page() {
    let app = App::start(|_, _| Reply::status(200)).await;
    let client = app.operator().await;
    let (_, page) = client.get_json("/events").await;
    let newest = page["newest"].as_u64().expect("newest");
    for _ in 0..3 {
        app.receiver
            .deliver(&delivery(
                &new_uuid(),
                vec![event_of_type(&new_uuid(), "user.session.start")],
            ))
            .await;
    }
    app.receiver
        .deliver(&delivery(
            &new_uuid(),
            vec![user_created_event(&new_uuid(), "jane@example.com")],
        ))
        .await;
    eventually("four new events", || async {
        client
            .get_json(&format!("/events/new?after={newest}"))
            .await
            .1["new"]
            == 4
    })
    .await;
    let (_, typed) = client
        .get_json(&format!(
            "/events/new?after={newest}&type=user.lifecycle.create"
        ))
        .await;
    assert_eq!(typed["new"], 1);
    let (_, user) = client
        .get_json(&format!("/events/new?after={newest}&q=jane%40example.com"))
        .await;
    assert_eq!(user["new"], 1);
    let fragment = client
        .get(&format!("/events/new?after={newest}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        fragment.contains("4 new events — show") && fragment.contains("hx-trigger=\"every 3s\""),
        "{fragment}"
    );
}

#[tokio::test]
async fn the_okta_page_lists_the_orgs_hooks_and_what_the_reader_did() {
    let org = OktaOrg::start().await;
    let hooks = hookrelay::okta::hooks::EventHooks::new(
        &hookrelay::config::OktaSettings {
            org_url: org.url(),
            api_token: API_TOKEN.to_owned().into(),
            ..Default::default()
        }
        .access()
        .expect("access"),
    )
    .expect("a client");
    hooks
        .create(&hookrelay::okta::hooks::EventHook::new(
            "hookrelay",
            "https://tunnel.example/okta/events",
            vec!["user.lifecycle.create".into()],
            "authorization",
            "Basic c2VjcmV0LWluLW9rdGE=".to_owned().into(),
        ))
        .await
        .expect("created");
    let app = App::start_with(
        |_, _| Reply::status(200),
        "",
        &[
            ("HOOKRELAY__OKTA__ORG_URL", &org.url()),
            ("HOOKRELAY__OKTA__API_TOKEN", API_TOKEN),
        ],
        false,
    )
    .await;
    let client = app.operator().await;
    let (status, page) = client.get_json("/okta").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["configured"], true);
    let hook = &page["hooks"][0];
    assert_eq!(hook["name"], "hookrelay");
    assert_eq!(hook["status"], "ACTIVE");
    assert_eq!(hook["verification_status"], "UNVERIFIED");
    assert_eq!(hook["uri"], "https://tunnel.example/okta/events");
    assert_eq!(hook["event_types"][0], "user.lifecycle.create");
    let html = client.get("/okta").await.text().await.expect("page");
    assert!(
        html.contains("UNVERIFIED") && !html.contains("c2VjcmV0LWluLW9rdGE"),
        "no secret"
    );
    assert!(!html.contains(API_TOKEN));
}
