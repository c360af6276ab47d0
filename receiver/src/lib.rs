//! hookrelay's receiver: the HTTP endpoint Okta's event hook calls. It answers the one-time
//! verification, checks the secret header, stores every event of a delivery in JetStream and
//! answers 200 only once JetStream has acknowledged all of them, well inside Okta's 3 s.
//!
//! # Layout
//! - [`Application`]: binds the listeners, connects to NATS, runs until shutdown.
//! - [`router`]: the hook routes, usable without a socket.
//! - [`auth`]: the secret header check; `hookrelay::publish` stores a delivery in JetStream.
//! - [`error`]: every non-200 answer, as JSON. [`serve`]: HTTP with connection limits.
//! - [`metrics`]: what `/metrics` reports.

pub mod auth;
pub mod error;
pub mod metrics;
pub mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use hookrelay::publish::{self, PublishError, Publisher};
use hookrelay::{Settings, admin, broker, subject};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
            auth::require_secret,
        ))
        .fallback(|State(state): State<AppState>| async move {
            refuse(&state, Route::Unmatched, ApiError::NotFound)
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
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

/// Okta's one-time verification: echo the challenge as `{"verification": "<value>"}`.
async fn verify(State(state): State<AppState>, headers: HeaderMap) -> Response {
    answer(&state, Route::Hook, Instant::now(), challenge(&headers))
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
    let result = store(&state, request).await;
    answer(&state, Route::Hook, started, result)
}

async fn store(state: &AppState, request: Request) -> Result<StatusCode, ApiError> {
    if !is_json(request.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let okta_request_id = request.headers().get(OKTA_REQUEST_ID_HEADER).cloned();
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
    match state.publisher.publish(body, okta_request_id).await {
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

/// The receiver, bound and connected, ready to [`run`](Application::run).
pub struct Application {
    listener: TcpListener,
    admin_listener: TcpListener,
    router: Router,
    limits: serve::Limits,
    client: async_nats::Client,
    status: Arc<ReceiverStatus>,
}

/// What the receiver's admin endpoints report.
struct ReceiverStatus {
    client: async_nats::Client,
    js: jetstream::Context,
    streams: [String; 2],
    metrics: Arc<Metrics>,
}

impl admin::Status for ReceiverStatus {
    async fn ready(&self) -> Result<(), String> {
        let [events, dead_letters] = &self.streams;
        admin::broker_readiness(&self.client, &self.js, &[events, dead_letters]).await
    }

    async fn metrics(&self) -> String {
        self.metrics.encode()
    }
}

impl Application {
    /// Connects to NATS, creates or checks both streams, binds both listeners (port 0 picks a
    /// free port; see [`Application::local_addr`]).
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let secrets = settings.validate_receiver()?;
        if secrets.iter().any(hookrelay::config::is_demo_secret) {
            tracing::warn!(
                "an accepted secret is the demo value published in Okta's guide; anyone can \
                 post events: set HOOKRELAY__RECEIVER__AUTH__SECRET to a secret of your own \
                 (with docker compose: HOOKRELAY_SECRET in .env beside docker-compose.yml)"
            );
        }
        let receiver = &settings.receiver;
        let client = broker::connect(&settings.nats, "hookrelay-receiver").await?;
        let js = jetstream::context::ContextBuilder::new()
            .timeout(receiver.publish_timeout / publish::ATTEMPTS_PER_BUDGET)
            .build(client.clone());
        broker::ensure_streams(&js, &settings.nats).await?;

        let header = receiver
            .auth
            .header
            .parse()
            .context("receiver.auth.header is not a header name")?;
        let metrics = Arc::new(Metrics::default());
        let state = AppState::new(
            HeaderSecret::new(header, secrets),
            Publisher::new(&client, receiver.publish_timeout, metrics.clone()),
            receiver.body_read_timeout,
            metrics.clone(),
        );
        let router = router(&receiver.path, receiver.max_body_bytes, state);
        let listener = TcpListener::bind(receiver.listen)
            .await
            .with_context(|| format!("cannot listen on receiver.listen {}", receiver.listen))?;
        let admin_listener = TcpListener::bind(receiver.admin_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on receiver.admin_listen {}",
                    receiver.admin_listen
                )
            })?;
        Ok(Application {
            listener,
            admin_listener,
            router,
            limits: serve::Limits {
                header_read_timeout: receiver.header_read_timeout,
                max_connections: receiver.max_connections,
            },
            status: Arc::new(ReceiverStatus {
                client: client.clone(),
                js,
                streams: [
                    settings.nats.stream.clone(),
                    settings.nats.dlq_stream.clone(),
                ],
                metrics,
            }),
            client,
        })
    }

    /// Where the hook endpoint listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Where `/healthz` and `/readyz` listen.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, finishes the requests in
    /// flight and flushes what is still buffered for NATS.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            listen = %self.local_addr(),
            admin = %self.admin_addr(),
            "receiver ready"
        );
        let hook = serve::serve(self.listener, self.router, self.limits, shutdown.clone());
        let admin = axum::serve(self.admin_listener, admin::router(self.status))
            .with_graceful_shutdown(shutdown.cancelled_owned());
        let ((), admin) = tokio::join!(hook, admin.into_future());
        admin.context("serving the admin endpoints")?;
        // Every answered request already has its acknowledgement; this only pushes out what a
        // request that timed out may have left buffered, and must not hang on a dead broker.
        match tokio::time::timeout(Duration::from_secs(5), self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not flush NATS at shutdown"),
            Err(_) => tracing::warn!("NATS did not take the last writes within 5s at shutdown"),
        }
        tracing::info!("receiver stopped");
        Ok(())
    }
}
