//! hookrelay's receiver: the HTTP endpoint Okta's event hook calls. It answers the one-time
//! verification, checks the secret header, stores every event of a delivery in JetStream and
//! answers 200 only once JetStream has acknowledged all of them, well inside Okta's 3 s.
//!
//! # Layout
//! - [`Application`] (here): start-up; binds the listeners, connects to NATS, runs until
//!   shutdown.
//! - [`hook`]: the handlers; [`router`] serves them, usable without a socket. Each delivery is
//!   stored by `hookrelay::publish`, the publisher every ingress shares.
//! - [`auth`]: the secret header check.
//! - [`error`]: every non-200 answer, as JSON. [`serve`]: HTTP with connection limits.
//! - [`metrics`]: what `/metrics` reports.

pub mod auth;
pub mod error;
pub mod hook;
pub mod metrics;
pub mod serve;

pub use hook::{AppState, CHALLENGE_HEADER, OKTA_REQUEST_ID_HEADER, router};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use axum::Router;
use hookrelay::publish::{self, Publisher};
use hookrelay::{Settings, admin, broker};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::HeaderSecret;
use crate::metrics::Metrics;

/// The receiver, bound and connected, ready to [`run`](Application::run).
pub struct Application {
    /// What re-reads `receiver.auth.secret_file`, and what it updates.
    watch: (hookrelay::config::AuthSettings, auth::Accepted),
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
        let secret = HeaderSecret::new(header, secrets);
        let watch = (receiver.auth.clone(), secret.accepted());
        let state = AppState::new(
            secret,
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
            watch,
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
        let (auth, accepted) = self.watch;
        tokio::spawn(auth::watch_secret_file(auth, accepted, shutdown.clone()));
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

/// The `receiver` binary's command line and lifecycle.
impl hookrelay::service::Service for Application {
    const NAME: &'static str = "receiver";
    const ABOUT: &'static str =
        "Receives Okta event hooks and stores every event in NATS JetStream";

    fn admin_listen(settings: &Settings) -> SocketAddr {
        settings.receiver.admin_listen
    }

    async fn build(settings: &Settings) -> anyhow::Result<Self> {
        Application::build(settings).await
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        Application::run(self, shutdown).await
    }
}
