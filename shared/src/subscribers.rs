//! Each configured subscriber at a glance: its event types, action and destination (origin
//! only), whether it is paused and by whom, and from JetStream what waits for it (pending),
//! what it is working on (in flight), what was handed out again (redeliveries) and its dead
//! letters. `hookrelayctl subscribers list` and the console's subscribers page show this.

use std::collections::HashMap;

use async_nats::jetstream::{self, kv, stream::Stream};
use futures::StreamExt as _;
use serde::Serialize;

use crate::Settings;
use crate::config::{ActionSettings, SubscriberSettings};
use crate::pause;
use crate::subject;

/// One subscriber.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub name: String,
    pub event_types: Vec<String>,
    /// The action's type: `user_added`, `log`, `noop`, `http`.
    pub action: &'static str,
    /// Where an `http` action sends: its origin only (a webhook's path is its secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    pub filter: bool,
    pub paused: bool,
    /// The last pause or resume, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<pause::State>,
    /// Stored and not yet handed out: its lag.
    pub pending: u64,
    /// Handed out and not acknowledged: running, or waiting for a retry.
    pub in_flight: u64,
    /// Handed out again (after a failure, a timeout or a worker that died).
    pub redeliveries: u64,
    pub dead_letters: u64,
    /// Its consumers that do not exist: no worker with it has started.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_consumers: Vec<String>,
}

/// The action's type and its destination, as shown.
pub fn action_of(settings: &SubscriberSettings) -> (&'static str, Option<String>) {
    match &settings.action {
        ActionSettings::UserAdded => ("user_added", None),
        ActionSettings::Log => ("log", None),
        ActionSettings::Noop => ("noop", None),
        ActionSettings::Http(http) => ("http", Some(http.destination())),
    }
}

/// Every configured subscriber, in the configuration's order. `pauses`: the bucket of paused
/// subscribers (`None`: none was ever paused).
pub async fn overview(
    events: &Stream,
    dlq: &Stream,
    pauses: Option<&kv::Store>,
    settings: &Settings,
) -> anyhow::Result<Vec<Overview>> {
    let states = match pauses {
        Some(store) => pause::states(store).await?,
        None => HashMap::new(),
    };
    let dead = dead_letter_counts(dlq).await?;
    let mut all = Vec::new();
    for sub in &settings.worker.subscribers {
        let (action, destination) = action_of(sub);
        let state = states.get(&sub.name).cloned();
        let mut overview = Overview {
            name: sub.name.clone(),
            event_types: sub.event_types.clone(),
            action,
            destination,
            filter: sub.filter.is_some(),
            paused: state.as_ref().is_some_and(|s| s.paused),
            state,
            pending: 0,
            in_flight: 0,
            redeliveries: 0,
            dead_letters: dead.get(&sub.name).copied().unwrap_or(0),
            missing_consumers: Vec::new(),
        };
        let durables = (sub.event_types.iter())
            .map(|t| subject::durable_name(&sub.name, t))
            .chain([subject::replay_durable_name(&sub.name)]);
        for durable in durables {
            match events.consumer_info(&durable).await {
                Ok(info) => {
                    overview.pending += info.num_pending;
                    overview.in_flight += info.num_ack_pending as u64;
                    overview.redeliveries += info.num_redelivered as u64;
                }
                Err(e) if crate::broker::is_consumer_not_found(&e) => {
                    overview.missing_consumers.push(durable)
                }
                Err(e) => anyhow::bail!("reading consumer {durable}: {e}"),
            }
        }
        all.push(overview);
    }
    Ok(all)
}

/// How many dead letters each subscriber (and `receiver`) has.
pub async fn dead_letter_counts(dlq: &Stream) -> anyhow::Result<HashMap<String, u64>> {
    let mut subjects = (dlq
        .info_with_subjects(format!("{}.>", subject::DLQ_PREFIX))
        .await)
        .map_err(|e| anyhow::anyhow!("counting dead letters: {e}"))?;
    let mut counts = HashMap::new();
    while let Some(entry) = subjects.next().await {
        let (subject, count) = entry.map_err(|e| anyhow::anyhow!("counting dead letters: {e}"))?;
        if let Some(owner) = subject.strip_prefix(&format!("{}.", subject::DLQ_PREFIX)) {
            counts.insert(owner.to_owned(), count as u64);
        }
    }
    Ok(counts)
}

/// Pauses or resumes the configured subscriber `name`, as `by`.
pub async fn set_paused(
    js: &jetstream::Context,
    settings: &Settings,
    name: &str,
    paused: bool,
    by: &str,
) -> anyhow::Result<pause::State> {
    if !settings.worker.subscribers.iter().any(|s| s.name == name) {
        let names: Vec<&str> = (settings.worker.subscribers.iter())
            .map(|s| s.name.as_str())
            .collect();
        anyhow::bail!(
            "no subscriber {name:?} in the configuration (it has {})",
            names.join(", ")
        );
    }
    let store = pause::open(js, &settings.nats).await?;
    pause::set(&store, name, paused, by).await
}
