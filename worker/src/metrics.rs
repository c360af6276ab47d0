//! The worker's Prometheus metrics, served on `/metrics` of the admin address.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriberLabels {
    subscriber: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    subscriber: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    subscriber: String,
    event_type: String,
}

/// What became of one attempt at an event.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// The action succeeded and the event is acknowledged.
    Ok,
    /// The action failed and the event comes back after its backoff.
    Retried,
    /// The event is in the dead letters.
    DeadLettered,
    /// The subscriber's `filter` left the event out: acknowledged, no action.
    Filtered,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Filtered => "filtered",
        }
    }
}

/// Every metric the worker keeps.
pub struct Metrics {
    registry: Registry,
    handled: Family<OutcomeLabels, Counter>,
    action_duration: Family<SubscriberLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<SubscriberLabels, Gauge>,
    pending: Family<ConsumerLabels, Gauge>,
    ack_pending: Family<ConsumerLabels, Gauge>,
    paused: Family<SubscriberLabels, Gauge>,
    paused_seconds: Family<SubscriberLabels, Gauge>,
    /// Each subscriber's pause state as last seen: how long it has been paused is worked out at
    /// each scrape.
    pause_states:
        std::sync::Mutex<std::collections::HashMap<String, Option<hookrelay::pause::State>>>,
}

/// Action latency buckets from 1 ms to about 65 s.
fn action_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Duration::from_secs(4 * 3600))
    }
}

impl Metrics {
    /// The worker's metrics, with `worker.pause_alert_after` for the alert on long pauses.
    pub fn new(pause_alert_after: Duration) -> Self {
        let mut registry = Registry::with_prefix("hookrelay_worker");
        let handled = Family::default();
        registry.register(
            "events_handled",
            "Attempts at events, by subscriber and outcome (`ok`, `retried`, `dead_lettered`, \
             `filtered`)",
            handled.clone(),
        );
        let action_duration = Family::new_with_constructor(action_histogram as fn() -> _);
        registry.register_with_unit(
            "action_duration",
            "Time an action took, by subscriber, whatever its outcome",
            Unit::Seconds,
            action_duration.clone(),
        );
        let in_flight = Family::default();
        registry.register(
            "actions_in_flight",
            "Actions running now, by subscriber",
            in_flight.clone(),
        );
        let pending = Family::default();
        registry.register(
            "consumer_pending",
            "Events stored but not yet handed to the subscriber (its lag), by subscriber and \
             event type; read from JetStream at each scrape",
            pending.clone(),
        );
        let ack_pending = Family::default();
        registry.register(
            "consumer_ack_pending",
            "Events handed to the subscriber and not yet acknowledged (running or waiting for \
             a retry), by subscriber and event type; read from JetStream at each scrape",
            ack_pending.clone(),
        );
        let paused = Family::default();
        registry.register(
            "subscriber_paused",
            "1 while the subscriber is paused (hookrelayctl subscribers pause, the console), else 0",
            paused.clone(),
        );
        let paused_seconds = Family::default();
        registry.register_with_unit(
            "subscriber_paused",
            "How long the subscriber has been paused, 0 while it runs",
            Unit::Seconds,
            paused_seconds.clone(),
        );
        let alert_after: Gauge = Gauge::default();
        alert_after.set(i64::try_from(pause_alert_after.as_secs()).unwrap_or(i64::MAX));
        registry.register_with_unit(
            "pause_alert_after",
            "worker.pause_alert_after: a subscriber paused longer than this is alerted on",
            Unit::Seconds,
            alert_after,
        );
        Metrics {
            registry,
            handled,
            action_duration,
            in_flight,
            pending,
            ack_pending,
            paused,
            paused_seconds,
            pause_states: Default::default(),
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let now = std::time::SystemTime::now();
        for (subscriber, state) in self.pause_states.lock().expect("not poisoned").iter() {
            let labels = SubscriberLabels {
                subscriber: subscriber.clone(),
            };
            let seconds = state.as_ref().map_or(Duration::ZERO, |s| s.paused_for(now));
            let paused = state.as_ref().is_some_and(|s| s.paused);
            self.paused.get_or_create(&labels).set(i64::from(paused));
            (self.paused_seconds.get_or_create(&labels))
                .set(i64::try_from(seconds.as_secs()).unwrap_or(i64::MAX));
        }
        hookrelay::admin::encode(&self.registry)
    }

    /// Notes a subscriber's pause state (`None`: never paused).
    pub(crate) fn paused(&self, subscriber: &str, state: Option<hookrelay::pause::State>) {
        (self.pause_states.lock().expect("not poisoned")).insert(subscriber.to_owned(), state);
    }

    /// One subscriber's metrics, looked up once: counting an event then takes no label
    /// lookup or allocation.
    pub(crate) fn subscriber(&self, subscriber: &str) -> SubscriberMetrics {
        let labels = SubscriberLabels {
            subscriber: subscriber.to_owned(),
        };
        let handled = |outcome| {
            self.handled.get_or_create_owned(&OutcomeLabels {
                subscriber: subscriber.to_owned(),
                outcome,
            })
        };
        SubscriberMetrics {
            ok: handled("ok"),
            retried: handled("retried"),
            dead_lettered: handled("dead_lettered"),
            filtered: handled("filtered"),
            action_duration: self.action_duration.get_or_create_owned(&labels),
            in_flight: self.in_flight.get_or_create_owned(&labels),
        }
    }

    pub(crate) fn consumer_lag(
        &self,
        subscriber: &str,
        event_type: &str,
        pending: u64,
        ack_pending: usize,
    ) {
        let labels = ConsumerLabels {
            subscriber: subscriber.to_owned(),
            event_type: event_type.to_owned(),
        };
        self.pending
            .get_or_create(&labels)
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.ack_pending
            .get_or_create(&labels)
            .set(i64::try_from(ack_pending).unwrap_or(i64::MAX));
    }
}

/// The metrics of one subscriber's events.
pub(crate) struct SubscriberMetrics {
    ok: Counter,
    retried: Counter,
    dead_lettered: Counter,
    filtered: Counter,
    action_duration: Histogram,
    in_flight: Gauge,
}

impl SubscriberMetrics {
    pub(crate) fn handled(&self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Retried => &self.retried,
            Outcome::DeadLettered => &self.dead_lettered,
            Outcome::Filtered => &self.filtered,
        }
        .inc();
    }

    pub(crate) fn action_took(&self, took: Duration) {
        self.action_duration.observe(took.as_secs_f64());
    }

    /// Counts an action as running until the guard is dropped.
    pub(crate) fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }
}

/// An action counted in `actions_in_flight` while this lives.
pub(crate) struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
