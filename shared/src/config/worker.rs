//! `[worker]`: the subscribers, their actions, and how they retry.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;
use crate::subject;

/// The subscribers that act on stored events.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub admin_listen: SocketAddr,
    /// How long a shutdown waits for running actions before it gives up on them (they are
    /// then delivered again after `ack_wait`).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Each subscriber is a durable JetStream consumer with its own action.
    pub subscribers: Vec<SubscriberSettings>,
    /// A subscriber paused longer than this is reported (`hookrelay_worker_pause_alert_after_seconds`,
    /// which the alert `HookrelaySubscriberPausedTooLong` compares with how long it has been
    /// paused): a pause for a downstream's maintenance that nobody lifted.
    #[serde(with = "humantime_serde")]
    pub pause_alert_after: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9083)),
            shutdown_grace: Duration::from_secs(30),
            subscribers: vec![SubscriberSettings::user_added()],
            pause_alert_after: Duration::from_secs(4 * 60 * 60),
        }
    }
}

/// One named subscriber: which events it wants, what it does with them, how it retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberSettings {
    /// Names the durable consumers and the dead-letter subject `okta.dlq.<name>`.
    pub name: String,
    /// Okta event types (`user.lifecycle.create`) this subscriber receives.
    pub event_types: Vec<String>,
    /// What to do with each event.
    pub action: ActionSettings,
    /// How long JetStream waits for an answer before it delivers an event again.
    #[serde(default = "defaults::ack_wait", with = "humantime_serde")]
    pub ack_wait: Duration,
    /// How many times an event is attempted before it is dead-lettered.
    #[serde(default = "defaults::max_deliver")]
    pub max_deliver: u32,
    /// Delay before the 1st, 2nd, … retry of a transient failure; the last one repeats.
    #[serde(default = "defaults::backoff", deserialize_with = "durations")]
    pub backoff: Vec<Duration>,
    /// How many actions of this subscriber run at once in one worker process.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    /// How many events each of the subscriber's consumers pulls ahead of a free action slot, so
    /// a slot never waits on a broker round trip. Waiting events are kept from redelivery with
    /// in-progress acks. Lower it when several workers share a subscriber whose actions are
    /// slow, so one worker does not hold events another could run now.
    #[serde(default = "defaults::read_ahead")]
    pub read_ahead: usize,
    /// A jq expression over the event: the action runs only for events `select(<filter>)`
    /// keeps; the others are acknowledged and counted as `filtered`.
    #[serde(default)]
    pub filter: Option<String>,
    /// At most this many action starts per period (`"20/s"`, `"600/m"`, `"1000/h"`) across
    /// the subscriber's consumers in one worker process. Events waiting for their turn stay in
    /// JetStream, kept from redelivery with in-progress acks.
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// Which attempts the worker records for the console's timeline and `hookrelayctl events
    /// show`: `all` (the default), or `failures` (and the success that ends a run of them), which
    /// spares the broker a write per event for a subscriber that handles very many.
    #[serde(default)]
    pub attempt_records: AttemptRecords,
}

/// Which attempts of a subscriber are recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptRecords {
    #[default]
    All,
    Failures,
}

/// `<count>/<s|m|h>`: at most `count` in any `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// The most a rate may count: the limiter remembers that many start times.
    pub const MAX_COUNT: u32 = 100_000;
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let wrong = || format!("{text:?} is not a rate such as \"20/s\", \"600/m\" or \"1000/h\"");
        let (count, unit) = text.trim().split_once('/').ok_or_else(wrong)?;
        let count: u32 = count.trim().parse().map_err(|_| wrong())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(wrong()),
        };
        if count == 0 || count > Rate::MAX_COUNT {
            return Err(format!(
                "{text:?}: the count must be from 1 to {}",
                Rate::MAX_COUNT
            ));
        }
        Ok(Rate { count, per })
    }
}

/// A list of durations written as `["1s", "5s"]`.
fn durations<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
    let list: Vec<humantime_serde::Serde<Duration>> = Deserialize::deserialize(deserializer)?;
    Ok(list
        .into_iter()
        .map(humantime_serde::Serde::into_inner)
        .collect())
}

mod defaults {
    use std::time::Duration;

