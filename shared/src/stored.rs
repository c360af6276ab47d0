//! What is stored, and where it stands: every stored copy of an event (its first storing and
//! its replays), its fate for each subscriber of its type (done, filtered, waiting, not handed
//! out yet, dead-lettered), and the stored events that match a search. `hookrelayctl events`
//! and the console both read events through this module.
//!
//! A fate is read from JetStream's consumer state (the ack floor and what was handed out), the
//! dead letters, the subscriber's filter run on the stored event, and the worker's attempt
//! records ([`crate::attempts`]).

use std::time::SystemTime;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::{consumer, kv, stream::Stream};
use serde::Serialize;

use crate::Settings;
use crate::attempts::{self, Attempt};
use crate::broker::serialize_rfc3339;
use crate::config::SubscriberSettings;
use crate::count;
use crate::dead_letters::DeadLetter;
use crate::subject::{self, header};

/// A stored message that is the event: its first storing (`okta.events.…`), or a replay of it
/// to one subscriber (`okta.replay.<subscriber>.…`).
#[derive(Debug, Clone)]
pub struct StoredCopy {
    pub sequence: u64,
    pub subject: String,
    pub stored: SystemTime,
    pub headers: HeaderMap,
}

impl StoredCopy {
    /// Whether this is the event's first storing rather than a replay.
    pub fn is_first(&self) -> bool {
        self.subject.starts_with(subject::EVENTS_PREFIX)
    }

    /// The subscriber a replay is for.
    pub fn replayed_to(&self) -> Option<&str> {
        let rest = self.subject.strip_prefix(subject::REPLAY_PREFIX)?;
        rest.strip_prefix('.')?.split('.').next()
    }
}

/// What became of the event for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Fate {
    /// Acknowledged: its action succeeded.
    Done,
    /// Acknowledged without running: the subscriber's filter leaves it out.
    Filtered,
    /// Given up on: in the dead letters.
    DeadLettered {
        reason: String,
        deliveries: Option<u64>,
        dead_letter: u64,
    },
    /// Handed to a worker and not acknowledged yet: running, or failed and waiting for its
    /// retry (with what failed, when the worker recorded it).
    Waiting {
        #[serde(skip_serializing_if = "Option::is_none")]
        failed: Option<Attempt>,
    },
    /// Not handed to a worker yet: events before it are being worked on, or the subscriber is
    /// paused.
    NotYet,
    /// The subscriber's consumer does not exist: no worker with it has started.
    NoConsumer,
}

impl Fate {
    /// One word for it: `done`, `filtered`, `dead`, `waiting`.
    pub fn status(&self) -> Status {
        match self {
            Fate::Done => Status::Delivered,
            Fate::Filtered => Status::Filtered,
            Fate::DeadLettered { .. } => Status::Dead,
            Fate::Waiting { .. } | Fate::NotYet | Fate::NoConsumer => Status::Waiting,
        }
    }
}

/// An event's status, as pages filter on it: `dead` or `waiting` when any of its subscribers
/// is, `delivered` when all are done or filtered; `filtered` when a subscriber's filter left it
/// out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Delivered,
    Waiting,
    Dead,
    Filtered,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Delivered,
        Status::Waiting,
        Status::Dead,
        Status::Filtered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Delivered => "delivered",
            Status::Waiting => "waiting",
            Status::Dead => "dead",
            Status::Filtered => "filtered",
        }
    }

    /// The event's status from its subscribers' (a filtered one counts as delivered; an event
    /// no subscriber takes is delivered to all of none).
    pub fn of(statuses: impl IntoIterator<Item = Status>) -> Status {
        let mut status = Status::Delivered;
        for s in statuses {
            status = match (status, s) {
                (Status::Dead, _) | (_, Status::Dead) => Status::Dead,
                (Status::Waiting, _) | (_, Status::Waiting) => Status::Waiting,
                _ => Status::Delivered,
            };
        }
        status
    }
}

