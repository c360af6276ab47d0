//! `hookrelayctl events`: where an event is for each of its subscribers, and the stored events
//! by time, type and user; and what the tools say when something is missing.

use std::time::Duration;

use hookrelay_testkit::{
    Downstream, NatsServer, Reply, Stack, eventually, new_uuid, user_created_event,
};
use serde_json::Value;

use crate::helpers::{ctl, ctl_with};

#[tokio::test]
async fn show_says_for_every_subscriber_whether_the_event_is_done_filtered_waiting_or_dead_lettered()
 {
    let ok = Downstream::start(|_, _| Reply::status(200)).await;
    // 400 is permanent: dead-lettered at once. 503 is transient: retried after a long backoff.
    let broken = Downstream::start(|_, _| Reply::status(400)).await;
    let down = Downstream::start(|_, _| Reply::status(503)).await;
    // Fails its first request, then takes everything.
    let flaky = Downstream::start(|_, nth| Reply::status(if nth == 0 { 503 } else { 200 })).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hookrelay.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[worker.subscribers]]
name = "crm"
event_types = ["user.lifecycle.create"]
action = {{ type = "http", url = "{ok}" }}

[[worker.subscribers]]
name = "other-domain"
event_types = ["user.lifecycle.create"]
filter = 'any(.target[]?; .alternateId | endswith("@other.example"))'
action = {{ type = "http", url = "{ok}" }}

[[worker.subscribers]]
name = "siem"
event_types = ["user.lifecycle.create"]
action = {{ type = "http", url = "{broken}" }}

[[worker.subscribers]]
name = "slow"
event_types = ["user.lifecycle.create"]
backoff = ["1h"]
action = {{ type = "http", url = "{down}" }}

[[worker.subscribers]]
name = "flaky"
event_types = ["user.lifecycle.create"]
backoff = ["100ms"]
action = {{ type = "http", url = "{flaky}" }}

