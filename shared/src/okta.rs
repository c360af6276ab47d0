//! Okta's System Log API (`GET /api/v1/logs`), read the way Okta says to: follow the
//! `Link: <…>; rel="next"` of every answer (only to the org's own origin: the token goes nowhere
//! else), honour `X-Rate-Limit-Remaining`/`-Reset` and 429s, retry 5xx answers and network
//! errors with backoff. One client for every reader: the reconciler and `hookrelayctl
//! backfill`. Events read here are stored through [`crate::publish`] as a synthetic delivery.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde_json::value::RawValue;

use crate::config::OktaAccess;
use crate::subject;

pub mod auth;
pub mod hooks;

pub use auth::Authorizer;

/// The key, in the reconciler's bucket, of the last failed hook deliveries Okta recorded
/// (`event_hook.delivery`), newest last: the console's Okta page shows them.
pub const HOOK_FAILURES_KEY: &str = "hook_delivery_failures";
/// How many of them are kept.
pub const HOOK_FAILURES_KEPT: usize = 20;

/// A failed hook delivery, as Okta's System Log records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HookFailure {
    /// When Okta recorded it (RFC 3339).
    pub published: String,
    /// Okta's `displayMessage`.
    pub message: String,
    /// Okta's `outcome.reason`: why the delivery failed.
    pub reason: String,
}

/// The longest wait for a rate limit to reset: Okta's windows are a minute.
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(120);
/// Okta's answer when a query runs too long; also what one page may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OktaError {
    /// Okta refused the request (a 4xx other than 429): retrying will not help.
    #[error("Okta answered {status}: {summary}{hint}")]
    Refused {
        status: reqwest::StatusCode,
        summary: String,
        hint: &'static str,
    },
    /// 429s, 5xx answers or network errors, more times than allowed.
    #[error("giving up on {url} after {retries} retries: {why}")]
    GaveUp {
        url: String,
        retries: u32,
        why: String,
    },
    /// The `next` link leaves the org's origin, or cannot be read.
    #[error("{0}")]
    NextLink(String),
    /// The client could not be built or the body not read.
    #[error("{0}")]
    Client(String),
}

impl OktaError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            OktaError::Refused { .. } => "refused",
            OktaError::GaveUp { .. } => "unavailable",
            OktaError::NextLink(_) => "next_link",
            OktaError::Client(_) => "client",
        }
    }
}

/// What reading pages cost, for reports and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    /// Times the reader waited for the rate limit to reset (429, used up, or its share used).
    pub rate_limit_waits: usize,
    /// Requests tried again after a 429, a 5xx or a network error.
    pub retries: usize,
}

/// One answer of `/api/v1/logs`.
pub struct Page {
    /// A JSON array of LogEvents.
    pub body: Bytes,
    /// The `rel="next"` link: in polling mode (no `until`), always present.
    pub next: Option<reqwest::Url>,
    /// Okta's `X-Okta-Request-Id`, carried to the stored events for tracing.
    pub request_id: Option<String>,
}

impl Page {
    /// The page's events, each as Okta sent it.
    pub fn events(&self) -> Result<Vec<&RawValue>, OktaError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| OktaError::Client(format!("not a list of System Log events: {e}")))
    }
}

/// A System Log reader for one org.
pub struct SystemLog {
    http: reqwest::Client,
    org_url: reqwest::Url,
    auth: Authorizer,
    /// Retries of one page after a 429, a 5xx or a network error.
    max_retries: u32,
    /// The share of the rate limit this reader may use (1: all of it).
    share: f64,
}

impl SystemLog {
    pub fn new(access: OktaAccess, max_retries: u32, share: f64) -> Result<Self, OktaError> {
        let http = http_client()?;
        Ok(SystemLog {
            auth: Authorizer::new(http.clone(), &access, &["okta.logs.read"])?,
            http,
            org_url: access.org_url,
            max_retries,
            share,
        })
    }

    /// The org's base URL.
    pub fn org_url(&self) -> &reqwest::Url {
        &self.org_url
    }

    /// `/api/v1/logs` with `query`: the first request of a read.
    pub fn first_page(&self, query: &[(&str, String)]) -> reqwest::Url {
        let mut url = (self.org_url)
            .join("/api/v1/logs")
            .expect("a path joins a base URL");
        url.query_pairs_mut().extend_pairs(query);
        url
    }

