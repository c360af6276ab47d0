//! The console's Prometheus metrics, served on `/metrics` of the admin address.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::AppState;
use crate::index::Index;

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
struct SignInLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

/// The ways to sign in, and their outcomes, counted from 0 at start.
const SIGN_IN_METHODS: [&str; 2] = ["password", "okta"];
const SIGN_IN_OUTCOMES: [&str; 3] = ["ok", "refused", "throttled"];
/// What an operator can do, counted from 0 at start.
pub const ACTIONS: [&str; 4] = ["replay", "discard", "pause", "resume"];

/// Every metric the console keeps.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    sign_ins: Family<SignInLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    indexed: Gauge,
    indexing: Gauge,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hookrelay_console");
        let requests = Family::default();
        registry.register(
            "requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        let duration = Family::new_with_constructor(histogram as fn() -> _);
        registry.register_with_unit(
            "request_duration",
            "Arrival to answer, by route",
            Unit::Seconds,
            duration.clone(),
        );
        let sign_ins = Family::default();
        registry.register(
            "sign_ins",
            "Sign-ins by method (`password`, `okta`) and outcome (`ok`, `refused`, `throttled`)",
            sign_ins.clone(),
        );
        for method in SIGN_IN_METHODS {
            for outcome in SIGN_IN_OUTCOMES {
                let _ = sign_ins.get_or_create(&SignInLabels { method, outcome });
            }
        }
        let actions = Family::default();
        registry.register(
            "actions",
            "What operators did: `replay` and `discard` count dead letters and events, `pause` and `resume` subscribers",
            actions.clone(),
        );
        for action in ACTIONS {
            let _ = actions.get_or_create(&ActionLabels { action });
        }
        let indexed = Gauge::default();
        registry.register(
            "events_indexed",
            "Stored messages the console's index holds",
            indexed.clone(),
        );
        let indexing = Gauge::default();
        registry.register(
            "indexing",
            "1 while the console is still reading the events stream it found at start, else 0",
            indexing.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            sign_ins,
            actions,
            indexed,
            indexing,
        }
    }
}

impl Metrics {
    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self, index: &Index) -> String {
        let (indexed, caught_up, _) = index.progress();
        self.indexed.set(i64::try_from(indexed).unwrap_or(i64::MAX));
        self.indexing.set(i64::from(!caught_up));
        hookrelay::admin::encode(&self.registry)
    }

    pub fn sign_in(&self, method: &'static str, outcome: &'static str) {
        self.sign_ins
            .get_or_create(&SignInLabels { method, outcome })
            .inc();
    }

    /// Counts `n` of `action` (one of [`ACTIONS`]).
    pub fn acted(&self, action: &'static str, n: u64) {
        self.actions
            .get_or_create(&ActionLabels { action })
            .inc_by(n);
    }
}

/// Counts every request by its route (the matched pattern, never the path: a uuid is no label).
pub async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.metrics;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .duration
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}
