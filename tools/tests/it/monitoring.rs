//! What `deploy/` ships for monitoring, against the real thing: every metric the alerts and the
//! dashboard name is served by a live receiver, worker, System Log reader or console (a renamed metric
//! fails here), and Prometheus's own `promtool` accepts every expression, the configuration,
//! and the alerts' unit tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use hookrelay_testkit::system_log::{self, Limits, SystemLog};
use hookrelay_testkit::{
    InProcess, Stack, eventually, metric, new_uuid, scrape, user_created_event,
};
use serde_json::Value;

const ALERTS: &str = include_str!("../../../deploy/prometheus/alerts.yml");
const DASHBOARD: &str = include_str!("../../../deploy/grafana/dashboards/hookrelay.json");

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// `promtool <args>`: its output, or a panic with it.
fn promtool(args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool runs (apt-get install prometheus; .ci/run installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The PromQL of every dashboard panel.
fn dashboard_expressions() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    (panels.iter())
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("an expr").to_owned())
        .collect()
}

/// Every `hookrelay_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("hookrelay_") {
        let name: String = (rest[at..].chars())
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// The metric families a scrape declares (`# TYPE <family> <kind>`).
fn families(scrape: &str) -> BTreeSet<String> {
    (scrape.lines())
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Whether `name` is a series of one of `families`: the family itself, or a counter's
/// `_total` or a histogram's `_bucket`, `_sum` or `_count`.
fn served(name: &str, families: &BTreeSet<String>) -> bool {
    families.contains(name)
        || ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|f| families.contains(f))
            })
}

#[test]
fn promtool_accepts_the_alerts_their_tests_the_configuration_and_the_dashboard() {
    let alerts = deploy("prometheus/alerts.yml");
    let checked = promtool(&["check".as_ref(), "rules".as_ref(), alerts.as_os_str()]);
    assert!(checked.contains("SUCCESS: 12 rules found"), "{checked}");
    let tests = deploy("prometheus/alerts.test.yml");
    promtool(&["test".as_ref(), "rules".as_ref(), tests.as_os_str()]);
    let config = deploy("prometheus/prometheus.yml");
    promtool(&["check".as_ref(), "config".as_ref(), config.as_os_str()]);

    // promtool checks PromQL in rule files: the dashboard's, as recording rules.
    let expressions = dashboard_expressions();
    assert!(expressions.len() >= 20, "{expressions:?}");
    let rules: Vec<Value> = (expressions.iter().enumerate())
        .map(
            |(i, expr)| serde_json::json!({"record": format!("dashboard:panel_{i}"), "expr": expr}),
        )
        .collect();
    let file = tempfile::Builder::new()
        .suffix(".yml")
        .tempfile()
        .expect("a temporary file");
    // JSON is YAML.
    let groups = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(file.path(), groups.to_string()).expect("written");
    let checked = promtool(&["check".as_ref(), "rules".as_ref(), file.path().as_os_str()]);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", expressions.len())),
        "{checked}"
    );

    // And a broken expression is refused, so the check above can fail.
    let broken = serde_json::json!({"groups": [{"name": "broken", "rules": [
        {"record": "broken", "expr": "sum(rate(hookrelay_worker_events_handled_total[5m])"}
    ]}]});
    std::fs::write(file.path(), broken.to_string()).expect("written");
    let refused = Command::new("promtool")
        .args(["check".as_ref(), "rules".as_ref(), file.path().as_os_str()])
        .output()
        .expect("promtool runs");
    assert!(!refused.status.success(), "promtool refuses broken PromQL");
}

#[tokio::test]
async fn every_metric_the_alerts_and_dashboard_name_is_served_by_a_live_process() {
    let log = SystemLog::polling(Vec::new(), Limits::default()).await;
    let url = log.url();
    let stack = Stack::with(&[
        ("HOOKRELAY__OKTA__ORG_URL", url.as_str()),
        ("HOOKRELAY__OKTA__API_TOKEN", system_log::TOKEN),
        ("HOOKRELAY__RECONCILER__POLL_INTERVAL", "1s"),
    ])
    .await;
    let receiver = stack.receiver().await;
    let worker = (worker::Worker::build(&stack.settings).await).expect("the worker starts");
    let worker_admin = worker.admin_addr();
    let _worker = InProcess::spawn(|shutdown| worker.run(shutdown));
    let reconciler =
        (reconciler::Reconciler::build(&stack.settings).await).expect("the reconciler starts");
    let reconciler_admin = reconciler.admin_addr();
    let _reconciler = InProcess::spawn(|shutdown| reconciler.run(shutdown));
    let console = stack.console().await;

    // An event through the whole pipeline, and a poll of the System Log, so that labelled
    // series exist beside their families.
    let uuid = new_uuid();
    (receiver.deliver_events(vec![user_created_event(&uuid, "a@example.com")])).await;
    eventually("the worker handles the event", || async {
        let text = scrape(&stack.http, worker_admin).await;
        metric(
            &text,
            "hookrelay_worker_events_handled_total",
            &[("subscriber", "user-added"), ("outcome", "ok")],
        )
        .is_some()
    })
    .await;
    eventually("the reconciler polls", || async {
        let text = scrape(&stack.http, reconciler_admin).await;
        metric(&text, "hookrelay_reconciler_polls_total", &[]).unwrap_or(0.0) > 0.0
    })
    .await;

    let mut served_families = BTreeSet::new();
    for (process, admin) in [
        ("receiver", receiver.admin_addr),
        ("worker", worker_admin),
        ("reconciler", reconciler_admin),
        ("console", console.admin_addr),
    ] {
        let text = scrape(&stack.http, admin).await;
        assert_eq!(
            metric(&text, "hookrelay_ready", &[]),
            Some(1.0),
            "the {process} serves its readiness: {text}"
        );
        served_families.extend(families(&text));
    }
    let mut named = metric_names(ALERTS);
    named.extend(dashboard_expressions().iter().flat_map(|e| metric_names(e)));
    assert!(named.len() >= 15, "the names were read: {named:?}");
    let missing: Vec<&String> = (named.iter())
        .filter(|name| !served(name, &served_families))
        .collect();
    assert!(
        missing.is_empty(),
        "named in deploy/ but served by no process: {missing:?}\nserved: {served_families:?}"
    );
}
