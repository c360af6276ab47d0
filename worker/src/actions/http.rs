//! `type = "http"`: POSTs the event, exactly as Okta sent it, to a URL; or, with a `transform`,
//! the one value a jq expression makes of it (with `method` `PUT` or `PATCH` if asked).
//!
//! Every request carries `Content-Type` (`application/json` unless `content_type` says
//! otherwise), `Idempotency-Key: <event uuid>` (the
//! same on every retry, so the receiving service can drop repeats), `Hookrelay-Event-Type`,
//! `Hookrelay-Stored-At` (when JetStream stored the event, to measure lag), the configured
//! static headers and, with `signing_secret`, a Standard Webhooks signature:
//! `webhook-id` (the event uuid), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` (the body sent:
//! the transformed one, if transformed).
//!
//! The answer decides what follows: 2xx is done; 408, 429, 5xx, a connection error or a timeout
//! is transient (retried on the subscriber's backoff); a 429 or 503 with `Retry-After` also
//! pauses the whole subscriber that long (at most an hour); any other status is permanent
//! (dead-lettered). Redirects are not followed: a request must reach its final URL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hookrelay::config::{HttpActionSettings, HttpMethod};
use hookrelay::jq::Jq;
use hookrelay::{attempts, broker, telemetry};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use tracing::Instrument as _;

use crate::action::{Action, ActionError, Event};

/// How much of an error answer's body is kept in the failure reason.
const MAX_ERROR_BODY: usize = 200;

/// The longest pause a downstream's `Retry-After` gets: a longer one (or a date far ahead) is
/// more likely a mistake than a plan, and would stall the subscriber.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

// Names made at compile time: a name given as a string is parsed again for every request.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const EVENT_TYPE: HeaderName = HeaderName::from_static("hookrelay-event-type");
const STORED_AT: HeaderName = HeaderName::from_static("hookrelay-stored-at");
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// POSTs each event to one URL.
pub struct HttpPost {
    client: reqwest::Client,
    method: reqwest::Method,
    url: reqwest::Url,
    /// The URL as errors name it: [`hookrelay::config::shown_url`].
    shown: String,
    transform: Option<Jq>,
    timeout: Duration,
    headers: HeaderMap,
    signing_key: Option<ring::hmac::Key>,
    /// Send `traceparent` with tracing on.
    propagate_trace: bool,
}