    /// Fetches one page, waiting out rate limits and retrying what is worth retrying.
    pub async fn fetch(&self, url: &reqwest::Url, calls: &mut Calls) -> Result<Page, OktaError> {
        let request = Request {
            method: reqwest::Method::GET,
            url,
            body: None::<&()>,
            max_retries: self.max_retries,
        };
        let is_api_token = self.auth.is_api_token();
        let response = send(&self.http, &self.auth, request, calls, |status| {
            match (status.as_u16(), is_api_token) {
                (401, true) => {
                    " (is the API token right? okta.api_token, or OKTA_API_TOKEN for hookrelayctl)"
                }
                (401, false) => " (check okta.client_id, okta.key_id and okta.private_key_file)",
                (403, _) => {
                    " (reading the System Log needs okta.logs.read: an admin's API token, or that scope granted to the service app)"
                }
                _ => "",
            }
        })
        .await?;
        let headers = response.headers().clone();
        let body = (response.bytes().await)
            .map_err(|e| OktaError::Client(format!("reading a page: {e}")))?;
        if let Some(wait) = share_used_wait(&headers, self.share) {
            calls.rate_limit_waits += 1;
            pause(wait, "this reader's share of Okta's rate limit is used").await;
        }
        Ok(Page {
            body,
            next: next_link(&headers, &self.org_url)?,
            request_id: (headers.get("x-okta-request-id"))
                .and_then(|v| v.to_str().ok())
                .filter(|id| subject::is_valid_id(id))
                .map(str::to_owned),
        })
    }
}

/// One Okta API request: what [`send`] sends, and how often it may try again.
pub(crate) struct Request<'a, B: serde::Serialize + ?Sized> {
    pub method: reqwest::Method,
    pub url: &'a reqwest::Url,
    /// Sent as JSON.
    pub body: Option<&'a B>,
    pub max_retries: u32,
}

/// Sends one Okta API request until it is answered for good, the one retry loop of every Okta
/// call: the org's authorization on each try; a 401 asking for a DPoP nonce or a fresh token
/// answered once, at once; a 429 waited out until the rate limit resets; a 5xx or a network
/// error tried again with backoff, up to `max_retries` times. A success comes back as it came;
/// any other answer becomes [`OktaError::Refused`] with Okta's error summary and the caller's
/// `hint(status)`: what to check, which only the caller knows.
pub(crate) async fn send<B: serde::Serialize + ?Sized>(
    http: &reqwest::Client,
    auth: &Authorizer,
    request: Request<'_, B>,
    calls: &mut Calls,
    hint: impl FnOnce(reqwest::StatusCode) -> &'static str,
) -> Result<reqwest::Response, OktaError> {
    let Request {
        method,
        url,
        body,
        max_retries,
    } = request;
    let mut attempt = 0;
    let mut reauthorized = false;
    loop {
        let mut builder = (http.request(method.clone(), url.clone()))
            .headers(auth.headers(&method, url).await?)
            .header("accept", "application/json");
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let (why, wait) = match builder.send().await {
            Ok(response) if response.status().is_success() => return Ok(response),
            Ok(response)
                if response.status() == 401
                    && !reauthorized
                    && auth.after_unauthorized(response.headers()).await =>
            {
                // A DPoP nonce to use, or a token to renew: once, at once.
                reauthorized = true;
                continue;
            }
            Ok(response) if response.status() == 429 => {
                calls.rate_limit_waits += 1;
                let wait = reset_wait(response.headers()).unwrap_or(backoff(attempt));
                ("429 Too Many Requests (rate limited)".to_owned(), wait)
            }
            Ok(response) if response.status().is_server_error() => {
                (response.status().to_string(), backoff(attempt))
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                return Err(OktaError::Refused {
                    status,
                    summary: error_summary(&body),
                    hint: hint(status),
                });
            }
            Err(e) => (e.without_url().to_string(), backoff(attempt)),
        };
        if attempt >= max_retries {
            return Err(OktaError::GaveUp {
                url: url.path().to_owned(),
                retries: attempt,
                why,
            });
        }
        attempt += 1;
        calls.retries += 1;
        tracing::warn!(%why, ?wait, attempt, path = url.path(), "Okta request failed; trying again");
        pause(wait, &format!("{} answered {why}", url.path())).await;
    }
}

/// Waits `wait`; one longer than a second says so at its start and every 5 s, so that a
/// rate-limit pause of a minute never looks like a hang.
async fn pause(wait: Duration, why: &str) {
    const EVERY: Duration = Duration::from_secs(5);
    let end = tokio::time::Instant::now() + wait;
    if wait <= Duration::from_secs(1) {
        return tokio::time::sleep_until(end).await;
    }
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        tracing::info!("{why}: waiting, {}s left", left.as_secs_f64().ceil());
        tokio::time::sleep(left.min(EVERY)).await;
    }
}

