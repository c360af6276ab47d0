//! A running subscriber: one durable pull consumer per event type, at most `concurrency`
//! actions at once, and the rule that turns an action's result into an acknowledgement.
//!
//! | action result                          | what happens                                   |
//! |----------------------------------------|------------------------------------------------|
//! | `Ok`                                   | ack (confirmed by the server)                  |
//! | `Transient`, attempts left             | nak with the backoff delay: retried later      |
//! | `Permanent`, or no attempts left       | dead letter stored, then the original is termed |
//! | dead letter not stored                 | nak with the backoff delay: tried again later  |
//!
//! The worker, not the server, enforces `max_deliver`: the consumers deliver without limit and
//! an event delivered more often than allowed (its last attempt died with a worker) is
//! dead-lettered without running the action. So no event is ever stranded in the stream
//! unseen, which a server-side limit would do to the event whose last attempt crashed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use hookrelay::config::SubscriberSettings;
use hookrelay::subject::{self, header};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::action::{Action, ActionError, Event};
use crate::dead_letter::DeadLetter;
use crate::metrics::{Metrics, Outcome};
use crate::settle::{self, Settlement};

/// One configured subscriber with its action.
pub struct Subscriber {
    settings: SubscriberSettings,
    action: Arc<dyn Action>,
    js: jetstream::Context,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Subscriber {
    pub fn new(
        settings: SubscriberSettings,
        action: Arc<dyn Action>,
        js: jetstream::Context,
        metrics: Arc<Metrics>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(settings.concurrency));
        Subscriber {
            settings,
            action,
            js,
            permits,
            metrics,
        }
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Creates (or updates) the durable consumer of each event type on `stream`, and the one
    /// of the subscriber's replayed dead letters (`okta.replay.<subscriber>.>`, last).
    pub async fn bind(
        &self,
        stream: &jetstream::stream::Stream,
    ) -> Result<Vec<PullConsumer>, jetstream::stream::ConsumerError> {
        let name = &self.settings.name;
        let mut wanted: Vec<_> = (self.settings.event_types.iter())
            .map(|event_type| {
                (
                    subject::durable_name(name, event_type),
                    format!("hookrelay subscriber {name} for {event_type}"),
                    subject::event_subject(event_type),
                )
            })
            .collect();
        wanted.push((
            subject::replay_durable_name(name),
            format!("hookrelay subscriber {name}: replayed dead letters"),
            format!("{}.{name}.>", subject::REPLAY_PREFIX),
        ));
        let mut consumers = Vec::with_capacity(wanted.len());
        for (durable, description, filter_subject) in wanted {
            let config = jetstream::consumer::pull::Config {
                durable_name: Some(durable),
                description: Some(description),
                filter_subject,
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: self.settings.ack_wait,
                max_deliver: -1,
                ..Default::default()
            };
            consumers.push(stream.create_consumer(config).await?);
        }
        Ok(consumers)
    }

    /// Pulls from `consumer` until `shutdown`, handing each event to the action on `tracker`
    /// once one of the subscriber's `concurrency` slots is free. A slot is taken only when an
    /// event is there: a consumer with nothing to deliver (most often the replay consumer)
    /// holds none, so it never starves the subscriber's other consumers.
    pub async fn consume(
        self: Arc<Self>,
        consumer: PullConsumer,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) {
        let batch = self.settings.concurrency.max(1);
        while !shutdown.is_cancelled() {
            let messages = consumer
                .stream()
                .max_messages_per_batch(batch)
                .heartbeat(Duration::from_secs(2))
                .messages()
                .await;
            let mut messages = match messages {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!(subscriber = self.name(), error = %e, "cannot pull; retrying in 1s");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        let Some(permit) = self.slot_for(&message, &shutdown).await else {
                            // Not started: let another worker have it now.
                            self.nak(&message, Duration::ZERO).await;
                            return;
                        };
                        let this = self.clone();
                        tracker.spawn(async move {
                            this.process(message).await;
                            drop(permit);
                        });
                    }
                    Some(Err(e)) => {
                        // Missed heartbeats mean the pull went nowhere, for example to a
                        // consumer leader that died in a cluster: start a fresh pull.
                        tracing::warn!(subscriber = self.name(), error = %e, "pulling events failed; pulling afresh");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    /// Waits for a free action slot for `message`, telling JetStream the message is in
    /// progress every half `ack_wait` meanwhile (so it is not delivered again while it waits).
    /// `None` on shutdown.
    async fn slot_for(
        &self,
        message: &jetstream::Message,
        shutdown: &CancellationToken,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let period = self.settings.ack_wait / 2;
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return None,
                permit = self.permits.clone().acquire_owned() => {
                    return Some(permit.expect("the semaphore is never closed"));
                }
                _ = keepalive.tick() => {
                    if let Err(e) = message.ack_with(AckKind::Progress).await {
                        tracing::warn!(error = %e, "could not extend the ack deadline of a waiting event");
                    }
                }
            }
        }
    }

    /// Runs the action on one message and settles it: ack, retry later, or dead-letter.
    pub async fn process(&self, message: jetstream::Message) {
        let (stream_sequence, delivered, stored_at) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered, info.published.into()),
            Err(e) => {
                tracing::error!(error = %e, "message without JetStream metadata skipped");
                return;
            }
        };
        let headers = message.headers.as_ref();
        let value = |name: &str| headers.and_then(|h| h.get(name)).map_or("", |v| v.as_str());
        // A replayed dead letter names its event in its own header; its message id is the
        // replay's.
        let uuid = match value(header::EVENT_UUID) {
            "" => value("Nats-Msg-Id"),
            uuid => uuid,
        };
        let event_type = subject::event_type_of(&message.subject).unwrap_or_default();
        let span = tracing::info_span!(
            "event",
            subscriber = %self.settings.name,
            event_uuid = %uuid,
            event_type,
            delivery_id = %value(header::DELIVERY_ID),
            okta_request_id = %value(header::OKTA_REQUEST_ID),
            stream_sequence,
            attempt = delivered,
        );
        let _in_flight = self.metrics.in_flight(&self.settings.name);
        async {
            let outcome = match settle::may_run(&self.settings, delivered) {
                Err(given_up) => Err(given_up),
                Ok(()) => {
                    let started = std::time::Instant::now();
                    let ids = (uuid, event_type);
                    let outcome = self.run_action(&message, ids, stored_at).await;
                    self.metrics
                        .action_took(&self.settings.name, started.elapsed());
                    outcome
                }
            };
            let settlement = settle::settle(&self.settings, delivered, outcome);
            let settled = self
                .carry_out(&message, stream_sequence, delivered, settlement)
                .await;
            self.metrics.handled(&self.settings.name, settled);
        }
        .instrument(span)
        .await;
    }

