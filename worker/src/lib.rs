//! hookrelay's worker: named subscribers, each a set of durable JetStream consumers for some
//! Okta event types, run actions on stored events with retries, backoff, dead letters and a
//! clean shutdown. Nothing here slows the receiver: the stream sits between them.
//!
//! # Layout
//! - [`Worker`]: connects, binds the consumers, runs until shutdown.
//! - [`subscriber`]: pulling, concurrency, carrying out each settlement.
//! - [`settle`]: the ack/retry/dead-letter rule, a pure function.
//! - [`action`]: the [`Action`](action::Action) trait; [`actions`]: the built-in ones.
//! - [`dead_letter`]: what a dead letter records. [`metrics`]: what `/metrics` reports.

pub mod action;
pub mod actions;
pub mod dead_letter;
pub mod gate;
pub mod metrics;
pub mod settle;
pub mod subscriber;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::PullConsumer, kv};
use futures::StreamExt as _;
use hookrelay::{Settings, admin, broker, pause, subject};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::subscriber::Subscriber;

/// The worker, connected and bound, ready to [`run`](Worker::run).
pub struct Worker {
    client: async_nats::Client,
    consumers: Vec<(Arc<Subscriber>, PullConsumer)>,
    /// The bucket of paused subscribers, and what tells each subscriber of a change.
    pauses: (kv::Store, HashMap<String, watch::Sender<bool>>),
    admin_listener: TcpListener,
    shutdown_grace: Duration,
    status: Arc<WorkerStatus>,
}

/// What the worker's admin endpoints report.
struct WorkerStatus {
    client: async_nats::Client,
    js: jetstream::Context,
    streams: [String; 2],
    /// Each consumer, with its subscriber's name and its event type.
    consumers: Vec<(String, String, PullConsumer)>,
    metrics: Arc<Metrics>,
}

/// How long a scrape or a readiness check waits for one consumer's state.
const CONSUMER_INFO_TIMEOUT: Duration = Duration::from_secs(2);

