//! `hookrelayctl subscribers`: each subscriber at a glance (`list`), and pausing or resuming one
//! on every worker at once (`pause`, `resume`), through the bucket the workers watch
//! (`hookrelay::pause`), as the console does.

use hookrelay::Settings;
use hookrelay::broker::open_stream;
use hookrelay::subscribers::{self, Overview};

#[derive(clap::Subcommand)]
pub enum Command {
    /// One line per subscriber: paused or running, pending (its lag), in flight, redeliveries,
    /// dead letters, event types and action.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pause a subscriber on every worker: they start none of its events and pull no more
    /// (running actions finish); its events keep being stored and wait.
    Pause {
        /// The subscriber's name.
        name: String,
    },
    /// Resume a paused subscriber: its workers drain what waited.
    Resume {
        /// The subscriber's name.
        name: String,
    },
}

/// Who changes a subscriber's state, as the bucket keeps it.
fn by() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("hookrelayctl ({user})"),
        _ => "hookrelayctl".into(),
    }
}

/// The overview as a table, one subscriber per line.
pub fn table(all: &[Overview]) -> String {
    let mut out = format!(
        "{:<20}  {:<28}  {:>8}  {:>9}  {:>12}  {:>12}  {:<36}  ACTION\n",
        "SUBSCRIBER",
        "STATE",
        "PENDING",
        "IN FLIGHT",
        "REDELIVERIES",
        "DEAD LETTERS",
        "EVENT TYPES"
    );
    for s in all {
        let state = match &s.state {
            Some(state) if state.paused => format!("paused since {}", state.at),
            _ if !s.missing_consumers.is_empty() => "no worker has run it".to_owned(),
            _ => "running".to_owned(),
        };
        let action = match &s.destination {
            Some(to) => format!("{} {to}", s.action),
            None => s.action.to_owned(),
        };
        out.push_str(&format!(
            "{:<20}  {:<28}  {:>8}  {:>9}  {:>12}  {:>12}  {:<36}  {action}\n",
            s.name,
            state,
            s.pending,
            s.in_flight,
            s.redeliveries,
            s.dead_letters,
            s.event_types.join(","),
        ));
    }
    out
}

impl Command {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<bool> {
        let js = crate::connect(settings).await?;
        match self {
            Command::List { json } => {
                let events = open_stream(&js, &settings.nats.stream).await?;
                let dlq = open_stream(&js, &settings.nats.dlq_stream).await?;
                let pauses = hookrelay::pause::open(&js, &settings.nats).await.ok();
                let all = subscribers::overview(&events, &dlq, pauses.as_ref(), settings).await?;
                if json {
                    for s in &all {
                        println!("{}", serde_json::to_string(s)?);
                    }
                } else {
                    print!("{}", table(&all));
                }
            }
            Command::Pause { name } => {
                subscribers::set_paused(&js, settings, &name, true, &by()).await?;
                println!(
                    "paused {name}: every worker stops starting its events within a second \
                     (running ones finish); they wait until `hookrelayctl subscribers resume {name}`"
                );
            }
            Command::Resume { name } => {
                subscribers::set_paused(&js, settings, &name, false, &by()).await?;
                println!("resumed {name}: its workers drain what waited");
            }
        }
        Ok(true)
    }
}
