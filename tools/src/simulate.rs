//! Simulate Okta: the one-time verification request, then deliveries shaped like the Admin
//! Console's Preview, with the hook's secret header, sent to any URL (a local receiver, or the
//! ngrok URL in front of it). Okta's rules apply: 3 s to answer, a 5xx or a timeout is retried
//! once, a 4xx is not.

use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use hookrelay::Settings;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::progress::Progress;

/// The delivery the samples are built from: Okta's, as in `sample-delivery.json`.
const SAMPLE: &str = include_str!("sample-delivery.json");
/// What Okta waits for an answer.
pub const OKTA_TIMEOUT: Duration = Duration::from_secs(3);

/// What to send, and where.
pub struct Simulation {
    pub url: String,
    /// The hook's authentication header and its secret.
    pub auth: (HeaderName, SecretString),
    pub verify: bool,
    pub event_type: String,
    pub count: usize,
    pub batch: usize,
    /// The created user's login, `target[0].alternateId`.
    pub alternate_id: String,
    /// Send the Preview's sample without a real event: `"target": null`.
    pub null_target: bool,
}

/// What came back.
#[derive(Debug, Default)]
pub struct Report {
    pub verified: Option<Result<(), String>>,
    pub deliveries: usize,
    pub events: usize,
    pub retried: usize,
    /// Each failed delivery, with why.
    pub failures: Vec<String>,
    /// Each delivery answered 2xx: its answer time, in order.
    pub latencies: Vec<Duration>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.verified.as_ref().is_none_or(Result::is_ok)
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        let verification = match &self.verified {
            None => "verification skipped".to_owned(),
            Some(Ok(())) => "verification ok".to_owned(),
            Some(Err(why)) => format!("verification FAILED ({why})"),
        };
        let mut latencies = self.latencies.clone();
        latencies.sort();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
                .map_or(0, |d| d.as_millis())
        };
        format!(
            "{verification}; {} ({}): {} answered 2xx, {} retried, {} failed; \
             answer time p50 {} ms, max {} ms (Okta waits {} s)",
            crate::count(self.deliveries as u64, "delivery", "deliveries"),
            crate::count(self.events as u64, "event", "events"),
            self.latencies.len(),
            self.retried,
            self.failures.len(),
            at(0.5),
            at(1.0),
            OKTA_TIMEOUT.as_secs(),
        )
    }
}

/// Sends the verification (unless skipped), then `count` events in deliveries of `batch`.
/// Stops after the verification if it failed: Okta would not send anything to such a hook.
pub async fn run(sim: &Simulation) -> anyhow::Result<Report> {
    let client = crate::http_client(OKTA_TIMEOUT)?;
    let mut report = Report::default();
    if sim.verify {
        let verified = verify(&client, sim).await;
        match &verified {
            Ok(()) => eprintln!("verification: the receiver echoed the challenge as Okta expects"),
            Err(why) => eprintln!("verification failed: {why}"),
        }
        let failed = verified.is_err();
        report.verified = Some(verified);
        if failed {
            return Ok(report);
        }
    }
    let template: Value = serde_json::from_str(SAMPLE).context("the built-in sample")?;
    let mut progress = Progress::new();
    let batch = sim.batch.max(1);
    let mut left = sim.count;
    while left > 0 {
        let size = left.min(batch);
        left -= size;
        let body = delivery(&template, sim, size);
        report.deliveries += 1;
        report.events += size;
        match deliver(&client, sim, &body).await {
            Ok((took, retried)) => {
                report.retried += usize::from(retried);
                report.latencies.push(took);
            }
            Err(why) => {
                eprintln!("delivery {} failed: {why}", report.deliveries);
                report.failures.push(why);
            }
        }
        progress.tick(|| {
            format!(
                "{} of {} sent, {} failed",
                report.events,
                crate::count(sim.count as u64, "event", "events"),
                crate::count(report.failures.len() as u64, "delivery", "deliveries")
            )
        });
    }
    Ok(report)
}

fn with_okta_headers(
    request: reqwest::RequestBuilder,
    sim: &Simulation,
) -> anyhow::Result<reqwest::RequestBuilder> {
    let mut secret = HeaderValue::from_str(sim.auth.1.expose_secret())
        .context("the secret is not a valid header value")?;
    secret.set_sensitive(true);
    Ok(request
        .header(sim.auth.0.clone(), secret)
        .header("user-agent", "Okta-Integrations")
        .header("accept", "application/json")
        .header("x-okta-request-id", okta_request_id())
        // Stored as simulated (`hookrelayctl events`, the console's `source`), not as Okta's.
        .header(hookrelay::subject::source::SIMULATE_HEADER, "1"))
}

