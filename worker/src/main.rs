//! The `worker` binary: flags, logging, configuration, then [`worker::Worker`].

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hookrelay::{Settings, admin, shutdown, telemetry};

/// jemalloc: less lock contention per request than glibc's allocator and a smaller resident
/// set under load than glibc or mimalloc (bench/run measures both).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Runs hookrelay's subscribers on the Okta events stored in NATS JetStream"
)]
struct Cli {
    /// The configuration file; `HOOKRELAY__SECTION__KEY` environment variables override it.
    #[arg(long, env = "HOOKRELAY_CONFIG", default_value = "config/default.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the subscribers (the default).
    Run,
    /// Exit 0 if the running worker's `/readyz` answers 200: the container health check.
    Health,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings =
        Settings::load(&cli.config).with_context(|| format!("loading {}", cli.config.display()))?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Health => admin::probe(settings.worker.admin_listen, "/readyz")
            .await
            .map_err(anyhow::Error::msg),
        Command::Run => {
            telemetry::init(&settings.log)?;
            let worker = worker::Worker::build(&settings).await?;
            worker.run(shutdown::on_signal()?).await
        }
    }
}
