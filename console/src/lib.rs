//! hookrelay's web console: every event's fate for every subscriber, its attempts, dead letters
//! and replays, paused subscribers, and what Okta says of the hook; signed in with Okta or as a
//! local user. Server-rendered HTML (askama) with htmx for what changes while a page is open;
//! every page also answers `Accept: application/json`. The console is one more face of
//! `hookrelay`'s `stored`, `dead_letters`, `attempts`, `pause` and `subscribers`: what
//! `hookrelayctl` does, it does the same way.
//!
//! # Layout
//! - [`Console`] (here): start-up, the state every handler shares, and the [`router`]: the
//!   routes, as a table.
//! - [`index`]: the events stream's index in memory; [`letters`]: the dead letters in memory;
//!   [`activity`]: each subscriber's recent successes and failures; [`positions`]: consumers'
//!   positions, cached for a second.
//! - [`pages`]: the handlers, a module per page; [`page`]: HTML or JSON, and errors.
//! - [`auth`]: sessions, sign-in (password, Okta), the `Viewer` and `Operator` extractors.
//! - [`security`]: the headers every answer carries, and the refusal of cross-site requests.
//! - [`assets`]: the embedded JavaScript, CSS and icon. [`metrics`]: `/metrics`.

pub mod activity;
pub mod assets;
pub mod auth;
pub mod index;
pub mod letters;
pub mod metrics;
pub mod page;
pub mod pages;
pub mod positions;
pub mod security;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv, stream::Stream};
use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use hookrelay::{Settings, admin, broker};
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::activity::Activity;
use crate::auth::oidc::Oidc;
use crate::auth::password::Passwords;
use crate::auth::session::Sessions;
use crate::index::Index;
use crate::letters::Letters;
use crate::metrics::Metrics;
use crate::positions::PositionCache;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`].
pub struct Shared {
    pub settings: Settings,
    pub js: jetstream::Context,
    pub events: Stream,
    pub dlq: Stream,
    pub index: Arc<Index>,
    pub letters: Arc<Letters>,
    pub activity: Arc<Activity>,
    pub positions: PositionCache,
    /// The attempt records, once a worker has made the bucket.
    attempts: OnceCell<kv::Store>,
    pub pauses: kv::Store,
    pub sessions: Sessions,
    pub passwords: Arc<Passwords>,
    pub oidc: Option<Oidc>,
    pub okta: pages::okta::OktaView,
    pub metrics: Arc<Metrics>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Shared {
    /// The attempt records' bucket, if a worker has made it.
    pub async fn attempts(&self) -> Option<&kv::Store> {
        if let Some(store) = self.attempts.get() {
            return Some(store);
        }
        let store = hookrelay::attempts::existing(&self.js, &self.settings.nats).await?;
        Some(self.attempts.get_or_init(|| async { store }).await)
    }
}

/// Every route, as a table: the public ones, then those that need a session (an operator's
/// are checked by their handler's `Operator` argument).
pub fn router(state: AppState) -> Router {
    use pages::{dead_letters, event, events, okta, subscribers};
    let public = Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/login/okta", get(auth::okta_start))
        .route("/login/okta/callback", get(auth::okta_callback))
        .route("/assets/{file}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon));
    let signed_in = Router::new()
        .route("/", get(pages::home))
        .route("/events", get(events::list))
        .route("/events/new", get(events::new_events))
        .route("/events/{uuid}", get(event::show))
        .route("/events/{uuid}/replay", post(event::replay))
        .route("/dead-letters", get(dead_letters::list))
        .route(
            "/dead-letters/replay",
            get(dead_letters::preview).post(dead_letters::replay),
        )
        .route(
            "/dead-letters/discard",
            get(dead_letters::preview).post(dead_letters::discard),
        )
        .route("/subscribers", get(subscribers::list))
        .route("/subscribers/{name}/pause", post(subscribers::pause))
        .route("/subscribers/{name}/resume", post(subscribers::resume))
        .route("/okta", get(okta::show))
        .route("/logout", post(auth::logout))
        .route_layer(from_fn_with_state(state.clone(), auth::require_session));
    public
        .merge(signed_in)
        .fallback(pages::not_found)
        .layer(from_fn_with_state(
            state.clone(),
            security::refuse_cross_site,
        ))
        .layer(from_fn(security::headers))
        .layer(from_fn_with_state(state.clone(), metrics::count))
        .with_state(state)
}

/// What the console's admin endpoints report.
struct ConsoleStatus {
    client: async_nats::Client,
    js: jetstream::Context,
    streams: [String; 2],
    index: Arc<Index>,
    metrics: Arc<Metrics>,
}

impl admin::Status for ConsoleStatus {
    async fn ready(&self) -> Result<(), String> {
        let [events, dead_letters] = &self.streams;
        admin::broker_readiness(&self.client, &self.js, &[events, dead_letters]).await
    }

    async fn metrics(&self) -> String {
        self.metrics.encode(&self.index)
    }
}

/// The console, connected and bound, ready to [`run`](Console::run).
pub struct Console {
    state: AppState,
    listener: TcpListener,
    admin_listener: TcpListener,
    status: Arc<ConsoleStatus>,
    client: async_nats::Client,
}

impl Console {
    /// Connects to NATS, opens the streams and buckets, binds both listeners (port 0 picks a
    /// free port).
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let console = &settings.console;
        let client = broker::connect(&settings.nats, "hookrelay-console").await?;
        let js = jetstream::new(client.clone());
        broker::ensure_streams(&js, &settings.nats).await?;
        let events = broker::open_stream(&js, &settings.nats.stream).await?;
        let dlq = broker::open_stream(&js, &settings.nats.dlq_stream).await?;
        let replicas = settings.nats.replicas;
        let pauses = hookrelay::pause::open(&js, &settings.nats).await?;
        let sessions = Sessions::open(&js, console, replicas).await?;
        let first = match console.first_sign_in() {
            true => Some(hookrelay::passwords::bucket(&js, console, replicas).await?),
            false => None,
        };
        if first.is_some() {
            tracing::warn!(
                "no console user and no Okta sign-in configured: sign in as `admin` with the \
                 password `hookrelayctl console initial-password` prints (with docker compose: \
                 docker compose exec console hookrelayctl console initial-password)"
            );
        }
        let oidc = (console.oidc.as_ref())
            .map(|oidc| Oidc::new(oidc, &console.url))
            .transpose()
            .context("console.oidc")?;
        let listener = TcpListener::bind(console.listen)
            .await
            .with_context(|| format!("cannot listen on console.listen {}", console.listen))?;
        let admin_listener = TcpListener::bind(console.admin_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on console.admin_listen {}",
                    console.admin_listen
                )
            })?;
        let index = Arc::new(Index::new());
        let metrics = Arc::new(Metrics::default());
        let state = AppState(Arc::new(Shared {
            okta: pages::okta::OktaView::new(settings)?,
            settings: settings.clone(),
            positions: PositionCache::new(events.clone()),
            js: js.clone(),
            events,
            dlq,
            index: index.clone(),
            letters: Arc::new(Letters::default()),
            activity: Arc::new(Activity::default()),
            attempts: OnceCell::new(),
            pauses,
            sessions,
            passwords: Arc::new(Passwords::new(console.users.clone(), first)),
            oidc,
            metrics: metrics.clone(),
        }));
        Ok(Console {
            status: Arc::new(ConsoleStatus {
                client: client.clone(),
                js,
                streams: [
                    settings.nats.stream.clone(),
                    settings.nats.dlq_stream.clone(),
                ],
                index,
                metrics,
            }),
            state,
            listener,
            admin_listener,
            client,
        })
    }

    /// Where the pages listen.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// The state the handlers share (for tests that look inside).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Indexes the streams and serves until `shutdown`, then finishes the requests in flight.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let state = self.state;
        let followers = [
            tokio::spawn({
                let (index, stream, stop) =
                    (state.index.clone(), state.events.clone(), shutdown.clone());
                async move { index.follow(stream, stop).await }
            }),
            tokio::spawn({
                let (index, stream, stop) =
                    (state.index.clone(), state.events.clone(), shutdown.clone());
                async move { index.prune(stream, Duration::from_secs(10), stop).await }
            }),
            tokio::spawn({
                let (letters, index, dlq, stop) = (
                    state.letters.clone(),
                    state.index.clone(),
                    state.dlq.clone(),
                    shutdown.clone(),
                );
                async move {
                    letters
                        .follow(dlq, &index, Duration::from_secs(2), stop)
                        .await
                }
            }),
            tokio::spawn({
                let (activity, js, stop) =
                    (state.activity.clone(), state.js.clone(), shutdown.clone());
                let bucket = hookrelay::attempts::bucket(&state.settings.nats.stream);
                async move { activity.follow(js, bucket, stop).await }
            }),
        ];
        tracing::info!(
            listen = %self.listener.local_addr()?,
            admin = %self.admin_listener.local_addr()?,
            url = %state.settings.console.url,
            "console ready"
        );
        let pages = axum::serve(
            self.listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let admin = axum::serve(self.admin_listener, admin::router(self.status))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let (pages, admin) = tokio::join!(pages.into_future(), admin.into_future());
        pages.context("serving the pages")?;
        admin.context("serving the admin endpoints")?;
        for follower in followers {
            follower.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.flush()).await;
        tracing::info!("console stopped");
        Ok(())
    }
}

/// The `console` binary's command line and lifecycle.
impl hookrelay::service::Service for Console {
    const NAME: &'static str = "console";
    const ABOUT: &'static str =
        "Serves hookrelay's web console: every event's fate, dead letters, paused subscribers";

    fn admin_listen(settings: &Settings) -> SocketAddr {
        settings.console.admin_listen
    }

    async fn build(settings: &Settings) -> anyhow::Result<Self> {
        Console::build(settings).await
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        Console::run(self, shutdown).await
    }
}
