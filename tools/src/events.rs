//! Where an event is. `events show <uuid>`: stored or not, from which ingress, and for every
//! subscriber of its type whether it is done, filtered, waiting or dead-lettered, read from
//! JetStream's consumer state and the dead letters. `events list`: the stored events of a time
//! range, by type and by user.

use std::time::SystemTime;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream::Stream};
use hookrelay::Settings;
use hookrelay::subject::{self, header};
use serde::Serialize;

use crate::dead_letters::{self, DeadLetter};
use crate::progress::Progress;
use crate::{count, rfc3339};

/// A stored message that is the event: its first storing (`okta.events.…`), or a replay of a
/// dead letter to one subscriber (`okta.replay.<subscriber>.…`).
#[derive(Debug, Clone)]
struct StoredCopy {
    sequence: u64,
    subject: String,
    stored: SystemTime,
    headers: HeaderMap,
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
        failed: Option<hookrelay::attempts::Attempts>,
    },
    /// Not handed to a worker yet: events before it are being worked on.
    NotYet,
    /// The subscriber's consumer does not exist: no worker with it has started.
    NoConsumer,
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
                count(failed.attempts, "attempt", "attempts"),
                failed.failed_at,
                failed.error,
                failed.next_at
            ),
            Fate::NotYet => f.write_str("not handed out yet: events stored before it come first"),
            Fate::NoConsumer => f.write_str(
                "no consumer: no worker with this subscriber has started since it was configured",
            ),
        }
    }
}

/// One subscriber's line of `show`.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberFate {
    pub subscriber: String,
    #[serde(flatten)]
    pub fate: Fate,
    /// The sequence of the replay this fate is of, when the event was replayed to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<u64>,
}

/// Where an event is, as `show` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Whereabouts {
    pub uuid: String,
    pub event_type: String,
    pub sequence: u64,
    pub subject: String,
    #[serde(serialize_with = "rfc3339")]
    pub stored: SystemTime,
    /// `hook`, `system-log` (the reconciler) or `backfill`.
    pub source: String,
    pub delivery_id: Option<String>,
    pub okta_request_id: Option<String>,
    pub subscribers: Vec<SubscriberFate>,
}

fn value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.as_str().to_owned())
}

/// Every stored copy of `uuid` (its first storing and its replays), scanning `stream` from
/// `since` with a line of progress every second.
async fn copies_of(
    stream: &Stream,
    uuid: &str,
    since: Option<SystemTime>,
) -> anyhow::Result<(Vec<StoredCopy>, u64)> {
    let total = stream.cached_info().state.messages;
    let deliver = match since {
        Some(start) => consumer::DeliverPolicy::ByStartTime {
            start_time: start.into(),
        },
        None => consumer::DeliverPolicy::All,
    };
    let mut progress = Progress::new();
    let mut scanned = 0u64;
    let mut found = Vec::new();
    hookrelay::broker::read_stream(stream, String::new(), deliver, |message| {
        scanned += 1;
        progress.tick(|| format!("scanned {scanned} of {total} stored messages"));
        let Some(headers) = message.headers.as_ref() else {
            return Ok(());
        };
        let first = headers
            .get("Nats-Msg-Id")
            .is_some_and(|id| id.as_str() == uuid)
            && message.subject.starts_with(subject::EVENTS_PREFIX);
        let replay = message.subject.starts_with(subject::REPLAY_PREFIX)
            && headers
                .get(header::EVENT_UUID)
                .is_some_and(|id| id.as_str() == uuid);
        if first || replay {
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            found.push(StoredCopy {
                sequence: info.stream_sequence,
                subject: message.subject.to_string(),
                stored: info.published.into(),
                headers: headers.clone(),
            });
        }
        Ok(())
    })
    .await?;
    Ok((found, scanned))
}

/// Where `sequence` stands in the durable consumer `durable`.
async fn position(stream: &Stream, durable: &str, sequence: u64) -> anyhow::Result<Fate> {
    let info = match stream.consumer_info(durable).await {
        Ok(info) => info,
        Err(e) if crate::is_not_found(&e) => return Ok(Fate::NoConsumer),
        Err(e) => return Err(anyhow::anyhow!("reading consumer {durable}: {e}")),
    };
    Ok(if sequence <= info.ack_floor.stream_sequence {
        Fate::Done
    } else if sequence <= info.delivered.stream_sequence {
        // Past the ack floor and handed out: acknowledged out of order, or not yet. JetStream
        // tells which only through the pending list, which it does not serve; an event
        // acknowledged ahead of the floor reads as waiting until the floor passes it.
        Fate::Waiting { failed: None }
    } else {
        Fate::NotYet
    })
}

