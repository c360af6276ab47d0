//! The receiver's Prometheus metrics, served on `/metrics` of the admin address.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use axum::http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use hookrelay::publish::PublishMetrics;

/// Which route an answer counts under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The hook path (`receiver.path`), any method.
    Hook,
    /// Any other path.
    Unmatched,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Hook => "hook",
            Route::Unmatched => "unmatched",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event_type: String,
    outcome: &'static str,
}

/// Latency buckets from 0.5 ms to about 4 s (Okta waits 3 s).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// Every metric the receiver keeps. The series every delivery touches are looked up once, at
/// start (hook requests answered 200) or at an event type's first event, so that counting
/// costs a delivery a few atomic increments and no allocation.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    rejected: Family<ReasonLabels, Counter>,
    events: Family<EventLabels, Counter>,
    dead_lettered: Family<ReasonLabels, Counter>,
    publish_duration: Histogram,
    hook_ok: Counter,
    hook_duration: Histogram,
    /// `[stored, duplicate]` of each event type seen.
    event_counters: RwLock<HashMap<String, [Counter; 2]>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hookrelay_receiver");
        let requests = Family::default();
        registry.register(
            "requests",
            "HTTP requests answered, by route (`hook`: receiver.path, or `unmatched`) and status",
            requests.clone(),
        );
        let request_duration = Family::new_with_constructor(latency_histogram as fn() -> _);
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival to its answer",
            Unit::Seconds,
            request_duration.clone(),
        );
        let rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "deliveries_rejected",
            "Requests answered with an error, by its code (`unauthorized`, `invalid_delivery`, \
             `unavailable`, ...)",
            rejected.clone(),
        );
        let events = Family::default();
        registry.register(
            "events_published",
            "Events JetStream acknowledged, by event type and outcome (`stored`, or \
             `duplicate` when it already had the uuid)",
            events.clone(),
        );
        let dead_lettered = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "events_dead_lettered",
            "Events stored on okta.dlq.receiver, by reason (`unroutable`, `too_large`)",
            dead_lettered.clone(),
        );
        let publish_duration = latency_histogram();
        registry.register_with_unit(
            "publish_duration",
            "Time to store a delivery: from its first publish to JetStream's last acknowledgement",
            Unit::Seconds,
            publish_duration.clone(),
        );
        // At 0 from the start: `increase()` sees no rise in a series whose first sample is
        // already 1, so an alert on 503s or 401s would miss the first burst.
        for reason in crate::error::CODES {
            drop(rejected.get_or_create(&ReasonLabels { reason }));
        }
        for reason in hookrelay::publish::DEAD_LETTER_REASONS {
            drop(dead_lettered.get_or_create(&ReasonLabels { reason }));
        }
        let hook_ok = requests.get_or_create_owned(&RequestLabels {
            route: Route::Hook.label(),
            status: 200,
        });
        let hook_duration = request_duration.get_or_create_owned(&RouteLabels {
            route: Route::Hook.label(),
        });
        Metrics {
            registry,
            requests,
            request_duration,
            rejected,
            events,
            dead_lettered,
            publish_duration,
            hook_ok,
            hook_duration,
            event_counters: RwLock::default(),
        }
    }
}

impl Metrics {
    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        hookrelay::admin::encode(&self.registry)
    }

    pub(crate) fn answered(
        &self,
        route: Route,
        status: StatusCode,
        error: Option<&'static str>,
        took: Duration,
    ) {
        if route == Route::Hook {
            self.hook_duration.observe(took.as_secs_f64());
            if status == StatusCode::OK {
                self.hook_ok.inc();
                return;
            }
        } else {
            self.request_duration
                .get_or_create(&RouteLabels {
                    route: route.label(),
                })
                .observe(took.as_secs_f64());
        }
        if let Some(reason) = error {
            self.rejected.get_or_create(&ReasonLabels { reason }).inc();
        }
        self.requests
            .get_or_create(&RequestLabels {
                route: route.label(),
                status: status.as_u16(),
            })
            .inc();
    }
}

/// The shared publisher reports into the receiver's metrics.
impl PublishMetrics for Metrics {
    fn event_published(&self, event_type: &str, duplicate: bool) {
        let index = usize::from(duplicate);
        let known = self
            .event_counters
            .read()
            .expect("not poisoned")
            .get(event_type)
            .map(|counters| counters[index].inc());
        if known.is_none() {
            let counters = ["stored", "duplicate"].map(|outcome| {
                self.events.get_or_create_owned(&EventLabels {
                    event_type: event_type.to_owned(),
                    outcome,
                })
            });
            counters[index].inc();
            self.event_counters
                .write()
                .expect("not poisoned")
                .insert(event_type.to_owned(), counters);
        }
    }

    fn event_dead_lettered(&self, reason: &'static str) {
        self.dead_lettered
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    fn delivery_published(&self, took: Duration) {
        self.publish_duration.observe(took.as_secs_f64());
    }
}