/// Okta's verification: `GET` with a challenge, which must come back as
/// `{"verification": "<challenge>"}` in a JSON body.
async fn verify(client: &reqwest::Client, sim: &Simulation) -> Result<(), String> {
    let challenge = uuid::Uuid::new_v4().simple().to_string();
    let request = with_okta_headers(client.get(&sim.url), sim)
        .map_err(|e| e.to_string())?
        .header("x-okta-verification-challenge", &challenge);
    let response = request.send().await.map_err(|e| describe(&e))?;
    let status = response.status();
    let echoed_in_header = response
        .headers()
        .iter()
        .any(|(_, value)| value.as_bytes() == challenge.as_bytes());
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.text().await.map_err(|e| describe(&e))?;
    if !status.is_success() {
        return Err(format!("answered {status}{}", refusal_hint(status, &body)));
    }
    let echoed = serde_json::from_str::<Value>(&body).ok().and_then(|v| {
        v.get("verification")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    match echoed {
        Some(value) if value == challenge => {
            if content_type.starts_with("application/json") {
                Ok(())
            } else {
                Err(format!(
                    "the body is right but Content-Type is {content_type:?}, not application/json"
                ))
            }
        }
        Some(_) => Err("the body's \"verification\" is not the challenge sent".into()),
        None if echoed_in_header => Err("the challenge came back as a header; Okta wants the \
                                        JSON body {\"verification\": \"<challenge>\"}"
            .into()),
        None if body.contains(&challenge) => Err("the challenge came back, but not as the JSON \
                                                 body {\"verification\": \"<challenge>\"}"
            .into()),
        None => Err(format!(
            "the body does not echo the challenge: {}",
            clip(&body)
        )),
    }
}

/// Posts one delivery as Okta does: 3 s to answer, one retry after a 5xx or a timeout.
/// Returns the answer time of the accepted attempt and whether it took a retry.
async fn deliver(
    client: &reqwest::Client,
    sim: &Simulation,
    body: &Value,
) -> Result<(Duration, bool), String> {
    let body = serde_json::to_vec(body).expect("a JSON value serialises");
    let mut first_failure = None;
    for attempt in 0..2 {
        // With tracing on, each delivery is a CLIENT span whose trace the receiver joins (its
        // `traceparent`): one simulated event is one trace from here to the downstream, linked
        // to the command's.
        let span = match hookrelay::telemetry::tracing_on() {
            true => tracing::info_span!(
                parent: None,
                "deliver",
                otel.name = "POST",
                otel.kind = "client",
                http.request.method = "POST",
                http.request.resend_count = attempt,
                http.response.status_code = tracing::field::Empty,
            ),
            false => tracing::Span::none(),
        };
        hookrelay::telemetry::link_to_current(&span);
        let mut traced = reqwest::header::HeaderMap::new();
        hookrelay::telemetry::inject_http(&span, &mut traced);
        let request = with_okta_headers(client.post(&sim.url), sim)
            .map_err(|e| e.to_string())?
            .header(CONTENT_TYPE, "application/json")
            .headers(traced)
            .body(body.clone());
        let started = Instant::now();
        let answer = request.send().instrument(span.clone()).await;
        if let Ok(response) = &answer {
            span.record("http.response.status_code", response.status().as_u16());
        }
        let failure = match answer {
            Ok(response) if response.status().is_success() => {
                return Ok((started.elapsed(), attempt > 0));
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                let why = format!("answered {status}{}", refusal_hint(status, &text));
                if status.is_client_error() {
                    // Okta never retries a 4xx: the events are lost to the hook.
                    return Err(format!("{why}; Okta would not retry it"));
                }
                why
            }
            Err(e) => describe(&e),
        };
        first_failure.get_or_insert(failure);
    }
    Err(format!(
        "{}, and again on Okta's one retry",
        first_failure.unwrap_or_default()
    ))
}

fn refusal_hint(status: reqwest::StatusCode, body: &str) -> String {
    match status.as_u16() {
        401 | 403 => format!(
            ": the receiver refused the secret header; is it the same value as the hook's? ({})",
            clip(body)
        ),
        _ => format!(": {}", clip(body)),
    }
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        format!(
            "no answer within {} s: Okta would have timed out",
            OKTA_TIMEOUT.as_secs()
        )
    } else if error.is_connect() {
        format!("cannot connect: {error}")
    } else {
        error.to_string()
    }
}

fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn okta_request_id() -> String {
    format!("sim-{}", uuid::Uuid::new_v4().simple())
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A delivery of `size` fresh events built from the sample: new uuids, now as `published`,
/// the chosen event type and user.
fn delivery(template: &Value, sim: &Simulation, size: usize) -> Value {
    let sample_event = &template["data"]["events"][0];
    let events: Vec<Value> = (0..size)
        .map(|_| {
            let mut event = sample_event.clone();
            event["uuid"] = json!(uuid::Uuid::new_v4().to_string());
            event["published"] = json!(now());
            event["eventType"] = json!(sim.event_type);
            event["target"] = if sim.null_target {
                Value::Null
            } else {
                json!([{
                    "id": "00u1xut9ylB1o5uW40g7",
                    "type": "User",
                    "alternateId": sim.alternate_id,
                    "displayName": sim.alternate_id,
                    "detailEntry": null,
                }])
            };
            event
        })
        .collect();
    let mut delivery = template.clone();
    delivery["eventId"] = json!(uuid::Uuid::new_v4().to_string());
    delivery["eventTime"] = json!(now());
    delivery["data"]["events"] = Value::Array(events);
    delivery
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(null_target: bool) -> Simulation {
        Simulation {
            url: String::new(),
            auth: (HeaderName::from_static("authorization"), "x".into()),
            verify: false,
            event_type: "user.session.start".into(),
            count: 3,
            batch: 3,
            alternate_id: "ada@example.com".into(),
            null_target,
        }
    }

    #[test]
    fn deliveries_carry_fresh_events_of_the_chosen_type_and_user() {
        let template: Value = serde_json::from_str(SAMPLE).unwrap();
        let body = delivery(&template, &sim(false), 3);
        let events = body["data"]["events"].as_array().unwrap();
        assert_eq!(events.len(), 3);
        assert_ne!(events[0]["uuid"], events[1]["uuid"]);
        assert_ne!(body["eventId"], template["eventId"]);
        for event in events {
            assert_eq!(event["eventType"], "user.session.start");
            assert_eq!(event["target"][0]["alternateId"], "ada@example.com");
        }
        let body = delivery(&template, &sim(true), 1);
        assert!(body["data"]["events"][0]["target"].is_null());
    }
}

/// `hookrelayctl simulate`.
#[derive(clap::Args)]
pub struct Args {
    /// The hook URL [default: the configured receiver, http://127.0.0.1:<port><path>].
    #[arg(long)]
    pub url: Option<String>,
    /// The events' type.
    #[arg(long, default_value = "user.lifecycle.create")]
    pub event_type: String,
    /// How many events to send.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Events per delivery (Okta batches events that happen close together).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// The user in each event's `target[0].alternateId`.
    #[arg(long, default_value = "john.doe@example.com")]
    pub alternate_id: String,
    /// Send the Preview's sample as Okta does without a recent event: `"target": null`.
    #[arg(long)]
    pub null_target: bool,
    /// Skip the verification request.
    #[arg(long)]
    pub skip_verification: bool,
}

impl Args {
    /// Sends what Okta sends to the URL, with the configured secret; `Ok(false)` when the
    /// receiver failed any of it.
    pub async fn run(self, settings: &Settings) -> anyhow::Result<bool> {
        let auth = &settings.receiver.auth;
        // With none configured, the demo secret that scripts/run-local and docker compose run
        // the receiver with when none is given: a second shell beside them works as it is.
        let secret = match auth.accepted_secrets()?.into_iter().next() {
            Some(secret) => secret,
            None => {
                eprintln!(
                    "simulate: no secret configured: sending the demo secret of Okta's guide, \
                     which scripts/run-local and docker compose give the receiver when given \
                     none (set HOOKRELAY__RECEIVER__AUTH__SECRET to the hook's secret otherwise)"
                );
                SecretString::from(hookrelay::config::DEMO_SECRET)
            }
        };
        let header = auth
            .header
            .parse()
            .context("receiver.auth.header is not a header name")?;
        let url = self.url.unwrap_or_else(|| {
            format!(
                "http://127.0.0.1:{}{}",
                settings.receiver.listen.port(),
                settings.receiver.path
            )
        });
        let simulation = Simulation {
            url,
            auth: (header, secret),
            verify: !self.skip_verification,
            event_type: self.event_type,
            count: self.count,
            batch: self.batch,
            alternate_id: self.alternate_id,
            null_target: self.null_target,
        };
        let report = run(&simulation).await?;
        println!("{}", report.summary());
        Ok(report.ok())
    }
}
