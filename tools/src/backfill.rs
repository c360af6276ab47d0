//! Backfill: fetch the events a hook missed from Okta's System Log API (`GET /api/v1/logs`)
//! and store them through the receiver's own publishing path, as if Okta had delivered them.
//!
//! It never stores again an event the hook already delivered, however old:
//! 1. it refuses a `since` older than what the events stream still remembers;
//! 2. it reads every uuid the stream holds from `since` (less [`CLOCK_SKEW`]) and skips those;
//! 3. what it publishes carries the uuid as `Nats-Msg-Id`, so JetStream drops an event a live
//!    delivery stored meanwhile. Running it twice changes nothing.
//!
//! It follows `Link: <…>; rel="next"` (only to the Okta origin it was given: the token goes
//! nowhere else), waits for `X-Rate-Limit-Reset` when `X-Rate-Limit-Remaining` reaches 0 or
//! Okta answers 429, and retries 5xx answers and network errors with backoff.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, consumer, stream::Stream};
use bytes::Bytes;
use hookrelay::Settings;
use hookrelay::event::{self, Route};
use hookrelay::publish::Publisher;
use hookrelay::subject;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::value::RawValue;

use crate::progress::Progress;
use crate::read_stream;

/// How far an event's stored time may precede its `published` time (clocks of Okta and of the
/// broker differ): the stream is read from this much before `since`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// How long one page's events may take to be stored, retries included (nobody is waiting).
const PUBLISH_BUDGET: Duration = Duration::from_secs(30);
/// The longest wait for a rate limit to reset: Okta's windows are a minute.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(120);

/// What to fetch, and from where.
pub struct Backfill {
    /// The org's base URL, `https://dev-123456.okta.com`.
    pub okta_url: reqwest::Url,
    pub token: SecretString,
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
        format!(
            "{} pages, {} events read: {} already stored, {} {}, {} duplicates, {} dead-lettered; \
             {} rate-limit waits, {} retries",
            self.pages,
            self.read,
            self.already_stored,
            self.stored,
            if dry_run { "would be stored" } else { "stored" },
            self.duplicates,
            self.dead_lettered,
            self.rate_limit_waits,
            self.retries,
        )
    }
}

/// The System Log `filter` for these options, if any.
pub fn filter_expression(event_types: &[String], filter: Option<&str>) -> Option<String> {
    let types = event_types
        .iter()
        .map(|t| format!("eventType eq \"{t}\""))
        .collect::<Vec<_>>()
        .join(" or ");
    match (types.is_empty(), filter) {
        (true, None) => None,
        (true, Some(f)) => Some(f.to_owned()),
        (false, None) => Some(types),
        (false, Some(f)) => Some(format!("({types}) and ({f})")),
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

/// The uuid (`Nats-Msg-Id`) of every event stored from `from` on.
pub async fn stored_uuids(stream: &Stream, from: SystemTime) -> anyhow::Result<HashSet<String>> {
    let mut uuids = HashSet::new();
    let mut progress = Progress::new();
    read_stream(
        stream,
        format!("{}.>", subject::EVENTS_PREFIX),
        consumer::DeliverPolicy::ByStartTime {
            start_time: from.into(),
        },
        |message| {
            if let Some(id) = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
                uuids.insert(id.as_str().to_owned());
            }
            progress.tick(|| format!("{} stored events read from the stream", uuids.len()));
            Ok(())
        },
    )
    .await?;
    Ok(uuids)
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
    let mut stream = js
        .get_stream(&settings.nats.stream)
        .await
        .with_context(|| format!("opening stream {}", settings.nats.stream))?;
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
    let mut known = stored_uuids(&stream, read_from).await?;
    eprintln!(
        "{} events already stored since {}",
        known.len(),
        humantime::format_rfc3339_seconds(read_from)
    );

    let publisher = Publisher::new(&js.client(), PUBLISH_BUDGET, Arc::new(()));
    let http = crate::http_client(Duration::from_secs(60))?;
    let mut report = Report::default();
    let mut progress = Progress::new();
    let mut next = Some(first_page(job));
    while let Some(url) = next.take() {
        let page = fetch(&http, job, &url, &mut report).await?;
        report.pages += 1;
        let events: Vec<&RawValue> = serde_json::from_slice(&page.body)
            .with_context(|| format!("page {}: not a list of System Log events", report.pages))?;
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
                .publish(delivery(&fresh), page.request_id.as_deref())
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

fn first_page(job: &Backfill) -> reqwest::Url {
    let mut url = job
        .okta_url
        .join("/api/v1/logs")
        .expect("a path joins a base URL");
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair(
                "since",
                &humantime::format_rfc3339_millis(job.since).to_string(),
            )
            .append_pair(
                "until",
                &humantime::format_rfc3339_millis(job.until).to_string(),
            )
            .append_pair("limit", &job.page_size.clamp(1, 1000).to_string())
            .append_pair("sortOrder", "ASCENDING");
        if let Some(filter) = filter_expression(&job.event_types, job.filter.as_deref()) {
            query.append_pair("filter", &filter);
        }
    }
    url
}

/// A hook delivery carrying `events`, as Okta would send it, with the events' bytes unchanged.
fn delivery(events: &[&RawValue]) -> Bytes {
    let head = serde_json::json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "hookrelayctl backfill",
        "eventId": format!("backfill-{}", uuid::Uuid::new_v4()),
        "eventTime": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "contentType": "application/json",
    });
    let mut body = serde_json::to_string(&head).expect("JSON serialises");
    body.pop(); // the closing brace
    body.push_str(",\"data\":{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(event.get());
    }
    body.push_str("]}}");
    Bytes::from(body)
}

