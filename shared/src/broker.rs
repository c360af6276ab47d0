//! The connection to NATS and the two JetStream streams both binaries rely on.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, stream::Stream};
use futures::StreamExt as _;

use secrecy::ExposeSecret as _;

use async_nats::ConnectErrorKind::Authentication;

use crate::config::{NatsAuth, NatsSettings};
use crate::subject;

/// Why the broker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// `url` never shows a password; `auth` names the settings the credentials came from.
    /// async-nats's error already says its cause, so it is shown, not chained.
    #[error("cannot connect to NATS at {url}{}: {error}{}", auth.map(|keys| format!(" (authenticating with {keys})")).unwrap_or_default(), if is_tls(error) { TLS_HINT } else { "" })]
    Connect {
        url: String,
        auth: Option<&'static str>,
        error: async_nats::ConnectError,
    },
    #[error("cannot create or update stream {name}: {source}")]
    Stream {
        name: String,
        #[source]
        source: async_nats::Error,
    },
}

/// Connects to NATS (`settings.url` may list several servers of a cluster, comma-separated),
/// trying again until `startup_timeout`. After the first connection the client reconnects on
/// its own, forever, trying at least every second so service resumes as soon as the broker is
/// back.
pub async fn connect(
    settings: &NatsSettings,
    client_name: &str,
) -> Result<async_nats::Client, BrokerError> {
    retry_until(settings.startup_timeout, "connecting to NATS", || {
        connect_once(settings, client_name)
    })
    .await
}

const TLS_HINT: &str = " (check nats.tls: ca_file must hold the CA that signed the server's \
    certificate, cert_file and key_file are needed where the server verifies clients, and a \
    tls:// URL or nats.tls.required needs a server with TLS)";

/// Whether TLS failed: async-nats reports a certificate the client does not trust as an I/O
/// error whose cause is rustls's.
fn is_tls(error: &async_nats::ConnectError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        let rustls = error.downcast_ref::<rustls::Error>().is_some()
            || (error.downcast_ref::<std::io::Error>())
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        if rustls {
            return true;
        }
        cause = error.source();
    }
    error.kind() == async_nats::ConnectErrorKind::Tls
}

/// Failures no retry can fix: wrong credentials, TLS the two sides do not agree on.
fn is_final(error: &BrokerError) -> bool {
    matches!(
        error,
        BrokerError::Connect { error, .. } if is_tls(error) || matches!(
            error.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation
                | async_nats::ConnectErrorKind::Authentication
        )
    )
}

async fn connect_once(
    settings: &NatsSettings,
    client_name: &str,
) -> Result<async_nats::Client, BrokerError> {
    let error = |error| BrokerError::Connect {
        url: settings.display_url(),
        auth: settings.auth().keys(),
        error,
    };
    let options = async_nats::ConnectOptions::new();
    let options = match settings.auth() {
        NatsAuth::None => options,
        NatsAuth::UserPassword { user, password, .. } => {
            options.user_and_password(user.clone(), password.expose_secret().to_owned())
        }
        NatsAuth::Token { token, .. } => options.token(token.expose_secret().to_owned()),
        NatsAuth::Credentials { creds } => (options.credentials(creds.expose_secret()))
            .map_err(|e| error(async_nats::ConnectError::with_source(Authentication, e)))?,
        NatsAuth::Nkey { seed } => options.nkey(seed.expose_secret().to_owned()),
    };
    let tls = &settings.tls;
    let mut options = options.require_tls(settings.tls_required());
    if let Some(ca_file) = &tls.ca_file {
        options = options.add_root_certificates(ca_file.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    options
        .name(client_name)
        .custom_inbox_prefix(settings.inbox_prefix_for(client_name))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis(100 * attempt.clamp(1, 10) as u64)
        })
        .event_callback(|event| async move {
            // async-nats logs connections itself; warn of what an operator must notice. With
            // reconnects unlimited, only our own drain or close ends a connection: no warning.
            match event {
                async_nats::Event::Connected => {}
                async_nats::Event::Draining => tracing::debug!("draining the NATS connection"),
                async_nats::Event::Closed => tracing::info!("closed the NATS connection"),
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                other => tracing::warn!(event = %other, "NATS event"),
            }
        })
        .connect(settings.servers())
        .await
        .map_err(error)
}

