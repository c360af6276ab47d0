//! Dead letters: what a subscriber (or the receiver) gave up on, read from the dead-letter
//! stream; replayed to their subscriber once its downstream is fixed, or discarded. The one
//! implementation `hookrelayctl dead-letters` and the console share.
//!
//! A replay publishes the dead letter's event on `okta.replay.<subscriber>.<eventType>`, in the
//! events stream, where only that subscriber's replay consumer reads it (other subscribers of
//! the event type do not see it again). The dead letter is deleted only after JetStream has
//! acknowledged the replay; the replay is deduplicated on the dead letter's sequence, so a
//! replay interrupted between the two steps and run again stores the event once. A stored
//! event that was never dead-lettered is replayed to one subscriber the same way
//! ([`replay_event`]).

use std::collections::HashSet;
use std::time::SystemTime;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::stream::{DeleteMessageErrorKind, Stream};
use async_nats::jetstream::{self, consumer, message::PublishMessage};
use serde::Serialize;
use tracing::Instrument as _;

use crate::Settings;
use crate::broker::{is_consumer_not_found, open_stream};
use crate::subject::{self, header};

/// One dead letter, as lists show it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream.
    pub sequence: u64,
    /// The subscriber that gave up, or `receiver`.
    pub subscriber: String,
    pub event_type: Option<String>,
    pub uuid: Option<String>,
    pub reason: String,
    /// How many times the subscriber was handed the event.
    pub deliveries: Option<u64>,
    /// When it was dead-lettered (stored in the dead-letter stream).
    #[serde(serialize_with = "crate::broker::serialize_rfc3339")]
    pub stored: SystemTime,
}

impl DeadLetter {
    /// The dead letter stored at `sequence` on `subject` with these headers.
    pub fn read(
        sequence: u64,
        subject: &str,
        headers: Option<&HeaderMap>,
        stored: SystemTime,
    ) -> Self {
        let value = |name| header::value(headers, name);
        let subscriber = subject
            .strip_prefix(subject::DLQ_PREFIX)
            .and_then(|rest| rest.strip_prefix('.'))
            .or(value(header::DEAD_LETTERED_BY))
            .unwrap_or("?")
            .to_owned();
        DeadLetter {
            sequence,
            subscriber,
            event_type: value(header::ORIGINAL_SUBJECT)
                .and_then(subject::event_type_of)
                .map(str::to_owned),
            uuid: value(header::EVENT_UUID).map(str::to_owned),
            reason: value(header::ERROR).unwrap_or("").to_owned(),
            deliveries: value(header::DELIVERY_COUNT).and_then(|n| n.parse().ok()),
            stored,
        }
    }
}

/// Which dead letters a command applies to: every given criterion must match (several values
/// of one criterion: any of them).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub subscribers: Vec<String>,
    pub event_types: Vec<String>,
    pub uuids: Vec<String>,
    /// Words the reason contains, in any case.
    pub reason: Option<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
            && self.event_types.is_empty()
            && self.uuids.is_empty()
            && self.reason.is_none()
    }

    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let any = |wanted: &[String], value: Option<&str>| {
            wanted.is_empty() || value.is_some_and(|v| wanted.iter().any(|w| w == v))
        };
        any(&self.subscribers, Some(&letter.subscriber))
            && any(&self.event_types, letter.event_type.as_deref())
            && any(&self.uuids, letter.uuid.as_deref())
            && self.reason.as_deref().is_none_or(|words| {
                letter
                    .reason
                    .to_lowercase()
                    .contains(&words.trim().to_lowercase())
            })
    }
}

/// The dead letters that match `filter`, oldest first.
pub async fn list(stream: &Stream, filter: &Filter) -> anyhow::Result<Vec<DeadLetter>> {
    let mut letters = Vec::new();
    let subject = match filter.subscribers.as_slice() {
        [one] => subject::dlq_subject(one),
        _ => format!("{}.>", subject::DLQ_PREFIX),
    };
    crate::broker::read_stream(stream, subject, consumer::DeliverPolicy::All, |message| {
        let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let letter = DeadLetter::read(
            info.stream_sequence,
            &message.subject,
            message.headers.as_ref(),
            info.published.into(),
        );
        if filter.matches(&letter) {
            letters.push(letter);
        }
        Ok(())
    })
    .await?;
    Ok(letters)
}

