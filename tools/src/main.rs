//! `hookrelayctl`: simulate Okta, manage dead letters, backfill from the System Log, manage
//! the event hook, pause subscribers, and the console's sign-in.
//! Reads the same configuration as `receiver` and `worker`. This file only parses flags and
//! dispatches: each command owns its `run`, in its module of the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hookrelay::Settings;
use hookrelay_tools::{backfill, console, dead_letters, events, hooks, simulate, subscribers};
use tracing::Instrument as _;

#[derive(Parser)]
#[command(
    version,
    about = "hookrelay's tools: simulate Okta, find an event, replay dead letters, backfill from the System Log, manage the hook"
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
    Simulate(simulate::Args),
    /// List, show and replay dead letters.
    #[command(subcommand)]
    DeadLetters(dead_letters::Command),
    /// Where an event is (`show <uuid>`), and the stored events of a time range (`list`).
    #[command(subcommand)]
    Events(events::Command),
    /// Store the events a hook missed, read from Okta's System Log API. The API token is read
    /// from the environment variable OKTA_API_TOKEN.
    Backfill(backfill::Args),
    /// Manage the Okta event hook through Okta's Management API: list, create, verify,
    /// set-url, activate, deactivate, delete, rotate-secret.
    #[command(subcommand)]
    Hooks(hooks::Command),
    /// Each subscriber at a glance (`list`); pause or resume one on every worker.
    #[command(subcommand)]
    Subscribers(subscribers::Command),
    /// The web console's sign-in: `hash-password` for a local user, `initial-password` for the
    /// first sign-in.
    #[command(subcommand)]
    Console(console::Command),
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

impl Command {
    /// The name of a command that publishes (simulate, dead-letters replay, backfill), for its
    /// span; the others make none.
    fn traced_name(&self) -> Option<&'static str> {
        match self {
            Command::Simulate(_) => Some("simulate"),
            Command::DeadLetters(_) => Some("dead-letters"),
            Command::Backfill(_) => Some("backfill"),
            Command::Events(_)
            | Command::Hooks(_)
            | Command::Subscribers(_)
            | Command::Console(_) => None,
        }
    }
}

/// Runs the command; `Ok(false)` when it ran but what it checked failed.
async fn run() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    if !cli.config.exists() {
        anyhow::bail!(
            "no configuration file at {}: point at one with --config <file> or \
             HOOKRELAY_CONFIG=<file> (the project's is config/default.toml; in the compose \
             stack, `docker compose run --rm receiver hookrelayctl …` has it)",
            cli.config.display()
        );
    }
    let settings =
        Settings::load(&cli.config).with_context(|| format!("loading {}", cli.config.display()))?;
    let telemetry = hookrelay::telemetry::init_for_tools(&settings.telemetry)?;
    let span = match cli.command.traced_name() {
        Some(name) if hookrelay::telemetry::tracing_on() => {
            tracing::info_span!("command", otel.name = %format_args!("hookrelayctl {name}"))
        }
        _ => tracing::Span::none(),
    };
    let ran = dispatch(cli.command, &settings).instrument(span).await;
    // The command's spans leave before the process does.
    telemetry.shutdown().await;
    ran
}

/// Runs the command.
async fn dispatch(command: Command, settings: &Settings) -> anyhow::Result<bool> {
    match command {
        Command::Simulate(args) => args.run(settings).await,
        Command::DeadLetters(command) => command.run(settings).await,
        Command::Events(command) => command.run(settings).await,
        Command::Backfill(args) => args.run(settings).await,
        Command::Hooks(command) => command.run(settings).await,
        Command::Subscribers(command) => command.run(settings).await,
        Command::Console(command) => command.run(settings).await,
    }
}
