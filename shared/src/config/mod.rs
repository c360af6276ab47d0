//! Configuration shared by the receiver and the worker: one typed [`Settings`] loaded from
//! compiled-in defaults, then a TOML file, then `HOOKRELAY__SECTION__KEY` environment variables.
//!
//! Every key is documented in `config/default.toml`. A value that is missing, mistyped or
//! out of range stops the program at start with a [`ConfigError`] that names the key.

mod console;
mod log;
mod nats;
mod okta;
mod receiver;
mod reconciler;
mod telemetry;
mod worker;

pub use console::{ConsoleSettings, ConsoleUser, OidcSettings, Role};
pub use log::{LogFormat, LogSettings};
pub use nats::{NatsAuth, NatsSettings, NatsTls};
pub use okta::{OktaAccess, OktaCredentials, OktaSettings};
pub use receiver::{AuthSettings, ReceiverSettings};
pub use reconciler::ReconcilerSettings;
pub use telemetry::{OtlpProtocol, Telemetry, TelemetrySettings};
pub use worker::{
    ActionSettings, AttemptRecords, HttpActionSettings, HttpMethod, Rate, SubscriberSettings,
    WorkerSettings, shown_url,
};

use std::collections::HashMap;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

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
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
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
    /// The org's API, for what reads from Okta.
    pub okta: OktaSettings,
    /// The second ingress: the System Log reader.
    pub reconciler: ReconcilerSettings,
    /// The web console.
    pub console: ConsoleSettings,
    /// Log level and format.
    pub log: LogSettings,
    /// Traces, exported with OpenTelemetry (off unless an endpoint is set).
    pub telemetry: TelemetrySettings,
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
        let mut settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Each section checks itself; `nats.url` is parsed into its servers here.
    fn validate(&mut self) -> Result<(), ConfigError> {
        self.nats.validate()?;
        self.receiver.validate()?;
        self.worker.validate()?;
        self.console.validate()?;
        // The file's part; the OTEL_* environment is read, and checked, at start.
        self.telemetry.resolve(|_| None)?;
        self.reconciler.validate()
    }

    /// The event types the System Log reader stores: `reconciler.event_types`, else every
    /// configured subscriber's, sorted, once each.
    pub fn reconciled_event_types(&self) -> Vec<String> {
        let mut types: Vec<String> = if self.reconciler.event_types.is_empty() {
            (self.worker.subscribers.iter())
                .flat_map(|s| s.event_types.iter().cloned())
                .collect()
        } else {
            self.reconciler.event_types.clone()
        };
        types.sort();
        types.dedup();
        types
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
    use std::time::Duration;

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
    fn jq_and_rates_are_checked_at_load_naming_the_subscriber() {
        let cases = [
            (
                "filter = '.a | if . then 1 els 2 end'",
                "worker.subscribers[0].filter`: subscriber \"crm\": jq: syntax error at 1:",
            ),
            (
                "filter = '.a | frobnicate(1)'",
                "jq: unknown function `frobnicate/1` at 1:6",
            ),
            ("rate_limit = '20/sec'", "\"20/sec\" is not a rate"),
            ("rate_limit = '0/s'", "the count must be from 1"),
            (
                "action = { type = 'http', url = 'http://x', transform = '{a: .b' }",
                "worker.subscribers[0].action.transform`: subscriber \"crm\": jq: syntax error",
            ),
        ];
        for (line, says) in cases {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("c.toml");
            let action = if line.starts_with("action") {
                ""
            } else {
                "action = { type = \"log\" }\n"
            };
            let text = format!(
                "[[worker.subscribers]]\nname = \"crm\"\nevent_types = [\"a.b\"]\n{action}{line}\n"
            );
            std::fs::write(&path, &text).expect("write");
            let error = Settings::load_from(Some(&path), Some(HashMap::new()))
                .expect_err(&format!("{text} must be refused"));
            assert!(
                error.to_string().contains(says),
                "`{error}` does not say `{says}`"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.toml");
        let text = "[[worker.subscribers]]\nname = \"crm\"\nevent_types = [\"a.b\"]\n\
                    action = { type = \"log\" }\nrate_limit = \"600/m\"\nfilter = '.a'\n";
        std::fs::write(&path, text).expect("write");
        let settings = Settings::load_from(Some(&path), Some(HashMap::new())).expect("valid");
        let rate = settings.worker.subscribers[0]
            .rate()
            .expect("set")
            .expect("valid");
        assert_eq!(
            (rate.count, rate.per),
            (600, std::time::Duration::from_secs(60))
        );
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
        assert_eq!(http.method, HttpMethod::Post);
        assert_eq!(http.content_type, "application/json");
        let put = load(
            r#"{ type = "http", url = "http://x", method = "PUT", content_type = "text/plain" }"#,
        )
        .expect("valid");
        let ActionSettings::Http(http) = &put.worker.subscribers[0].action else {
            panic!("an http action");
        };
        assert_eq!(
            (http.method, http.content_type.as_str()),
            (HttpMethod::Put, "text/plain")
        );

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
                r#"{ type = "http", url = "http://x", method = "DELETE" }"#,
                "DELETE",
            ),
            (
                r#"{ type = "http", url = "http://x", content_type = "a\nb" }"#,
                "action.content_type",
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
