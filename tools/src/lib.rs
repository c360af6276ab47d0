//! `hookrelayctl`: tools for the people who run hookrelay.
//!
//! # Layout
//! - [`simulate`]: Okta's verification and preview-like deliveries, sent to any receiver.
//! - [`dead_letters`]: list, show and replay what subscribers gave up on.
//! - [`backfill`]: fetch what a hook missed from Okta's System Log API and store it.
//! - [`progress`]: the progress lines long runs print.

pub mod backfill;
pub mod dead_letters;
pub mod progress;
pub mod simulate;

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream::Stream};
use futures::StreamExt as _;
use hookrelay::{Settings, broker};

/// An HTTP client for the tools: rustls with ring (as async-nats uses), no redirects followed
/// (a redirected hook or API URL is a configuration mistake to report, not to paper over).
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    // Installing fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hookrelayctl/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The headers of every message of `stream` on `filter_subject` from `deliver_policy` on, in
/// order, until it has caught up (it returns at once when there is nothing to read).
pub async fn read_stream(
    stream: &Stream,
    filter_subject: String,
    deliver_policy: consumer::DeliverPolicy,
    mut each: impl FnMut(&jetstream::Message) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let reader = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject,
            deliver_policy,
            headers_only: true,
            ..Default::default()
        })
        .await
        .context("reading the stream")?;
    if reader.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = reader.messages().await.context("reading the stream")?;
    while let Some(message) = messages.next().await {
        let message = message.context("reading the stream")?;
        each(&message)?;
        let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        if info.pending == 0 {
            break;
        }
    }
    Ok(())
}

/// A JetStream context on the configured NATS, saying where it connects (on stderr).
pub async fn connect(settings: &Settings) -> anyhow::Result<jetstream::Context> {
    eprintln!("connecting to NATS at {}", settings.nats.url);
    let client = broker::connect(&settings.nats, "hookrelayctl").await?;
    Ok(jetstream::new(client))
}