/// One page of the System Log.
struct Page {
    body: Bytes,
    next: Option<reqwest::Url>,
    /// Okta's `X-Okta-Request-Id`, carried to the stored events for tracing.
    request_id: Option<String>,
}

/// Fetches one page, waiting out rate limits and retrying what is worth retrying.
async fn fetch(
    http: &reqwest::Client,
    job: &Backfill,
    url: &reqwest::Url,
    report: &mut Report,
) -> anyhow::Result<Page> {
    let mut token = HeaderValue::from_str(&format!("SSWS {}", job.token.expose_secret()))
        .context("the API token is not a valid header value")?;
    token.set_sensitive(true);
    let mut attempt = 0;
    loop {
        let sent = http
            .get(url.clone())
            .header("authorization", token.clone())
            .header("accept", "application/json")
            .send()
            .await;
        let failure = match sent {
            Ok(response) if response.status().is_success() => {
                let headers = response.headers().clone();
                let body = response
                    .bytes()
                    .await
                    .context("reading a System Log page")?;
                if let Some(wait) = exhausted_wait(&headers) {
                    report.rate_limit_waits += 1;
                    eprintln!("rate limit reached: waiting {wait:?} for it to reset");
                    tokio::time::sleep(wait).await;
                }
                return Ok(Page {
                    body,
                    next: next_link(&headers, &job.okta_url)?,
                    request_id: headers
                        .get("x-okta-request-id")
                        .and_then(|v| v.to_str().ok())
                        .filter(|id| subject::is_valid_id(id))
                        .map(str::to_owned),
                });
            }
            Ok(response) if response.status().as_u16() == 429 => {
                let wait = reset_wait(response.headers()).unwrap_or(backoff(attempt));
                report.rate_limit_waits += 1;
                ("429 Too Many Requests (rate limited)".to_owned(), wait)
            }
            Ok(response) if response.status().is_server_error() => {
                let status = response.status();
                (format!("{status}"), backoff(attempt))
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                let summary = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["errorSummary"].as_str().map(str::to_owned))
                    .unwrap_or(body);
                let hint = match status.as_u16() {
                    401 => " (is the API token right, and sent as OKTA_API_TOKEN?)",
                    403 => " (the token's admin needs permission to read the System Log)",
                    _ => "",
                };
                bail!("the System Log answered {status}: {summary}{hint}");
            }
            Err(e) => (format!("{e}"), backoff(attempt)),
        };
        let (why, wait) = failure;
        if attempt >= job.max_retries {
            bail!("giving up on {url} after {attempt} retries: {why}");
        }
        attempt += 1;
        report.retries += 1;
        eprintln!(
            "{why}; trying again in {wait:?} ({attempt} of {})",
            job.max_retries
        );
        tokio::time::sleep(wait).await;
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 << attempt.min(6))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// How long until the rate limit resets, by Okta's clock (its `Date` header) when it sends one.
fn reset_wait(headers: &HeaderMap) -> Option<Duration> {
    let reset =
        SystemTime::UNIX_EPOCH + Duration::from_secs(header_u64(headers, "x-rate-limit-reset")?);
    let now = headers
        .get("date")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .unwrap_or_else(SystemTime::now);
    // A second more: the reset is given in whole seconds.
    let wait = reset.duration_since(now).unwrap_or_default() + Duration::from_secs(1);
    Some(wait.min(MAX_RATE_LIMIT_WAIT))
}

/// The wait before the next request when this answer used up the rate limit.
fn exhausted_wait(headers: &HeaderMap) -> Option<Duration> {
    (header_u64(headers, "x-rate-limit-remaining")? == 0).then(|| reset_wait(headers))?
}

