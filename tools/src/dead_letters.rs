//! Dead letters: list them, show one, and replay them to their subscriber once its downstream
//! is fixed, through `hookrelay::dead_letters` (which the console uses too).

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use async_nats::jetstream::stream::Stream;
use hookrelay::Settings;
use hookrelay::broker::open_stream;
use hookrelay::dead_letters::{self, DeadLetter, Filter, Replayed};

use crate::progress::Progress;

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

/// What a replay did, in one line.
fn summary(replayed: &Replayed, dry_run: bool) -> String {
    format!(
        "{} {}, skipped {}",
        if dry_run { "would replay" } else { "replayed" },
        crate::count(replayed.replayed as u64, "dead letter", "dead letters"),
        replayed.skipped.len()
    )
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
            reason: None,
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
    /// Delete dead letters for good (an event nobody needs handled). Needs a filter or --all.
    Discard {
        #[command(flatten)]
        filter: FilterArgs,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

impl Command {
    /// Runs the dead-letter command.
    pub async fn run(self, settings: &Settings) -> anyhow::Result<bool> {
        let js = crate::connect(settings).await?;
        let dlq = open_stream(&js, &settings.nats.dlq_stream).await?;
        match self {
            Command::List { filter, json } => {
                let letters = dead_letters::list(&dlq, &filter.into()).await?;
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
                let filter = chosen(filter, all)?;
                let letters = dead_letters::list(&dlq, &filter).await?;
                let mut progress = Progress::new();
                let replayed =
                    dead_letters::replay(&js, settings, &letters, dry_run, |done, of| {
                        progress.tick(|| format!("{done} of {of} replayed"))
                    })
                    .await?;
                for (sequence, why) in &replayed.skipped {
                    eprintln!("dead letter {sequence} left in place: {why}");
                }
                println!("{}", summary(&replayed, dry_run));
            }
            Command::Discard { filter, all } => {
                let letters = dead_letters::list(&dlq, &chosen(filter, all)?).await?;
                let discarded = dead_letters::discard(&dlq, &letters).await?;
                println!(
                    "discarded {}",
                    crate::count(discarded as u64, "dead letter", "dead letters")
                );
            }
        }
        Ok(true)
    }
}

/// The dead letters a replay or a discard applies to: a filter, or all of them when asked.
fn chosen(filter: FilterArgs, all: bool) -> anyhow::Result<Filter> {
    let filter: Filter = filter.into();
    if filter.is_empty() && !all {
        anyhow::bail!("say which dead letters: --subscriber, --event-type, --uuid, or --all");
    }
    Ok(filter)
}
