//! README "Filter, reshape and pace a subscriber, in jq": every recipe's configuration, as
//! written there (only its `url` pointed at a local service), run by the worker on the
//! Okta-shaped events of `testdata/okta-sample-events.json`; and every filter and transform
//! checked against Debian's `jq` on the same events, so hookrelay's jq is jq.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use hookrelay::config::{ActionSettings, Settings};
use hookrelay::jq::{Fields, Input, Jq};
use hookrelay_testkit::{Downstream, Reply, Stack};
use serde_json::Value;

use crate::helpers::start_worker_with;

const README: &str = include_str!("../../../README.md");
const SAMPLES: &str = include_str!("../../../testdata/okta-sample-events.json");

/// Each recipe, and the sample events it must forward (by the end of their uuid).
const RECIPES: [(&str, &[&str]); 5] = [
    ("one-domain", &["1f5a"]),
    ("one-group", &["1f60", "1f62"]),
    ("slack", &["1f5a", "1f5b"]),
    ("splunk", &["1f5a", "1f5b", "1f70", "1f71", "1f72"]),
    ("failed-sign-ins", &["1f71", "1f72"]),
];

/// The TOML of the README's ```` ```toml ```` block after `<!-- recipe: name -->`.
fn recipe(name: &str) -> String {
    let marker = format!("<!-- recipe: {name} -->");
    let after = README
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README has no recipe {name}"))
        .1;
    let block = after
        .split_once("```toml\n")
        .expect("a toml block")
        .1
        .split_once("```")
        .expect("the block ends")
        .0;
    block.to_owned()
}

/// The recipe with its `url = "…"` pointed at `url`.
fn pointed_at(toml: &str, url: &str) -> String {
    let (before, rest) = toml.split_once("url = \"").expect("a url");
    let (_, after) = rest.split_once('"').expect("the url ends");
    format!("{before}url = \"{url}\"{after}")
}

/// What Debian's jq outputs for `program` on `input`, one value per output.
fn jq(program: &str, input: &Value) -> Vec<Value> {
    jq_all(program, input).unwrap_or_else(|e| panic!("jq {program}: {e}"))
}

fn tail(uuid: &str) -> &str {
    &uuid[uuid.len() - 4..]
}

