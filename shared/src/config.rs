//! Configuration shared by the receiver and the worker: one typed [`Settings`] loaded from
//! compiled-in defaults, then a TOML file, then `HOOKRELAY__SECTION__KEY` environment variables.
//!
//! Every key is documented in `config/default.toml`. A value that is missing, mistyped or
//! out of range stops the program at start with a [`ConfigError`] that names the key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::subject;

/// The prefix of environment variables that override the file: `HOOKRELAY__NATS__URL`.
pub const ENV_PREFIX: &str = "HOOKRELAY";
/// Separates the prefix, sections and keys of an environment variable.
pub const ENV_SEPARATOR: &str = "__";
/// The secret of Okta's ngrok guide (`admin:supersecret`). It is public, so the receiver warns
/// when it runs with it.
pub const DEMO_SECRET: &str = "Basic YWRtaW46c3VwZXJzZWNyZXQ=";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is unreadable, a key is unknown or a value has the wrong type. The `config`
    /// crate's message names the key and the file.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value parsed but is not acceptable.
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Everything hookrelay can be configured with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The broker and the two streams.
    pub nats: NatsSettings,
    /// The HTTP endpoint Okta calls.
    pub receiver: ReceiverSettings,
    /// The subscribers that act on stored events.
    pub worker: WorkerSettings,
    /// Log level and format.
    pub log: LogSettings,
}

/// The broker and the two streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// Where the NATS server listens.
    pub url: String,
    /// The stream that stores every event, on subjects `okta.events.>`.
    pub stream: String,
    /// The stream that stores dead letters, on subjects `okta.dlq.>`.
    pub dlq_stream: String,
    /// How long JetStream remembers an event's uuid to drop a second copy of it.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// How long the events stream keeps an event.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How long the dead-letter stream keeps a dead letter.
    #[serde(with = "humantime_serde")]
    pub dlq_retention: Duration,
    /// Copies of each stream in a NATS cluster: 1 for a single server, 3 for a 3-node cluster.
    pub replicas: usize,
    /// How long start-up keeps trying to reach NATS and set up the streams before giving up.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: "nats://127.0.0.1:4222".into(),
            stream: "OKTA_EVENTS".into(),
            dlq_stream: "OKTA_DLQ".into(),
            duplicate_window: Duration::from_secs(60 * 60),
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            dlq_retention: Duration::from_secs(30 * 24 * 60 * 60),
            replicas: 1,
            startup_timeout: Duration::from_secs(30),
        }
    }
}

/// The HTTP endpoint Okta calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiverSettings {
    /// Address of the hook endpoint (the one the tunnel points at).
    pub listen: SocketAddr,
    /// Path of the hook endpoint: the hook URL is `https://<tunnel><path>`.
    pub path: String,
    /// Address of `/healthz`, `/readyz` and `/metrics`; never expose it through the tunnel.
    pub admin_listen: SocketAddr,
    /// How long a delivery may wait for JetStream's acknowledgements before the receiver
    /// answers 503, so that Okta retries. Keep it under Okta's 3 s timeout.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers; also how long an idle
    /// keep-alive connection is kept.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body once its headers are in.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Connections served at once; more wait until one closes.
    pub max_connections: usize,
    /// The header secret Okta sends with every request.
    pub auth: AuthSettings,
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        ReceiverSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], 8082)),
            path: "/okta/events".into(),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9082)),
            publish_timeout: Duration::from_secs(2),
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(5),
            max_connections: 1024,
            auth: AuthSettings::default(),
        }
    }
}

/// The header secret Okta sends with every request (the hook's "Authentication field" and
/// "Authentication secret"). Every configured secret is accepted, so a secret can be rotated
/// without downtime: add the new one, change it in Okta, remove the old one.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Name of the header, case-insensitive.
    pub header: String,
    /// An accepted value of the header (the one environment variable can set).
    pub secret: SecretString,
    /// More accepted values.
    pub secrets: Vec<SecretString>,
    /// A file holding accepted values, one per line (a Docker or Kubernetes secret), read at
    /// start.
    pub secret_file: Option<PathBuf>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            header: "authorization".into(),
            secret: SecretString::default(),
            secrets: Vec::new(),
            secret_file: None,
        }
    }
}