/// The events stream: every routable event on `okta.events.>`, deduplicated on its uuid, and
/// dead letters replayed to one subscriber on `okta.replay.>`.
pub fn events_stream_config(settings: &NatsSettings) -> stream::Config {
    stream::Config {
        name: settings.stream.clone(),
        description: Some("Okta events received by hookrelay".into()),
        subjects: vec![
            format!("{}.>", subject::EVENTS_PREFIX),
            format!("{}.>", subject::REPLAY_PREFIX),
        ],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: settings.retention,
        duplicate_window: settings.duplicate_window,
        num_replicas: settings.replicas,
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
        num_replicas: settings.replicas,
        ..Default::default()
    }
}

/// Creates both streams, or brings existing ones to the configured settings, trying again
/// until `startup_timeout` (a cluster may still be electing its leader). Safe to run from
/// several processes at once. A stream that already has these settings is only looked at, so
/// a process whose NATS user may not create or update streams (the worker, the reconciler and
/// `hookrelayctl` in `deploy/nats/least-privilege.conf`) starts once the receiver made them.
pub async fn ensure_streams(
    js: &jetstream::Context,
    settings: &NatsSettings,
) -> Result<(), BrokerError> {
    for config in [events_stream_config(settings), dlq_stream_config(settings)] {
        retry_until(settings.startup_timeout, "setting up a stream", || {
            let config = config.clone();
            async move {
                let name = config.name.clone();
                let error = |source: async_nats::Error| BrokerError::Stream {
                    name: name.clone(),
                    source,
                };
                match js.get_stream(&name).await {
                    Ok(stream) if has_settings(&stream.cached_info().config, &config) => Ok(()),
                    Ok(_) => (js.update_stream(config).await)
                        .map(drop)
                        .map_err(|e| error(e.into())),
                    Err(e) if is_stream_not_found(&e) => js
                        .create_stream(config)
                        .await
                        .map(drop)
                        .map_err(|e| error(e.into())),
                    Err(e) => Err(error(e.into())),
                }
            }
        })
        .await?;
    }
    Ok(())
}

fn is_stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(error.kind(), jetstream::context::GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Whether an existing stream's configuration already has what hookrelay sets.
fn has_settings(current: &stream::Config, wanted: &stream::Config) -> bool {
    let sorted = |subjects: &[String]| {
        let mut subjects = subjects.to_vec();
        subjects.sort();
        subjects
    };
    sorted(&current.subjects) == sorted(&wanted.subjects)
        && current.description == wanted.description
        && current.storage == wanted.storage
        && current.retention == wanted.retention
        && current.max_age == wanted.max_age
        && current.duplicate_window == wanted.duplicate_window
        && current.num_replicas == wanted.num_replicas
}

/// Runs `attempt` until it succeeds or `budget` is spent, logging each failure; returns the
/// last error.
async fn retry_until<T, F, Fut>(
    budget: Duration,
    what: &str,
    mut attempt: F,
) -> Result<T, BrokerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BrokerError>>,
{
    let deadline = tokio::time::Instant::now() + budget;
    let mut delay = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if !is_final(&error) && tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(%error, retry_in = ?delay, "{what} failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(error) => return Err(error),
        }
    }
}

/// A time as RFC 3339 with milliseconds, for JSON (`--json` output, the console's answers).
pub fn serialize_rfc3339<S: serde::Serializer>(
    time: &std::time::SystemTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_millis(*time))
}

/// The stream `name`, or what to do when it does not exist yet: the receiver and the worker
/// create the streams at start.
pub async fn open_stream(js: &jetstream::Context, name: &str) -> anyhow::Result<Stream> {
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
pub fn is_consumer_not_found(error: &jetstream::context::ConsumerInfoError) -> bool {
    use jetstream::context::ConsumerInfoErrorKind::{JetStream, NotFound};
    match error.kind() {
        NotFound => true,
        JetStream(e) => e.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND,
        _ => false,
    }
}

/// RFC 3339 time with microseconds, as carried in `Hookrelay-…-At` headers.
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// `time` in RFC 3339 with microseconds.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

/// The headers of every message of `stream` on `filter_subject` from `deliver_policy` on, in
/// order, until it has caught up (it returns at once when there is nothing to read).
pub async fn read_stream(
    stream: &Stream,
    filter_subject: String,
    deliver_policy: consumer::DeliverPolicy,
    mut each: impl FnMut(&jetstream::Message) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let headers_only = consumer::pull::OrderedConfig {
        filter_subject,
        deliver_policy,
        headers_only: true,
        ..Default::default()
    };
    read_stream_until(stream, headers_only, |message| each(message).map(|()| true)).await
}

/// As [`read_stream`], with the ordered consumer's whole `config` (payloads too, unless
/// `headers_only`), until `each` says to stop (`false`) or it has caught up.
pub async fn read_stream_until(
    stream: &Stream,
    config: consumer::pull::OrderedConfig,
    mut each: impl FnMut(&jetstream::Message) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let reader = stream
        .create_consumer(config)
        .await
        .map_err(|e| anyhow::anyhow!("reading the stream: {e}"))?;
    if reader.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = reader
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("reading the stream: {e}"))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("reading the stream: {e}"))?;
        if !each(&message)? {
            break;
        }
        let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        if info.pending == 0 {
            break;
        }
    }
    Ok(())
}