/// The HTTP client for Okta: rustls, a timeout, no redirects (a token goes to the org only).
pub fn http_client() -> Result<reqwest::Client, OktaError> {
    // reqwest's TLS needs a crypto provider; installing fails only when one is already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| OktaError::Client(e.to_string()))
}

/// The System Log `filter` for these event types and an expression of the caller's, if any.
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

/// A hook delivery carrying `events`, as Okta would send it, with the events' bytes unchanged;
/// its `eventId` is `<source>-<random uuid>`.
pub fn synthetic_delivery(events: &[&RawValue], source: &str) -> Bytes {
    let head = serde_json::json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": format!("hookrelay {source}"),
        "eventId": format!("{source}-{}", uuid::Uuid::new_v4()),
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

/// Okta's error answer, said plainly: `errorSummary: cause; cause` (or the start of a body
/// that is not Okta's JSON).
fn error_summary(body: &str) -> String {
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let summary = (parsed["errorSummary"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| body.chars().take(200).collect());
    let causes: Vec<&str> = (parsed["errorCauses"].as_array().into_iter().flatten())
        .filter_map(|cause| cause["errorSummary"].as_str())
        .collect();
    if causes.is_empty() {
        summary
    } else {
        format!("{summary}: {}", causes.join("; "))
    }
}

/// At most 32 s, well under [`MAX_RATE_LIMIT_WAIT`].
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
    let now = (headers.get("date"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .unwrap_or_else(SystemTime::now);
    // A second more: the reset is given in whole seconds.
    let wait = reset.duration_since(now).unwrap_or_default() + Duration::from_secs(1);
    Some(wait.min(MAX_RATE_LIMIT_WAIT))
}

/// The wait before the next request when this answer left no more of the bucket than the
/// others' share: with `share` 0.5, once half the limit is left, the reader waits for the reset.
fn share_used_wait(headers: &HeaderMap, share: f64) -> Option<Duration> {
    let remaining = header_u64(headers, "x-rate-limit-remaining")?;
    let limit = header_u64(headers, "x-rate-limit-limit").unwrap_or(remaining);
    let kept_for_others = (limit as f64 * (1.0 - share)).floor() as u64;
    (remaining <= kept_for_others).then(|| reset_wait(headers))?
}

/// The `rel="next"` link, which must stay on the org's origin (the token is sent to it).
fn next_link(headers: &HeaderMap, okta: &reqwest::Url) -> Result<Option<reqwest::Url>, OktaError> {
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
                .map_err(|e| OktaError::NextLink(format!("a next link {target:?}: {e}")))?;
            if url.origin() != okta.origin() {
                return Err(OktaError::NextLink(format!(
                    "the next page is on another origin ({url}); not sending the token there"
                )));
            }
            return Ok(Some(url));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

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
    fn rate_limit_waits_follow_okta_s_clock_and_leave_the_others_their_share() {
        let date = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
        let answer = |remaining: &str| {
            headers(&[
                ("date", &date),
                ("x-rate-limit-limit", "60"),
                ("x-rate-limit-remaining", remaining),
                ("x-rate-limit-reset", "1010"),
            ])
        };
        assert_eq!(reset_wait(&answer("0")), Some(Duration::from_secs(11)));
        // All of the bucket: wait only when it is used up.
        assert_eq!(
            share_used_wait(&answer("0"), 1.0),
            Some(Duration::from_secs(11))
        );
        assert_eq!(share_used_wait(&answer("5"), 1.0), None);
        // Half of it: stop once half is left for the others.
        assert_eq!(share_used_wait(&answer("31"), 0.5), None);
        assert_eq!(
            share_used_wait(&answer("30"), 0.5),
            Some(Duration::from_secs(11))
        );
        let far = headers(&[("date", &date), ("x-rate-limit-reset", "999999")]);
        assert_eq!(reset_wait(&far), Some(MAX_RATE_LIMIT_WAIT));
    }

    #[test]
    fn a_synthetic_delivery_is_one_the_receiver_reads() {
        let a = RawValue::from_string(r#"{"uuid":"a","eventType":"x.y"}"#.into()).unwrap();
        let b = RawValue::from_string(r#"{"uuid":"b","eventType":"x.y"}"#.into()).unwrap();
        let body = synthetic_delivery(&[&a, &b], "backfill");
        let envelope = crate::event::Envelope::parse(&body).unwrap();
        assert_eq!(envelope.data.events.len(), 2);
        assert_eq!(envelope.data.events[1].get(), b.get());
        assert!(envelope.delivery_id().unwrap().starts_with("backfill-"));
    }
}