impl AuthSettings {
    /// Every accepted secret: `secret`, `secrets` and the lines of `secret_file`, blank ones
    /// left out. Fails if the file cannot be read or a secret cannot be a header value; an empty
    /// list is the caller's to refuse.
    pub fn accepted_secrets(&self) -> Result<Vec<SecretString>, ConfigError> {
        let mut accepted: Vec<SecretString> = std::iter::once(&self.secret)
            .chain(&self.secrets)
            .filter(|secret| !secret.expose_secret().is_empty())
            .cloned()
            .collect();
        if let Some(path) = &self.secret_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(
                    "receiver.auth.secret_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            accepted.extend(
                text.lines()
                    .map(|line| line.trim_end_matches('\r'))
                    .filter(|line| !line.trim().is_empty())
                    .map(|line| SecretString::from(line.to_owned())),
            );
        }
        for secret in &accepted {
            if axum::http::HeaderValue::from_str(secret.expose_secret()).is_err() {
                return Err(ConfigError::invalid(
                    "receiver.auth.secret",
                    "a secret must be visible ASCII, as an HTTP header value is",
                ));
            }
        }
        Ok(accepted)
    }
}

/// The subscribers that act on stored events.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub admin_listen: SocketAddr,
    /// How long a shutdown waits for running actions before it gives up on them (they are
    /// then delivered again after `ack_wait`).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Each subscriber is a durable JetStream consumer with its own action.
    pub subscribers: Vec<SubscriberSettings>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9083)),
            shutdown_grace: Duration::from_secs(30),
            subscribers: vec![SubscriberSettings::user_added()],
        }
    }
}

/// One named subscriber: which events it wants, what it does with them, how it retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberSettings {
    /// Names the durable consumers and the dead-letter subject `okta.dlq.<name>`.
    pub name: String,
    /// Okta event types (`user.lifecycle.create`) this subscriber receives.
    pub event_types: Vec<String>,
    /// What to do with each event.
    pub action: ActionSettings,
    /// How long JetStream waits for an answer before it delivers an event again.
    #[serde(default = "defaults::ack_wait", with = "humantime_serde")]
    pub ack_wait: Duration,
    /// How many times an event is attempted before it is dead-lettered.
    #[serde(default = "defaults::max_deliver")]
    pub max_deliver: u32,
    /// Delay before the 1st, 2nd, … retry of a transient failure; the last one repeats.
    #[serde(default = "defaults::backoff", deserialize_with = "durations")]
    pub backoff: Vec<Duration>,
    /// How many actions of this subscriber run at once in one worker process.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
}

/// A list of durations written as `["1s", "5s"]`.
fn durations<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
    let list: Vec<humantime_serde::Serde<Duration>> = Deserialize::deserialize(deserializer)?;
    Ok(list
        .into_iter()
        .map(humantime_serde::Serde::into_inner)
        .collect())
}

mod defaults {
    use std::time::Duration;

    pub fn ack_wait() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_deliver() -> u32 {
        8
    }
    pub fn backoff() -> Vec<Duration> {
        [1, 5, 30, 120].map(Duration::from_secs).to_vec()
    }
    pub fn concurrency() -> usize {
        16
    }
    pub fn http_timeout() -> Duration {
        Duration::from_secs(10)
    }
}

impl SubscriberSettings {
    /// The guide's subscriber: log every user created in Okta.
    pub fn user_added() -> Self {
        SubscriberSettings {
            name: "user-added".into(),
            event_types: vec!["user.lifecycle.create".into()],
            action: ActionSettings::UserAdded,
            ack_wait: defaults::ack_wait(),
            max_deliver: defaults::max_deliver(),
            backoff: defaults::backoff(),
            concurrency: defaults::concurrency(),
        }
    }

