//! The receiver's Prometheus metrics, served on `/metrics` of the admin address.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::AppState;
use crate::error::ErrorCode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
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

/// Every metric the receiver keeps.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    rejected: Family<ReasonLabels, Counter>,
    events: Family<EventLabels, Counter>,
    dead_lettered: Family<ReasonLabels, Counter>,
    publish_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hookrelay_receiver");
        let requests = Family::default();
        registry.register(
            "requests",
            "HTTP requests answered, by route (the path pattern, or `unmatched`) and status",
            requests.clone(),
        );
        let request_duration = Family::new_with_constructor(latency_histogram as fn() -> _);
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival to its answer",
            Unit::Seconds,
            request_duration.clone(),
        );
        let rejected = Family::default();
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
        let dead_lettered = Family::default();
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
        Metrics {
            registry,
            requests,
            request_duration,
            rejected,
            events,
            dead_lettered,
            publish_duration,
        }
    }
}

impl Metrics {
    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        hookrelay::admin::encode(&self.registry)
    }

    pub(crate) fn event_published(&self, event_type: &str, duplicate: bool) {
        let outcome = if duplicate { "duplicate" } else { "stored" };
        self.events
            .get_or_create(&EventLabels {
                event_type: event_type.to_owned(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn event_dead_lettered(&self, reason: &'static str) {
        self.dead_lettered
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(crate) fn delivery_published(&self, took: Duration) {
        self.publish_duration.observe(took.as_secs_f64());
    }

    fn answered(
        &self,
        route: String,
        status: StatusCode,
        error: Option<&ErrorCode>,
        took: Duration,
    ) {
        if let Some(ErrorCode(reason)) = error {
            self.rejected.get_or_create(&ReasonLabels { reason }).inc();
        }
        self.request_duration
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(took.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                route,
                status: status.as_u16(),
            })
            .inc();
    }
}

/// Middleware on every route: counts and times each request.
pub async fn record(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics.answered(
        route,
        response.status(),
        response.extensions().get::<ErrorCode>(),
        started.elapsed(),
    );
    response
}
