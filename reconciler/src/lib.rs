//! hookrelay's reconciler: the second ingress. Okta's hook drops what it cannot deliver in 3 s
//! and one retry; Okta's System Log keeps every event for 90 days. The reconciler reads the
//! System Log the way Okta says to poll it (`since` once, then the `next` link of every page,
//! forever) and stores, through the same publisher as the receiver, every event of a subscribed
//! type. JetStream drops what the hook already stored (same uuid, same `Nats-Msg-Id`); what is
//! left is **recovered**: events the hook missed.
//!
//! # Layout
//! - [`Reconciler`] (here): start-up, the lease, the poll loop.
//! - [`state`]: the cursor and the lease, in JetStream key-value buckets.
//! - [`metrics`]: what `/metrics` reports.

pub mod metrics;
pub mod state;

use std::collections::HashSet;
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use async_nats::jetstream;
use hookrelay::event::{self, Route};
use hookrelay::okta::{Calls, Page, SystemLog, filter_expression, synthetic_delivery};
use hookrelay::publish::Publisher;
use hookrelay::{Settings, admin, broker};
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::metrics::Metrics;
use crate::state::{Cursor, State};

/// The event type of Okta's record of a failed hook delivery (hooks cannot subscribe to it).
pub const HOOK_DELIVERY_FAILED: &str = "event_hook.delivery";
/// How long one page's events may take to be stored, retries included (nobody is waiting).
const PUBLISH_BUDGET: Duration = Duration::from_secs(30);
/// Okta's clock and the broker's differ, and Okta's `published` may go backwards between pages:
/// the stream is read from this much before the oldest event that may already be stored.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// Retries of one page after a 429, a 5xx or a network error, before the poll counts as failed.
const MAX_RETRIES: u32 = 5;

/// The reconciler, bound and connected, ready to [`run`](Reconciler::run).
pub struct Reconciler {
    admin_listener: TcpListener,
    status: Arc<ReconcilerStatus>,
    /// `None`: Okta API access is not configured, and the reconciler only serves its admin
    /// endpoints.
    poller: Option<Poller>,
    client: async_nats::Client,
}

/// What the reconciler's admin endpoints report.
struct ReconcilerStatus {
    client: async_nats::Client,
    js: jetstream::Context,
    streams: [String; 2],
    metrics: Arc<Metrics>,
    /// Why the last poll failed, until one succeeds.
    last_error: Mutex<Option<String>>,
}

impl admin::Status for ReconcilerStatus {
    async fn ready(&self) -> Result<(), String> {
        let [events, dead_letters] = &self.streams;
        admin::broker_readiness(&self.client, &self.js, &[events, dead_letters]).await?;
        match self.last_error.lock().expect("not poisoned").clone() {
            Some(error) => Err(format!("the last System Log poll failed: {error}")),
            None => Ok(()),
        }
    }

    async fn metrics(&self) -> String {
        self.metrics.encode()
    }
}

