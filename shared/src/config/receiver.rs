//! `[receiver]`: the HTTP endpoint Okta calls, and its secret header.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;

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
    /// start and again whenever it changes.
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

impl ReceiverSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let receiver = self;
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
        Ok(())
    }
}
