//! What each attempt at an event did, for one subscriber: when it started, how long it took,
//! its outcome, the downstream's HTTP status and the first bytes of its answer, the error, and
//! when the next one may start.
//!
//! The worker records them in a key-value bucket beside the events stream (`<stream>_attempts`),
//! one key per subscriber and event, each attempt a revision of it: the console's attempt
//! timeline and `hookrelayctl events show` read them. Records outlive the event's settlement,
//! bounded by `nats.attempts_retention`, by `nats.attempts_max_records` (the oldest go first)
//! and by `nats.attempts_per_event` (the last ones of an event are kept). A subscriber with
//! `attempt_records = "failures"` records only what failed, and the attempt that succeeded after
//! a failure. A record is sent without waiting for the broker's acknowledgement: it never holds
//! an event, and one lost with a broker outage is a gap in a timeline, never a lost event.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv, stream};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::config::NatsSettings;

/// How much of a downstream's answer a record keeps: enough to read an error body's message.
pub const MAX_RESPONSE: usize = 256;

/// The bucket of the events stream `stream`.
pub fn bucket(stream: &str) -> String {
    format!("{stream}_attempts")
}

/// The entry of `uuid` for `subscriber`, if the uuid can be part of a key (Okta's always can).
pub fn key(subscriber: &str, uuid: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_=".contains(c);
    uuid.chars()
        .all(allowed)
        .then(|| format!("{subscriber}.{uuid}"))
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action succeeded; the event is acknowledged.
    Ok,
    /// It failed and the event is tried again at `next_at`.
    Retry,
    /// It failed for good; the event is in the dead letters.
    DeadLettered,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Retry => "retry",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// One attempt at one event by one subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Which attempt: JetStream's delivery count of the event to the subscriber.
    pub attempt: u64,
    /// When it started, RFC 3339 with milliseconds.
    pub started_at: String,
    /// How long the action took, in milliseconds.
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// The downstream's HTTP status, for an action that made a request and got an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The first [`MAX_RESPONSE`] bytes of the downstream's answer, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// Why it failed, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the next attempt may start (after a `retry`), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<String>,
    /// The sequence of the replayed copy this attempt was at, when it was at a replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<u64>,
    /// The trace the attempt's span is in (with tracing on): the event's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl Attempt {
    /// An attempt that started at `started` and took `took`.
    pub fn new(attempt: u64, started: SystemTime, took: Duration, outcome: Outcome) -> Self {
        Attempt {
            attempt,
            started_at: humantime::format_rfc3339_millis(started).to_string(),
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            outcome,
            status: None,
            response: None,
            error: None,
            next_at: None,
            replay: None,
            trace_id: None,
        }
    }

    /// With the reason it failed, as one bounded line.
    pub fn failed(mut self, error: &str) -> Self {
        self.error = Some(crate::subject::header_safe(error, 300));
        self
    }

    /// With the time the next attempt may start: `retry_in` after it ended.
    pub fn retry_in(mut self, retry_in: Duration) -> Self {
        let ended = self.started() + Duration::from_millis(self.duration_ms);
        self.next_at = Some(humantime::format_rfc3339_seconds(ended + retry_in).to_string());
        self
    }

    /// With what the downstream answered: its status and the start of its body.
    pub fn answered(mut self, status: u16, body: &[u8]) -> Self {
        self.status = Some(status);
        let body = &body[..body.len().min(MAX_RESPONSE)];
        let text = String::from_utf8_lossy(body);
        // A multi-byte character cut at the limit is a replacement character: drop it.
        let text = text.trim_end_matches('\u{FFFD}').trim();
        self.response = (!text.is_empty()).then(|| text.to_owned());
        self
    }

    /// When it started.
    pub fn started(&self) -> SystemTime {
        humantime::parse_rfc3339_weak(&self.started_at).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// The configuration of the bucket's stream: one subject per subscriber and event, the last
/// `attempts_per_event` revisions of each kept, the oldest records dropped first once there
/// are `attempts_max_records`.
pub fn stream_config(settings: &NatsSettings) -> stream::Config {
    let name = bucket(&settings.stream);
    stream::Config {
        name: format!("KV_{name}"),
        description: Some("hookrelay worker: every attempt at an event, per subscriber".into()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: i64::from(settings.attempts_per_event),
        max_messages: i64::try_from(settings.attempts_max_records).unwrap_or(i64::MAX),
        max_age: settings.attempts_retention,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        // Full: the oldest records make room (a bucket's default would refuse new ones).
        discard: stream::DiscardPolicy::Old,
        num_replicas: settings.replicas.max(1),
        ..Default::default()
    }
}

/// Opens the bucket of `settings`' events stream, creating it or bringing it to the configured
/// bounds.
pub async fn open(js: &jetstream::Context, settings: &NatsSettings) -> anyhow::Result<kv::Store> {
    crate::broker::ensure_bucket(js, stream_config(settings)).await
}

/// Opens the bucket if it exists (no worker has recorded anything before one started).
pub async fn existing(js: &jetstream::Context, settings: &NatsSettings) -> Option<kv::Store> {
    js.get_key_value(bucket(&settings.stream)).await.ok()
}

/// Sends each attempt's record into the bucket without waiting for the broker.
#[derive(Clone)]
pub struct Recorder {
    client: async_nats::Client,
    /// `$KV.<bucket>.`
    prefix: String,
}

impl Recorder {
    pub fn new(client: async_nats::Client, settings: &NatsSettings) -> Self {
        Recorder {
            client,
            prefix: format!("$KV.{}.", bucket(&settings.stream)),
        }
    }

    /// Records `attempt` of `uuid` by `subscriber`. Only a debug line if it cannot be sent.
    pub async fn record(&self, subscriber: &str, uuid: &str, attempt: &Attempt) {
        let Some(key) = key(subscriber, uuid) else {
            return;
        };
        let value = serde_json::to_vec(attempt).expect("a record serialises");
        let subject = format!("{}{key}", self.prefix);
        if let Err(e) = self.client.publish(subject, value.into()).await {
            tracing::debug!(error = %e, "the attempt was not recorded");
        }
    }
}

/// The last recorded attempt of `uuid` by `subscriber`, if any.
pub async fn last(store: &kv::Store, subscriber: &str, uuid: &str) -> Option<Attempt> {
    let entry = store.entry(key(subscriber, uuid)?).await.ok()??;
    (entry.operation == kv::Operation::Put)
        .then(|| serde_json::from_slice(&entry.value).ok())
        .flatten()
}

/// Every attempt of `uuid` by `subscriber` still kept, oldest first. Records of an older
/// format are left out.
pub async fn history(
    store: &kv::Store,
    subscriber: &str,
    uuid: &str,
) -> anyhow::Result<Vec<Attempt>> {
    let Some(key) = key(subscriber, uuid) else {
        return Ok(Vec::new());
    };
    let mut entries = (store.history(&key).await)
        .map_err(|e| anyhow::anyhow!("reading the attempts of {key}: {e}"))?;
    let mut attempts = Vec::new();
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(|e| anyhow::anyhow!("reading the attempts of {key}: {e}"))?;
        if entry.operation == kv::Operation::Put
            && let Ok(attempt) = serde_json::from_slice(&entry.value)
        {
            attempts.push(attempt);
        }
    }
    Ok(attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_only_what_a_key_may() {
        assert_eq!(
            key("crm", "4ad3d9e2-0c7b-11ee-8a9b-9b0e0b3c1f5a").as_deref(),
            Some("crm.4ad3d9e2-0c7b-11ee-8a9b-9b0e0b3c1f5a")
        );
        assert_eq!(key("crm", "a.b"), None, "a dot would be a second token");
        assert_eq!(key("crm", "a*"), None);
        assert_eq!(bucket("OKTA_EVENTS"), "OKTA_EVENTS_attempts");
    }

    #[test]
    fn a_record_keeps_the_start_of_the_answer_and_when_to_try_again() {
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let body = "é".repeat(MAX_RESPONSE); // two bytes each: cut inside a character
        let attempt = Attempt::new(2, started, Duration::from_millis(1500), Outcome::Retry)
            .answered(503, body.as_bytes())
            .failed("http://crm/... answered 503\r\nand more")
            .retry_in(Duration::from_secs(30));
        let response = attempt.response.as_deref().expect("kept");
        assert_eq!(response.len(), MAX_RESPONSE, "whole characters only");
        assert!(!response.contains('\u{FFFD}'));
        assert_eq!(
            attempt.error.as_deref(),
            Some("http://crm/... answered 503  and more")
        );
        assert_eq!(attempt.started_at, "2027-01-15T08:00:00.000Z");
        assert_eq!(
            attempt.next_at.as_deref(),
            Some("2027-01-15T08:00:31Z"),
            "30 s after it ended"
        );
        assert_eq!(attempt.started(), started);
        let json = serde_json::to_string(&attempt).expect("serialises");
        assert_eq!(
            serde_json::from_str::<Attempt>(&json).expect("reads"),
            attempt
        );
        let ok = Attempt::new(1, started, Duration::ZERO, Outcome::Ok).answered(204, b"  ");
        assert_eq!((ok.status, ok.response), (Some(204), None));
    }
}
