//! The command line both services share: `--config PATH` (or `HOOKRELAY_CONFIG`), then `run`
//! (the default) or `health`, the container health check that asks the running service's
//! `/readyz`. A service's `main` is one call to [`main`].

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

/// What a service binary says about itself and where its admin endpoints listen.
pub struct Service {
    /// The binary's name, for `--help`.
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// Where the running service answers `/readyz`.
    pub admin_listen: fn(&Settings) -> SocketAddr,
}

/// Parses the flags and loads the configuration; then either probes the running service
/// (`health`) or initialises logging and runs `run(settings, shutdown)`, `shutdown` being
/// cancelled on SIGTERM or SIGINT.
pub async fn main<F, Fut>(service: Service, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Settings, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let matches = Cli::command()
        .name(service.name)
        .about(service.about)
        .get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let settings =
        Settings::load(&cli.config).with_context(|| format!("loading {}", cli.config.display()))?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Health => admin::probe((service.admin_listen)(&settings), "/readyz")
            .await
            .map_err(anyhow::Error::msg),
        Command::Run => {
            telemetry::init(&settings.log)?;
            let shutdown = shutdown::on_signal()?;
            run(settings, shutdown).await
        }
    }
}