impl admin::Status for WorkerStatus {
    /// Ready when NATS is connected, both streams exist and every consumer is bound.
    async fn ready(&self) -> Result<(), String> {
        let [events, dead_letters] = &self.streams;
        admin::broker_readiness(&self.client, &self.js, &[events, dead_letters]).await?;
        for (subscriber, event_type, consumer) in &self.consumers {
            let mut consumer = consumer.clone();
            match tokio::time::timeout(CONSUMER_INFO_TIMEOUT, consumer.info()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(format!("consumer of {subscriber} for {event_type}: {e}"));
                }
                Err(_) => {
                    return Err(format!(
                        "consumer of {subscriber} for {event_type}: no answer within {CONSUMER_INFO_TIMEOUT:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Reads each consumer's lag from JetStream, then encodes every metric.
    async fn metrics(&self) -> String {
        let lags = self
            .consumers
            .iter()
            .map(|(subscriber, event_type, consumer)| async move {
                let mut consumer = consumer.clone();
                if let Ok(Ok(info)) =
                    tokio::time::timeout(CONSUMER_INFO_TIMEOUT, consumer.info()).await
                {
                    self.metrics.consumer_lag(
                        subscriber,
                        event_type,
                        info.num_pending,
                        info.num_ack_pending,
                    );
                }
            });
        futures::future::join_all(lags).await;
        self.metrics.encode()
    }
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

        let recorder = match hookrelay::attempts::open(&js, &settings.nats).await {
            Ok(_) => Some(hookrelay::attempts::Recorder::new(
                client.clone(),
                &settings.nats,
            )),
            Err(e) => {
                tracing::warn!(error = %e, "attempts are not recorded: the console and `hookrelayctl events show` will not show them");
                None
            }
        };
        let pauses = pause::open(&js, &settings.nats)
            .await
            .context("opening the bucket of paused subscribers")?;
        let states = pause::states(&pauses).await?;
        let metrics = Arc::new(Metrics::new(settings.worker.pause_alert_after));
        let mut consumers = Vec::new();
        let mut pause_senders = HashMap::new();
        for subscriber_settings in &settings.worker.subscribers {
            let state = states.get(&subscriber_settings.name);
            if let Some(state) = state.filter(|s| s.paused) {
                tracing::warn!(subscriber = %subscriber_settings.name, since = %state.at, by = %state.by, "subscriber paused: its events wait until it is resumed");
            }
            metrics.paused(&subscriber_settings.name, state.cloned());
            let (paused, watched) = watch::channel(state.is_some_and(|s| s.paused));
            pause_senders.insert(subscriber_settings.name.clone(), paused);
            let action = actions::build(&subscriber_settings.action).map_err(|e| {
                anyhow::anyhow!("the action of subscriber {}: {e}", subscriber_settings.name)
            })?;
            let subscriber = Subscriber::new(
                subscriber_settings.clone(),
                action,
                js.clone(),
                recorder.clone(),
                watched,
                metrics.clone(),
            )
            .map_err(|e| anyhow::anyhow!("subscriber {}: {e}", subscriber_settings.name))?;
            let subscriber = Arc::new(subscriber);
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
        let status = Arc::new(WorkerStatus {
            client: client.clone(),
            js,
            streams: [
                settings.nats.stream.clone(),
                settings.nats.dlq_stream.clone(),
            ],
            consumers: consumers
                .iter()
                .map(|(subscriber, consumer)| {
                    // An event type, or `replay` for the subscriber's replayed dead letters.
                    let filter = consumer.cached_info().config.filter_subject.as_str();
                    let event_type = if filter.starts_with(subject::REPLAY_PREFIX) {
                        "replay"
                    } else {
                        subject::event_type_of(filter).unwrap_or_default()
                    };
                    (
                        subscriber.name().to_owned(),
                        event_type.to_owned(),
                        consumer.clone(),
                    )
                })
                .collect(),
            metrics,
        });
        Ok(Worker {
            client,
            consumers,
            pauses: (pauses, pause_senders),
            admin_listener,
            shutdown_grace: settings.worker.shutdown_grace,
            status,
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
        let metrics = self.status.metrics.clone();
        let admin = tokio::spawn(
            axum::serve(self.admin_listener, admin::router(self.status))
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .into_future(),
        );

        let (pauses, senders) = self.pauses;
        let watching = tokio::spawn(watch_pauses(pauses, senders, metrics, shutdown.clone()));
        let tracker = TaskTracker::new();
        let mut pullers = tokio::task::JoinSet::new();
        for (subscriber, consumer) in self.consumers {
            pullers.spawn(subscriber.consume(consumer, tracker.clone(), shutdown.clone()));
        }
        tracing::info!(admin = %admin_addr, "worker ready");

        shutdown.cancelled().await;
        while pullers.join_next().await.is_some() {}
        watching.abort();
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
        // Finished actions' acks are sent, not confirmed: this makes sure the broker has them
        // (and anything else buffered) before the process exits, and must not hang on a dead
        // broker.
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

/// Follows the bucket of paused subscribers (`hookrelay::pause`) until `shutdown`, telling each
/// subscriber of this worker when it is paused or resumed. A watch that breaks (the broker
/// restarted) is made again after a second; it starts with every subscriber's current state,
/// so no change is missed.
async fn watch_pauses(
    store: kv::Store,
    senders: HashMap<String, watch::Sender<bool>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        match store.watch_all().await {
            Ok(mut changes) => {
                while let Some(change) = changes.next().await {
                    let Ok(entry) = change else { break };
                    let Some(sender) = senders.get(&entry.key) else {
                        continue;
                    };
                    let state = pause::read(Some(&entry));
                    let paused = state.as_ref().is_some_and(|s| s.paused);
                    metrics.paused(&entry.key, state);
                    sender.send_if_modified(|was| std::mem::replace(was, paused) != paused);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for paused subscribers; trying again in 1s")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The `worker` binary's command line and lifecycle.
impl hookrelay::service::Service for Worker {
    const NAME: &'static str = "worker";
    const ABOUT: &'static str =
        "Runs hookrelay's subscribers on the Okta events stored in NATS JetStream";

    fn admin_listen(settings: &Settings) -> SocketAddr {
        settings.worker.admin_listen
    }

    async fn build(settings: &Settings) -> anyhow::Result<Self> {
        Worker::build(settings).await
    }

    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        Worker::run(self, shutdown).await
    }
}