/// Whether `filter` (a subscriber's jq) keeps `event`; `None` when it fails on it (the event
/// is then dead-lettered, which the dead letters say).
fn kept_by(filter: &str, event: &hookrelay::jq::Input) -> Option<bool> {
    hookrelay::jq::Jq::compile(filter).ok()?.selects(event).ok()
}

/// What the worker recorded of `uuid`'s failed attempts for `subscriber`, if anything.
async fn failed_attempts(
    store: Option<&jetstream::kv::Store>,
    subscriber: &str,
    uuid: &str,
) -> Option<hookrelay::attempts::Attempts> {
    let key = hookrelay::attempts::key(subscriber, uuid)?;
    let entry = store?.entry(key).await.ok()??;
    if entry.operation != jetstream::kv::Operation::Put {
        return None;
    }
    serde_json::from_slice(&entry.value).ok()
}

/// Where `uuid` is, or (`Err`) how many messages were scanned when it is not stored.
pub async fn show(
    js: &jetstream::Context,
    settings: &Settings,
    uuid: &str,
    since: Option<SystemTime>,
) -> anyhow::Result<Result<Whereabouts, u64>> {
    let stream = crate::open_stream(js, &settings.nats.stream).await?;
    let (copies, scanned) = copies_of(&stream, uuid, since).await?;
    let Some(first) = copies
        .iter()
        .find(|c| c.subject.starts_with(subject::EVENTS_PREFIX))
    else {
        return Ok(Err(scanned));
    };
    let event_type = subject::event_type_of(&first.subject)
        .unwrap_or("?")
        .to_owned();
    let payload = stream
        .get_raw_message(first.sequence)
        .await
        .with_context(|| format!("reading event {}", first.sequence))?
        .payload;
    // Parsed once for every subscriber's filter; an event that is not JSON is kept by none.
    let event = hookrelay::jq::Input::parse(payload).ok();
    let dlq = crate::open_stream(js, &settings.nats.dlq_stream).await?;
    let letters = dead_letters::list(
        &dlq,
        &dead_letters::Filter {
            uuids: vec![uuid.to_owned()],
            ..Default::default()
        },
    )
    .await?;

    // No bucket yet: no worker has recorded a failed attempt.
    let attempts = js
        .get_key_value(hookrelay::attempts::bucket(&settings.nats.stream))
        .await
        .ok();
    let mut subscribers = Vec::new();
    for sub in (settings.worker.subscribers.iter()).filter(|s| s.event_types.contains(&event_type))
    {
        let name = &sub.name;
        // The latest replay to this subscriber, if any, is what it works on now.
        let replay = (copies.iter().rev()).find(|c| {
            c.subject
                .starts_with(&format!("{}.{name}.", subject::REPLAY_PREFIX))
        });
        let letter: Option<&DeadLetter> = (letters.iter().rev()).find(|l| &l.subscriber == name);
        let fate = match (letter, replay) {
            (Some(letter), _) => Fate::DeadLettered {
                reason: letter.reason.clone(),
                deliveries: letter.deliveries,
                dead_letter: letter.sequence,
            },
            (None, Some(replay)) => {
                position(
                    &stream,
                    &subject::replay_durable_name(name),
                    replay.sequence,
                )
                .await?
            }
            (None, None) => {
                position(
                    &stream,
                    &subject::durable_name(name, &event_type),
                    first.sequence,
                )
                .await?
            }
        };
        let fate = match (&fate, &sub.filter) {
            (Fate::Done, Some(filter))
                if event.as_ref().and_then(|e| kept_by(filter, e)) == Some(false) =>
            {
                Fate::Filtered
            }
            (Fate::Waiting { .. }, _) => Fate::Waiting {
                failed: failed_attempts(attempts.as_ref(), name, uuid).await,
            },
            _ => fate,
        };
        subscribers.push(SubscriberFate {
            subscriber: name.clone(),
            fate,
            replay: replay.map(|r| r.sequence),
        });
    }
    let headers = &first.headers;
    Ok(Ok(Whereabouts {
        uuid: uuid.to_owned(),
        event_type,
        sequence: first.sequence,
        subject: first.subject.clone(),
        stored: first.stored,
        source: value(headers, header::SOURCE).unwrap_or_else(|| "hook".to_owned()),
        delivery_id: value(headers, header::DELIVERY_ID),
        okta_request_id: value(headers, header::OKTA_REQUEST_ID),
        subscribers,
    }))
}

