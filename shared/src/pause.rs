//! Pausing a subscriber: a key per subscriber in the bucket `<stream>_subscribers`, which every
//! worker watches. A paused subscriber's workers start nothing and pull nothing more (actions
//! already running finish); its events keep being stored and wait in its consumers, and resuming
//! drains them. The state lives in NATS, so it holds for every worker replica and across
//! restarts; the console and `hookrelayctl subscribers pause|resume` both write it here, and the
//! last few changes of each subscriber are kept (who, when).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::config::NatsSettings;

/// The bucket of the events stream `stream`.
pub fn bucket(stream: &str) -> String {
    format!("{stream}_subscribers")
}

/// The changes of one subscriber's state kept, newest last.
const HISTORY: i64 = 10;

/// A subscriber's state, as last set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub paused: bool,
    /// When it was set, RFC 3339.
    pub at: String,
    /// Who set it: a console user (`alice (console)`) or `hookrelayctl`.
    pub by: String,
}

impl State {
    pub fn new(paused: bool, by: &str) -> Self {
        State {
            paused,
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            by: by.to_owned(),
        }
    }

    /// How long it has been paused, at `now`; zero when running.
    pub fn paused_for(&self, now: SystemTime) -> Duration {
        if !self.paused {
            return Duration::ZERO;
        }
        humantime::parse_rfc3339_weak(&self.at)
            .ok()
            .and_then(|at| now.duration_since(at).ok())
            .unwrap_or_default()
    }
}

/// Opens (or creates) the bucket of `settings`' events stream.
pub async fn open(js: &jetstream::Context, settings: &NatsSettings) -> anyhow::Result<kv::Store> {
    let name = bucket(&settings.stream);
    crate::broker::key_value(
        js,
        &crate::broker::Bucket {
            name: &name,
            description: "hookrelay: which subscribers are paused, and who paused or resumed them",
            max_age: Duration::ZERO,
            replicas: settings.replicas,
            history: HISTORY,
        },
    )
    .await
}

/// Pauses or resumes `subscriber`; returns the state written.
pub async fn set(
    store: &kv::Store,
    subscriber: &str,
    paused: bool,
    by: &str,
) -> anyhow::Result<State> {
    let state = State::new(paused, by);
    let value = serde_json::to_vec(&state).expect("a state serialises");
    (store.put(subscriber, value.into()).await)
        .map_err(|e| anyhow::anyhow!("setting the state of subscriber {subscriber}: {e}"))?;
    Ok(state)
}

/// The state of every subscriber that was ever paused (one never paused is running).
pub async fn states(store: &kv::Store) -> anyhow::Result<HashMap<String, State>> {
    let mut keys = (store.keys().await).map_err(|e| anyhow::anyhow!("listing paused: {e}"))?;
    let mut states = HashMap::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| anyhow::anyhow!("listing paused: {e}"))?;
        if let Some(state) = read(store.entry(&key).await.ok().flatten().as_ref()) {
            states.insert(key, state);
        }
    }
    Ok(states)
}

/// The state an entry holds; `None` for a deleted one or one that does not read.
pub fn read(entry: Option<&kv::Entry>) -> Option<State> {
    let entry = entry?;
    (entry.operation == kv::Operation::Put)
        .then(|| serde_json::from_slice(&entry.value).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paused_state_knows_for_how_long() {
        let state = State {
            paused: true,
            at: "2026-12-01T10:00:00Z".into(),
            by: "alice (console)".into(),
        };
        let now = humantime::parse_rfc3339("2026-12-01T12:30:00Z").expect("a time");
        assert_eq!(state.paused_for(now), Duration::from_secs(9000));
        let running = State {
            paused: false,
            ..state
        };
        assert_eq!(running.paused_for(now), Duration::ZERO);
    }
}
