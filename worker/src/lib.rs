//! hookrelay's worker: named subscribers, each a set of durable JetStream consumers for some
//! Okta event types, run actions on stored events with retries, backoff, dead letters and a
//! clean shutdown. Nothing here slows the receiver: the stream sits between them.
//!
//! # Layout
//! - [`Worker`]: connects, binds the consumers, runs until shutdown.
//! - [`subscriber`]: pulling, concurrency, and the ack/retry/dead-letter rule.
//! - [`action`]: the [`Action`](action::Action) trait; [`actions`]: the built-in ones.
//! - [`dead_letter`]: what a dead letter records.

pub mod action;
pub mod actions;
pub mod dead_letter;
pub mod subscriber;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::PullConsumer};
use hookrelay::{Settings, admin, broker};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::subscriber::Subscriber;

/// The worker, connected and bound, ready to [`run`](Worker::run).
pub struct Worker {
    client: async_nats::Client,
    consumers: Vec<(Arc<Subscriber>, PullConsumer)>,
    admin_listener: TcpListener,
    shutdown_grace: Duration,
}

impl Worker {
    /// Connects to NATS, creates or checks the streams and every subscriber's consumers, and
    /// binds the admin listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let client = broker::connect(&settings.nats, "hookrelay-worker").await?;
        let js = jetstream::new(client.clone());
        broker::ensure_streams(&js, &settings.nats).await?;
        let stream = js
            .get_stream(&settings.nats.stream)
            .await
            .with_context(|| format!("opening stream {}", settings.nats.stream))?;

        let mut consumers = Vec::new();
        for subscriber_settings in &settings.worker.subscribers {
            let action = actions::build(&subscriber_settings.action).map_err(|e| {
                anyhow::anyhow!("the action of subscriber {}: {e}", subscriber_settings.name)
            })?;
            let subscriber = Arc::new(Subscriber::new(
                subscriber_settings.clone(),
                action,
                js.clone(),
            ));
            let bound = subscriber.bind(&stream).await.with_context(|| {
                format!("binding the consumers of subscriber {}", subscriber.name())
            })?;
            tracing::info!(
                subscriber = subscriber.name(),
                event_types = ?subscriber_settings.event_types,
                "subscriber bound"
            );
            consumers.extend(bound.into_iter().map(|c| (subscriber.clone(), c)));
        }

        let admin_listen = settings.worker.admin_listen;
        let admin_listener = TcpListener::bind(admin_listen)
            .await
            .with_context(|| format!("cannot listen on worker.admin_listen {admin_listen}"))?;
        Ok(Worker {
            client,
            consumers,
            admin_listener,
            shutdown_grace: settings.worker.shutdown_grace,
        })
    }

    /// Where `/healthz` and `/readyz` listen.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Runs every subscriber until `shutdown`; then stops pulling, lets running actions finish
    /// and settle (at most `shutdown_grace`), and flushes the connection.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let admin_addr = self.admin_addr();
        let client = self.client.clone();
        let readiness: admin::Readiness = Arc::new(move || admin::nats_readiness(&client));
        let admin = tokio::spawn(
            axum::serve(self.admin_listener, admin::router(readiness))
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .into_future(),
        );

        let tracker = TaskTracker::new();
        let mut pullers = tokio::task::JoinSet::new();
        for (subscriber, consumer) in self.consumers {
            pullers.spawn(subscriber.consume(consumer, tracker.clone(), shutdown.clone()));
        }
        tracing::info!(admin = %admin_addr, "worker ready");

        shutdown.cancelled().await;
        while pullers.join_next().await.is_some() {}
        tracker.close();
        let running = tracker.len();
        if running > 0 {
            tracing::info!(running, "waiting for running actions to finish");
        }
        if tokio::time::timeout(self.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = tracker.len(),
                grace = ?self.shutdown_grace,
                "actions still running after the grace period; their events will be delivered again"
            );
        }
        // Acks of finished actions were confirmed; this pushes out anything else buffered, and
        // must not hang on a dead broker.
        match tokio::time::timeout(Duration::from_secs(5), self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not flush NATS at shutdown"),
            Err(_) => tracing::warn!("NATS did not take the last writes within 5s at shutdown"),
        }
        admin.await.context("admin server")??;
        tracing::info!("worker stopped");
        Ok(())
    }
}