impl std::fmt::Display for Whereabouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "event {} ({})", self.uuid, self.event_type)?;
        writeln!(
            f,
            "stored:  sequence {} on {} at {}",
            self.sequence,
            self.subject,
            humantime::format_rfc3339_millis(self.stored)
        )?;
        let source = match self.source.as_str() {
            "hook" => "the hook",
            "system-log" => "the System Log reader (the hook had missed it)",
            "backfill" => "hookrelayctl backfill",
            other => other,
        };
        write!(f, "source:  {source}")?;
        let ids: Vec<String> = [
            self.delivery_id.as_ref().map(|id| format!("delivery {id}")),
            self.okta_request_id
                .as_ref()
                .map(|id| format!("Okta request {id}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !ids.is_empty() {
            write!(f, " ({})", ids.join(", "))?;
        }
        writeln!(f)?;
        if self.subscribers.is_empty() {
            return writeln!(f, "no configured subscriber takes {}", self.event_type);
        }
        writeln!(f, "subscribers of {}:", self.event_type)?;
        let width = (self.subscribers.iter())
            .map(|s| s.subscriber.len())
            .max()
            .unwrap_or(0);
        for s in &self.subscribers {
            let replay = s
                .replay
                .map_or(String::new(), |r| format!("replayed (sequence {r}), "));
            writeln!(f, "  {:<width$}  {replay}{}", s.subscriber, s.fate)?;
        }
        for s in &self.subscribers {
            if let Fate::DeadLettered { .. } = s.fate {
                writeln!(
                    f,
                    "once {0}'s downstream is fixed: hookrelayctl dead-letters replay --uuid {1} --subscriber {0}",
                    s.subscriber, self.uuid
                )?;
            }
        }
        Ok(())
    }
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

/// One stored event, as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub sequence: u64,
    #[serde(serialize_with = "rfc3339")]
    pub stored: SystemTime,
    pub event_type: String,
    pub uuid: String,
    pub published: Option<String>,
    pub actor: Option<String>,
    pub targets: Vec<String>,
    pub source: String,
}

#[derive(serde::Deserialize, Default)]
struct Who {
    #[serde(rename = "alternateId")]
    alternate_id: Option<String>,
}

