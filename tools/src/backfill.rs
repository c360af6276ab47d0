//! Backfill: fetch the events a hook missed from Okta's System Log API (`GET /api/v1/logs`)
//! and store them through the receiver's own publishing path, as if Okta had delivered them.
//!
//! It never stores again an event the hook already delivered, however old:
//! 1. it refuses a `since` older than what the events stream still remembers;
//! 2. it reads every uuid the stream holds from `since` (less [`CLOCK_SKEW`]) and skips those;
//! 3. what it publishes carries the uuid as `Nats-Msg-Id`, so JetStream drops an event a live
//!    delivery stored meanwhile. Running it twice changes nothing.
//!
//! It reads the System Log with [`hookrelay::okta::SystemLog`], the reconciler's reader: next
//! links on the org's origin only, rate limits waited out, 5xx and network errors retried.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, stream::Stream};
use hookrelay::config::OktaAccess;
use hookrelay::event::{self, Route};
use hookrelay::okta::{Calls, SystemLog, filter_expression, synthetic_delivery};
use hookrelay::publish::Publisher;
use hookrelay::{Settings, broker, subject};
use serde_json::value::RawValue;
use tracing::Instrument as _;

use crate::count;
use crate::progress::Progress;

/// How far an event's stored time may precede its `published` time (clocks of Okta and of the
/// broker differ): the stream is read from this much before `since`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// How long one page's events may take to be stored, retries included (nobody is waiting).
const PUBLISH_BUDGET: Duration = Duration::from_secs(30);

/// What to fetch, and from where.
pub struct Backfill {
    /// The org and its API token.
    pub okta: OktaAccess,
    pub since: SystemTime,
    pub until: SystemTime,
    /// Only these event types (any of them); with `filter`, both must match.
    pub event_types: Vec<String>,
    /// A System Log filter expression of your own, such as `target.id eq "00u1…"`.
    pub filter: Option<String>,
    /// Events per page, at most 1000 (Okta's maximum).
    pub page_size: u32,
    /// Retries of one page after a 429, a 5xx or a network error, before giving up.
    pub max_retries: u32,
    /// Fetch and compare, store nothing.
    pub dry_run: bool,
}

/// What a backfill did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub pages: usize,
    /// Events the System Log returned.
    pub read: usize,
    /// Skipped: already in the events stream.
    pub already_stored: usize,
    /// Newly stored (or, in a dry run, that would be).
    pub stored: usize,
    /// Published, but JetStream already had them (a live delivery stored them meanwhile).
    pub duplicates: usize,
    /// Stored in the receiver's dead letters (unroutable or too large), as live ones would be.
    pub dead_lettered: usize,
    /// Times it waited for a rate limit to reset.
    pub rate_limit_waits: usize,
    /// Requests tried again after a 429, a 5xx or a network error.
    pub retries: usize,
}

impl Report {
    pub fn summary(&self, dry_run: bool) -> String {
        let n = |n: usize| n as u64;
        format!(
            "{}, {} read: {} already stored, {} {}, {}, {} dead-lettered; {}, {}",
            count(n(self.pages), "page", "pages"),
            count(n(self.read), "event", "events"),
            self.already_stored,
            self.stored,
            if dry_run { "would be stored" } else { "stored" },
            count(n(self.duplicates), "duplicate", "duplicates"),
            self.dead_lettered,
            count(
                n(self.rate_limit_waits),
                "rate-limit wait",
                "rate-limit waits"
            ),
            count(n(self.retries), "retry", "retries"),
        )
    }
}

/// Since when the events stream remembers every event stored: `None` if it never lost one.
/// Messages leave the stream oldest first (age or size limits), so everything stored after the
/// oldest kept one is there; with none kept, everything after the newest one ever stored.
pub async fn remembered_since(stream: &mut Stream) -> anyhow::Result<Option<SystemTime>> {
    let state = &stream
        .info()
        .await
        .context("reading the events stream")?
        .state;
    if state.first_sequence <= 1 {
        return Ok(None);
    }
    Ok(Some(if state.messages > 0 {
        state.first_timestamp.into()
    } else {
        state.last_timestamp.into()
    }))
}