/// The uuid (`Nats-Msg-Id`) of every event stored on `stream` from `from` on: what a reader of
/// Okta's System Log must not store again once JetStream's duplicate window has passed.
pub async fn stored_uuids(
    stream: &Stream,
    from: std::time::SystemTime,
    mut each: impl FnMut(usize),
) -> anyhow::Result<std::collections::HashSet<String>> {
    let mut uuids = std::collections::HashSet::new();
    read_stream(
        stream,
        format!("{}.>", subject::EVENTS_PREFIX),
        consumer::DeliverPolicy::ByStartTime {
            start_time: from.into(),
        },
        |message| {
            if let Some(id) = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
                uuids.insert(id.as_str().to_owned());
            }
            each(uuids.len());
            Ok(())
        },
    )
    .await?;
    Ok(uuids)
}

/// Opens the bucket, creating its stream first if need be. The stream is made here rather than
/// by `create_key_value`, which first asks for the account's limits in a form nats-server 2.9
/// does not answer; the configuration is the one async-nats gives a bucket.
pub async fn key_value(
    js: &jetstream::Context,
    bucket: &Bucket<'_>,
) -> anyhow::Result<jetstream::kv::Store> {
    let config = stream::Config {
        name: format!("KV_{}", bucket.name),
        description: Some(bucket.description.to_owned()),
        subjects: vec![format!("$KV.{}.>", bucket.name)],
        max_messages_per_subject: bucket.history.max(1),
        max_age: bucket.max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: bucket.replicas.max(1),
        ..Default::default()
    };
    ensure_bucket(js, config).await
}

/// Opens the bucket whose stream is `config` (`KV_<bucket>`), creating the stream, or bringing
/// an existing one to `config` when its limits differ (a stream that has them already is only
/// looked at, so a process that may not change streams can open it).
pub async fn ensure_bucket(
    js: &jetstream::Context,
    config: stream::Config,
) -> anyhow::Result<jetstream::kv::Store> {
    let name = (config.name.strip_prefix("KV_"))
        .expect("a bucket's stream is named KV_<bucket>")
        .to_owned();
    let error = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("creating or updating the key-value bucket {name}: {e}")
    };
    match js.get_stream(&config.name).await {
        Ok(stream) => {
            let current = &stream.cached_info().config;
            // The server writes "no limit" as -1 whatever it was given (0 or -1).
            let limit = |n: i64| if n <= 0 { -1 } else { n };
            let same = current.subjects == config.subjects
                && current.description == config.description
                && limit(current.max_messages_per_subject)
                    == limit(config.max_messages_per_subject)
                && limit(current.max_messages) == limit(config.max_messages)
                && current.max_age == config.max_age
                && current.discard == config.discard
                && current.num_replicas == config.num_replicas;
            if !same {
                js.update_stream(config).await.map_err(|e| error(&e))?;
            }
        }
        Err(e) if is_stream_not_found(&e) => {
            js.create_stream(config).await.map_err(|e| error(&e))?;
        }
        Err(e) => return Err(error(&e)),
    }
    js.get_key_value(&name)
        .await
        .map_err(|e| anyhow::anyhow!("opening the key-value bucket {name}: {e}"))
}

/// A bucket of a value per key, with the last `history` values of each kept.
pub struct Bucket<'a> {
    pub name: &'a str,
    pub description: &'a str,
    /// Zero: values never expire.
    pub max_age: Duration,
    pub replicas: usize,
    /// Values kept per key: 1 keeps the current one only.
    pub history: i64,
}
