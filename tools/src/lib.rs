//! `hookrelayctl`: tools for the people who run hookrelay.
//!
//! # Layout
//! - [`simulate`]: Okta's verification and preview-like deliveries, sent to any receiver.
//! - [`dead_letters`]: list, show and replay what subscribers gave up on.
//! - [`events`]: where one event is, and the stored events of a time range.
//! - [`backfill`]: fetch what a hook missed from Okta's System Log API and store it.
//! - [`hooks`]: the Okta event hook itself, through Okta's Management API.
//! - [`subscribers`]: each subscriber at a glance; pause and resume one.
//! - [`console`]: password hashes and the first sign-in of the web console.
//! - [`progress`]: the progress lines long runs print.

pub mod backfill;
pub mod console;
pub mod dead_letters;
pub mod events;
pub mod hooks;
pub mod progress;
pub mod simulate;
pub mod subscribers;

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

pub use hookrelay::count;

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