/// What a replay or a discard did.
#[derive(Debug, Default, Serialize)]
pub struct Replayed {
    pub replayed: usize,
    /// Each dead letter left in place, and why.
    pub skipped: Vec<(u64, String)>,
}

/// Replays `letters` to their subscribers, in order, calling `progress(done, of)` after each;
/// deletes each one only once its replay is stored. The receiver's dead letters (unroutable or
/// truncated events) and those of subscribers that are not configured are left in place, with
/// the reason. With `dry_run`, says what it would do and changes nothing.
pub async fn replay(
    js: &jetstream::Context,
    settings: &Settings,
    letters: &[DeadLetter],
    dry_run: bool,
    mut progress: impl FnMut(usize, usize),
) -> anyhow::Result<Replayed> {
    let dlq = open_stream(js, &settings.nats.dlq_stream).await?;
    let mut events = open_stream(js, &settings.nats.stream).await?;
    let takes_replays = format!("{}.>", subject::REPLAY_PREFIX);
    if !events
        .info()
        .await?
        .config
        .subjects
        .contains(&takes_replays)
    {
        anyhow::bail!(
            "stream {} does not take replays ({takes_replays}) yet: start this version's worker \
             or receiver once, which updates it",
            settings.nats.stream
        );
    }
    let bound = replay_consumers(&events, settings).await?;
    let mut outcome = Replayed::default();
    for letter in letters {
        if let Some(why) = why_not_replayed(letter, settings, &bound) {
            outcome.skipped.push((letter.sequence, why));
            continue;
        }
        if !dry_run {
            replay_one(js, &dlq, letter).await?;
        }
        outcome.replayed += 1;
        progress(outcome.replayed, letters.len());
    }
    Ok(outcome)
}

/// The configured subscribers whose replay consumer exists: a replay to one without would wait
/// in the events stream for a worker, and could expire there.
async fn replay_consumers(events: &Stream, settings: &Settings) -> anyhow::Result<HashSet<String>> {
    let mut bound = HashSet::new();
    for sub in &settings.worker.subscribers {
        let durable = subject::replay_durable_name(&sub.name);
        match events.consumer_info(&durable).await {
            Ok(_) => {
                bound.insert(sub.name.clone());
            }
            Err(e) if is_consumer_not_found(&e) => {}
            // Not "unbound": a broker that did not answer, or a user that may not ask.
            Err(e) => anyhow::bail!("cannot look up consumer {durable}: {e}"),
        }
    }
    Ok(bound)
}

fn why_not_replayed(
    letter: &DeadLetter,
    settings: &Settings,
    bound: &HashSet<String>,
) -> Option<String> {
    let configured = (settings.worker.subscribers.iter()).any(|s| s.name == letter.subscriber);
    if letter.subscriber == subject::RECEIVER_DLQ_TOKEN {
        Some(format!(
            "the receiver's dead letters are not routable events ({})",
            letter.reason
        ))
    } else if !configured {
        Some(format!(
            "no subscriber {:?} in the configuration",
            letter.subscriber
        ))
    } else if letter.event_type.is_none() {
        Some("it does not say which event type it was".to_owned())
    } else if !bound.contains(&letter.subscriber) {
        Some(format!(
            "no worker has run subscriber {:?} with this version yet (no consumer {})",
            letter.subscriber,
            subject::replay_durable_name(&letter.subscriber)
        ))
    } else {
        None
    }
}

/// The headers a replay carries over from what it replays: the trace's too, so that the
/// replay's attempts are in the event's trace.
const CARRIED: [&str; 5] = [
    header::EVENT_UUID,
    header::DELIVERY_ID,
    header::OKTA_REQUEST_ID,
    header::TRACEPARENT,
    header::TRACESTATE,
];

async fn replay_one(
    js: &jetstream::Context,
    dlq: &Stream,
    letter: &DeadLetter,
) -> anyhow::Result<()> {
    let sequence = letter.sequence;
    let event_type = letter.event_type.as_deref().unwrap_or_default();
    let stored = dlq
        .get_raw_message(sequence)
        .await
        .with_context(|| format!("reading dead letter {sequence}"))?;
    let mut headers = HeaderMap::new();
    for name in CARRIED {
        if let Some(value) = stored.headers.get(name) {
            headers.insert(name, value.as_str());
        }
    }
    let message_id = format!("replay:{}:{sequence}", letter.subscriber);
    let replay = subject::replay_subject(&letter.subscriber, event_type);
    publish_replay(js, replay, message_id, headers, &stored)
        .await
        .with_context(|| format!("replaying dead letter {sequence}"))?;
    dlq.delete_message(sequence)
        .await
        .with_context(|| format!("dead letter {sequence} replayed but not deleted"))?;
    Ok(())
}