impl std::fmt::Display for Fate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fate::Done => f.write_str("done: its action succeeded"),
            Fate::Filtered => f.write_str("filtered: its filter leaves the event out"),
            Fate::DeadLettered {
                reason,
                deliveries,
                dead_letter,
            } => {
                write!(f, "dead-lettered")?;
                if let Some(n) = deliveries {
                    write!(f, " after {}", count(*n, "delivery", "deliveries"))?;
                }
                write!(f, ": {reason} (dead letter {dead_letter})")
            }
            Fate::Waiting { failed: None } => f.write_str(
                "waiting: handed to a worker and not acknowledged yet, no failed attempt \
                 recorded (its first attempt is running)",
            ),
            Fate::Waiting {
                failed: Some(failed),
            } => write!(
                f,
                "waiting: {} so far, the last failed at {}: {}; next attempt from {}",
                count(failed.attempt, "attempt", "attempts"),
                failed.started_at,
                failed.error.as_deref().unwrap_or("?"),
                failed.next_at.as_deref().unwrap_or("?")
            ),
            Fate::NotYet => f.write_str(
                "not handed out yet: events stored before it come first, or the subscriber is \
                 paused",
            ),
            Fate::NoConsumer => f.write_str(
                "no consumer: no worker with this subscriber has started since it was configured",
            ),
        }
    }
}

/// One subscriber's fate of the event.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberFate {
    pub subscriber: String,
    #[serde(flatten)]
    pub fate: Fate,
    /// The sequence of the replay this fate is of, when the event was replayed to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<u64>,
}

/// Where an event is.
#[derive(Debug, Clone, Serialize)]
pub struct Whereabouts {
    pub uuid: String,
    pub event_type: String,
    pub sequence: u64,
    pub subject: String,
    #[serde(serialize_with = "serialize_rfc3339")]
    pub stored: SystemTime,
    /// `hook`, `system-log` (the reconciler), `backfill` or `simulate`.
    pub source: String,
    pub delivery_id: Option<String>,
    pub okta_request_id: Option<String>,
    /// The event's trace (its `traceparent`), when it was stored with tracing on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub subscribers: Vec<SubscriberFate>,
}

impl Whereabouts {
    /// The event's status across its subscribers.
    pub fn status(&self) -> Status {
        Status::of(self.subscribers.iter().map(|s| s.fate.status()))
    }
}

/// Every stored copy of `uuid` (its first storing and its replays), scanning `stream` from
/// `since`, with `progress(scanned, total)` after each message; and how many were scanned.
pub async fn scan_for_copies(
    stream: &Stream,
    uuid: &str,
    since: Option<SystemTime>,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<(Vec<StoredCopy>, u64)> {
    let total = stream.cached_info().state.messages;
    let deliver = match since {
        Some(start) => consumer::DeliverPolicy::ByStartTime {
            start_time: start.into(),
        },
        None => consumer::DeliverPolicy::All,
    };
    let mut scanned = 0u64;
    let mut found = Vec::new();
    crate::broker::read_stream(stream, String::new(), deliver, |message| {
        scanned += 1;
        progress(scanned, total);
        let headers = message.headers.as_ref();
        let first = message.subject.starts_with(subject::EVENTS_PREFIX)
            && header::value(headers, "Nats-Msg-Id") == Some(uuid);
        let replay = message.subject.starts_with(subject::REPLAY_PREFIX)
            && header::value(headers, header::EVENT_UUID) == Some(uuid);
        if first || replay {
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            found.push(StoredCopy {
                sequence: info.stream_sequence,
                subject: message.subject.to_string(),
                stored: info.published.into(),
                headers: headers.cloned().unwrap_or_default(),
            });
        }
        Ok(())
    })
    .await?;
    Ok((found, scanned))
}

/// The copy stored at `sequence`, read by its sequence.
pub async fn copy_at(stream: &Stream, sequence: u64) -> anyhow::Result<(StoredCopy, bytes::Bytes)> {
    let message = (stream.get_raw_message(sequence).await)
        .with_context(|| format!("reading stored message {sequence}"))?;
    Ok((
        StoredCopy {
            sequence,
            subject: message.subject.to_string(),
            stored: message.time.into(),
            headers: message.headers,
        },
        message.payload,
    ))
}

/// A consumer's position, as a fate reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Every sequence up to this one is acknowledged.
    pub ack_floor: u64,
    /// The last sequence handed out.
    pub delivered: u64,
}