    /// Runs the action, telling JetStream it is still in progress every half `ack_wait`, so a
    /// long action is never delivered a second time while it runs.
    async fn run_action(
        &self,
        message: &jetstream::Message,
        (uuid, event_type): (&str, &str),
        stored_at: SystemTime,
    ) -> Result<(), ActionError> {
        let event = Event::new(
            uuid,
            event_type,
            message.payload.clone(),
            message.headers.clone(),
            stored_at,
        );
        let action = self.action.handle(&event);
        tokio::pin!(action);
        let period = self.settings.ack_wait / 2;
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                result = &mut action => return result,
                _ = keepalive.tick() => {
                    if let Err(e) = message.ack_with(AckKind::Progress).await {
                        tracing::warn!(error = %e, "could not extend the ack deadline");
                    }
                }
            }
        }
    }

    /// Carries out a [`Settlement`]: ack, nak with its delay, or store the dead letter and
    /// terminate (or, should the dead letter not be stored, nak so the event is tried again).
    async fn carry_out(
        &self,
        message: &jetstream::Message,
        stream_sequence: u64,
        delivered: i64,
        settlement: Settlement,
    ) -> Outcome {
        match settlement {
            Settlement::Ack => {
                // Sent, not confirmed: waiting for JetStream's reply would hold the action's
                // slot for a round trip per event. An ack lost with the connection only means
                // the event is delivered again after ack_wait (at least once, as always); at
                // shutdown the worker flushes before it exits.
                if let Err(e) = message.ack().await {
                    tracing::warn!(error = %e, "ack not sent; the event will be handled again");
                } else {
                    tracing::debug!("event handled");
                }
                Outcome::Ok
            }
            Settlement::Retry { reason, after } => {
                tracing::warn!(error = %reason, retry_in = ?after, "action failed; retrying later");
                self.nak(message, after).await;
                Outcome::Retried
            }
            Settlement::DeadLetter {
                reason,
                or_retry_after,
            } => {
                tracing::error!(error = %reason, "action failed for good; dead-lettering the event");
                let dead_letter = DeadLetter {
                    subscriber: &self.settings.name,
                    message,
                    stream_sequence,
                    delivered,
                    error: &reason,
                };
                match dead_letter.publish(&self.js).await {
                    Ok(()) => {
                        if let Err(e) = message.ack_with(AckKind::Term).await {
                            tracing::warn!(error = %e, "dead letter stored but the original not terminated; it will be dead-lettered again (deduplicated)");
                        }
                        Outcome::DeadLettered
                    }
                    Err(e) => {
                        tracing::error!(error = %e, retry_in = ?or_retry_after, "dead letter not stored; the event stays and is tried again");
                        self.nak(message, or_retry_after).await;
                        Outcome::Retried
                    }
                }
            }
        }
    }

    async fn nak(&self, message: &jetstream::Message, delay: Duration) {
        if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::warn!(error = %e, "nak not sent; the event comes back after ack_wait");
        }
    }
}