    /// The delay before retry number `attempt` (1 for the first retry).
    pub fn backoff_for(&self, attempt: u32) -> Duration {
        let index = (attempt.max(1) as usize - 1).min(self.backoff.len().saturating_sub(1));
        self.backoff.get(index).copied().unwrap_or(Duration::ZERO)
    }
}

/// What a subscriber does with an event. `type` selects the action; the other keys are its
/// parameters. To add an action, add a variant here and build it in the worker's
/// `actions::build`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionSettings {
    /// Logs `The user <alternateId> has been added to the Okta org!`, as the guide's sample app.
    UserAdded,
    /// Logs the event's uuid, type and display message; handy to watch a new event type.
    Log,
    /// Does nothing and succeeds: acknowledges a subscriber's events, for benchmarks or to
    /// drain a subscriber.
    Noop,
    /// POSTs the event to a URL.
    Http(HttpActionSettings),
}

/// `action = { type = "http", url = "…" }`: POST the event JSON to `url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpActionSettings {
    /// Where to POST, `http://` or `https://`.
    pub url: String,
    /// How long one request may take, connection included; longer is a transient failure.
    #[serde(default = "defaults::http_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Headers added to every request, such as an API key. Never logged.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, SecretString>,
    /// Signs each request per Standard Webhooks (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`) with this key, written `whsec_<base64>`.
    #[serde(default)]
    pub signing_secret: Option<SecretString>,
}

impl HttpActionSettings {
    /// The signing key's bytes: the base64 after `whsec_`.
    pub fn signing_key(&self) -> Option<Result<Vec<u8>, String>> {
        use base64::Engine as _;
        self.signing_secret.as_ref().map(|secret| {
            let encoded = secret
                .expose_secret()
                .strip_prefix("whsec_")
                .ok_or("must start with `whsec_`")?;
            let key = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| "must be `whsec_` followed by base64")?;
            if key.len() < 16 {
                return Err("must hold at least 16 bytes of key".to_string());
            }
            Ok(key)
        })
    }

    fn validate(&self, key: impl Fn(&str) -> String) -> Result<(), ConfigError> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                key("url"),
                "must start with http:// or https://",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                key("timeout"),
                "must be more than zero",
            ));
        }
        for (name, value) in &self.headers {
            let valid_name = axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            let valid_value = axum::http::HeaderValue::from_str(value.expose_secret()).is_ok();
            if !valid_name || !valid_value {
                return Err(ConfigError::invalid(
                    key(&format!("headers.{name}")),
                    "is not a valid HTTP header",
                ));
            }
        }
        if let Some(Err(reason)) = self.signing_key() {
            return Err(ConfigError::invalid(key("signing_secret"), reason));
        }
        Ok(())
    }
}

/// Log level and format.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `info,receiver=debug`; `RUST_LOG` overrides it.
    pub level: String,
    /// `plain` for people, `json` for log collectors.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: LogFormat::Plain,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Plain,
    Json,
}