[[worker.subscribers]]
name = "sessions"
event_types = ["user.session.start"]
action = {{ type = "noop" }}
"#,
            ok = ok.url,
            broken = broken.url,
            down = down.url,
            flaky = flaky.url,
        ),
    )
    .expect("write config");
    let stack = Stack::on(NatsServer::start(), Some(&config), &[]).await;

    // Before anything created the streams, the tools say what to do.
    let run = ctl(&stack, &["events", "list"]).await;
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("there is no stream OKTA_EVENTS on this NATS yet")
            && run.stderr.contains("start one of them first"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("10059"),
        "no JetStream codes: {}",
        run.stderr
    );

    let receiver = stack.receiver().await;
    let _worker = stack.worker().await;
    let uuid = new_uuid();
    let other = new_uuid();
    let delivery_id = new_uuid();
    receiver
        .deliver(&hookrelay_testkit::delivery(
            &delivery_id,
            vec![
                user_created_event(&uuid, "grace@example.com"),
                user_created_event(&other, "alan@example.com"),
            ],
        ))
        .await;
    eventually("crm has both and siem gave up on both", || async {
        ok.answered().len() >= 2 && stack.dead_letters().await.len() == 2
    })
    .await;
    down.wait_until(Duration::from_secs(10), |requests| requests.len() >= 2)
        .await;
    stack.wait_until_settled("crm_user_lifecycle_create").await;
    stack
        .wait_until_settled("flaky_user_lifecycle_create")
        .await;
    stack
        .wait_until_settled("other-domain_user_lifecycle_create")
        .await;

    let run = ctl(&stack, &["events", "show", &uuid]).await.ok();
    let out = &run.stdout;
    let line = |subscriber: &str| {
        (out.lines())
            .find(|l| l.trim_start().starts_with(subscriber))
            .unwrap_or_else(|| panic!("a line for {subscriber}:\n{out}"))
            .to_owned()
    };
    assert!(
        out.starts_with(&format!("event {uuid} (user.lifecycle.create)")),
        "{out}"
    );
    assert!(
        out.contains("on okta.events.user.lifecycle.create at "),
        "{out}"
    );
    assert!(
        out.contains(&format!("source:  the hook (delivery {delivery_id}")),
        "{out}"
    );
    assert!(line("crm ").contains("done"), "{out}");
    assert!(line("other-domain").contains("filtered"), "{out}");
    let siem = line("siem");
    assert!(
        siem.contains("dead-lettered after 1 delivery: ")
            && siem.contains("/... answered 400")
            && !siem.contains("/hook"),
        "the reason and a singular: {siem}"
    );
    assert!(
        out.contains(&format!(
            "hookrelayctl dead-letters replay --uuid {uuid} --subscriber siem"
        )),
        "{out}"
    );
    let slow = line("slow");
    assert!(
        slow.contains("waiting: 1 attempt so far, the last failed at ")
            && slow.contains("answered 503")
            && slow.contains("next attempt from "),
        "{slow}"
    );
    assert!(line("flaky").contains("done"), "{out}");
    assert!(
        !out.contains("sessions"),
        "only subscribers of its type: {out}"
    );

    let run = ctl(&stack, &["events", "show", &uuid, "--json"]).await.ok();
    let shown: Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    let states: Vec<(&str, &str)> = (shown["subscribers"].as_array().expect("subscribers"))
        .iter()
        .map(|s| {
            (
                s["subscriber"].as_str().expect("name"),
                s["state"].as_str().expect("state"),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("crm", "done"),
            ("other-domain", "filtered"),
            ("siem", "dead_lettered"),
            ("slow", "waiting"),
            ("flaky", "done"),
        ]
    );
    assert_eq!(shown["subscribers"][3]["failed"]["attempt"], 1);
    assert_eq!(shown["subscribers"][3]["failed"]["status"], 503);
    // Every attempt is kept after the event settles, for the console's timeline.
    let records = (stack.js.get_key_value("OKTA_EVENTS_attempts").await).expect("the bucket");
    let outcomes = |subscriber: &str| {
        let records = records.clone();
        let subscriber = subscriber.to_owned();
        let uuid = uuid.clone();
        async move {
            (hookrelay::attempts::history(&records, &subscriber, &uuid).await)
                .expect("read")
                .iter()
                .map(|a| a.outcome.as_str())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(outcomes("slow").await, ["retry"], "waiting: its failure");
    assert_eq!(
        outcomes("flaky").await,
        ["retry", "ok"],
        "a failure, then done"
    );
    assert_eq!(outcomes("crm").await, ["ok"], "done at once");
    assert_eq!(outcomes("siem").await, ["dead_lettered"]);
    assert_eq!(
        outcomes("other-domain").await,
        Vec::<&str>::new(),
        "filtered: no attempt"
    );
    assert_eq!(shown["source"], "hook");
    assert_eq!(shown["delivery_id"], delivery_id.as_str());

    let missing = new_uuid();
    let run = ctl(&stack, &["events", "show", &missing]).await;
    assert!(!run.success, "not stored exits 1");
    assert!(
        run.stdout.contains(&format!(
            "event {missing} is not stored (2 messages scanned"
        )) && run.stdout.contains("hookrelayctl backfill --since"),
        "{}",
        run.stdout
    );

    // list: by user (actor or target, any case), by type; a table and JSON lines.
    let run = ctl(&stack, &["events", "list", "--user", "GRACE@example.com"])
        .await
        .ok();
    let rows: Vec<&str> = run.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{}", run.stdout);
    assert!(
        rows[0].contains(&uuid) && rows[0].contains("admin@example.com"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("read 2 events; 1 matches"),
        "{}",
        run.stderr
    );
    let run = ctl(
        &stack,
        &["events", "list", "--actor", "admin@example.com", "--json"],
    )
    .await
    .ok();
    let listed: Vec<Value> = (run.stdout.lines())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let uuids: Vec<&str> = listed
        .iter()
        .map(|e| e["uuid"].as_str().expect("uuid"))
        .collect();
    assert_eq!(uuids, [uuid.as_str(), other.as_str()]);
    assert_eq!(listed[1]["targets"][0], "alan@example.com");
    let run = ctl(
        &stack,
        &["events", "list", "--event-type", "user.session.start"],
    )
    .await
    .ok();
    assert_eq!(
        run.stdout.lines().count(),
        1,
        "the header alone: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("read 0 events; 0 match"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_missing_configuration_file_says_how_to_point_at_one() {
    let stack = Stack::start().await;
    let run = ctl_with(
        std::path::Path::new("/nonexistent/hookrelay.toml"),
        &stack.env,
        &["events", "list"],
    )
    .await;
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("no configuration file at /nonexistent/hookrelay.toml")
            && run.stderr.contains("--config <file>")
            && run.stderr.contains("HOOKRELAY_CONFIG"),
        "{}",
        run.stderr
    );
}
