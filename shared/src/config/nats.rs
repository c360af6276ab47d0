//! `[nats]`: the broker and the two streams.

use std::time::Duration;

use async_nats::ServerAddr;
use serde::Deserialize;

use super::ConfigError;
use crate::subject;

/// The broker and the two streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// Where the NATS server listens: one URL, or a cluster's, comma-separated.
    pub url: String,
    /// The servers of `url`, parsed at load.
    #[serde(skip)]
    servers: Vec<ServerAddr>,
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
            servers: parse_servers("nats://127.0.0.1:4222").expect("the default URL parses"),
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

impl NatsSettings {
    /// The servers to connect to (one, or each of a cluster's), parsed from `url` at load.
    pub fn servers(&self) -> &[ServerAddr] {
        &self.servers
    }

    /// Checks the section and parses `url` into [`servers`](Self::servers).
    pub(super) fn validate(&mut self) -> Result<(), ConfigError> {
        let nats = self;
        nats.servers = parse_servers(&nats.url)?;
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
        Ok(())
    }
}

/// The servers of a comma-separated `nats.url`.
fn parse_servers(url: &str) -> Result<Vec<ServerAddr>, ConfigError> {
    let servers = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|server| {
            server.parse::<ServerAddr>().map_err(|_| {
                ConfigError::invalid(
                    "nats.url",
                    format!("`{server}` is not a NATS URL such as nats://127.0.0.1:4222"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(ConfigError::invalid("nats.url", "must not be empty"));
    }
    Ok(servers)
}
