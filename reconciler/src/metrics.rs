//! What the reconciler's `/metrics` reports.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub kind: &'static str,
}

/// Every metric the reconciler keeps.
/// The kinds of [`Metrics::error`], as its help text lists them.
const ERROR_KINDS: [&str; 7] = [
    "refused",
    "unavailable",
    "invalid",
    "next_link",
    "publish",
    "cursor",
    "client",
];

pub struct Metrics {
    registry: Registry,
    pub(crate) recovered: Counter,
    pub(crate) already_stored: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) polls: Counter,
    pub(crate) errors: Family<KindLabels, Counter>,
    pub(crate) rate_limit_waits: Counter,
    pub(crate) retries: Counter,
    pub(crate) hook_delivery_failures: Counter,
    pub(crate) lag: Gauge<f64, AtomicU64>,
    pub(crate) leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hookrelay_reconciler");
        let mut counter = |name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let recovered = counter(
            "events_recovered",
            "Events read from the System Log that the hook had not delivered, now stored: \
             the hook is missing events when this grows",
        );
        let already_stored = counter(
            "events_already_stored",
            "Events read from the System Log that were already stored (the hook delivered them)",
        );
        let dead_lettered = counter(
            "events_dead_lettered",
            "Events read from the System Log that were stored on okta.dlq.receiver (unroutable \
             or too large)",
        );
        let polls = counter("polls", "Pages read from the System Log");
        let rate_limit_waits = counter(
            "rate_limit_waits",
            "Times the reconciler waited for the System Log's rate limit to reset",
        );
        let retries = counter(
            "retries",
            "System Log requests tried again after a 429, a 5xx or a network error",
        );
        let hook_delivery_failures = counter(
            "hook_delivery_failures",
            "Failed event hook deliveries Okta recorded (event_hook.delivery events)",
        );
        let errors = Family::<KindLabels, Counter>::default();
        // At 0 from the start: `increase()` sees no rise in a series whose first sample is
        // already 1, so an alert would miss the first failure.
        for kind in ERROR_KINDS {
            drop(errors.get_or_create(&KindLabels { kind }));
        }
        registry.register(
            "errors",
            "Failed polls, by kind (`refused`: Okta refused the request; `unavailable`: 429s, \
             5xx or network errors past the retries; `invalid`: a page that is not a list of \
             events; `next_link`: a next link off the org's origin; `publish`: JetStream did not \
             store a page; `cursor`: another reconciler saved the cursor; `client`: the HTTP \
             client failed)",
            errors.clone(),
        );
        let lag = Gauge::default();
        registry.register_with_unit(
            "lag",
            "How far behind the System Log the cursor is: now minus the newest `published` read, \
             0 once a page comes back not full (caught up)",
            Unit::Seconds,
            lag.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this reconciler holds the lease and polls, 0 while it stands by",
            leader.clone(),
        );
        Metrics {
            registry,
            recovered,
            already_stored,
            dead_lettered,
            polls,
            errors,
            rate_limit_waits,
            retries,
            hook_delivery_failures,
            lag,
            leader,
        }
    }
}

impl Metrics {
    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        hookrelay::admin::encode(&self.registry)
    }

    pub(crate) fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabels { kind }).inc();
    }
}
