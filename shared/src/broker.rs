//! The connection to NATS and the two JetStream streams both binaries rely on.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::config::NatsSettings;
use crate::subject;

/// Why the broker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot create or update stream {name}: {source}")]
    Stream {
        name: String,
        #[source]
        source: jetstream::context::CreateStreamError,
    },
}

/// Connects to NATS. After the first connection the client reconnects on its own, forever,
/// retrying at most every second so service resumes as soon as the broker is back.
pub async fn connect(
    settings: &NatsSettings,
    client_name: &str,
) -> Result<async_nats::Client, BrokerError> {
    async_nats::ConnectOptions::new()
        .name(client_name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis(100 * attempt.clamp(1, 10) as u64)
        })
        .event_callback(|event| async move {
            // async-nats logs connections itself; warn of what an operator must notice.
            match event {
                async_nats::Event::Connected => {}
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                other => tracing::warn!(event = %other, "NATS event"),
            }
        })
        .connect(settings.url.as_str())
        .await
        .map_err(|source| BrokerError::Connect {
            url: settings.url.clone(),
            source,
        })
}

/// The events stream: every routable event on `okta.events.>`, deduplicated on its uuid.
pub fn events_stream_config(settings: &NatsSettings) -> stream::Config {
    stream::Config {
        name: settings.stream.clone(),
        description: Some("Okta events received by hookrelay".into()),
        subjects: vec![format!("{}.>", subject::EVENTS_PREFIX)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: settings.retention,
        duplicate_window: settings.duplicate_window,
        ..Default::default()
    }
}

/// The dead-letter stream: events a subscriber (or the receiver) gave up on, on `okta.dlq.>`.
pub fn dlq_stream_config(settings: &NatsSettings) -> stream::Config {
    stream::Config {
        name: settings.dlq_stream.clone(),
        description: Some("Okta events hookrelay could not handle".into()),
        subjects: vec![format!("{}.>", subject::DLQ_PREFIX)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: settings.dlq_retention,
        duplicate_window: settings.duplicate_window,
        ..Default::default()
    }
}

/// Creates both streams, or brings existing ones to the configured settings. Safe to run from
/// several processes at once.
pub async fn ensure_streams(
    js: &jetstream::Context,
    settings: &NatsSettings,
) -> Result<(), BrokerError> {
    for config in [events_stream_config(settings), dlq_stream_config(settings)] {
        let name = config.name.clone();
        js.create_or_update_stream(config)
            .await
            .map_err(|source| BrokerError::Stream { name, source })?;
    }
    Ok(())
}

/// RFC 3339 time with milliseconds, as carried in `Hookrelay-…-At` headers.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
