//! Log set-up for both binaries: a level from the configuration that `RUST_LOG` overrides,
//! plain lines for people or JSON lines for collectors, on standard output.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(settings: &LogSettings) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives),
        _ => EnvFilter::try_new(&settings.level),
    }
    .map_err(|e| anyhow::anyhow!("log.level: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match settings.format {
        LogFormat::Plain => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("log set-up: {e}"))
}

/// For `hookrelayctl`: what the library says while a command runs (a wait for Okta's rate
/// limit, a retry) as plain lines on standard error, beside the command's own progress lines;
/// warnings only from the rest. `RUST_LOG` overrides it.
pub fn init_for_tools() {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives).ok(),
        _ => None,
    }
    .unwrap_or_else(|| EnvFilter::new("warn,hookrelay::okta=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .try_init();
}