/// The poll loop's parts.
struct Poller {
    log: SystemLog,
    publisher: Publisher,
    state: State,
    js: jetstream::Context,
    stream: String,
    /// The event types stored for the subscribers.
    wanted: HashSet<String>,
    /// The first request's query, for a first start (no cursor yet), without `since`.
    first_query: Vec<(&'static str, String)>,
    /// Its `filter`: the event types read.
    filter: Option<String>,
    start: Duration,
    page_size: usize,
    poll_interval: Duration,
    duplicate_window: Duration,
    watch_hook: bool,
    status: Arc<ReconcilerStatus>,
}

impl Reconciler {
    /// Binds the admin listener and, when Okta API access is configured, connects to NATS,
    /// sets up the streams and the state buckets. Partial Okta settings are an error that names
    /// the missing key.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let admin_listen = settings.reconciler.admin_listen;
        let admin_listener = TcpListener::bind(admin_listen)
            .await
            .with_context(|| format!("cannot listen on reconciler.admin_listen {admin_listen}"))?;
        let access = if settings.okta.is_configured() {
            Some(settings.okta.access()?)
        } else {
            None
        };
        let client = broker::connect(&settings.nats, "hookrelay-reconciler").await?;
        let js = jetstream::new(client.clone());
        broker::ensure_streams(&js, &settings.nats).await?;
        let metrics = Arc::new(Metrics::default());
        let status = Arc::new(ReconcilerStatus {
            client: client.clone(),
            js: js.clone(),
            streams: [
                settings.nats.stream.clone(),
                settings.nats.dlq_stream.clone(),
            ],
            metrics,
            last_error: Mutex::new(None),
        });
        let poller = match access {
            None => None,
            Some(access) => {
                let reconciler = &settings.reconciler;
                let wanted: HashSet<String> =
                    settings.reconciled_event_types().into_iter().collect();
                let mut read: Vec<String> = wanted.iter().cloned().collect();
                if reconciler.watch_hook_deliveries {
                    read.push(HOOK_DELIVERY_FAILED.to_owned());
                }
                read.sort();
                read.dedup();
                let filter = filter_expression(&read, None);
                let mut first_query = vec![
                    ("sortOrder", "ASCENDING".to_owned()),
                    ("limit", reconciler.page_size.to_string()),
                ];
                if let Some(filter) = &filter {
                    first_query.push(("filter", filter.clone()));
                }
                Some(Poller {
                    log: SystemLog::new(access, MAX_RETRIES, reconciler.rate_limit_share)?,
                    publisher: Publisher::new(&client, PUBLISH_BUDGET, Arc::new(()))
                        .with_source(hookrelay::subject::source::SYSTEM_LOG),
                    state: State::open(
                        &js,
                        &reconciler.bucket,
                        reconciler.lease_ttl,
                        settings.nats.replicas,
                    )
                    .await?,
                    js: js.clone(),
                    stream: settings.nats.stream.clone(),
                    wanted,
                    first_query,
                    filter,
                    start: reconciler.start,
                    page_size: usize::try_from(reconciler.page_size).unwrap_or(1000),
                    poll_interval: reconciler.poll_interval,
                    duplicate_window: settings.nats.duplicate_window,
                    watch_hook: reconciler.watch_hook_deliveries,
                    status: status.clone(),
                })
            }
        };
        Ok(Reconciler {
            admin_listener,
            status,
            poller,
            client,
        })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Polls (or stands by for the lease) until `shutdown` is cancelled; a page being stored
    /// is finished first, and the lease let go.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let admin = axum::serve(self.admin_listener, admin::router(self.status.clone()))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let admin = tokio::spawn(admin.into_future());
        match self.poller {
            Some(poller) => {
                tracing::info!(
                    org = %poller.log.org_url(),
                    event_types = ?poller.wanted,
                    "reconciler ready"
                );
                poller.run(&shutdown).await;
            }
            None => {
                tracing::info!(
                    "reconciler ready, and idle: Okta API access is not configured \
                     (okta.org_url and okta.api_token)"
                );
                shutdown.cancelled().await;
            }
        }
        admin.await?.context("serving the admin endpoints")?;
        self.client.drain().await.ok();
        tracing::info!("reconciler stopped");
        Ok(())
    }
}

/// Waits `period`, or less if `shutdown` comes first; whether to go on.
async fn pause(shutdown: &CancellationToken, period: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(period) => true,
    }
}

/// What one page brought.
#[derive(Debug, Default)]
struct PageOutcome {
    /// Failed hook deliveries Okta recorded on the page.
    hook_failures: Vec<hookrelay::okta::HookFailure>,
    read: usize,
    recovered: usize,
    already_stored: usize,
    dead_lettered: usize,
    oldest_published: Option<SystemTime>,
    newest_published: Option<SystemTime>,
}

