//! Where an event is. `events show <uuid>`: stored or not, from which ingress, and for every
//! subscriber of its type whether it is done, filtered, waiting or dead-lettered
//! (`hookrelay::stored` reads it: JetStream's consumer state, the dead letters, the attempt
//! records). `events list`: the stored events of a time range, by type and by user.

use std::time::SystemTime;

use anyhow::Context as _;
use async_nats::jetstream;
use hookrelay::Settings;
use hookrelay::broker::open_stream;
use hookrelay::dead_letters;
use hookrelay::stored::{self, Evidence, Fate, Listed, Search, Whereabouts};

use crate::count;
use crate::progress::Progress;

/// Where `uuid` is, or (`Err`) how many messages were scanned when it is not stored.
pub async fn show(
    js: &jetstream::Context,
    settings: &Settings,
    uuid: &str,
    since: Option<SystemTime>,
) -> anyhow::Result<Result<Whereabouts, u64>> {
    let stream = open_stream(js, &settings.nats.stream).await?;
    let mut progress = Progress::new();
    let (copies, scanned) = stored::scan_for_copies(&stream, uuid, since, |scanned, total| {
        progress.tick(|| format!("scanned {scanned} of {total} stored messages"))
    })
    .await?;
    let Some(first) = copies.iter().find(|c| c.is_first()) else {
        return Ok(Err(scanned));
    };
    let payload = stream
        .get_raw_message(first.sequence)
        .await
        .with_context(|| format!("reading event {}", first.sequence))?
        .payload;
    // Parsed once for every subscriber's filter; an event that is not JSON is kept by none.
    let event = hookrelay::jq::Input::parse(payload).ok();
    let dlq = open_stream(js, &settings.nats.dlq_stream).await?;
    let letters = dead_letters::list(
        &dlq,
        &dead_letters::Filter {
            uuids: vec![uuid.to_owned()],
            ..Default::default()
        },
    )
    .await?;
    // No bucket yet: no worker has recorded an attempt.
    let attempts = hookrelay::attempts::existing(js, &settings.nats).await;
    let evidence = Evidence {
        letters: &letters,
        event: event.as_ref(),
        attempts: attempts.as_ref(),
    };
    let whereabouts = stored::whereabouts(&stream, settings, uuid, &copies, &evidence).await?;
    Ok(whereabouts.ok_or(scanned))
}

/// `show`'s text.
struct Shown<'a>(&'a Whereabouts);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let this = self.0;
        writeln!(f, "event {} ({})", this.uuid, this.event_type)?;
        writeln!(
            f,
            "stored:  sequence {} on {} at {}",
            this.sequence,
            this.subject,
            humantime::format_rfc3339_millis(this.stored)
        )?;
        let source = match this.source.as_str() {
            "hook" => "the hook",
            "system-log" => "the System Log reader (the hook had missed it)",
            "backfill" => "hookrelayctl backfill",
            "simulate" => "hookrelayctl simulate",
            other => other,
        };
        write!(f, "source:  {source}")?;
        let ids: Vec<String> = [
            this.delivery_id.as_ref().map(|id| format!("delivery {id}")),
            this.okta_request_id
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
        if let Some(trace_id) = &this.trace_id {
            writeln!(f, "trace:   {trace_id}")?;
        }
        if this.subscribers.is_empty() {
            return writeln!(f, "no configured subscriber takes {}", this.event_type);
        }
        writeln!(f, "subscribers of {}:", this.event_type)?;
        let width = (this.subscribers.iter())
            .map(|s| s.subscriber.len())
            .max()
            .unwrap_or(0);
        for s in &this.subscribers {
            let replay = s
                .replay
                .map_or(String::new(), |r| format!("replayed (sequence {r}), "));
            writeln!(f, "  {:<width$}  {replay}{}", s.subscriber, s.fate)?;
        }
        for s in &this.subscribers {
            if let Fate::DeadLettered { .. } = s.fate {
                writeln!(
                    f,
                    "once {0}'s downstream is fixed: hookrelayctl dead-letters replay --uuid {1} --subscriber {0}",
                    s.subscriber, this.uuid
                )?;
            }
        }
        Ok(())
    }
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
                Ok(whereabouts) => print!("{}", Shown(&whereabouts)),
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
                let stream = open_stream(&js, &settings.nats.stream).await?;
                let search = Search {
                    since: Some(since),
                    until,
                    event_types,
                    actors,
                    targets,
                    users,
                };
                let mut progress = Progress::new();
                let (events, scanned) = stored::list(&stream, &search, |r| {
                    progress.tick(|| {
                        format!(
                            "read {} events, {} left (at {}), {} so far",
                            r.read,
                            r.left,
                            humantime::format_rfc3339_seconds(r.at),
                            count(r.matched as u64, "match", "matches")
                        )
                    })
                })
                .await?;
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