impl HttpPost {
    /// Builds the action and its connection pool. Fails on settings that cannot work.
    pub fn new(settings: &HttpActionSettings) -> Result<Self, String> {
        // reqwest's TLS uses the process's rustls provider; use ring, which async-nats uses too.
        // Installing fails only when one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = reqwest::Url::parse(&settings.url).map_err(|e| format!("url: {e}"))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &settings.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not valid"))?;
            let mut value = HeaderValue::from_str(value.expose_secret())
                .map_err(|_| format!("the value of header {name} is not valid"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let content_type = HeaderValue::from_str(&settings.content_type)
            .map_err(|_| "content_type is not a valid header value".to_owned())?;
        headers.insert(CONTENT_TYPE, content_type);
        let transform = (settings.transform.as_deref())
            .map(Jq::compile)
            .transpose()
            .map_err(|e| format!("transform: {e}"))?;
        let method = match settings.method {
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
        };
        let signing_key = settings
            .signing_key()
            .transpose()
            .map_err(|e| format!("signing_secret {e}"))?
            .map(|key| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key));
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(HttpPost {
            client,
            method,
            shown: hookrelay::config::shown_url(&url),
            url,
            transform,
            timeout: settings.timeout,
            headers,
            signing_key,
            propagate_trace: settings.propagate_trace,
        })
    }

    fn event_headers(&self, event: &Event, body: &[u8]) -> Result<HeaderMap, ActionError> {
        let value = |text: &str| {
            HeaderValue::from_str(text).map_err(|_| {
                ActionError::Permanent(format!("{text:?} cannot be sent as a header value"))
            })
        };
        // The configured headers and the content type, made once.
        let mut headers = self.headers.clone();
        headers.insert(IDEMPOTENCY_KEY, value(&event.uuid)?);
        headers.insert(EVENT_TYPE, value(&event.event_type)?);
        headers.insert(STORED_AT, value(&broker::rfc3339(event.stored_at))?);
        if let Some(key) = &self.signing_key {
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                .to_string();
            let signature = sign(key, &event.uuid, &timestamp, body);
            headers.insert(WEBHOOK_ID, value(&event.uuid)?);
            headers.insert(WEBHOOK_TIMESTAMP, value(&timestamp)?);
            headers.insert(WEBHOOK_SIGNATURE, value(&signature)?);
        }
        Ok(headers)
    }
}

/// The Standard Webhooks signature of one request: `v1,<base64 HMAC-SHA256>`.
pub fn sign(key: &ring::hmac::Key, id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut context = ring::hmac::Context::with_key(key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

#[async_trait::async_trait]
impl Action for HttpPost {
    async fn handle(&self, event: &Event) -> Result<(), ActionError> {
        let body = match &self.transform {
            None => event.raw.clone(),
            Some(transform) => {
                let _span =
                    telemetry::tracing_on().then(|| tracing::info_span!("jq transform").entered());
                (transform.transform(event.jq_input()?))
                    .map_err(|e| ActionError::Permanent(format!("transform: {e}")))?
                    .into()
            }
        };
        let mut request = reqwest::Request::new(self.method.clone(), self.url.clone());
        // Set as a whole: a builder's `headers` would insert them one by one into an empty map.
        *request.headers_mut() = self.event_headers(event, &body)?;
        *request.body_mut() = Some(body.into());
        let span = self.client_span();
        if self.propagate_trace {
            telemetry::inject_http(&span, request.headers_mut());
        }
        let answered = self.answer(request, event).instrument(span.clone()).await;
        if telemetry::tracing_on() {
            let status = event.answer().map(|(status, _)| *status);
            if let Some(status) = status {
                span.record("http.response.status_code", status);
            }
            if answered.is_err() {
                // The semantic conventions' error.type: the status code, else what failed.
                let kind = status.map_or("request".into(), |s| s.to_string());
                span.record("error.type", kind.as_str());
                span.record("otel.status_code", "ERROR");
            }
        }
        answered
    }
}

impl HttpPost {
    /// The CLIENT span of the request, when tracing is on: the downstream by its host and port
    /// (never the path or query, which may be its secret).
    fn client_span(&self) -> tracing::Span {
        if !telemetry::tracing_on() {
            return tracing::Span::none();
        }
        tracing::info_span!(
            "http",
            otel.name = %self.method,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %self.method,
            server.address = self.url.host_str().unwrap_or_default(),
            server.port = self.url.port_or_known_default().unwrap_or_default(),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        )
    }

    /// Sends `request` and reads the answer (noted on `event`, for the attempt's record).
    async fn answer(&self, request: reqwest::Request, event: &Event) -> Result<(), ActionError> {
        let response = self.client.execute(request).await;
        let mut response = match response {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Err(ActionError::Transient(format!(
                    "{} did not answer within {:?}",
                    self.shown, self.timeout
                )));
            }
            Err(e) => {
                return Err(ActionError::Transient(format!(
                    "{}: {}",
                    self.shown,
                    error_chain(&e.without_url())
                )));
            }
        };
        let status = response.status();
        let retry_after = (status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::SERVICE_UNAVAILABLE)
            .then(|| response.headers().get(reqwest::header::RETRY_AFTER))
            .flatten()
            .and_then(|value| {
                // A date is read by the downstream's clock (its `Date`), as Okta's resets are.
                let now = (response.headers().get(reqwest::header::DATE))
                    .and_then(|date| httpdate::parse_http_date(date.to_str().ok()?).ok())
                    .unwrap_or_else(SystemTime::now);
                retry_after(value.to_str().ok()?, now)
            });
        if status.is_success() {
            // Read (a bounded part of) the body so the connection can be reused; its start is
            // the attempt's record.
            let mut budget: usize = 64 * 1024;
            let mut start = None;
            while let Ok(Some(chunk)) = response.chunk().await {
                start.get_or_insert(chunk.slice(..chunk.len().min(attempts::MAX_RESPONSE)));
                budget = match budget.checked_sub(chunk.len()) {
                    Some(left) => left,
                    None => break,
                };
            }
            event.answered(status.as_u16(), start.unwrap_or_default());
            return Ok(());
        }
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk);
            if body.len() >= MAX_ERROR_BODY.max(attempts::MAX_RESPONSE) {
                break;
            }
        }
        event.answered(status.as_u16(), body.clone().into());
        body.truncate(MAX_ERROR_BODY);
        let reason = format!(
            "{} answered {status}: {}",
            self.shown,
            String::from_utf8_lossy(&body).trim()
        );
        if let Some(retry_after) = retry_after {
            Err(ActionError::Throttled {
                reason: format!("{reason} (Retry-After: {}s)", retry_after.as_secs()),
                retry_after,
            })
        } else if is_transient(status) {
            Err(ActionError::Transient(reason))
        } else {
            Err(ActionError::Permanent(reason))
        }
    }
}

/// A `Retry-After` value, delay-seconds or an HTTP date (RFC 9110 §10.2.3), as a wait from
/// `now`, at most [`MAX_RETRY_AFTER`]. `None` when it says neither.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// 408, 429 and 5xx may succeed later; any other failure will not.
pub fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_downstream_by_its_origin_not_its_secret_path() {
        let shown_of =
            |url: &str| hookrelay::config::shown_url(&reqwest::Url::parse(url).expect("a URL"));
        assert_eq!(
            shown_of("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/..."
        );
        assert_eq!(
            shown_of("https://user:pass@siem.example.com:8088/collector?token=t"),
            "https://siem.example.com:8088/..."
        );
        assert_eq!(shown_of("http://crm:8080/"), "http://crm:8080/");
        assert_eq!(shown_of("http://crm:8080"), "http://crm:8080/");
    }

    #[test]
    fn statuses_are_classified_as_the_issue_says() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(
                is_transient(StatusCode::from_u16(code).expect("status")),
                "{code}"
            );
        }
        for code in [300, 301, 400, 401, 403, 404, 409, 410, 422] {
            assert!(
                !is_transient(StatusCode::from_u16(code).expect("status")),
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_and_at_most_an_hour() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a date passed: no wait"
        );
        assert_eq!(retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }

    #[test]
    fn signature_matches_the_standard_webhooks_test_vector() {
        // The example of the Standard Webhooks specification.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
        let signature = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