impl Poller {
    async fn run(mut self, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            if !self.state.lead().await {
                self.status.metrics.leader.set(0);
                pause(shutdown, self.state.renewal / 2).await;
                continue;
            }
            self.status.metrics.leader.set(1);
            tracing::info!("holding the lease: polling the System Log");
            if let Err(e) = self.poll_while_leading(shutdown).await {
                self.status.metrics.leader.set(0);
                tracing::warn!(error = %e, "stopped polling; standing by");
                pause(shutdown, self.poll_interval).await;
            }
        }
        self.state.release().await;
        self.status.metrics.leader.set(0);
    }

    /// Polls while this reconciler holds the lease; returns why it stopped leading.
    async fn poll_while_leading(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let cursor = self.state.load().await?;
        let now = SystemTime::now();
        let (mut url, mut newest, read_from, new_read) = match &cursor {
            Some(cursor) if cursor.filter == self.filter => (
                reqwest::Url::parse(&cursor.next).context("the saved cursor")?,
                cursor.newest_published.as_deref().and_then(parse_time),
                cursor.read_up_to(),
                false,
            ),
            // The event types changed: a new read from where the old one had got to.
            Some(cursor) => {
                let since = cursor.read_up_to().unwrap_or(now) - CLOCK_SKEW;
                tracing::warn!(
                    since = %humantime::format_rfc3339_seconds(since),
                    "the event types read changed since the cursor was saved: reading anew \
                     from where it had got to (older events of new types: hookrelayctl backfill)"
                );
                let newest = cursor.newest_published.as_deref().and_then(parse_time);
                (self.first_page(since), newest, Some(since), true)
            }
            None => {
                let since = now - self.start;
                (self.first_page(since), None, Some(since), false)
            }
        };
        // Past JetStream's duplicate window (or on a new read over what was read before), only
        // the stream itself knows what is stored: those uuids are skipped until caught up.
        let mut known = match read_from {
            Some(from) if new_read || from + self.duplicate_window < now + CLOCK_SKEW => {
                let stream = (self.js.get_stream(&self.stream).await)
                    .context("opening the events stream")?;
                Some(broker::stored_uuids(&stream, from - CLOCK_SKEW, |_| {}).await?)
            }
            _ => None,
        };
        let mut renewed = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            if renewed.elapsed() >= self.state.renewal {
                anyhow::ensure!(self.state.lead().await, "the lease was lost");
                renewed = tokio::time::Instant::now();
            }
            let span = poll_span();
            let polled = self.poll(&url, &mut known).instrument(span.clone()).await;
            let (page, mut outcome) = match polled {
                Ok(polled) => polled,
                Err((kind, e)) => {
                    span.record("error.type", kind);
                    span.record("otel.status_code", "ERROR");
                    span.in_scope(|| self.failed(kind, &e));
                    pause(shutdown, self.poll_interval).await;
                    continue;
                }
            };
            span.record("okta.events_read", outcome.read);
            span.record("hookrelay.recovered", outcome.recovered);
            newest = newest.max(outcome.newest_published);
            if !outcome.hook_failures.is_empty() {
                (self.state)
                    .note_hook_failures(std::mem::take(&mut outcome.hook_failures))
                    .await;
            }
            let Some(next) = page.next else {
                anyhow::bail!("the System Log answered without a next link in polling mode");
            };
            self.state
                .save(&Cursor::new(&next, newest, self.filter.clone()))
                .await
                .inspect_err(|_| self.status.metrics.error("cursor"))?;
            url = next;
            *self.status.last_error.lock().expect("not poisoned") = None;
            self.report(&outcome);
            let caught_up = outcome.read < self.page_size;
            let lag = match (caught_up, newest) {
                (false, Some(newest)) => SystemTime::now()
                    .duration_since(newest)
                    .unwrap_or_default()
                    .as_secs_f64(),
                _ => 0.0,
            };
            self.status.metrics.lag.set(lag);
            if caught_up {
                // Everything from now on is inside the duplicate window.
                known = None;
                if !pause(shutdown, self.poll_interval).await {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The first request of a read from `since`.
    fn first_page(&self, since: SystemTime) -> reqwest::Url {
        let mut query = self.first_query.clone();
        query.push(("since", humantime::format_rfc3339_millis(since).to_string()));
        self.log.first_page(&query)
    }

    /// Reads the page at `url` and stores what it has that the stream lacks. Errors carry
    /// their metric kind.
    async fn poll(
        &self,
        url: &reqwest::Url,
        known: &mut Option<HashSet<String>>,
    ) -> Result<(Page, PageOutcome), (&'static str, anyhow::Error)> {
        let mut calls = Calls::default();
        let page = self.log.fetch(url, &mut calls).await;
        let metrics = &self.status.metrics;
        metrics
            .rate_limit_waits
            .inc_by(calls.rate_limit_waits as u64);
        metrics.retries.inc_by(calls.retries as u64);
        let page = page.map_err(|e| (e.kind(), e.into()))?;
        let outcome = self.store(&page, known).await?;
        Ok((page, outcome))
    }

    /// Stores the page's wanted events that the stream does not have, watches the hook's
    /// failures. Errors carry their metric kind.
    async fn store(
        &self,
        page: &Page,
        known: &mut Option<HashSet<String>>,
    ) -> Result<PageOutcome, (&'static str, anyhow::Error)> {
        let events = page.events().map_err(|e| ("invalid", e.into()))?;
        let mut outcome = PageOutcome {
            read: events.len(),
            ..Default::default()
        };
        let mut fresh: Vec<&RawValue> = Vec::new();
        for raw in &events {
            let head: EventHead = serde_json::from_str(raw.get()).unwrap_or_default();
            if let Some(published) = head.published.as_deref().and_then(parse_time) {
                outcome.oldest_published = Some(match outcome.oldest_published {
                    Some(oldest) => oldest.min(published),
                    None => published,
                });
                outcome.newest_published = outcome.newest_published.max(Some(published));
            }
            let event_type = head.event_type.as_deref().unwrap_or_default();
            if event_type == HOOK_DELIVERY_FAILED && self.watch_hook {
                self.status.metrics.hook_delivery_failures.inc();
                outcome.hook_failures.push(hookrelay::okta::HookFailure {
                    published: head.published.clone().unwrap_or_default(),
                    message: head.display_message.clone().unwrap_or_default(),
                    reason: (head.outcome.as_ref())
                        .and_then(|o| o.reason.clone())
                        .unwrap_or_default(),
                });
                tracing::warn!(
                    published = head.published.as_deref().unwrap_or_default(),
                    message = head.display_message.as_deref().unwrap_or_default(),
                    reason = (head.outcome.as_ref())
                        .and_then(|o| o.reason.as_deref())
                        .unwrap_or_default(),
                    "Okta recorded a failed event hook delivery"
                );
            }
            if !self.wanted.contains(event_type) {
                continue;
            }
            match (event::route(raw), known.as_mut()) {
                (Route::Publish { uuid, .. }, Some(known)) if known.contains(uuid.as_ref()) => {
                    outcome.already_stored += 1;
                }
                (Route::Publish { uuid, .. }, Some(known)) => {
                    known.insert(uuid.into_owned());
                    fresh.push(raw);
                }
                (Route::Publish { .. }, None) => fresh.push(raw),
                // Stored as a live delivery would be: in the receiver's dead letters.
                (Route::Unroutable(_), _) => fresh.push(raw),
            }
        }
        if !fresh.is_empty() {
            let stored = self
                .publisher
                .publish(
                    synthetic_delivery(&fresh, "system-log"),
                    page.request_id.as_deref(),
                )
                .await
                .map_err(|e| ("publish", e.into()))?;
            outcome.recovered = stored.published;
            outcome.already_stored += stored.duplicates;
            outcome.dead_lettered = stored.dead_lettered;
        }
        Ok(outcome)
    }

    fn failed(&self, kind: &'static str, error: &dyn std::fmt::Display) {
        self.status.metrics.error(kind);
        tracing::warn!(%error, kind, "System Log poll failed; trying again after poll_interval");
        *self.status.last_error.lock().expect("not poisoned") = Some(error.to_string());
    }

    fn report(&self, outcome: &PageOutcome) {
        let metrics = &self.status.metrics;
        metrics.polls.inc();
        metrics.recovered.inc_by(outcome.recovered as u64);
        metrics.already_stored.inc_by(outcome.already_stored as u64);
        metrics.dead_lettered.inc_by(outcome.dead_lettered as u64);
        if outcome.read == 0 {
            return;
        }
        let oldest = outcome
            .oldest_published
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_default();
        tracing::info!(
            read = outcome.read,
            recovered = outcome.recovered,
            already_stored = outcome.already_stored,
            dead_lettered = outcome.dead_lettered,
            oldest_published = %oldest,
            "System Log page read"
        );
        if outcome.recovered > 0 {
            tracing::warn!(
                recovered = outcome.recovered,
                "the hook had missed events: recovered them from the System Log"
            );
        }
    }
}

/// The members of a LogEvent the reconciler reads itself.
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventHead {
    event_type: Option<String>,
    published: Option<String>,
    display_message: Option<String>,
    outcome: Option<EventOutcome>,
}

#[derive(Default, serde::Deserialize)]
struct EventOutcome {
    reason: Option<String>,
}

/// The span of one poll, when tracing is on: the page's read, and the PRODUCER span of each
/// event it recovers, as its children.
fn poll_span() -> tracing::Span {
    if !hookrelay::telemetry::tracing_on() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "poll",
        otel.name = "poll system log",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        okta.events_read = tracing::field::Empty,
        hookrelay.recovered = tracing::field::Empty,
    )
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

/// The `reconciler` binary's command line and lifecycle.
impl hookrelay::service::Service for Reconciler {
    const NAME: &'static str = "reconciler";
    const ABOUT: &'static str =
        "Reads Okta's System Log and stores, exactly once, every event the hook missed";

    fn admin_listen(settings: &Settings) -> SocketAddr {
        settings.reconciler.admin_listen
    }

    async fn build(settings: &Settings) -> anyhow::Result<Self> {
        Reconciler::build(settings).await
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        Reconciler::run(self, shutdown).await
    }
}