impl Settings {
    /// Loads the file at `path`, then the process environment's `HOOKRELAY__…` variables.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Self::load_from(Some(path), None)
    }

    /// Loads `file` (if any), then the environment: `env` when given (tests pass a map instead
    /// of mutating the process environment), else the process environment. Validates what
    /// both binaries need; see [`Settings::validate_receiver`] for the receiver's own checks.
    pub fn load_from(
        file: Option<&Path>,
        env: Option<HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .source(env);
        let settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let nats = &self.nats;
        let servers = crate::broker::server_urls(&nats.url);
        if servers.is_empty() {
            return Err(ConfigError::invalid("nats.url", "must not be empty"));
        }
        for server in servers {
            if server.parse::<async_nats::ServerAddr>().is_err() {
                return Err(ConfigError::invalid(
                    "nats.url",
                    format!("`{server}` is not a NATS URL such as nats://127.0.0.1:4222"),
                ));
            }
        }
        for (key, name) in [
            ("nats.stream", &nats.stream),
            ("nats.dlq_stream", &nats.dlq_stream),
        ] {
            if !subject::is_valid_name(name) {
                return Err(ConfigError::invalid(
                    key,
                    format!("`{name}` is not a valid stream name (letters, digits, `-`, `_`)"),
                ));
            }
        }
        if nats.stream == nats.dlq_stream {
            return Err(ConfigError::invalid(
                "nats.dlq_stream",
                "must differ from nats.stream",
            ));
        }
        if nats.duplicate_window.is_zero() || nats.duplicate_window > nats.retention {
            return Err(ConfigError::invalid(
                "nats.duplicate_window",
                "must be more than zero and at most nats.retention",
            ));
        }
        if !(1..=5).contains(&nats.replicas) {
            return Err(ConfigError::invalid("nats.replicas", "must be 1 to 5"));
        }
        if nats.startup_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "nats.startup_timeout",
                "must be more than zero",
            ));
        }
        if nats.dlq_retention < nats.duplicate_window {
            return Err(ConfigError::invalid(
                "nats.dlq_retention",
                "must be at least nats.duplicate_window",
            ));
        }

        let receiver = &self.receiver;
        if !receiver.path.starts_with('/') {
            return Err(ConfigError::invalid("receiver.path", "must start with `/`"));
        }
        if receiver.publish_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "receiver.publish_timeout",
                "must be more than zero",
            ));
        }
        if receiver.max_body_bytes == 0 {
            return Err(ConfigError::invalid(
                "receiver.max_body_bytes",
                "must be more than zero",
            ));
        }
        for (key, timeout) in [
            ("receiver.header_read_timeout", receiver.header_read_timeout),
            ("receiver.body_read_timeout", receiver.body_read_timeout),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError::invalid(key, "must be more than zero"));
            }
        }
        if receiver.max_connections == 0 {
            return Err(ConfigError::invalid(
                "receiver.max_connections",
                "must be more than zero",
            ));
        }
        if axum::http::HeaderName::from_bytes(receiver.auth.header.as_bytes()).is_err() {
            return Err(ConfigError::invalid(
                "receiver.auth.header",
                "is not a valid HTTP header name",
            ));
        }

        let mut names = std::collections::HashSet::new();
        let mut durables = std::collections::HashSet::new();
        for (index, subscriber) in self.worker.subscribers.iter().enumerate() {
            let key = |field: &str| format!("worker.subscribers[{index}].{field}");
            if !subject::is_valid_name(&subscriber.name) {
                return Err(ConfigError::invalid(
                    key("name"),
                    "must be letters, digits, `-` or `_`",
                ));
            }
            if subscriber.name == subject::RECEIVER_DLQ_TOKEN {
                return Err(ConfigError::invalid(
                    key("name"),
                    "`receiver` is reserved for the receiver's dead letters",
                ));
            }
            if !names.insert(subscriber.name.as_str()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("`{}` is used by two subscribers", subscriber.name),
                ));
            }
            if subscriber.event_types.is_empty() {
                return Err(ConfigError::invalid(
                    key("event_types"),
                    "must name at least one event type",
                ));
            }
            for event_type in &subscriber.event_types {
                if !subject::is_valid_event_type(event_type) {
                    return Err(ConfigError::invalid(
                        key("event_types"),
                        format!(
                            "`{event_type}` is not an Okta event type such as `user.lifecycle.create`"
                        ),
                    ));
                }
                let durable = subject::durable_name(&subscriber.name, event_type);
                if !durables.insert(durable.clone()) {
                    return Err(ConfigError::invalid(
                        key("event_types"),
                        format!(
                            "`{event_type}` gives the consumer name `{durable}`, which another subscription has"
                        ),
                    ));
                }
            }
            if subscriber.max_deliver == 0 {
                return Err(ConfigError::invalid(
                    key("max_deliver"),
                    "must be at least 1",
                ));
            }
            if subscriber.concurrency == 0 {
                return Err(ConfigError::invalid(
                    key("concurrency"),
                    "must be at least 1",
                ));
            }
            if subscriber.ack_wait < Duration::from_secs(1) {
                return Err(ConfigError::invalid(key("ack_wait"), "must be at least 1s"));
            }
            if let ActionSettings::Http(http) = &subscriber.action {
                http.validate(|field| key(&format!("action.{field}")))?;
            }
        }
        Ok(())
    }

    /// The receiver's own requirements: it refuses to start without a secret. Returns every
    /// accepted secret.
    pub fn validate_receiver(&self) -> Result<Vec<SecretString>, ConfigError> {
        let accepted = self.receiver.auth.accepted_secrets()?;
        if accepted.is_empty() {
            return Err(ConfigError::invalid(
                "receiver.auth.secret",
                "is required: set it in the file, as HOOKRELAY__RECEIVER__AUTH__SECRET, or in \
                 receiver.auth.secrets or receiver.auth.secret_file",
            ));
        }
        Ok(accepted)
    }
}

