//! The command line both services share: `--config PATH` (or `HOOKRELAY_CONFIG`), then `run`
//! (the default) or `health`, the container health check that asks the running service's
//! `/readyz`. A service implements [`Service`]; its `main` is one call to [`main`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::{Settings, admin, shutdown, telemetry};

#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The configuration file; `HOOKRELAY__SECTION__KEY` environment variables override it.
    #[arg(long, env = "HOOKRELAY_CONFIG", default_value = "config/default.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service until SIGTERM or SIGINT (the default).
    #[command(alias = "serve")]
    Run,
    /// Exit 0 if the running service's `/readyz` answers 200: the container health check.
    Health,
}

/// A long-running hookrelay process: what it says about itself, where its admin endpoints
/// listen, how it starts and how it runs until shutdown.
pub trait Service: Sized {
    /// The binary's name, for `--help`.
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// Where the running service answers `/readyz`.
    fn admin_listen(settings: &Settings) -> SocketAddr;
    /// Connects and binds, ready to run.
    fn build(settings: &Settings) -> impl Future<Output = anyhow::Result<Self>>;
    /// Runs until `shutdown` is cancelled.
    fn run(self, shutdown: CancellationToken) -> impl Future<Output = anyhow::Result<()>>;
}

/// A service's `main`: parses the flags and loads the configuration; then either probes the
/// running service (`health`) or initialises logging, builds the service and runs it until
/// SIGTERM or SIGINT.
pub async fn main<S: Service>() -> anyhow::Result<()> {
    let matches = Cli::command().name(S::NAME).about(S::ABOUT).get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let settings =
        Settings::load(&cli.config).with_context(|| format!("loading {}", cli.config.display()))?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Health => admin::probe(S::admin_listen(&settings), "/readyz")
            .await
            .map_err(anyhow::Error::msg),
        Command::Run => {
            let telemetry = telemetry::init(
                &settings.log,
                &settings.telemetry,
                &format!("hookrelay-{}", S::NAME),
            )?;
            let shutdown = shutdown::on_signal()?;
            let ran = async { S::build(&settings).await?.run(shutdown).await }.await;
            // Spans of the last requests and events leave before the process does.
            telemetry.shutdown().await;
            ran
        }
    }
}
