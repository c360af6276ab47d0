//! The hook endpoint's handlers: Okta's verification (`GET`) and deliveries (`POST`), each
//! answer counted in the metrics. Start-up (listeners, NATS, streams) is in the crate root.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use hookrelay::publish::{PublishError, Publisher};
use hookrelay::{subject, telemetry};
use tracing::Instrument as _;

use crate::auth::HeaderSecret;
use crate::error::ApiError;
use crate::metrics::{Metrics, Route};

/// The header Okta's verification request carries its challenge in.
pub const CHALLENGE_HEADER: &str = "x-okta-verification-challenge";
/// The header that identifies an Okta request, kept for tracing.
pub const OKTA_REQUEST_ID_HEADER: &str = "x-okta-request-id";

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`].
pub struct Inner {
    pub secret: HeaderSecret,
    pub publisher: Publisher,
    /// How long a client may take to send a delivery's body.
    pub body_read_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        secret: HeaderSecret,
        publisher: Publisher,
        body_read_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        AppState(Arc::new(Inner {
            secret,
            publisher,
            body_read_timeout,
            metrics,
        }))
    }
}

/// The hook routes: `GET path` answers verification, `POST path` stores a delivery. Every
/// other path is a JSON 404, every other method a JSON 405.
///
/// Each answer counts itself in the metrics (cheaper than a middleware around every request).
pub fn router(path: &str, max_body_bytes: usize, state: AppState) -> Router {
    let hook = get(verify)
        .post(deliver)
        .fallback(|State(state): State<AppState>| async move {
            refuse(&state, Route::Hook, ApiError::MethodNotAllowed)
        });
    Router::new()
        .route(path, hook)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_secret,
        ))
        .fallback(|State(state): State<AppState>| async move {
            refuse(&state, Route::Unmatched, ApiError::NotFound)
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Middleware on the hook route: 401 unless the secret header is right.
async fn require_secret(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.secret.admits(request.headers()) {
        next.run(request).await
    } else {
        refuse(&state, Route::Hook, ApiError::Unauthorized)
    }
}

/// Counts `result` in the metrics and turns it into the answer.
fn answer(
    state: &AppState,
    route: Route,
    started: Instant,
    result: Result<impl IntoResponse, ApiError>,
) -> Response {
    let (status, error) = match &result {
        Ok(_) => (StatusCode::OK, None),
        Err(e) => {
            let (status, code) = e.status_and_code();
            (status, Some(code))
        }
    };
    state
        .metrics
        .answered(route, status, error, started.elapsed());
    result.into_response()
}

/// Counts and answers a request refused before any work.
fn refuse(state: &AppState, route: Route, error: ApiError) -> Response {
    answer(state, route, Instant::now(), Err::<(), _>(error))
}

/// The SERVER span of a request to the hook, when tracing is on: a child of the trace the
/// request carries (`traceparent`, which a proxy in front may add), with Okta's request id and
/// no other header's value.
fn server_span(method: &str, path: &str, headers: &HeaderMap) -> tracing::Span {
    if !telemetry::tracing_on() {
        return tracing::Span::none();
    }
    let okta_request_id = (headers.get(OKTA_REQUEST_ID_HEADER))
        .and_then(|v| v.to_str().ok())
        .filter(|id| subject::is_valid_id(id));
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {path}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = path,
        okta.request_id = okta_request_id,
        http.response.status_code = tracing::field::Empty,
    );
    telemetry::set_parent(&span, telemetry::extract_http(headers));
    span
}

/// Records the answer's status on the request's span.
fn answered(span: &tracing::Span, response: &Response) {
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// Okta's one-time verification: echo the challenge as `{"verification": "<value>"}`.
async fn verify(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let span = server_span("GET", uri.path(), &headers);
    let response =
        span.in_scope(|| answer(&state, Route::Hook, Instant::now(), challenge(&headers)));
    answered(&span, &response);
    response
}

fn challenge(headers: &HeaderMap) -> Result<Response, ApiError> {
    let challenge = headers
        .get(CHALLENGE_HEADER)
        .ok_or(ApiError::BadChallenge(
            "GET is Okta's verification: the x-okta-verification-challenge header is missing",
        ))?
        .to_str()
        .map_err(|_| ApiError::BadChallenge("the verification challenge is not visible ASCII"))?;
    tracing::info!("answered Okta's verification challenge");
    Ok(axum::Json(serde_json::json!({ "verification": challenge })).into_response())
}

/// A delivery: 200 once JetStream has stored every event, 503 if it could not in time.
async fn deliver(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let span = server_span("POST", request.uri().path(), request.headers());
    let result = store(&state, request).instrument(span.clone()).await;
    let response = answer(&state, Route::Hook, started, result);
    answered(&span, &response);
    response
}

async fn store(state: &AppState, request: Request) -> Result<StatusCode, ApiError> {
    if !is_json(request.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let okta_request_id = request.headers().get(OKTA_REQUEST_ID_HEADER).cloned();
    let source = (request
        .headers()
        .contains_key(subject::source::SIMULATE_HEADER))
    .then_some(subject::source::SIMULATE);
    let body = tokio::time::timeout(state.body_read_timeout, Bytes::from_request(request, state))
        .await
        .map_err(|_| ApiError::BodyTimeout)?
        .map_err(|rejection| ApiError::Body {
            status: rejection.status(),
            message: rejection.body_text(),
        })?;
    let okta_request_id = okta_request_id
        .as_ref()
        .and_then(|value| value.to_str().ok())
        .filter(|id| subject::is_valid_id(id));
    match (state.publisher)
        .publish_from(body, okta_request_id, source)
        .await
    {
        Ok(stored) => {
            tracing::debug!(
                published = stored.published,
                duplicates = stored.duplicates,
                dead_lettered = stored.dead_lettered,
                okta_request_id,
                "delivery stored"
            );
            Ok(StatusCode::OK)
        }
        Err(PublishError::Invalid(e)) => Err(ApiError::InvalidDelivery(e.to_string())),
        Err(e @ PublishError::Broker(_)) => {
            tracing::warn!(error = %e, okta_request_id, "delivery not stored; answering 503");
            Err(ApiError::Unavailable)
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}