impl Position {
    pub fn of(info: &consumer::Info) -> Self {
        Position {
            ack_floor: info.ack_floor.stream_sequence,
            delivered: info.delivered.stream_sequence,
        }
    }
}

/// Reads a consumer's position; `None` when it does not exist. The console answers from a
/// short-lived cache; the command line asks JetStream.
pub trait Positions {
    fn position(
        &self,
        durable: &str,
    ) -> impl std::future::Future<Output = anyhow::Result<Option<Position>>> + Send;
}

impl Positions for Stream {
    async fn position(&self, durable: &str) -> anyhow::Result<Option<Position>> {
        match self.consumer_info(durable).await {
            Ok(info) => Ok(Some(Position::of(&info))),
            Err(e) if crate::broker::is_consumer_not_found(&e) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("reading consumer {durable}: {e}")),
        }
    }
}

/// Whether `filter` (a subscriber's jq) keeps `event`; `None` when it fails on it (the event is
/// then dead-lettered, which the dead letters say).
pub fn kept_by(filter: &str, event: &crate::jq::Input) -> Option<bool> {
    crate::jq::Jq::compile(filter).ok()?.selects(event).ok()
}

/// What is known of an event besides its stored copies: the dead letters of its uuid, the
/// stored event as jq reads it (for filters), and the attempt records.
pub struct Evidence<'a> {
    pub letters: &'a [DeadLetter],
    pub event: Option<&'a crate::jq::Input>,
    pub attempts: Option<&'a kv::Store>,
}

/// The fate of the event whose `copies` these are for `sub`.
pub async fn fate(
    positions: &impl Positions,
    sub: &SubscriberSettings,
    uuid: &str,
    event_type: &str,
    copies: &[StoredCopy],
    evidence: &Evidence<'_>,
) -> anyhow::Result<SubscriberFate> {
    let name = sub.name.as_str();
    // The latest replay to this subscriber, if any, is what it works on now.
    let replay = (copies.iter().rev()).find(|c| c.replayed_to() == Some(name));
    let letter = (evidence.letters.iter().rev()).find(|l| l.subscriber == name);
    let fate = match (letter, replay) {
        (Some(letter), _) => Fate::DeadLettered {
            reason: letter.reason.clone(),
            deliveries: letter.deliveries,
            dead_letter: letter.sequence,
        },
        (None, copy) => {
            let (durable, sequence, replay) = match copy.or(copies.iter().find(|c| c.is_first())) {
                Some(c) if !c.is_first() => (
                    subject::replay_durable_name(name),
                    c.sequence,
                    Some(c.sequence),
                ),
                Some(c) => (subject::durable_name(name, event_type), c.sequence, None),
                None => anyhow::bail!("no stored copy of {uuid}"),
            };
            match positions.position(&durable).await? {
                None => Fate::NoConsumer,
                Some(p) if sequence <= p.ack_floor => Fate::Done,
                Some(p) if sequence > p.delivered => Fate::NotYet,
                // Past the ack floor and handed out: running, waiting for a retry, or
                // acknowledged ahead of the floor (JetStream serves no pending list): the
                // worker's last record of this copy tells which.
                Some(_) => match evidence.attempts {
                    Some(store) => match attempts::last(store, name, uuid).await {
                        Some(a) if a.replay != replay => Fate::Waiting { failed: None },
                        Some(a) if a.outcome == attempts::Outcome::Ok => Fate::Done,
                        Some(a) if a.outcome == attempts::Outcome::Retry => {
                            Fate::Waiting { failed: Some(a) }
                        }
                        _ => Fate::Waiting { failed: None },
                    },
                    None => Fate::Waiting { failed: None },
                },
            }
        }
    };
    let fate = match (&fate, &sub.filter, evidence.event) {
        (Fate::Done, Some(filter), Some(event)) if kept_by(filter, event) == Some(false) => {
            Fate::Filtered
        }
        _ => fate,
    };
    Ok(SubscriberFate {
        subscriber: name.to_owned(),
        fate,
        replay: replay.map(|r| r.sequence),
    })
}