#[derive(serde::Deserialize)]
struct Summary {
    published: Option<String>,
    #[serde(default)]
    actor: Option<Who>,
    #[serde(default)]
    target: Option<Vec<Who>>,
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

/// The stored events that match `search`, oldest first, with a line of progress every second;
/// and how many were read.
pub async fn list(stream: &Stream, search: &Search) -> anyhow::Result<(Vec<Listed>, u64)> {
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
    let mut progress = Progress::new();
    hookrelay::broker::read_stream_until(stream, config, |message| {
        let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let stored: SystemTime = info.published.into();
        if search.until.is_some_and(|until| stored > until) {
            return Ok(false);
        }
        scanned += 1;
        progress.tick(|| {
            format!(
                "read {scanned} events, {} left (at {}), {} so far",
                info.pending,
                humantime::format_rfc3339_seconds(stored),
                count(found.len() as u64, "match", "matches")
            )
        });
        let headers = message.headers.as_ref();
        let summary: Option<Summary> = serde_json::from_slice(&message.payload).ok();
        let listed = Listed {
            sequence: info.stream_sequence,
            stored,
            event_type: subject::event_type_of(&message.subject)
                .unwrap_or("?")
                .to_owned(),
            uuid: (headers.and_then(|h| h.get("Nats-Msg-Id")))
                .map_or("?".to_owned(), |v| v.as_str().to_owned()),
            published: summary.as_ref().and_then(|s| s.published.clone()),
            actor: (summary.as_ref()).and_then(|s| s.actor.as_ref()?.alternate_id.clone()),
            targets: (summary.as_ref().and_then(|s| s.target.as_ref()))
                .map(|targets| {
                    targets
                        .iter()
                        .filter_map(|t| t.alternate_id.clone())
                        .collect()
                })
                .unwrap_or_default(),
            source: (headers.and_then(|h| h.get(header::SOURCE)))
                .map_or("hook".to_owned(), |v| v.as_str().to_owned()),
        };
        if search.matches(&listed) {
            found.push(listed);
        }
        Ok(true)
    })
    .await?;
    Ok((found, scanned))
}

/// The list as a table, one event per line.
pub fn table(events: &[Listed]) -> String {
    let mut out = format!(
        "{:>8}  {:<24}  {:<32}  {:<36}  {:<10}  {:<28}  TARGETS\n",
        "SEQ", "STORED", "EVENT TYPE", "UUID", "SOURCE", "ACTOR"
    );
    for e in events {
        out.push_str(&format!(
            "{:>8}  {:<24}  {:<32}  {:<36}  {:<10}  {:<28}  {}\n",
            e.sequence,
            humantime::format_rfc3339_millis(e.stored).to_string(),
            e.event_type,
            e.uuid,
            e.source,
            e.actor.as_deref().unwrap_or("-"),
            if e.targets.is_empty() {
                "-".to_owned()
            } else {
                e.targets.join(", ")
            },
        ));
    }
    out
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Where one event is: stored or not (sequence, subject, when, from which ingress, with its
    /// delivery and Okta request ids), and for every subscriber of its type: done, filtered,
    /// waiting or dead-lettered (with the reason). Exits 1 when it is not stored.
    Show {
        /// The event's uuid (Okta's `uuid`, the stored message's Nats-Msg-Id).
        uuid: String,
        /// Look only at events stored from then on (RFC 3339 or a time ago: 36h, 7d); faster
        /// on a long stream [default: all of it].
        #[arg(long, value_parser = crate::backfill::parse_time)]
        since: Option<SystemTime>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The stored events of a time range, one per line: by event type, and by a user's
    /// alternateId as actor or target.
    List {
        /// From when: RFC 3339 (2026-11-20T08:00:00Z) or a time ago (36h, 7d).
        #[arg(long, value_parser = crate::backfill::parse_time, default_value = "24h")]
        since: SystemTime,
        /// Until when, same forms [default: now].
        #[arg(long, value_parser = crate::backfill::parse_time)]
        until: Option<SystemTime>,
        /// Only this event type; repeatable.
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// Only events whose actor has this alternateId (any case); repeatable.
        #[arg(long = "actor")]
        actors: Vec<String>,
        /// Only events with a target of this alternateId (any case); repeatable.
        #[arg(long = "target")]
        targets: Vec<String>,
        /// Only events with this alternateId as actor or as a target; repeatable.
        #[arg(long = "user")]
        users: Vec<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<bool> {
        let js = crate::connect(settings).await?;
        match self {
            Command::Show { uuid, since, json } => match show(&js, settings, &uuid, since).await? {
                Ok(whereabouts) if json => println!("{}", serde_json::to_string(&whereabouts)?),
                Ok(whereabouts) => print!("{whereabouts}"),
                Err(scanned) => {
                    let from = since.map_or("the start of the stream".to_owned(), |s| {
                        humantime::format_rfc3339_seconds(s).to_string()
                    });
                    println!(
                        "event {uuid} is not stored ({} scanned from {from}). If Okta has it \
                         (its System Log keeps 90 days), `hookrelayctl backfill --since <before \
                         it happened>` stores it.",
                        count(scanned, "message", "messages")
                    );
                    return Ok(false);
                }
            },
            Command::List {
                since,
                until,
                event_types,
                actors,
                targets,
                users,
                json,
            } => {
                let stream = crate::open_stream(&js, &settings.nats.stream).await?;
                let search = Search {
                    since: Some(since),
                    until,
                    event_types,
                    actors,
                    targets,
                    users,
                };
                let (events, scanned) = list(&stream, &search).await?;
                if json {
                    for event in &events {
                        println!("{}", serde_json::to_string(event)?);
                    }
                } else {
                    print!("{}", table(&events));
                }
                let matched = events.len() as u64;
                eprintln!(
                    "read {}; {matched} {}",
                    count(scanned, "event", "events"),
                    if matched == 1 { "matches" } else { "match" }
                );
            }
        }
        Ok(true)
    }
}
