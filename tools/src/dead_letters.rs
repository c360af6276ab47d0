//! Dead letters: list them, show one, and replay them to their subscriber once its downstream
//! is fixed.
//!
//! A replay publishes the dead letter's event on `okta.replay.<subscriber>.<eventType>`, in the
//! events stream, where only that subscriber's replay consumer reads it (other subscribers of
//! the event type do not see it again). The dead letter is deleted only after JetStream has
//! acknowledged the replay; the replay is deduplicated on the dead letter's sequence, so a
//! replay interrupted between the two steps and run again stores the event once.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, message::PublishMessage, stream::Stream};
use hookrelay::Settings;
use hookrelay::subject::{self, header};
use serde::Serialize;

use crate::progress::Progress;

/// One dead letter, as the list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream: what `show` and `delete` take.
    pub sequence: u64,
    /// The subscriber that gave up, or `receiver`.
    pub subscriber: String,
    pub event_type: Option<String>,
    pub uuid: Option<String>,
    pub reason: String,
    /// How many times the subscriber was handed the event.
    pub deliveries: Option<u64>,
    /// When it was dead-lettered (stored in the dead-letter stream).
    #[serde(serialize_with = "crate::rfc3339")]
    pub stored: SystemTime,
}

/// Which dead letters a command applies to: every given criterion must match (several values
/// of one criterion: any of them).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub subscribers: Vec<String>,
    pub event_types: Vec<String>,
    pub uuids: Vec<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.event_types.is_empty() && self.uuids.is_empty()
    }

    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let any = |wanted: &[String], value: Option<&str>| {
            wanted.is_empty() || value.is_some_and(|v| wanted.iter().any(|w| w == v))
        };
        any(&self.subscribers, Some(&letter.subscriber))
            && any(&self.event_types, letter.event_type.as_deref())
            && any(&self.uuids, letter.uuid.as_deref())
    }
}

fn value<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(|v| v.as_str())
}

impl DeadLetter {
    fn read(sequence: u64, subject: &str, headers: Option<&HeaderMap>, stored: SystemTime) -> Self {
        let subscriber = subject
            .strip_prefix(subject::DLQ_PREFIX)
            .and_then(|rest| rest.strip_prefix('.'))
            .or(value(headers, header::DEAD_LETTERED_BY))
            .unwrap_or("?")
            .to_owned();
        DeadLetter {
            sequence,
            subscriber,
            event_type: value(headers, header::ORIGINAL_SUBJECT)
                .and_then(subject::event_type_of)
                .map(str::to_owned),
            uuid: value(headers, header::EVENT_UUID).map(str::to_owned),
            reason: value(headers, header::ERROR).unwrap_or("").to_owned(),
            deliveries: value(headers, header::DELIVERY_COUNT).and_then(|n| n.parse().ok()),
            stored,
        }
    }
}