/// Where the event whose `copies` these are stands, for every configured subscriber of its
/// type; `None` when none of them is its first storing.
pub async fn whereabouts(
    positions: &impl Positions,
    settings: &Settings,
    uuid: &str,
    copies: &[StoredCopy],
    evidence: &Evidence<'_>,
) -> anyhow::Result<Option<Whereabouts>> {
    let Some(first) = copies.iter().find(|c| c.is_first()) else {
        return Ok(None);
    };
    let event_type = subject::event_type_of(&first.subject)
        .unwrap_or("?")
        .to_owned();
    let mut subscribers = Vec::new();
    for sub in (settings.worker.subscribers.iter()).filter(|s| s.event_types.contains(&event_type))
    {
        subscribers.push(fate(positions, sub, uuid, &event_type, copies, evidence).await?);
    }
    let headers = Some(&first.headers);
    Ok(Some(Whereabouts {
        uuid: uuid.to_owned(),
        event_type,
        sequence: first.sequence,
        subject: first.subject.clone(),
        stored: first.stored,
        source: header::source(headers).to_owned(),
        delivery_id: header::value(headers, header::DELIVERY_ID).map(str::to_owned),
        okta_request_id: header::value(headers, header::OKTA_REQUEST_ID).map(str::to_owned),
        trace_id: header::trace_id(headers).map(str::to_owned),
        subscribers,
    }))
}

/// Which stored events `list` shows.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    pub event_types: Vec<String>,
    /// The actor's alternateId (any case).
    pub actors: Vec<String>,
    /// Any target's alternateId (any case).
    pub targets: Vec<String>,
    /// The actor's or any target's.
    pub users: Vec<String>,
}

/// One stored event, as lists show it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub sequence: u64,
    #[serde(serialize_with = "serialize_rfc3339")]
    pub stored: SystemTime,
    pub event_type: String,
    pub uuid: String,
    pub published: Option<String>,
    pub actor: Option<String>,
    pub targets: Vec<String>,
    pub source: String,
}

/// Who an event is about, as Okta writes it.
#[derive(serde::Deserialize, Default)]
pub struct Who {
    pub id: Option<String>,
    #[serde(rename = "alternateId")]
    pub alternate_id: Option<String>,
    #[serde(rename = "displayName")]
    pub display_name: Option<String>,
}

/// The parts of an event a list shows.
#[derive(serde::Deserialize, Default)]
pub struct Summary {
    pub published: Option<String>,
    #[serde(default, rename = "displayMessage")]
    pub display_message: Option<String>,
    #[serde(default)]
    pub actor: Option<Who>,
    #[serde(default)]
    pub target: Option<Vec<Who>>,
}

impl Summary {
    /// The summary of an event's JSON; an empty one when it is not an event.
    pub fn of(payload: &[u8]) -> Self {
        serde_json::from_slice(payload).unwrap_or_default()
    }

    /// Whether `who` (a user's alternateId or id, any case) is its actor or one of its targets.
    pub fn involves(&self, who: &str) -> bool {
        let is = |w: &Who| {
            [&w.alternate_id, &w.id]
                .into_iter()
                .flatten()
                .any(|v| v.eq_ignore_ascii_case(who))
        };
        self.actor.as_ref().is_some_and(is) || self.target.iter().flatten().any(is)
    }
}