    pub fn ack_wait() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_deliver() -> u32 {
        8
    }
    pub fn backoff() -> Vec<Duration> {
        [1, 5, 30, 120].map(Duration::from_secs).to_vec()
    }
    pub fn concurrency() -> usize {
        16
    }
    pub fn read_ahead() -> usize {
        256
    }
    pub fn http_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn content_type() -> String {
        "application/json".into()
    }
    pub fn propagate_trace() -> bool {
        true
    }
}

impl SubscriberSettings {
    /// The guide's subscriber: log every user created in Okta.
    pub fn user_added() -> Self {
        SubscriberSettings {
            name: "user-added".into(),
            event_types: vec!["user.lifecycle.create".into()],
            action: ActionSettings::UserAdded,
            ack_wait: defaults::ack_wait(),
            max_deliver: defaults::max_deliver(),
            backoff: defaults::backoff(),
            concurrency: defaults::concurrency(),
            read_ahead: defaults::read_ahead(),
            filter: None,
            rate_limit: None,
            attempt_records: AttemptRecords::All,
        }
    }

    /// `rate_limit`, parsed (loading the configuration has checked it).
    pub fn rate(&self) -> Option<Result<Rate, String>> {
        self.rate_limit.as_deref().map(str::parse)
    }

    /// The delay before retry number `attempt` (1 for the first retry).
    pub fn backoff_for(&self, attempt: u32) -> Duration {
        let index = (attempt.max(1) as usize - 1).min(self.backoff.len().saturating_sub(1));
        self.backoff.get(index).copied().unwrap_or(Duration::ZERO)
    }
}

/// What a subscriber does with an event. `type` selects the action; the other keys are its
/// parameters. To add an action, add a variant here and build it in the worker's
/// `actions::build`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionSettings {
    /// Logs `The user <alternateId> has been added to the Okta org!`, as the guide's sample app.
    UserAdded,
    /// Logs the event's uuid, type and display message; handy to watch a new event type.
    Log,
    /// Does nothing and succeeds: acknowledges a subscriber's events, for benchmarks or to
    /// drain a subscriber.
    Noop,
    /// POSTs the event to a URL.
    Http(HttpActionSettings),
}

/// `action = { type = "http", url = "…" }`: POST the event JSON to `url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpActionSettings {
    /// Where to POST, `http://` or `https://`.
    pub url: String,
    /// How long one request may take, connection included; longer is a transient failure.
    #[serde(default = "defaults::http_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Headers added to every request, such as an API key. Never logged.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, SecretString>,
    /// Signs each request per Standard Webhooks (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`) with this key, written `whsec_<base64>`.
    #[serde(default)]
    pub signing_secret: Option<SecretString>,
    /// A jq expression whose one output is the body sent instead of the event, such as a
    /// Slack message. Signed like the event would be.
    #[serde(default)]
    pub transform: Option<String>,
    /// `POST` (the default), `PUT` or `PATCH`.
    #[serde(default)]
    pub method: HttpMethod,
    /// The body's `Content-Type`.
    #[serde(default = "defaults::content_type")]
    pub content_type: String,
    /// With tracing on, send the attempt's `traceparent` (and `tracestate`), so that the
    /// downstream's own spans join the event's trace.
    #[serde(default = "defaults::propagate_trace")]
    pub propagate_trace: bool,
}

/// `url` as [`HttpActionSettings::destination`] shows it.
pub fn shown_url(url: &reqwest::Url) -> String {
    let origin = url.origin().ascii_serialization();
    let more = (url.path() != "/" || url.query().is_some()).then_some("/...");
    format!("{origin}{}", more.unwrap_or("/"))
}

/// The methods the `http` action may send a body with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Post,
    Put,
    Patch,
}

