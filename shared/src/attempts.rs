//! What failed of an event for one subscriber while it waits for its retry, so that
//! `hookrelayctl events show` can say "waiting: 3 attempts so far, the last …". Kept in a
//! key-value bucket beside the events stream (`<stream>_attempts`, entries kept as long as the
//! stream keeps events), written by the worker only when an attempt fails (nothing on the path
//! of an event that succeeds at once) and deleted once the event is settled.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

use crate::config::NatsSettings;

/// The bucket of the events stream `stream`.
pub fn bucket(stream: &str) -> String {
    format!("{stream}_attempts")
}

/// The entry of `uuid` for `subscriber`, if the uuid can be part of a key (Okta's always can).
pub fn key(subscriber: &str, uuid: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_=".contains(c);
    uuid.chars()
        .all(allowed)
        .then(|| format!("{subscriber}.{uuid}"))
}

/// The failed attempts of one event for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempts {
    /// How many times the event was handed to the subscriber so far.
    pub attempts: u64,
    /// Why the last one failed.
    pub error: String,
    /// When it failed, RFC 3339.
    pub failed_at: String,
    /// When the next attempt may start, RFC 3339.
    pub next_at: String,
}

impl Attempts {
    pub fn new(attempts: u64, error: &str, now: SystemTime, retry_in: Duration) -> Self {
        Attempts {
            attempts,
            error: crate::subject::header_safe(error, 300),
            failed_at: humantime::format_rfc3339_millis(now).to_string(),
            next_at: humantime::format_rfc3339_seconds(now + retry_in).to_string(),
        }
    }
}

/// Opens (or creates) the bucket of `settings`' events stream.
pub async fn open(js: &jetstream::Context, settings: &NatsSettings) -> anyhow::Result<kv::Store> {
    let name = bucket(&settings.stream);
    crate::broker::key_value(
        js,
        &crate::broker::Bucket {
            name: &name,
            description: "hookrelay worker: the failed attempts of events waiting for a retry",
            max_age: settings.retention,
            replicas: settings.replicas,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_only_what_a_key_may() {
        assert_eq!(
            key("crm", "4ad3d9e2-0c7b-11ee-8a9b-9b0e0b3c1f5a").as_deref(),
            Some("crm.4ad3d9e2-0c7b-11ee-8a9b-9b0e0b3c1f5a")
        );
        assert_eq!(key("crm", "a.b"), None, "a dot would be a second token");
        assert_eq!(key("crm", "a*"), None);
        assert_eq!(bucket("OKTA_EVENTS"), "OKTA_EVENTS_attempts");
    }
}