/// Sends the stored event at `sequence` of the events stream again to `subscriber` only (an
/// event it handled, which its downstream needs again). `request_id` deduplicates: the same
/// request made twice (a form sent twice) replays once. Returns the replay's sequence.
pub async fn replay_event(
    js: &jetstream::Context,
    settings: &Settings,
    sequence: u64,
    subscriber: &str,
    request_id: &str,
) -> anyhow::Result<u64> {
    let events = open_stream(js, &settings.nats.stream).await?;
    let bound = replay_consumers(&events, settings).await?;
    if !bound.contains(subscriber) {
        anyhow::bail!(
            "no worker has run subscriber {subscriber:?} with this version yet (no consumer {})",
            subject::replay_durable_name(subscriber)
        );
    }
    let stored = (events.get_raw_message(sequence).await)
        .with_context(|| format!("reading event {sequence}"))?;
    let event_type = subject::event_type_of(&stored.subject)
        .with_context(|| format!("message {sequence} is not an event"))?;
    let uuid = match stored.headers.get(header::EVENT_UUID) {
        Some(uuid) => uuid.as_str().to_owned(),
        None => (stored.headers.get("Nats-Msg-Id"))
            .map(|id| id.as_str().to_owned())
            .with_context(|| format!("event {sequence} has no uuid"))?,
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::EVENT_UUID, uuid.as_str());
    for name in &CARRIED[1..] {
        if let Some(value) = stored.headers.get(*name) {
            headers.insert(*name, value.as_str());
        }
    }
    let message_id = format!("replay:{subscriber}:{sequence}:{request_id}");
    let replay = subject::replay_subject(subscriber, event_type);
    let ack = publish_replay(js, replay, message_id, headers, &stored)
        .await
        .with_context(|| format!("replaying event {sequence} to {subscriber}"))?;
    Ok(ack.sequence)
}

/// Publishes `stored`'s payload again on `subject` with `headers`, and waits for JetStream's
/// acknowledgement. With tracing on, the replay is a PRODUCER span in the event's trace (its
/// stored `traceparent`), linked to what asked for it, and the worker's attempts follow it.
async fn publish_replay(
    js: &jetstream::Context,
    subject: String,
    message_id: String,
    mut headers: HeaderMap,
    stored: &jetstream::message::StreamMessage,
) -> anyhow::Result<jetstream::publish::PublishAck> {
    let uuid = header::value(Some(&headers), header::EVENT_UUID).unwrap_or_default();
    let span = crate::telemetry::send_span(&subject, uuid);
    crate::telemetry::continue_trace(&span, &stored.headers);
    crate::telemetry::inject_nats(&span, &mut headers);
    let message = PublishMessage::build()
        .headers(headers)
        .message_id(message_id)
        .payload(stored.payload.clone());
    let published = async {
        js.send_publish(subject, message)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let ack = published.instrument(span.clone()).await;
    if let Err(e) = &ack {
        span.record("error.type", tracing::field::display(e));
        span.record("otel.status_code", "ERROR");
    }
    ack
}

/// Deletes `letters` from the dead-letter stream for good; returns how many were deleted
/// (one already gone is not counted).
pub async fn discard(dlq: &Stream, letters: &[DeadLetter]) -> anyhow::Result<usize> {
    let mut discarded = 0;
    for letter in letters {
        match dlq.delete_message(letter.sequence).await {
            Ok(_) => discarded += 1,
            Err(e) if matches!(e.kind(), DeleteMessageErrorKind::JetStream(_)) => {
                // Already deleted (replayed or discarded by someone else meanwhile).
                tracing::debug!(sequence = letter.sequence, error = %e, "dead letter not deleted");
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "discarding dead letter {}: {e}",
                    letter.sequence
                ));
            }
        }
    }
    Ok(discarded)
}