impl HttpActionSettings {
    /// The URL as errors, logs, dead letters and the console name it: scheme, host and port,
    /// and `/...` for any path or query. A webhook's path is often its secret (Slack's,
    /// Teams'), as user info is.
    pub fn destination(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(url) => shown_url(&url),
            Err(_) => "(an invalid URL)".to_owned(),
        }
    }

    /// The signing key's bytes: the base64 after `whsec_`.
    pub fn signing_key(&self) -> Option<Result<Vec<u8>, String>> {
        use base64::Engine as _;
        self.signing_secret.as_ref().map(|secret| {
            let encoded = secret
                .expose_secret()
                .strip_prefix("whsec_")
                .ok_or("must start with `whsec_`")?;
            let key = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| "must be `whsec_` followed by base64")?;
            if key.len() < 16 {
                return Err("must hold at least 16 bytes of key".to_string());
            }
            Ok(key)
        })
    }

    fn validate(&self, key: impl Fn(&str) -> String) -> Result<(), ConfigError> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                key("url"),
                "must start with http:// or https://",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                key("timeout"),
                "must be more than zero",
            ));
        }
        for (name, value) in &self.headers {
            let valid_name = axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            let valid_value = axum::http::HeaderValue::from_str(value.expose_secret()).is_ok();
            if !valid_name || !valid_value {
                return Err(ConfigError::invalid(
                    key(&format!("headers.{name}")),
                    "is not a valid HTTP header",
                ));
            }
        }
        if let Some(Err(reason)) = self.signing_key() {
            return Err(ConfigError::invalid(key("signing_secret"), reason));
        }
        if axum::http::HeaderValue::from_str(&self.content_type).is_err() {
            return Err(ConfigError::invalid(
                key("content_type"),
                "is not a valid HTTP header value",
            ));
        }
        if let Some(Err(reason)) = self.transform.as_deref().map(crate::jq::Jq::compile) {
            return Err(ConfigError::invalid(key("transform"), reason));
        }
        Ok(())
    }
}

impl WorkerSettings {
    /// Each subscriber checks itself; names and consumer names must be unique across them.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        let mut durables = std::collections::HashSet::new();
        for (index, subscriber) in self.subscribers.iter().enumerate() {
            let key = |field: &str| format!("worker.subscribers[{index}].{field}");
            // Named too: `subscribers[3]` alone sends the reader counting.
            subscriber.validate(key).map_err(|e| match e {
                ConfigError::Invalid { key, reason } => ConfigError::Invalid {
                    key,
                    reason: format!("subscriber {:?}: {reason}", subscriber.name),
                },
                other => other,
            })?;
            if !names.insert(subscriber.name.as_str()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("`{}` is used by two subscribers", subscriber.name),
                ));
            }
            for event_type in &subscriber.event_types {
                let durable = subject::durable_name(&subscriber.name, event_type);
                if !durables.insert(durable.clone()) {
                    return Err(ConfigError::invalid(
                        key("event_types"),
                        format!(
                            "`{event_type}` gives the consumer name `{durable}`, which another subscription has"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl SubscriberSettings {
    /// Checks one subscriber; `key` names its fields in errors.
    fn validate(&self, key: impl Fn(&str) -> String) -> Result<(), ConfigError> {
        if !subject::is_valid_name(&self.name) {
            return Err(ConfigError::invalid(
                key("name"),
                "must be letters, digits, `-` or `_`",
            ));
        }
        if self.name == subject::RECEIVER_DLQ_TOKEN {
            return Err(ConfigError::invalid(
                key("name"),
                "`receiver` is reserved for the receiver's dead letters",
            ));
        }
        if self.event_types.is_empty() {
            return Err(ConfigError::invalid(
                key("event_types"),
                "must name at least one event type",
            ));
        }
        if let Some(event_type) =
            (self.event_types.iter()).find(|t| !subject::is_valid_event_type(t))
        {
            return Err(ConfigError::invalid(
                key("event_types"),
                format!("`{event_type}` is not an Okta event type such as `user.lifecycle.create`"),
            ));
        }
        if self.max_deliver == 0 {
            return Err(ConfigError::invalid(
                key("max_deliver"),
                "must be at least 1",
            ));
        }
        if self.concurrency == 0 {
            return Err(ConfigError::invalid(
                key("concurrency"),
                "must be at least 1",
            ));
        }
        if self.read_ahead == 0 {
            return Err(ConfigError::invalid(
                key("read_ahead"),
                "must be at least 1",
            ));
        }
        if self.ack_wait < Duration::from_secs(1) {
            return Err(ConfigError::invalid(key("ack_wait"), "must be at least 1s"));
        }
        if let Some(Err(reason)) = self.rate() {
            return Err(ConfigError::invalid(key("rate_limit"), reason));
        }
        if let Some(Err(reason)) = self.filter.as_deref().map(crate::jq::Jq::compile) {
            return Err(ConfigError::invalid(key("filter"), reason));
        }
        if let ActionSettings::Http(http) = &self.action {
            http.validate(|field| key(&format!("action.{field}")))?;
        }
        Ok(())
    }
}