/// Runs the backfill against the events stream of `settings`.
pub async fn run(
    js: &jetstream::Context,
    settings: &Settings,
    job: &Backfill,
) -> anyhow::Result<Report> {
    if job.since >= job.until {
        bail!("--since must be before --until");
    }
    for event_type in &job.event_types {
        if !subject::is_valid_event_type(event_type) {
            bail!("{event_type:?} is not an Okta event type");
        }
    }
    let mut stream = hookrelay::broker::open_stream(js, &settings.nats.stream).await?;
    let read_from = job.since - CLOCK_SKEW;
    if let Some(kept) = remembered_since(&mut stream).await?
        && read_from < kept
    {
        bail!(
            "stream {} only remembers the events stored since {}: events before that may have \
             been delivered by the hook already, and backfilling them could deliver them twice. \
             Use --since {} or later (or keep events longer: nats.retention).",
            settings.nats.stream,
            humantime::format_rfc3339_seconds(kept),
            humantime::format_rfc3339_seconds(kept + CLOCK_SKEW + Duration::from_secs(1)),
        );
    }
    let mut progress = Progress::new();
    let mut known = broker::stored_uuids(&stream, read_from, |read| {
        progress.tick(|| {
            let read = count(read as u64, "stored event", "stored events");
            format!("{read} read from the stream")
        });
    })
    .await?;
    eprintln!(
        "{} already stored since {}",
        count(known.len() as u64, "event", "events"),
        humantime::format_rfc3339_seconds(read_from)
    );

    let publisher = Publisher::new(&js.client(), PUBLISH_BUDGET, Arc::new(()))
        .with_source(hookrelay::subject::source::BACKFILL);
    // All of the rate limit: a backfill is a one-off an operator runs and watches.
    let log = SystemLog::new(job.okta.clone(), job.max_retries, 1.0)?;
    let mut report = Report::default();
    let mut calls = Calls::default();
    let mut progress = Progress::new();
    let mut next = Some(first_page(&log, job));
    while let Some(url) = next.take() {
        let page = log.fetch(&url, &mut calls).await;
        (report.rate_limit_waits, report.retries) = (calls.rate_limit_waits, calls.retries);
        let page = page?;
        report.pages += 1;
        let events: Vec<&RawValue> =
            (page.events()).with_context(|| format!("page {}", report.pages))?;
        report.read += events.len();
        let mut fresh = Vec::with_capacity(events.len());
        for event in &events {
            // The uuid the receiver would store it under, read as the receiver reads it.
            match event::route(event) {
                Route::Publish { uuid, .. } if known.contains(uuid.as_ref()) => {
                    report.already_stored += 1;
                }
                Route::Publish { uuid, .. } => {
                    known.insert(uuid.into_owned());
                    fresh.push(*event);
                }
                // Stored as a live delivery would be: in the receiver's dead letters.
                Route::Unroutable(_) => fresh.push(*event),
            }
        }
        if job.dry_run {
            report.stored += fresh.len();
        } else if !fresh.is_empty() {
            let stored = publisher
                .publish(
                    synthetic_delivery(&fresh, "backfill"),
                    page.request_id.as_deref(),
                )
                .instrument(page_span(report.pages))
                .await
                .map_err(|e| anyhow::anyhow!("page {}: {e}", report.pages))?;
            report.stored += stored.published;
            report.duplicates += stored.duplicates;
            report.dead_lettered += stored.dead_lettered;
        }
        progress.tick(|| format!("page {}: {}", report.pages, report.summary(job.dry_run)));
        if !events.is_empty() {
            next = page.next;
        }
    }
    Ok(report)
}

/// With tracing on, each page's events are a trace of their own (a backfill may store
/// millions), linked to the command's.
fn page_span(page: usize) -> tracing::Span {
    if !hookrelay::telemetry::tracing_on() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(parent: None, "backfill page", okta.page = page);
    hookrelay::telemetry::link_to_current(&span);
    span
}

fn first_page(log: &SystemLog, job: &Backfill) -> reqwest::Url {
    let mut query = vec![
        (
            "since",
            humantime::format_rfc3339_millis(job.since).to_string(),
        ),
        (
            "until",
            humantime::format_rfc3339_millis(job.until).to_string(),
        ),
        ("limit", job.page_size.clamp(1, 1000).to_string()),
        ("sortOrder", "ASCENDING".to_owned()),
    ];
    if let Some(filter) = filter_expression(&job.event_types, job.filter.as_deref()) {
        query.push(("filter", filter));
    }
    log.first_page(&query)
}

/// `hookrelayctl backfill`.
#[derive(clap::Args)]
pub struct Args {
    /// The Okta org, such as https://dev-123456.okta.com [default: okta.org_url].
    #[arg(long)]
    pub okta_url: Option<reqwest::Url>,
    /// From when: RFC 3339 (2026-11-20T08:00:00Z) or a time ago (36h, 7d).
    #[arg(long, value_parser = parse_time)]
    pub since: SystemTime,
    /// Until when, same forms [default: now].
    #[arg(long, value_parser = parse_time)]
    pub until: Option<SystemTime>,
    /// Only this event type; repeatable [default: the configured subscribers' event types].
    #[arg(long = "event-type")]
    pub event_types: Vec<String>,
    /// A System Log filter expression, combined with the event types by `and`.
    #[arg(long)]
    pub filter: Option<String>,
    /// Events per page (at most 1000).
    #[arg(long, default_value_t = 1000)]
    pub page_size: u32,
    /// Retries of a page after a 429, a 5xx or a network error.
    #[arg(long, default_value_t = 10)]
    pub max_retries: u32,
    /// Fetch and compare with the stream; store nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl Args {
    /// Runs the backfill with the `[okta]` section's org and token; `--okta-url` and
    /// `OKTA_API_TOKEN` win over them.
    pub async fn run(self, settings: &Settings) -> anyhow::Result<bool> {
        let mut okta = crate::okta_settings(settings);
        if let Some(url) = &self.okta_url {
            okta.org_url = url.to_string();
        }
        let okta = okta.access().context(
            "Okta API access: set okta.org_url (or --okta-url) and okta.api_token \
             (HOOKRELAY__OKTA__API_TOKEN, or OKTA_API_TOKEN) to a token that can read the \
             System Log",
        )?;
        let mut event_types = self.event_types;
        if event_types.is_empty() && self.filter.is_none() {
            event_types = (settings.worker.subscribers.iter())
                .flat_map(|s| s.event_types.iter().cloned())
                .collect();
            event_types.sort();
            event_types.dedup();
            if event_types.is_empty() {
                anyhow::bail!("no subscriber is configured: say which events, --event-type");
            }
        }
        let job = Backfill {
            okta,
            since: self.since,
            until: self.until.unwrap_or_else(SystemTime::now),
            event_types,
            filter: self.filter,
            page_size: self.page_size,
            max_retries: self.max_retries,
            dry_run: self.dry_run,
        };
        let js = crate::connect(settings).await?;
        let report = run(&js, settings, &job).await?;
        println!("{}", report.summary(job.dry_run));
        Ok(true)
    }
}

/// RFC 3339, or a duration meaning that long ago.
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(time);
    }
    let ago: Duration = humantime::parse_duration(text)
        .map_err(|_| format!("{text:?} is neither RFC 3339 nor a duration such as 36h"))?;
    SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| format!("{text} ago is before 1970"))
}
