//! `hookrelayctl`: simulate Okta, manage dead letters, backfill from the System Log.
//! Reads the same configuration as `receiver` and `worker`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use async_nats::jetstream;
use clap::{Args, Parser, Subcommand};
use hookrelay::{Settings, broker};
use hookrelay_tools::{backfill, dead_letters, simulate};
use secrecy::SecretString;

#[derive(Parser)]
#[command(
    version,
    about = "hookrelay's tools: simulate Okta, replay dead letters, backfill from the System Log"
)]
struct Cli {
    /// The configuration file; `HOOKRELAY__SECTION__KEY` environment variables override it.
    #[arg(long, env = "HOOKRELAY_CONFIG", default_value = "config/default.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Act as Okta: the verification request, then deliveries like the Admin Console's
    /// Preview, with the configured secret header. Exits 1 if the receiver fails any of it.
    Simulate(SimulateArgs),
    /// List, show and replay dead letters.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Store the events a hook missed, read from Okta's System Log API. The API token is read
    /// from the environment variable OKTA_API_TOKEN.
    Backfill(BackfillArgs),
}

#[derive(Args)]
struct SimulateArgs {
    /// The hook URL [default: the configured receiver, http://127.0.0.1:<port><path>].
    #[arg(long)]
    url: Option<String>,
    /// The events' type.
    #[arg(long, default_value = "user.lifecycle.create")]
    event_type: String,
    /// How many events to send.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Events per delivery (Okta batches events that happen close together).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// The user in each event's `target[0].alternateId`.
    #[arg(long, default_value = "john.doe@example.com")]
    alternate_id: String,
    /// Send the Preview's sample as Okta does without a recent event: `"target": null`.
    #[arg(long)]
    null_target: bool,
    /// Skip the verification request.
    #[arg(long)]
    skip_verification: bool,
}

#[derive(Args, Default)]
struct FilterArgs {
    /// Only dead letters of this subscriber (`receiver` for the receiver's); repeatable.
    #[arg(long = "subscriber")]
    subscribers: Vec<String>,
    /// Only dead letters of this event type; repeatable.
    #[arg(long = "event-type")]
    event_types: Vec<String>,
    /// Only the dead letter of this event uuid; repeatable.
    #[arg(long = "uuid")]
    uuids: Vec<String>,
}

impl From<FilterArgs> for dead_letters::Filter {
    fn from(args: FilterArgs) -> Self {
        dead_letters::Filter {
            subscribers: args.subscribers,
            event_types: args.event_types,
            uuids: args.uuids,
        }
    }
}

#[derive(Subcommand)]
enum DeadLetterCommand {
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

#[derive(Args)]
struct BackfillArgs {
    /// The Okta org, such as https://dev-123456.okta.com.
    #[arg(long)]
    okta_url: reqwest::Url,
    /// From when: RFC 3339 (2026-11-20T08:00:00Z) or a time ago (36h, 7d).
    #[arg(long, value_parser = parse_time)]
    since: SystemTime,
    /// Until when, same forms [default: now].
    #[arg(long, value_parser = parse_time)]
    until: Option<SystemTime>,
    /// Only this event type; repeatable [default: the configured subscribers' event types].
    #[arg(long = "event-type")]
    event_types: Vec<String>,
    /// A System Log filter expression, combined with the event types by `and`.
    #[arg(long)]
    filter: Option<String>,
    /// Events per page (at most 1000).
    #[arg(long, default_value_t = 1000)]
    page_size: u32,
    /// Retries of a page after a 429, a 5xx or a network error.
    #[arg(long, default_value_t = 10)]
    max_retries: u32,
    /// Fetch and compare with the stream; store nothing.
    #[arg(long)]
    dry_run: bool,
}

/// RFC 3339, or a duration meaning that long ago.
fn parse_time(text: &str) -> Result<SystemTime, String> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(time);
    }
    let ago: Duration = humantime::parse_duration(text)
        .map_err(|_| format!("{text:?} is neither RFC 3339 nor a duration such as 36h"))?;
    SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| format!("{text} ago is before 1970"))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; `Ok(false)` when it ran but what it checked failed.