impl Listed {
    /// The listing of the event stored at `sequence` with these parts.
    pub fn read(
        sequence: u64,
        stored: SystemTime,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Self {
        let summary = Summary::of(payload);
        Listed {
            sequence,
            stored,
            event_type: subject::event_type_of(subject).unwrap_or("?").to_owned(),
            uuid: header::value(headers, "Nats-Msg-Id")
                .unwrap_or("?")
                .to_owned(),
            published: summary.published,
            actor: summary.actor.and_then(|a| a.alternate_id),
            targets: (summary.target.into_iter().flatten())
                .filter_map(|t| t.alternate_id)
                .collect(),
            source: header::source(headers).to_owned(),
        }
    }
}

impl Search {
    fn matches(&self, listed: &Listed) -> bool {
        fn any_of<'a>(wanted: &[String], mut values: impl Iterator<Item = &'a String>) -> bool {
            wanted.is_empty() || values.any(|v| wanted.iter().any(|w| w.eq_ignore_ascii_case(v)))
        }
        any_of(&self.event_types, std::iter::once(&listed.event_type))
            && any_of(&self.actors, listed.actor.iter())
            && any_of(&self.targets, listed.targets.iter())
            && any_of(&self.users, listed.actor.iter().chain(&listed.targets))
    }
}

/// How far a `list` has read: for its progress lines.
pub struct Reading {
    pub read: u64,
    /// Events left to read.
    pub left: u64,
    /// The storing time of the event read last.
    pub at: SystemTime,
    pub matched: usize,
}

/// The stored events that match `search`, oldest first, calling `progress` after each; and how
/// many were read.
pub async fn list(
    stream: &Stream,
    search: &Search,
    mut progress: impl FnMut(&Reading),
) -> anyhow::Result<(Vec<Listed>, u64)> {
    let filter_subject = match search.event_types.as_slice() {
        [one] => subject::event_subject(one),
        _ => format!("{}.>", subject::EVENTS_PREFIX),
    };
    let deliver_policy = match search.since {
        Some(start) => consumer::DeliverPolicy::ByStartTime {
            start_time: start.into(),
        },
        None => consumer::DeliverPolicy::All,
    };
    let config = consumer::pull::OrderedConfig {
        filter_subject,
        deliver_policy,
        ..Default::default()
    };
    let mut found = Vec::new();
    let mut scanned = 0u64;
    crate::broker::read_stream_until(stream, config, |message| {
        let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let stored: SystemTime = info.published.into();
        if search.until.is_some_and(|until| stored > until) {
            return Ok(false);
        }
        scanned += 1;
        let listed = Listed::read(
            info.stream_sequence,
            stored,
            &message.subject,
            message.headers.as_ref(),
            &message.payload,
        );
        if search.matches(&listed) {
            found.push(listed);
        }
        progress(&Reading {
            read: scanned,
            left: info.pending,
            at: stored,
            matched: found.len(),
        });
        Ok(true)
    })
    .await?;
    Ok((found, scanned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_dead_or_waiting_when_any_subscriber_is() {
        use Status::*;
        assert_eq!(Status::of([]), Delivered);
        assert_eq!(Status::of([Delivered, Filtered]), Delivered);
        assert_eq!(Status::of([Delivered, Waiting, Filtered]), Waiting);
        assert_eq!(Status::of([Waiting, Dead, Delivered]), Dead);
        assert_eq!(Status::of([Dead, Waiting]), Dead);
    }

    #[test]
    fn a_summary_finds_a_user_by_login_or_id_in_any_case() {
        let summary = Summary::of(
            br#"{"actor":{"id":"00u1","alternateId":"admin@example.com"},
                 "target":[{"id":"00u2","alternateId":"Jane.Doe@example.com"}]}"#,
        );
        assert!(summary.involves("jane.doe@EXAMPLE.com"));
        assert!(summary.involves("00u1"));
        assert!(summary.involves("ADMIN@example.com"));
        assert!(!summary.involves("jane"));
        assert!(!Summary::of(b"not json").involves("x"));
    }
}
