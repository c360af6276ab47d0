//! `deploy/nats/least-privilege.conf`, run by nats-server exactly as shipped: every process
//! does its whole job with its own user, and NATS refuses each user what it must not do (the
//! receiver reads no event, the worker publishes none).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use hookrelay_testkit::system_log::{self, Limits, SystemLog};
use hookrelay_testkit::{
    Downstream, InProcess, NatsServer, Reply, Stack, event_of_type, eventually, new_uuid,
    user_created_event,
};
use serde_json::Value;

use crate::helpers::ctl;

const CONF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/nats/least-privilege.conf"
);

/// The users of the file, each with the client name its process connects as.
const USERS: [(&str, &str); 5] = [
    ("receiver", "hookrelay-receiver"),
    ("worker", "hookrelay-worker"),
    ("reconciler", "hookrelay-reconciler"),
    ("hookrelayctl", "hookrelayctl"),
    ("console", "hookrelay-console"),
];

/// A nats-server running the shipped file, and a stack whose own view (and `hookrelayctl`)
/// connects as the `hookrelayctl` user.
struct Secured {
    stack: Stack,
    passwords: HashMap<&'static str, String>,
    _config_dir: tempfile::TempDir,
}

impl Secured {
    async fn start(hookrelay_config: &str, overrides: &[(&str, &str)]) -> Self {
        let passwords: HashMap<_, _> = (USERS.iter())
            .map(|(user, _)| (*user, format!("{user}-pw-{}", new_uuid())))
            .collect();
        let env: Vec<_> = (passwords.iter())
            .map(|(user, pw)| {
                (
                    format!("HOOKRELAY_{}_PASSWORD", user.to_uppercase()),
                    pw.clone(),
                )
            })
            .collect();
        let nats = NatsServer::start_with_file(Path::new(CONF), &env);
        let dir = tempfile::tempdir().expect("a directory");
        let config = dir.path().join("hookrelay.toml");
        std::fs::write(&config, hookrelay_config).expect("config written");
        let mut all = vec![
            ("HOOKRELAY__NATS__USER", "hookrelayctl"),
            (
                "HOOKRELAY__NATS__PASSWORD",
                passwords["hookrelayctl"].as_str(),
            ),
            ("HOOKRELAY__NATS__INBOX_PREFIX", "_INBOX.hookrelayctl"),
            ("HOOKRELAY__NATS__STARTUP_TIMEOUT", "5s"),
        ];
        all.extend_from_slice(overrides);
        let stack = Stack::on(nats, Some(&config), &all).await;
        Secured {
            stack,
            passwords,
            _config_dir: dir,
        }
    }

    /// The stack's settings, with `extra` variables, for the process that connects as `user`.
    fn settings_as(&self, user: &str, extra: &[(&str, &str)]) -> hookrelay::Settings {
        let mut env = self.stack.env.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env.insert("HOOKRELAY__NATS__USER".into(), user.into());
        env.insert(
            "HOOKRELAY__NATS__PASSWORD".into(),
            self.passwords[user].clone(),
        );
        env.remove("HOOKRELAY__NATS__INBOX_PREFIX");
        hookrelay::Settings::load_from(Some(&self.stack.config), Some(env)).expect("settings")
    }

    /// A plain client of `user`, and every error the server sends it.
    async fn client_as(&self, user: &str) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
        let client_name = (USERS.iter())
            .find(|(u, _)| *u == user)
            .map(|(_, name)| *name)
            .expect("a user of the file");
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = errors.clone();
        let client = async_nats::ConnectOptions::with_user_and_password(
            user.into(),
            self.passwords[user].clone(),
        )
        .custom_inbox_prefix(format!("_INBOX.{client_name}"))
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    seen.lock().unwrap().push(error.to_string());
                }
            }
        })
        .connect(self.stack.nats.url())
        .await
        .expect("the user connects");
        (client, errors)
    }

    async fn events_in_stream(&self) -> u64 {
        let mut stream = self.stack.events_stream().await;
        stream.info().await.expect("stream info").state.messages
    }
}