/// The dead letters that match `filter`, oldest first.
pub async fn list(stream: &Stream, filter: &Filter) -> anyhow::Result<Vec<DeadLetter>> {
    let mut letters = Vec::new();
    let subject = match filter.subscribers.as_slice() {
        [one] => subject::dlq_subject(one),
        _ => format!("{}.>", subject::DLQ_PREFIX),
    };
    hookrelay::broker::read_stream(stream, subject, consumer::DeliverPolicy::All, |message| {
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

/// The list as a table, one dead letter per line.
pub fn table(letters: &[DeadLetter], now: SystemTime) -> String {
    let mut out = format!(
        "{:>8}  {:<16}  {:<32}  {:<36}  {:>10}  {:>8}  REASON\n",
        "SEQ", "SUBSCRIBER", "EVENT TYPE", "UUID", "DELIVERIES", "AGE"
    );
    for l in letters {
        let age = now.duration_since(l.stored).unwrap_or_default();
        let age = humantime::format_duration(Duration::from_secs(age.as_secs())).to_string();
        let age = age.split(' ').next().unwrap_or("0s");
        out.push_str(&format!(
            "{:>8}  {:<16}  {:<32}  {:<36}  {:>10}  {:>8}  {}\n",
            l.sequence,
            l.subscriber,
            l.event_type.as_deref().unwrap_or("-"),
            l.uuid.as_deref().unwrap_or("-"),
            l.deliveries.map_or("-".to_owned(), |n| n.to_string()),
            age,
            clip(&l.reason, 80),
        ));
    }
    out
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// One dead letter in full: where it is, every header, and the event (pretty-printed JSON).
pub async fn show(stream: &Stream, sequence: u64) -> anyhow::Result<String> {
    let message = stream
        .get_raw_message(sequence)
        .await
        .with_context(|| format!("no dead letter {sequence}"))?;
    let mut out = format!(
        "sequence: {sequence}\nsubject: {}\nstored: {}\n",
        message.subject,
        humantime::format_rfc3339_millis(message.time.into()),
    );
    for (name, values) in message.headers.iter() {
        for value in values {
            out.push_str(&format!("{}: {}\n", name.as_ref() as &str, value.as_str()));
        }
    }
    out.push('\n');
    match serde_json::from_slice::<serde_json::Value>(&message.payload) {
        Ok(event) => out.push_str(&serde_json::to_string_pretty(&event)?),
        Err(_) => out.push_str(&String::from_utf8_lossy(&message.payload)),
    }
    out.push('\n');
    Ok(out)
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Replayed {
    pub replayed: usize,
    /// Each dead letter left in place, and why.
    pub skipped: Vec<(u64, String)>,
}

impl Replayed {
    pub fn summary(&self, dry_run: bool) -> String {
        format!(
            "{} {}, skipped {}",
            if dry_run { "would replay" } else { "replayed" },
            crate::count(self.replayed as u64, "dead letter", "dead letters"),
            self.skipped.len()
        )
    }
}

/// Replays the dead letters that match `filter` to their subscribers; deletes each one only
/// once its replay is stored. The receiver's dead letters (unroutable or truncated events) and
/// those of subscribers that are not configured are left in place, with the reason.
pub async fn replay(
    js: &jetstream::Context,
    settings: &Settings,
    filter: &Filter,
    dry_run: bool,
) -> anyhow::Result<Replayed> {
    let dlq = crate::open_stream(js, &settings.nats.dlq_stream).await?;
    let mut events = crate::open_stream(js, &settings.nats.stream).await?;
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
    let subscribers: HashSet<&str> = (settings.worker.subscribers.iter())
        .map(|s| s.name.as_str())
        .collect();

    let mut bound = HashSet::new();
    for name in &subscribers {
        let durable = subject::replay_durable_name(name);
        match events.consumer_info(&durable).await {
            Ok(_) => {
                bound.insert(*name);
            }
            Err(e) if crate::is_not_found(&e) => {}
            // Not "unbound": a broker that did not answer, or a user that may not ask.
            Err(e) => anyhow::bail!("cannot look up consumer {durable}: {e}"),
        }
    }

    let letters = list(&dlq, filter).await?;
    let mut outcome = Replayed::default();
    let mut progress = Progress::new();
    for letter in &letters {
        let why_not = if letter.subscriber == subject::RECEIVER_DLQ_TOKEN {
            Some(format!(
                "the receiver's dead letters are not routable events ({})",
                letter.reason
            ))
        } else if !subscribers.contains(letter.subscriber.as_str()) {
            Some(format!(
                "no subscriber {:?} in the configuration",
                letter.subscriber
            ))
        } else if letter.event_type.is_none() {
            Some("it does not say which event type it was".to_owned())
        } else if !bound.contains(letter.subscriber.as_str()) {
            // Its replay would wait in the events stream for a worker, and could expire there.
            Some(format!(
                "no worker has run subscriber {:?} with this version yet (no consumer {})",
                letter.subscriber,
                subject::replay_durable_name(&letter.subscriber)
            ))
        } else {
            None
        };
        if let Some(why) = why_not {
            eprintln!("dead letter {} left in place: {why}", letter.sequence);
            outcome.skipped.push((letter.sequence, why));
            continue;
        }
        if !dry_run {
            replay_one(js, &dlq, letter).await?;
        }
        outcome.replayed += 1;
        progress.tick(|| format!("{} of {} replayed", outcome.replayed, letters.len()));
    }
    Ok(outcome)
}

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
    for name in [
        header::EVENT_UUID,
        header::DELIVERY_ID,
        header::OKTA_REQUEST_ID,
    ] {
        if let Some(value) = stored.headers.get(name) {
            headers.insert(name, value.as_str());
        }
    }
    let message = PublishMessage::build()
        .headers(headers)
        .message_id(format!("replay:{}:{sequence}", letter.subscriber))
        .payload(stored.payload);
    js.send_publish(
        subject::replay_subject(&letter.subscriber, event_type),
        message,
    )
    .await
    .map_err(|e| anyhow::anyhow!("replaying dead letter {sequence}: {e}"))?
    .await
    .map_err(|e| anyhow::anyhow!("replaying dead letter {sequence}: {e}"))?;
    dlq.delete_message(sequence)
        .await
        .with_context(|| format!("dead letter {sequence} replayed but not deleted"))?;
    Ok(())
}

#[derive(clap::Args, Default)]
pub struct FilterArgs {
    /// Only dead letters of this subscriber (`receiver` for the receiver's); repeatable.
    #[arg(long = "subscriber")]
    pub subscribers: Vec<String>,
    /// Only dead letters of this event type; repeatable.
    #[arg(long = "event-type")]
    pub event_types: Vec<String>,
    /// Only the dead letter of this event uuid; repeatable.
    #[arg(long = "uuid")]
    pub uuids: Vec<String>,
}

impl From<FilterArgs> for Filter {
    fn from(args: FilterArgs) -> Self {
        Filter {
            subscribers: args.subscribers,
            event_types: args.event_types,
            uuids: args.uuids,
        }
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// One line per dead letter: sequence, subscriber, event type, uuid, deliveries, age, reason.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter in full: its headers and the event.
    Show {
        /// Its sequence, from `list`.
        sequence: u64,
    },
    /// Send dead letters back to their subscriber (only that one); each is deleted once its
    /// replay is stored. Needs a filter or --all.
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
        /// Say what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

impl Command {
    /// Runs the dead-letter command.
    pub async fn run(self, settings: &Settings) -> anyhow::Result<bool> {
        let js = crate::connect(settings).await?;
        let dlq = crate::open_stream(&js, &settings.nats.dlq_stream).await?;
        match self {
            Command::List { filter, json } => {
                let letters = list(&dlq, &filter.into()).await?;
                if json {
                    for letter in &letters {
                        println!("{}", serde_json::to_string(letter)?);
                    }
                } else {
                    print!("{}", table(&letters, SystemTime::now()));
                    eprintln!(
                        "{}",
                        crate::count(letters.len() as u64, "dead letter", "dead letters")
                    );
                }
            }
            Command::Show { sequence } => {
                print!("{}", show(&dlq, sequence).await?);
            }
            Command::Replay {
                filter,
                all,
                dry_run,
            } => {
                let filter: Filter = filter.into();
                if filter.is_empty() && !all {
                    anyhow::bail!(
                        "say which dead letters: --subscriber, --event-type, --uuid, or --all"
                    );
                }
                let replayed = replay(&js, settings, &filter, dry_run).await?;
                println!("{}", replayed.summary(dry_run));
            }
        }
        Ok(true)
    }
}