/// Whether `secret` is the one published in Okta's guide.
pub fn is_demo_secret(secret: &SecretString) -> bool {
    secret.expose_secret() == DEMO_SECRET
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn default_file() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default.toml")
    }

    #[test]
    fn default_file_loads_to_the_compiled_in_defaults() {
        let from_file = Settings::load_from(Some(&default_file()), Some(HashMap::new()))
            .expect("config/default.toml is valid");
        let compiled = Settings::load_from(None, Some(HashMap::new())).expect("defaults are valid");
        assert_eq!(format!("{from_file:?}"), format!("{compiled:?}"));
        assert_eq!(from_file.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(from_file.nats.stream, "OKTA_EVENTS");
        assert_eq!(from_file.nats.dlq_stream, "OKTA_DLQ");
        assert_eq!(from_file.receiver.listen.port(), 8082);
        assert_eq!(from_file.receiver.path, "/okta/events");
        assert_eq!(from_file.receiver.auth.header, "authorization");
        assert_eq!(from_file.worker.subscribers.len(), 1);
        assert_eq!(from_file.worker.subscribers[0].name, "user-added");
        assert!(matches!(
            from_file.worker.subscribers[0].action,
            ActionSettings::UserAdded
        ));
    }

    #[test]
    fn environment_overrides_the_file() {
        let settings = Settings::load_from(
            Some(&default_file()),
            Some(env(&[
                ("HOOKRELAY__NATS__URL", "nats://nats:4222"),
                ("HOOKRELAY__RECEIVER__AUTH__SECRET", "s3cret"),
                ("HOOKRELAY__RECEIVER__ADMIN_LISTEN", "0.0.0.0:9999"),
                ("HOOKRELAY__RECEIVER__PUBLISH_TIMEOUT", "1500ms"),
                ("HOOKRELAY__NATS__DUPLICATE_WINDOW", "2h"),
                ("HOOKRELAY__LOG__FORMAT", "json"),
            ])),
        )
        .expect("valid");
        assert_eq!(settings.nats.url, "nats://nats:4222");
        assert_eq!(settings.receiver.auth.secret.expose_secret(), "s3cret");
        assert_eq!(settings.receiver.admin_listen.port(), 9999);
        assert_eq!(
            settings.receiver.publish_timeout,
            Duration::from_millis(1500)
        );
        assert_eq!(settings.nats.duplicate_window, Duration::from_secs(7200));
        assert_eq!(settings.log.format, LogFormat::Json);
        settings.validate_receiver().expect("a secret is set");
    }

    #[test]
    fn receiver_refuses_an_empty_secret_and_names_the_key() {
        let settings = Settings::load_from(None, Some(HashMap::new())).expect("valid");
        let error = settings.validate_receiver().expect_err("no secret");
        assert!(
            error.to_string().contains("receiver.auth.secret"),
            "{error}"
        );
    }

    #[test]
    fn secrets_come_from_the_value_the_list_and_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file-1\r\n\n  \nfrom-file-2\n").expect("written");
        let config = dir.path().join("hookrelay.toml");
        std::fs::write(
            &config,
            format!(
                "[receiver.auth]\nsecrets = [\"listed\"]\nsecret_file = {:?}\n",
                file.display().to_string()
            ),
        )
        .expect("written");
        let settings = Settings::load_from(
            Some(&config),
            Some(env(&[("HOOKRELAY__RECEIVER__AUTH__SECRET", "from-env")])),
        )
        .expect("valid");
        let secrets = settings.validate_receiver().expect("secrets");
        let secrets: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
        assert_eq!(
            secrets,
            ["from-env", "listed", "from-file-1", "from-file-2"]
        );

        // Only the file: enough on its own.
        std::fs::write(
            &config,
            format!(
                "[receiver.auth]\nsecret_file = {:?}\n",
                file.display().to_string()
            ),
        )
        .expect("written");
        let settings = Settings::load_from(Some(&config), Some(HashMap::new())).expect("valid");
        assert_eq!(settings.validate_receiver().expect("secrets").len(), 2);

        // A missing file and a secret that cannot be a header value are refused, by key.
        std::fs::remove_file(&file).expect("removed");
        let error = settings.validate_receiver().expect_err("no file");
        assert!(
            error.to_string().contains("receiver.auth.secret_file"),
            "{error}"
        );
        let settings = Settings::load_from(
            None,
            Some(env(&[(
                "HOOKRELAY__RECEIVER__AUTH__SECRET",
                "bad\u{7}secret",
            )])),
        )
        .expect("valid");
        let error = settings.validate_receiver().expect_err("control character");
        assert!(
            error.to_string().contains("receiver.auth.secret"),
            "{error}"
        );
        assert!(
            !error.to_string().contains("bad"),
            "the secret is not echoed: {error}"
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let cases = [
            (
                "HOOKRELAY__RECEIVER__LISTEN",
                "not-an-address",
                "receiver.listen",
            ),
            ("HOOKRELAY__RECEIVER__PATH", "okta", "receiver.path"),
            ("HOOKRELAY__NATS__URL", " , ", "nats.url"),
            ("HOOKRELAY__NATS__URL", "nats://a:1,http://[::1", "nats.url"),
            ("HOOKRELAY__NATS__REPLICAS", "7", "nats.replicas"),
            ("HOOKRELAY__NATS__STREAM", "OKTA.EVENTS", "nats.stream"),
            (
                "HOOKRELAY__NATS__DUPLICATE_WINDOW",
                "soon",
                "nats.duplicate_window",
            ),
            (
                "HOOKRELAY__NATS__DUPLICATE_WINDOW",
                "30d",
                "nats.duplicate_window",
            ),
            (
                "HOOKRELAY__RECEIVER__AUTH__HEADER",
                "bad header",
                "receiver.auth.header",
            ),
            (
                "HOOKRELAY__RECEIVER__MAX_BODY_BYTES",
                "-1",
                "receiver.max_body_bytes",
            ),
            ("HOOKRELAY__LOG__FORMAT", "xml", "log.format"),
            ("HOOKRELAY__NATS__COLOUR", "blue", "colour"),
        ];
        for (key, value, named) in cases {
            let error = Settings::load_from(None, Some(env(&[(key, value)])))
                .expect_err(&format!("{key}={value} must be refused"));
            assert!(
                error.to_string().contains(named),
                "{key}={value}: `{error}` does not name `{named}`"
            );
        }
    }

    #[test]
    fn subscribers_are_checked() {
        let cases = [
            (
                "name = \"receiver\"\nevent_types = [\"a.b\"]",
                "worker.subscribers[0].name",
            ),
            (
                "name = \"a b\"\nevent_types = [\"a.b\"]",
                "worker.subscribers[0].name",
            ),
            (
                "name = \"x\"\nevent_types = []",
                "worker.subscribers[0].event_types",
            ),
            (
                "name = \"x\"\nevent_types = [\"user.*\"]",
                "worker.subscribers[0].event_types",
            ),
            (
                "name = \"x\"\nevent_types = [\"a.b\"]\nconcurrency = 0",
                "worker.subscribers[0].concurrency",
            ),
            (
                "name = \"x\"\nevent_types = [\"a.b\"]\nmax_deliver = 0",
                "worker.subscribers[0].max_deliver",
            ),
        ];
        for (body, named) in cases {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("c.toml");
            let text = format!("[[worker.subscribers]]\n{body}\naction = {{ type = \"log\" }}\n");
            std::fs::write(&path, &text).expect("write");
            let error = Settings::load_from(Some(&path), Some(HashMap::new()))
                .expect_err(&format!("{text} must be refused"));
            assert!(
                error.to_string().contains(named),
                "`{error}` does not name `{named}`"
            );
        }
    }

    #[test]
    fn the_http_action_is_configured_and_checked() {
        let load = |action: &str| {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("c.toml");
            let text = format!(
                "[[worker.subscribers]]\nname = \"crm-sync\"\nevent_types = [\"user.lifecycle.create\"]\naction = {action}\n"
            );
            std::fs::write(&path, text).expect("write");
            Settings::load_from(Some(&path), Some(HashMap::new()))
        };
        let settings = load(
            r#"{ type = "http", url = "https://crm.internal/okta", timeout = "3s", headers = { "x-api-key" = "k" }, signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }"#,
        )
        .expect("valid");
        let ActionSettings::Http(http) = &settings.worker.subscribers[0].action else {
            panic!("an http action");
        };
        assert_eq!(http.url, "https://crm.internal/okta");
        assert_eq!(http.timeout, Duration::from_secs(3));
        assert_eq!(http.headers["x-api-key"].expose_secret(), "k");
        assert!(matches!(http.signing_key(), Some(Ok(key)) if key.len() == 24));
        assert!(
            !format!("{settings:?}").contains("whsec_"),
            "secrets are not printed"
        );

        let defaults = load(r#"{ type = "http", url = "http://localhost:1/x" }"#).expect("valid");
        let ActionSettings::Http(http) = &defaults.worker.subscribers[0].action else {
            panic!("an http action");
        };
        assert_eq!(http.timeout, Duration::from_secs(10));

        for (action, named) in [
            (r#"{ type = "http", url = "ftp://x" }"#, "action.url"),
            (r#"{ type = "http" }"#, "url"),
            (
                r#"{ type = "http", url = "http://x", timeout = "0s" }"#,
                "action.timeout",
            ),
            (
                r#"{ type = "http", url = "http://x", headers = { "a b" = "v" } }"#,
                "action.headers.a b",
            ),
            (
                r#"{ type = "http", url = "http://x", signing_secret = "plain" }"#,
                "action.signing_secret",
            ),
            (
                r#"{ type = "http", url = "http://x", signing_secret = "whsec_!!" }"#,
                "action.signing_secret",
            ),
            (
                r#"{ type = "http", url = "http://x", method = "PUT" }"#,
                "method",
            ),
        ] {
            let error = load(action).expect_err(action);
            assert!(
                error.to_string().contains(named),
                "{action}: `{error}` does not name `{named}`"
            );
        }
    }

    #[test]
    fn an_unknown_action_type_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[worker.subscribers]]\nname = \"x\"\nevent_types = [\"a.b\"]\naction = { type = \"carrier_pigeon\" }\n",
        )
        .expect("write");
        let error = Settings::load_from(Some(&path), Some(HashMap::new())).expect_err("refused");
        assert!(error.to_string().contains("carrier_pigeon"), "{error}");
    }

    #[test]
    fn backoff_repeats_its_last_step() {
        let subscriber = SubscriberSettings::user_added();
        assert_eq!(subscriber.backoff_for(1), Duration::from_secs(1));
        assert_eq!(subscriber.backoff_for(4), Duration::from_secs(120));
        assert_eq!(subscriber.backoff_for(9), Duration::from_secs(120));
    }
}