#[tokio::test]
async fn the_readmes_jq_recipes_work_as_written_and_agree_with_jq() {
    let samples: Value = serde_json::from_str(SAMPLES).expect("samples");
    let events = samples["data"]["events"]
        .as_array()
        .expect("events")
        .clone();
    let stack = Stack::start().await;
    let receiver = stack.receiver().await;

    let mut downstreams = Vec::new();
    let mut config = String::new();
    for (name, _) in RECIPES {
        let downstream = Downstream::start(|_, _| Reply::status(200)).await;
        config.push_str(&pointed_at(&recipe(name), &downstream.url));
        config.push('\n');
        downstreams.push(downstream);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("recipes.toml");
    std::fs::write(&path, &config).expect("write");
    let settings = Settings::load_from(Some(&path), Some(Default::default()))
        .expect("the recipes are a valid configuration");
    let _worker = start_worker_with(&stack, &path).await;
    receiver.deliver(&samples).await;

    for ((name, expected), downstream) in RECIPES.iter().zip(&downstreams) {
        downstream
            .wait_until(Duration::from_secs(20), |r| r.len() >= expected.len())
            .await;
        let subscriber = (settings.worker.subscribers.iter())
            .find(|s| *name == recipe_name(&s.name))
            .expect("the recipe's subscriber");
        for event_type in &subscriber.event_types {
            stack
                .wait_until_settled(&hookrelay::subject::durable_name(
                    &subscriber.name,
                    event_type,
                ))
                .await;
        }
        let requests = downstream.requests();
        let forwarded: BTreeSet<&str> = requests.iter().map(|r| tail(r.key())).collect();
        assert_eq!(
            forwarded,
            expected.iter().copied().collect(),
            "{name}: the events forwarded"
        );
        assert_eq!(requests.len(), expected.len(), "{name}: each once");

        // Debian's jq, on the same events, keeps the same ones and makes the same bodies.
        let theirs: BTreeSet<&str> = (events.iter())
            .filter(|e| subscriber.event_types.iter().any(|t| e["eventType"] == *t))
            .filter(|e| {
                (subscriber.filter.as_deref())
                    .is_none_or(|filter| !jq(&format!("select({filter})"), e).is_empty())
            })
            .map(|e| tail(e["uuid"].as_str().expect("uuid")))
            .collect();
        assert_eq!(forwarded, theirs, "{name}: jq keeps the same events");
        let ActionSettings::Http(http) = &subscriber.action else {
            panic!("{name}: an http recipe");
        };
        for request in &requests {
            let event = (events.iter())
                .find(|e| e["uuid"] == request.key())
                .expect("a sample event");
            let body: Value = serde_json::from_slice(&request.body).expect("a JSON body");
            match &http.transform {
                None => assert_eq!(&body, event, "{name}: the event as Okta sent it"),
                Some(transform) => assert_eq!(
                    vec![body],
                    jq(transform, event),
                    "{name}: the body jq makes"
                ),
            }
        }
    }

    // The Slack recipe's `rate_limit = "1/s"`: its two events a second apart, at least.
    let slack = downstreams[2].requests();
    let gap = slack[1].at.duration_since(slack[0].at);
    assert!(
        gap >= Duration::from_millis(950),
        "two starts {gap:?} apart under 1/s"
    );
    let text: Value = serde_json::from_slice(&slack[0].body).expect("JSON");
    assert!(
        text["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("New Okta user: ")),
        "{text}"
    );
}

fn recipe_name(subscriber: &str) -> &'static str {
    match subscriber {
        "example-com-users" => "one-domain",
        "engineering-members" => "one-group",
        "slack-new-users" => "slack",
        "splunk" => "splunk",
        "failed-sign-ins" => "failed-sign-ins",
        other => panic!("no recipe has subscriber {other}"),
    }
}

/// Expressions operators write for Okta events, each run by hookrelay's jq and Debian's on every
/// sample event: the same values, or an error from both.
const COMMON: [&str; 24] = [
    ".eventType",
    ".target[]?.alternateId",
    ".target[0].alternateId // \"none\"",
    "[.target[]? | select(.type == \"UserGroup\") | .displayName]",
    "any(.target[]?; .type == \"User\")",
    ".actor.alternateId | endswith(\"@example.com\")",
    ".actor.alternateId | test(\"^j[a-z]+\\\\.\")",
    ".actor.alternateId | ascii_downcase | split(\"@\") | .[1]",
    ".outcome.result == \"FAILURE\" and .outcome.reason != null",
    "if .outcome.result == \"SUCCESS\" then \"ok\" else .outcome.reason end",
    "{who: .actor.displayName, what: .displayMessage, when: .published}",
    "\"\\(.actor.displayName) did \\(.eventType) at \\(.published)\"",
    ".client.geographicalContext | {city, country}",
    ".client.geographicalContext.geolocation | .lat + .lon",
    ".target | length",
    ".target | map(.id) | join(\",\")",
    "keys",
    "to_entries | map(select(.value == null) | .key)",
    "has(\"debugContext\")",
    ".published | sub(\"\\\\.[0-9]+Z$\"; \"Z\") | fromdateiso8601",
    ".debugContext.debugData.requestUri | ltrimstr(\"/api/v1/\")",
    ".target[0].alternateId | length > 3",
    "[.actor, .target[]?] | unique_by(.id) | length",
    ".securityContext | with_entries(select(.value != null))",
];

#[test]
fn hookrelays_jq_gives_what_jq_gives_on_okta_events() {
    let samples: Value = serde_json::from_str(SAMPLES).expect("samples");
    let events = samples["data"]["events"].as_array().expect("events");
    let mut differ = Vec::new();
    let mut projected = 0;
    for code in COMMON {
        // Every output at once: `[…]` makes them one value.
        let all = format!("[{code}]");
        let ours = Jq::compile(&all).expect(code);
        // As the worker runs it: the event built with only the fields the code reads.
        let fields = Fields::read_by(&all);
        projected += usize::from(fields != Fields::All);
        let filter = Jq::compile(code).expect(code);
        let filter_fields = Fields::read_by(code);
        for event in events {
            let json = event.to_string();
            let input = Input::parse_fields(json.clone(), &fields).expect("JSON");
            let whole = Input::parse(json.clone()).expect("JSON");
            let for_filter = Input::parse_fields(json, &filter_fields).expect("JSON");
            if filter.selects(&for_filter) != filter.selects(&whole) {
                differ.push(format!(
                    "{code} as a filter on {}: not as on the whole event",
                    event["uuid"]
                ));
            }
            let ours = ours
                .transform(&input)
                .map(|json| serde_json::from_slice::<Value>(&json).expect("JSON"));
            let theirs = jq_all(code, event);
            let same = match (&ours, &theirs) {
                (Ok(ours), Ok(theirs)) => ours == &Value::Array(theirs.clone()),
                (Err(_), Err(_)) => true,
                _ => false,
            };
            if !same {
                differ.push(format!(
                    "{code} on {}: hookrelay {ours:?}, jq {theirs:?}",
                    event["uuid"]
                ));
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert!(
        projected >= 18,
        "{projected} of {} read only some fields",
        COMMON.len()
    );
}

/// Debian's jq's outputs, or its error.
fn jq_all(program: &str, input: &Value) -> Result<Vec<Value>, String> {
    let mut child = Command::new("jq")
        .args(["-c", program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jq runs (apt-get install jq; .ci/run installs it)");
    (child.stdin.take().expect("stdin"))
        .write_all(input.to_string().as_bytes())
        .expect("jq reads");
    let output = child.wait_with_output().expect("jq finishes");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok((String::from_utf8(output.stdout).expect("UTF-8").lines())
        .map(|line| serde_json::from_str(line).expect("jq writes JSON"))
        .collect())
}
