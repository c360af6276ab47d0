//! A fake of Okta's System Log API (`GET /api/v1/logs`): it serves the events it was given, in
//! the order they were added (Okta's persistence order, so `published` may go backwards),
//! filtered and paged as Okta does (`since`, `until`, `filter` by event type, `limit`,
//! `Link: <…>; rel="next"` with an `after` cursor), checks the `SSWS` token, reports its rate
//! limit in `X-Rate-Limit-*` headers, and can be told to answer 429 or use up its limit on a
//! given request. In polling mode ([`SystemLog::polling`]) events keep arriving
//! ([`SystemLog::push`]) and every answer has a `next` link, even an empty one, as Okta's do
//! when there is no `until`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// The token the fake accepts, as `Authorization: SSWS <token>`.
pub const TOKEN: &str = "test-api-token";

/// How the fake misbehaves, by request number (1 for the first request).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Answer these requests 429, with the limit resetting a second later.
    pub too_many_on: Vec<usize>,
    /// Answer these requests normally but with `X-Rate-Limit-Remaining: 0`.
    pub exhausted_on: Vec<usize>,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Request {
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub status: u16,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Decides whether a request may read the System Log (the org's own token rules).
pub(crate) type Authorize = Arc<dyn Fn(&Method, &Uri, &HeaderMap) -> bool + Send + Sync>;

pub(crate) struct Shared {
    /// Who may read: `None` takes only `SSWS` [`TOKEN`].
    authorize: Option<Authorize>,
    events: Mutex<Vec<Value>>,
    /// Polling mode: a `next` link on every answer.
    polling: bool,
    limits: Limits,
    requests: Mutex<Vec<Request>>,
    base: String,
}

/// The running fake.
pub struct SystemLog {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl SystemLog {
    /// Serves `events` (System Log events, with `published` and `eventType`) in their order,
    /// with a `next` link only while more matching events follow.
    pub async fn start(events: Vec<Value>, limits: Limits) -> Self {
        Self::serve(events, limits, false).await
    }

    /// Polling mode: a `next` link on every answer; events added later with [`push`](Self::push)
    /// are on the pages that follow.
    pub async fn polling(events: Vec<Value>, limits: Limits) -> Self {
        Self::serve(events, limits, true).await
    }

    /// Events that happened since: they go at the end, whatever their `published`.
    pub fn push(&self, events: impl IntoIterator<Item = Value>) {
        self.shared
            .events
            .lock()
            .expect("not poisoned")
            .extend(events);
    }

    async fn serve(events: Vec<Value>, limits: Limits, polling: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("a local address");
        let (log, app) = Self::mounted(addr, events, limits, polling, None);
        tokio::spawn(async move { axum::serve(listener, app).await });
        log
    }

    /// The fake and its route, for a server at `addr` (its own, or the fake org's).
    pub(crate) fn mounted(
        addr: SocketAddr,
        events: Vec<Value>,
        limits: Limits,
        polling: bool,
        authorize: Option<Authorize>,
    ) -> (Self, axum::Router) {
        let shared = Arc::new(Shared {
            authorize,
            events: Mutex::new(events),
            polling,
            limits,
            requests: Mutex::new(Vec::new()),
            base: format!("http://{addr}"),
        });
        let app = axum::Router::new()
            .route("/api/v1/logs", get(logs))
            .with_state(shared.clone());
        (SystemLog { addr, shared }, app)
    }

    /// The org URL to give the backfill.
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().expect("not poisoned").clone()
    }
}

fn time_of(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

/// The event types of a filter such as `eventType eq "a" or eventType eq "b"` (and any
/// parenthesised remainder, ignored).
fn wanted_types(filter: &str) -> Vec<String> {
    filter
        .split("eventType eq \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

async fn logs(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let number = {
        let requests = shared.requests.lock().expect("not poisoned");
        requests.len() + 1
    };
    let record = |status: u16| {
        shared.requests.lock().expect("not poisoned").push(Request {
            query: query.clone(),
            authorization: authorization.clone(),
            status,
        });
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut out = HeaderMap::new();
    out.insert(
        "date",
        HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())).unwrap(),
    );
    out.insert("x-rate-limit-limit", HeaderValue::from_static("60"));
    out.insert("x-rate-limit-reset", HeaderValue::from(now + 1));
    out.insert(
        "x-okta-request-id",
        HeaderValue::from_str(&format!("fake-{number}")).unwrap(),
    );

    let authorized = match &shared.authorize {
        Some(authorize) => authorize(&method, &uri, &headers),
        None => authorization.as_deref() == Some(&format!("SSWS {TOKEN}")),
    };
    if !authorized {
        record(401);
        let body = json!({"errorCode": "E0000011", "errorSummary": "Invalid token provided"});
        return (StatusCode::UNAUTHORIZED, out, axum::Json(body)).into_response();
    }
    if shared.limits.too_many_on.contains(&number) {
        record(429);
        out.insert("x-rate-limit-remaining", HeaderValue::from_static("0"));
        let body = json!({"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit due to too many requests."});
        return (StatusCode::TOO_MANY_REQUESTS, out, axum::Json(body)).into_response();
    }
    let remaining = if shared.limits.exhausted_on.contains(&number) {
        0
    } else {
        50
    };
    out.insert("x-rate-limit-remaining", HeaderValue::from(remaining));

    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let since = param("since").and_then(time_of).unwrap_or(UNIX_EPOCH);
    let until = param("until")
        .and_then(time_of)
        .unwrap_or_else(SystemTime::now);
    let types = param("filter").map(wanted_types).unwrap_or_default();
    let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let after: usize = param("after").and_then(|a| a.parse().ok()).unwrap_or(0);

    let events = shared.events.lock().expect("not poisoned").clone();
    let matching: Vec<(usize, &Value)> = (events.iter().enumerate())
        .filter(|(_, e)| {
            let published = e["published"].as_str().and_then(time_of);
            published.is_some_and(|p| p >= since && p < until)
                && (types.is_empty()
                    || types
                        .iter()
                        .any(|t| Some(t.as_str()) == e["eventType"].as_str()))
        })
        .filter(|(i, _)| *i >= after)
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .take(limit)
        .map(|(_, e)| (*e).clone())
        .collect();
    let mut self_link = format!("<{}/api/v1/logs?", shared.base);
    self_link.push_str(&serde_urlencode(&query));
    self_link.push_str(">; rel=\"self\"");
    out.append("link", HeaderValue::from_str(&self_link).unwrap());
    // The cursor after this page: the next matching event, or (polling) past the last one served.
    let next_after = match matching.get(limit) {
        Some((next, _)) => Some(*next),
        None if shared.polling => Some(
            matching
                .get(page.len().wrapping_sub(1))
                .map_or(after, |(last, _)| last + 1),
        ),
        None => None,
    };
    if let Some(next) = next_after {
        let mut next_query: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k != "after")
            .cloned()
            .collect();
        next_query.push(("after".into(), next.to_string()));
        let link = format!(
            "<{}/api/v1/logs?{}>; rel=\"next\"",
            shared.base,
            serde_urlencode(&next_query)
        );
        out.append("link", HeaderValue::from_str(&link).unwrap());
    }
    record(200);
    (StatusCode::OK, out, axum::Json(Value::Array(page))).into_response()
}

fn serde_urlencode(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_their_event_types() {
        assert_eq!(
            wanted_types(r#"(eventType eq "a.b" or eventType eq "c") and (x eq "y")"#),
            ["a.b", "c"]
        );
    }
}