async fn run() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    let settings =
        Settings::load(&cli.config).with_context(|| format!("loading {}", cli.config.display()))?;
    match cli.command {
        Command::Simulate(args) => {
            let auth = &settings.receiver.auth;
            let secret = auth.accepted_secrets()?.into_iter().next().context(
                "no secret configured: set HOOKRELAY__RECEIVER__AUTH__SECRET to the hook's \
                 secret (the value of its authentication header)",
            )?;
            let header = auth
                .header
                .parse()
                .context("receiver.auth.header is not a header name")?;
            let url = args.url.unwrap_or_else(|| {
                format!(
                    "http://127.0.0.1:{}{}",
                    settings.receiver.listen.port(),
                    settings.receiver.path
                )
            });
            let simulation = simulate::Simulation {
                url,
                auth: (header, secret),
                verify: !args.skip_verification,
                event_type: args.event_type,
                count: args.count,
                batch: args.batch,
                alternate_id: args.alternate_id,
                null_target: args.null_target,
            };
            let report = simulate::run(&simulation).await?;
            println!("{}", report.summary());
            Ok(report.ok())
        }
        Command::DeadLetters(command) => {
            let js = connect(&settings).await?;
            let dlq = js
                .get_stream(&settings.nats.dlq_stream)
                .await
                .with_context(|| format!("opening stream {}", settings.nats.dlq_stream))?;
            match command {
                DeadLetterCommand::List { filter, json } => {
                    let letters = dead_letters::list(&dlq, &filter.into()).await?;
                    if json {
                        for letter in &letters {
                            println!("{}", serde_json::to_string(letter)?);
                        }
                    } else {
                        print!("{}", dead_letters::table(&letters, SystemTime::now()));
                        eprintln!("{} dead letters", letters.len());
                    }
                }
                DeadLetterCommand::Show { sequence } => {
                    print!("{}", dead_letters::show(&dlq, sequence).await?);
                }
                DeadLetterCommand::Replay {
                    filter,
                    all,
                    dry_run,
                } => {
                    let filter: dead_letters::Filter = filter.into();
                    if filter.is_empty() && !all {
                        anyhow::bail!(
                            "say which dead letters: --subscriber, --event-type, --uuid, or --all"
                        );
                    }
                    let replayed = dead_letters::replay(&js, &settings, &filter, dry_run).await?;
                    println!("{}", replayed.summary(dry_run));
                }
            }
            Ok(true)
        }
        Command::Backfill(args) => {
            let token = std::env::var("OKTA_API_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .context("set OKTA_API_TOKEN to an Okta API token that can read the System Log")?;
            let mut event_types = args.event_types;
            if event_types.is_empty() && args.filter.is_none() {
                event_types = (settings.worker.subscribers.iter())
                    .flat_map(|s| s.event_types.iter().cloned())
                    .collect();
                event_types.sort();
                event_types.dedup();
                if event_types.is_empty() {
                    anyhow::bail!("no subscriber is configured: say which events, --event-type");
                }
            }
            let job = backfill::Backfill {
                okta_url: args.okta_url,
                token: SecretString::from(token),
                since: args.since,
                until: args.until.unwrap_or_else(SystemTime::now),
                event_types,
                filter: args.filter,
                page_size: args.page_size,
                max_retries: args.max_retries,
                dry_run: args.dry_run,
            };
            let js = connect(&settings).await?;
            let report = backfill::run(&js, &settings, &job).await?;
            println!("{}", report.summary(job.dry_run));
            Ok(true)
        }
    }
}

async fn connect(settings: &Settings) -> anyhow::Result<jetstream::Context> {
    eprintln!("connecting to NATS at {}", settings.nats.url);
    let client = broker::connect(&settings.nats, "hookrelayctl").await?;
    Ok(jetstream::new(client))
}