/// The `rel="next"` link, which must stay on Okta's origin (the token is sent to it).
fn next_link(headers: &HeaderMap, okta: &reqwest::Url) -> anyhow::Result<Option<reqwest::Url>> {
    for value in headers.get_all("link") {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next().unwrap_or("").trim();
            let is_next = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if !is_next {
                continue;
            }
            let target = target.trim_start_matches('<').trim_end_matches('>');
            let url = okta
                .join(target)
                .with_context(|| format!("a next link {target:?}"))?;
            if url.origin() != okta.origin() {
                bail!("the next page is on another origin ({url}); not sending the token there");
            }
            return Ok(Some(url));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_filter_combines_event_types_and_an_expression() {
        let types = vec![
            "user.lifecycle.create".to_owned(),
            "group.user_membership.add".to_owned(),
        ];
        assert_eq!(filter_expression(&[], None), None);
        assert_eq!(
            filter_expression(&types[..1], None).unwrap(),
            r#"eventType eq "user.lifecycle.create""#
        );
        assert_eq!(
            filter_expression(&types, Some(r#"outcome.result eq "SUCCESS""#)).unwrap(),
            r#"(eventType eq "user.lifecycle.create" or eventType eq "group.user_membership.add") and (outcome.result eq "SUCCESS")"#
        );
    }

    #[test]
    fn the_next_link_is_found_and_kept_on_the_okta_origin() {
        let okta = reqwest::Url::parse("https://dev-1.okta.com").unwrap();
        let map = headers(&[
            (
                "link",
                "<https://dev-1.okta.com/api/v1/logs?after=1>; rel=\"self\"",
            ),
            (
                "link",
                "<https://dev-1.okta.com/api/v1/logs?after=2>; rel=\"next\"",
            ),
        ]);
        assert_eq!(
            next_link(&map, &okta).unwrap().unwrap().as_str(),
            "https://dev-1.okta.com/api/v1/logs?after=2"
        );
        let one_header = headers(&[(
            "link",
            "<https://dev-1.okta.com/a>; rel=\"self\", <https://dev-1.okta.com/b>; rel=\"next\"",
        )]);
        assert_eq!(next_link(&one_header, &okta).unwrap().unwrap().path(), "/b");
        assert_eq!(next_link(&headers(&[]), &okta).unwrap(), None);
        let elsewhere = headers(&[("link", "<https://evil.example/logs>; rel=\"next\"")]);
        assert!(next_link(&elsewhere, &okta).is_err());
    }

    #[test]
    fn rate_limit_waits_follow_okta_s_clock() {
        let date = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
        let map = headers(&[
            ("date", &date),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", "1010"),
        ]);
        assert_eq!(reset_wait(&map), Some(Duration::from_secs(11)));
        assert_eq!(exhausted_wait(&map), Some(Duration::from_secs(11)));
        let left = headers(&[
            ("date", &date),
            ("x-rate-limit-remaining", "5"),
            ("x-rate-limit-reset", "1010"),
        ]);
        assert_eq!(exhausted_wait(&left), None);
        let far = headers(&[("date", &date), ("x-rate-limit-reset", "999999")]);
        assert_eq!(reset_wait(&far), Some(MAX_RATE_LIMIT_WAIT));
    }

    #[test]
    fn a_backfilled_delivery_is_one_the_receiver_reads() {
        let a = RawValue::from_string(r#"{"uuid":"a","eventType":"x.y"}"#.into()).unwrap();
        let b = RawValue::from_string(r#"{"uuid":"b","eventType":"x.y"}"#.into()).unwrap();
        let body = delivery(&[&a, &b]);
        let envelope = hookrelay::event::Envelope::parse(&body).unwrap();
        assert_eq!(envelope.data.events.len(), 2);
        assert_eq!(envelope.data.events[1].get(), b.get());
        assert!(envelope.delivery_id().unwrap().starts_with("backfill-"));
    }
}

/// `hookrelayctl backfill`.
#[derive(clap::Args)]
pub struct Args {
    /// The Okta org, such as https://dev-123456.okta.com.
    #[arg(long)]
    pub okta_url: reqwest::Url,
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
    /// Runs the backfill with the token from `OKTA_API_TOKEN`.
    pub async fn run(self, settings: &Settings) -> anyhow::Result<bool> {
        let token = std::env::var("OKTA_API_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .context("set OKTA_API_TOKEN to an Okta API token that can read the System Log")?;
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
            okta_url: self.okta_url,
            token: SecretString::from(token),
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