/// Waits until the server has refused `what` (`Publish to "subject"`, `Subscription to …`).
async fn wait_for_refusal(errors: &Arc<Mutex<Vec<String>>>, what: &str) {
    eventually(&format!("NATS refuses {what}"), || async {
        (errors.lock().unwrap().iter())
            .any(|e| e.to_lowercase().contains("permissions violation") && e.contains(what))
    })
    .await;
}

/// A System Log event of `user.lifecycle.create`, published a minute ago.
fn logged() -> Value {
    let mut event = user_created_event(&new_uuid(), "logged@example.com");
    let published = SystemTime::now() - Duration::from_secs(60);
    event["published"] = humantime::format_rfc3339_millis(published)
        .to_string()
        .into();
    event
}

#[tokio::test]
async fn every_process_does_its_whole_job_with_its_own_user() {
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let crm = {
        let fixed = fixed.clone();
        // 400 is permanent: dead-lettered at once, until the downstream is fixed.
        Downstream::start(move |_, _| {
            Reply::status(if fixed.load(std::sync::atomic::Ordering::SeqCst) {
                200
            } else {
                400
            })
        })
        .await
    };
    // Two events the hook delivers, one only the System Log has, and one of a type no
    // subscriber wants, for a backfill to store.
    let hooked = vec![logged(), logged()];
    let missed = logged();
    let mut locked = logged();
    locked["eventType"] = "user.account.lock".into();
    let log = SystemLog::polling(
        [hooked.clone(), vec![missed, locked]].concat(),
        Limits::default(),
    )
    .await;
    let log_url = log.url();
    let config = format!(
        "[[worker.subscribers]]\nname = \"crm\"\nevent_types = [\"user.lifecycle.create\"]\n\
         action = {{ type = \"http\", url = \"{}\" }}\n\
         [[console.users]]\nname = \"olivia\"\nrole = \"operator\"\npassword_hash = \"{}\"\n",
        crm.url,
        hookrelay::passwords::hash("an operator's passphrase"),
    );
    let mut secured = Secured::start(&config, &[]).await;

    // The receiver creates the streams and stores what the hook delivers, dead-lettering what
    // it cannot route.
    let receiver = hookrelay_testkit::Receiver::start(&secured.settings_as("receiver", &[])).await;
    receiver.deliver_events(hooked.clone()).await;
    let mut unroutable = event_of_type(&new_uuid(), "x");
    unroutable["eventType"] = Value::Null;
    receiver.deliver_events(vec![unroutable]).await;

    // The worker binds its consumers, pulls, acks and dead-letters.
    let worker = worker::Worker::build(&secured.settings_as("worker", &[]))
        .await
        .expect("the worker starts with its user");
    let worker_admin = worker.admin_addr();
    let _worker = InProcess::spawn(|shutdown| worker.run(shutdown));

    // The reconciler keeps its cursor and lease, reads which events are stored, and stores the
    // one the hook missed.
    let reconciler_settings = secured.settings_as(
        "reconciler",
        &[
            ("HOOKRELAY__OKTA__ORG_URL", &log_url),
            ("HOOKRELAY__OKTA__API_TOKEN", system_log::TOKEN),
            ("HOOKRELAY__RECONCILER__POLL_INTERVAL", "1s"),
        ],
    );
    let reconciler = reconciler::Reconciler::build(&reconciler_settings)
        .await
        .expect("the reconciler starts with its user");
    let reconciler_admin = reconciler.admin_addr();
    let _reconciler = InProcess::spawn(|shutdown| reconciler.run(shutdown));
    eventually("the missed event is stored", || async {
        secured.events_in_stream().await == 3
    })
    .await;

    // hookrelayctl lists the dead letters: crm's three and the receiver's one.
    let listed = || async {
        let run = ctl(&secured.stack, &["dead-letters", "list", "--json"])
            .await
            .ok();
        (run.stdout.lines())
            .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
            .collect::<Vec<_>>()
    };
    eventually("three dead letters of crm", || async {
        listed()
            .await
            .iter()
            .filter(|l| l["subscriber"] == "crm")
            .count()
            == 3
    })
    .await;
    assert_eq!(listed().await.len(), 4, "{:?}", listed().await);

    // … replays crm's to crm and deletes them once stored again; the worker delivers them.
    let failed = crm.requests().len();
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    ctl(
        &secured.stack,
        &["dead-letters", "replay", "--subscriber", "crm"],
    )
    .await
    .ok();
    eventually("crm got all three again", || async {
        crm.requests().len() == failed + 3
    })
    .await;
    let left = listed().await;
    assert_eq!(left.len(), 1, "only the receiver's is left: {left:?}");

    // Every event was acked, the replays too: no consumer holds anything.
    for durable in [
        hookrelay::subject::durable_name("crm", "user.lifecycle.create"),
        hookrelay::subject::replay_durable_name("crm"),
    ] {
        secured.stack.wait_until_settled(&durable).await;
    }
    // hookrelayctl finds an event and where it stands, and lists the stored ones.
    let uuid = hooked[0]["uuid"].as_str().expect("a uuid");
    let run = ctl(&secured.stack, &["events", "show", uuid]).await.ok();
    assert!(
        run.stdout.contains("replayed (sequence ") && run.stdout.contains("done"),
        "{}",
        run.stdout
    );
    let run = ctl(&secured.stack, &["events", "list", "--json"])
        .await
        .ok();
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);
    // Each service is ready, by its own checks of streams, consumers and buckets.
    for (admin, name) in [
        (receiver.admin_addr, "receiver"),
        (worker_admin, "worker"),
        (reconciler_admin, "reconciler"),
    ] {
        let url = format!("http://{admin}/readyz");
        let ready = secured.stack.http.get(&url).send().await.expect("answered");
        assert_eq!(
            ready.status(),
            200,
            "{name}: {}",
            ready.text().await.unwrap_or_default()
        );
        let url = format!("http://{admin}/metrics");
        let metrics = secured.stack.http.get(&url).send().await.expect("answered");
        assert_eq!(metrics.status(), 200, "{name}");
    }

    // The console reads everything, replays an event, discards the receiver's dead letter,
    // pauses and resumes a subscriber, and keeps its sessions.
    let console = hookrelay_testkit::Console::start(&secured.settings_as("console", &[])).await;
    let operator = console
        .client()
        .signed_in("olivia", "an operator's passphrase")
        .await;
    eventually("the console lists the three events", || async {
        operator.get_json("/events").await.1["events"]
            .as_array()
            .map(Vec::len)
            == Some(3)
    })
    .await;
    for path in [
        "/events?q=logged%40example.com",
        &format!("/events/{uuid}"),
        "/dead-letters",
        "/subscribers",
        "/okta",
    ] {
        let (status, body) = operator.get_json(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, shown) = operator.get_json(&format!("/events/{uuid}")).await;
    assert!(
        !shown["subscribers"][0]["attempts"]
            .as_array()
            .expect("attempts")
            .is_empty(),
        "{shown}"
    );
    let before = crm.requests().len();
    let replay = operator
        .post_form(
            &format!("/events/{uuid}/replay"),
            &[("subscriber", "crm"), ("token", "x")],
        )
        .await;
    assert_eq!(replay.status(), 303);
    eventually("crm got the replay", || async {
        crm.requests().len() == before + 1
    })
    .await;
    let discard = operator
        .post_form(
            "/dead-letters/discard",
            &[("subscriber", "receiver"), ("all", "1"), ("confirm", "1")],
        )
        .await;
    assert_eq!(discard.status(), 303);
    assert!(
        listed().await.is_empty(),
        "the receiver's dead letter discarded"
    );
    for action in ["pause", "resume"] {
        let response = operator
            .post_form(&format!("/subscribers/crm/{action}"), &[])
            .await;
        assert_eq!(response.status(), 303, "{action}");
    }
    let ready = (secured.stack.http)
        .get(format!("http://{}/readyz", console.admin_addr))
        .send()
        .await
        .expect("answered");
    assert_eq!(ready.status(), 200, "the console is ready");

    // … and backfills: it reads what is stored, stores nothing twice, and stores the rest.
    secured
        .stack
        .env
        .insert("OKTA_API_TOKEN".into(), system_log::TOKEN.into());
    let args = [
        "backfill",
        "--okta-url",
        &log_url,
        "--since",
        "1h",
        "--event-type",
        "user.lifecycle.create",
        "--event-type",
        "user.account.lock",
    ];
    let run = ctl(&secured.stack, &args).await.ok();
    assert!(
        run.stdout.contains("3 already stored, 1 stored"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );

    // Not one request was refused along the way: the file allows all that each one does.
    let log = secured.stack.nats.log();
    let refused: Vec<_> = (log.lines()).filter(|l| l.contains("Violation")).collect();
    assert!(refused.is_empty(), "{refused:#?}");
}

#[tokio::test]
async fn the_receiver_cannot_read_events_and_the_worker_cannot_publish_one() {
    let secured = Secured::start("", &[]).await;
    let receiver = hookrelay_testkit::Receiver::start(&secured.settings_as("receiver", &[])).await;
    receiver
        .deliver_events(vec![user_created_event(&new_uuid(), "a@example.com")])
        .await;
    let _worker = worker::Worker::build(&secured.settings_as("worker", &[]))
        .await
        .expect("the worker starts with its user");

    // The receiver: no subscription to events or to the worker's inbox (where pulled events
    // arrive), no consumer, no message read.
    let (client, errors) = secured.client_as("receiver").await;
    let _events = client.subscribe("okta.events.>").await.expect("sent");
    let _inbox = client
        .subscribe("_INBOX.hookrelay-worker.>")
        .await
        .expect("sent");
    client.flush().await.expect("flushed");
    wait_for_refusal(&errors, "Subscription to \"okta.events.>\"").await;
    wait_for_refusal(&errors, "Subscription to \"_INBOX.hookrelay-worker.>\"").await;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(500))
        .build(client.clone());
    let stream = js
        .get_stream("OKTA_EVENTS")
        .await
        .expect("stream info is allowed");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config::default())
        .await;
    assert!(consumer.is_err(), "the receiver created a consumer");
    wait_for_refusal(&errors, "Publish to \"$JS.API.CONSUMER.CREATE.OKTA_EVENTS").await;
    assert!(
        stream.get_raw_message(1).await.is_err(),
        "the receiver read an event"
    );
    wait_for_refusal(&errors, "Publish to \"$JS.API.STREAM.MSG.GET.OKTA_EVENTS\"").await;

    // The worker: no event published, on any subject of the stream, nor a receiver's dead letter.
    let before = secured.events_in_stream().await;
    let (client, errors) = secured.client_as("worker").await;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_millis(500))
        .build(client.clone());
    let subject = "okta.events.user.lifecycle.create";
    let published = async { js.publish(subject, "{}".into()).await?.await };
    assert!(published.await.is_err(), "the worker published an event");
    wait_for_refusal(&errors, &format!("Publish to \"{subject}\"")).await;
    client
        .publish("okta.dlq.receiver", "{}".into())
        .await
        .expect("sent");
    client.flush().await.expect("flushed");
    wait_for_refusal(&errors, "Publish to \"okta.dlq.receiver\"").await;

    // The same publish as the receiver is stored: what was refused was the user, not the subject.
    let (client, _) = secured.client_as("receiver").await;
    let js = jetstream::new(client);
    let ack = js.publish(subject, "{}".into()).await.expect("sent");
    ack.await.expect("the receiver may store an event");
    assert_eq!(secured.events_in_stream().await, before + 1);
}
