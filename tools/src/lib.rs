//! `hookrelayctl`: tools for the people who run hookrelay.
//!
//! # Layout
//! - [`simulate`]: Okta's verification and preview-like deliveries, sent to any receiver.
//! - [`dead_letters`]: list, show and replay what subscribers gave up on.
//! - [`events`]: where one event is, and the stored events of a time range.
//! - [`backfill`]: fetch what a hook missed from Okta's System Log API and store it.
//! - [`hooks`]: the Okta event hook itself, through Okta's Management API.
//! - [`progress`]: the progress lines long runs print.

pub mod backfill;
pub mod dead_letters;
pub mod events;
pub mod hooks;
pub mod progress;
pub mod simulate;

use std::time::Duration;

use async_nats::jetstream;
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

/// A JetStream context on the configured NATS, saying where it connects (on stderr).
pub async fn connect(settings: &Settings) -> anyhow::Result<jetstream::Context> {
    eprintln!("connecting to NATS at {}", settings.nats.display_url());
    let client = broker::connect(&settings.nats, "hookrelayctl").await?;
    Ok(jetstream::new(client))
}

/// The stream `name`, or what to do when it does not exist yet: the receiver and the worker
/// create the streams at start.
pub async fn open_stream(
    js: &jetstream::Context,
    name: &str,
) -> anyhow::Result<jetstream::stream::Stream> {
    use jetstream::context::GetStreamErrorKind;
    match js.get_stream(name).await {
        Ok(stream) => Ok(stream),
        Err(e)
            if matches!(e.kind(), GetStreamErrorKind::JetStream(ref js)
                if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            anyhow::bail!(
                "there is no stream {name} on this NATS yet: the receiver and the worker create \
                 it when they start, so start one of them first (`docker compose up`), or check \
                 that nats.url and nats.stream / nats.dlq_stream are the ones they use"
            )
        }
        Err(e) => Err(anyhow::anyhow!("opening stream {name}: {e}")),
    }
}

/// Whether the consumer does not exist (JetStream said so, as opposed to not answering).
pub(crate) fn is_not_found(error: &jetstream::context::ConsumerInfoError) -> bool {
    use jetstream::context::ConsumerInfoErrorKind::{JetStream, NotFound};
    match error.kind() {
        NotFound => true,
        JetStream(e) => e.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND,
        _ => false,
    }
}

/// `1 dead letter`, `2 dead letters`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A time as RFC 3339 with milliseconds, for `--json` output.
pub(crate) fn rfc3339<S: serde::Serializer>(
    time: &std::time::SystemTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_millis(*time))
}

/// The `[okta]` section, with `OKTA_API_TOKEN` from the environment winning over its token.
pub fn okta_settings(settings: &Settings) -> hookrelay::config::OktaSettings {
    let mut okta = settings.okta.clone();
    if let Some(token) = std::env::var("OKTA_API_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        okta.api_token = secrecy::SecretString::from(token);
        okta.api_token_file = None;
    }
    okta
}
