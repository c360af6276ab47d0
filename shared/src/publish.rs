//! The one way Okta events enter JetStream, for every ingress (the receiver's hook endpoint,
//! `hookrelayctl backfill`): every event of a delivery on its subject, deduplicated on its uuid,
//! every unroutable event in the receiver's dead letters, and nothing reported stored until
//! JetStream has acknowledged all of them. An ingress passes in its metrics through
//! [`PublishMetrics`].
//!
//! Publishes that fail (no stream leader during a cluster election, an acknowledgement lost
//! with a dying server, a reconnect) are tried again until the delivery's budget is spent.
//! Retrying is safe: every message carries a `Nats-Msg-Id`, so JetStream stores it once.

use std::borrow::Cow;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use tokio::time::Instant;

use crate::broker;
use crate::event::{self, Envelope, Route};
use crate::subject::{self, header};

/// What the publisher reports to the ingress that owns it, for its metrics.
pub trait PublishMetrics: Send + Sync {
    /// A delivery was stored whole, in `took`.
    fn delivery_published(&self, took: Duration);
    /// An event of `event_type` was acknowledged (`duplicate`: JetStream already had it).
    fn event_published(&self, event_type: &str, duplicate: bool);
    /// An event was stored in the receiver's dead letters for `reason`, one of
    /// [`DEAD_LETTER_REASONS`].
    fn event_dead_lettered(&self, reason: &'static str);
}

/// Why the publisher dead-letters an event: no usable type or uuid, or larger than the
/// broker's messages allow.
pub const DEAD_LETTER_REASONS: [&str; 2] = ["unroutable", "too_large"];

/// No metrics, for an ingress that reports its own summary (backfill).
impl PublishMetrics for () {
    fn delivery_published(&self, _: Duration) {}
    fn event_published(&self, _: &str, _: bool) {}
    fn event_dead_lettered(&self, _: &'static str) {}
}

/// What became of a delivery's events once JetStream acknowledged them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Stored for the subscribers.
    pub published: usize,
    /// Already stored (Okta's retry or duplicate); JetStream kept the first copy.
    pub duplicates: usize,
    /// Stored in the receiver's dead letters because they cannot be routed.
    pub dead_lettered: usize,
}

/// Why a delivery was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The body is not a delivery; nothing was published.
    #[error("not an Okta event hook delivery: {0}")]
    Invalid(#[source] serde_json::Error),
    /// JetStream did not store every event within the budget; Okta should retry.
    #[error("JetStream did not store the delivery: {0}")]
    Broker(String),
}

/// How long one attempt waits for its acknowledgements, as a share of the whole budget: a
/// lost acknowledgement costs a quarter of the budget, not all of it.
pub const ATTEMPTS_PER_BUDGET: u32 = 4;

/// Publishes deliveries to JetStream.
#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
    budget: Duration,
    /// The largest event stored as it is; a larger one is dead-lettered, truncated.
    max_event_bytes: usize,
    metrics: Arc<dyn PublishMetrics>,
    /// The ingress, when it is not the hook, for [`header::SOURCE`].
    source: Option<&'static str>,
}

enum Kind {
    Event,
    /// An event that cannot be routed or stored as it is, for this reason.
    DeadLetter {
        /// `unroutable` or `too_large`, for the metrics.
        code: &'static str,
        reason: Cow<'static, str>,
        /// The event's uuid, when it has a usable one.
        uuid: Option<String>,
        /// The event's size, when only its start is kept.
        truncated_from: Option<usize>,
    },
}

/// Room left for headers when deciding whether an event fits in a message: hookrelay's
/// headers take a few hundred bytes (ids are at most [`subject::MAX_ID_LEN`]).
const HEADER_ALLOWANCE: usize = 4096;

/// What every message of one delivery carries.
struct DeliveryHeaders<'a> {
    delivery_id: Option<&'a str>,
    okta_request_id: Option<&'a str>,
    source: Option<&'static str>,
}

/// One message of a delivery, built anew for each attempt (cheaper than building it once and
/// cloning it for an attempt that rarely comes).
struct Outgoing<'a> {
    kind: Kind,
    subject: String,
    payload: Bytes,
    /// The event's uuid, or the dead letter's dedupe key.
    message_id: Option<Cow<'a, str>>,
}

impl Outgoing<'_> {
    /// The message, carrying `span`'s trace when tracing is on.
    fn message(&self, delivery: &DeliveryHeaders<'_>, span: &tracing::Span) -> PublishMessage {
        let mut headers = HeaderMap::new();
        crate::telemetry::inject_nats(span, &mut headers);
        if let Some(id) = delivery.delivery_id {
            headers.insert(header::DELIVERY_ID, id);
        }
        if let Some(id) = delivery.okta_request_id {
            headers.insert(header::OKTA_REQUEST_ID, id);
        }
        if let Some(source) = delivery.source {
            headers.insert(header::SOURCE, source);
        }
        if let Kind::DeadLetter {
            code: _,
            reason,
            uuid,
            truncated_from,
        } = &self.kind
        {
            headers.insert(header::DEAD_LETTERED_BY, subject::RECEIVER_DLQ_TOKEN);
            headers.insert(header::ERROR, reason.as_ref());
            headers.insert(header::DEAD_LETTERED_AT, broker::now_rfc3339().as_str());
            if let Some(uuid) = uuid {
                headers.insert(header::EVENT_UUID, uuid.as_str());
            }
            if let Some(size) = truncated_from {
                headers.insert(header::TRUNCATED_FROM, size.to_string().as_str());
            }
        }
        let message = PublishMessage::build().headers(headers);
        let message = match &self.message_id {
            Some(id) => message.message_id(id),
            None => message,
        };
        message.payload(self.payload.clone())
    }
}

impl Publisher {
    /// A publisher on `client`'s connection. `budget` bounds each delivery, every retry
    /// included; one attempt waits `budget / ATTEMPTS_PER_BUDGET` for its acknowledgements.
    /// Events larger than the broker's `max_payload` allows are dead-lettered, truncated.
    pub fn new(
        client: &async_nats::Client,
        budget: Duration,
        metrics: Arc<dyn PublishMetrics>,
    ) -> Self {
        let js = jetstream::context::ContextBuilder::new()
            .timeout(budget / ATTEMPTS_PER_BUDGET)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let max_payload = client.server_info().max_payload;
        Publisher {
            js,
            budget,
            max_event_bytes: max_payload.saturating_sub(HEADER_ALLOWANCE).max(1024),
            metrics,
            source: None,
        }
    }

    /// Marks every message this publisher stores as coming from `source` (an ingress other
    /// than the hook: `system-log`, `backfill`).
    pub fn with_source(mut self, source: &'static str) -> Self {
        self.source = Some(source);
        self
    }

    /// Stores every event of `body`. The stored bytes of each event are a slice of `body`, not a
    /// copy. `okta_request_id` must already be a safe header value.
    pub async fn publish(
        &self,
        body: Bytes,
        okta_request_id: Option<&str>,
    ) -> Result<Stored, PublishError> {
        self.publish_from(body, okta_request_id, self.source).await
    }

    /// [`Publisher::publish`], marking the events as coming from `source` (a
    /// [`subject::source`] value; `None`: the hook): the receiver's deliveries from
    /// `hookrelayctl simulate` say so.
    pub async fn publish_from(
        &self,
        body: Bytes,
        okta_request_id: Option<&str>,
        source: Option<&'static str>,
    ) -> Result<Stored, PublishError> {
        let started = Instant::now();
        let deadline = started + self.budget;
        let envelope = Envelope::parse(&body).map_err(PublishError::Invalid)?;
        let delivery = DeliveryHeaders {
            delivery_id: envelope.delivery_id(),
            okta_request_id,
            source,
        };
        let outgoing = outgoing(&body, &envelope, self.max_event_bytes);
        let stored =
            tokio::time::timeout_at(deadline, self.publish_all(&outgoing, &delivery, deadline))
                .await
                .map_err(|_| {
                    PublishError::Broker(format!("not acknowledged within {:?}", self.budget))
                })??;
        self.metrics.delivery_published(started.elapsed());
        Ok(stored)
    }

    async fn publish_all(
        &self,
        outgoing: &[Outgoing<'_>],
        delivery: &DeliveryHeaders<'_>,
        deadline: Instant,
    ) -> Result<Stored, PublishError> {
        let mut stored = Stored::default();
        let mut pending: Vec<&Outgoing> = outgoing.iter().collect();
        let mut pause = Duration::from_millis(20);
        loop {
            let Some((failed, error)) = self.attempt(&pending, delivery, &mut stored).await else {
                return Ok(stored);
            };
            if Instant::now() + pause >= deadline || !is_worth_retrying(&error) {
                return Err(PublishError::Broker(error.to_string()));
            }
            tracing::debug!(failed = failed.len(), %error, "publish failed; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
            pending = failed;
        }
    }

    /// Sends every pending message, then waits for their acknowledgements together: one round
    /// trip for the batch instead of one per event. Returns the messages that failed, if any,
    /// and the last error.
    async fn attempt<'a, 'b>(
        &self,
        pending: &[&'a Outgoing<'b>],
        delivery: &DeliveryHeaders<'_>,
        stored: &mut Stored,
    ) -> Option<(Vec<&'a Outgoing<'b>>, jetstream::context::PublishError)> {
        let mut failed = Vec::new();
        let mut last_error = None;
        let mut acks = Vec::with_capacity(pending.len());
        for &out in pending {
            let span = crate::telemetry::send_span(
                &out.subject,
                out.message_id.as_deref().unwrap_or_default(),
            );
            match self
                .js
                .send_publish(out.subject.clone(), out.message(delivery, &span))
                .await
            {
                Ok(ack) => acks.push((out, ack.into_future(), span)),
                Err(e) => {
                    span.record("error.type", tracing::field::display(e.kind()));
                    span.record("otel.status_code", "ERROR");
                    failed.push(out);
                    last_error = Some(e);
                }
            }
        }
        let results =
            futures::future::join_all((acks.into_iter()).map(|(out, ack, span)| async move {
                let result = ack.await;
                // The producer span ends with the acknowledgement.
                if let Err(e) = &result {
                    span.record("error.type", tracing::field::display(e.kind()));
                    span.record("otel.status_code", "ERROR");
                }
                (out, result)
            }))
            .await;
        for (out, result) in results {
            match result {
                Ok(ack) => match &out.kind {
                    Kind::Event => {
                        if ack.duplicate {
                            stored.duplicates += 1;
                        } else {
                            stored.published += 1;
                        }
                        let event_type = subject::event_type_of(&out.subject).unwrap_or_default();
                        self.metrics.event_published(event_type, ack.duplicate);
                    }
                    Kind::DeadLetter { code, .. } => {
                        stored.dead_lettered += 1;
                        if !ack.duplicate {
                            self.metrics.event_dead_lettered(code);
                        }
                    }
                },
                Err(e) => {
                    failed.push(out);
                    last_error = Some(e);
                }
            }
        }
        last_error.map(|error| (failed, error))
    }
}

/// Failures that another attempt cannot fix.
fn is_worth_retrying(error: &jetstream::context::PublishError) -> bool {
    !matches!(error.kind(), PublishErrorKind::MaxPayloadExceeded)
}

/// The messages of one delivery: each event on its subject, deduplicated on its uuid; each
/// unroutable one, and each too large for the broker (its start only), on the receiver's dead
/// letters. Payloads are slices of `body`.
fn outgoing<'a>(
    body: &Bytes,
    envelope: &Envelope<'a>,
    max_event_bytes: usize,
) -> Vec<Outgoing<'a>> {
    let delivery_id = envelope.delivery_id();
    envelope
        .data
        .events
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            let payload = body.slice_ref(raw.get().as_bytes());
            let size = payload.len();
            let too_large = size > max_event_bytes;
            let (code, reason, uuid) = match event::route(raw) {
                Route::Publish { subject, uuid, .. } if !too_large => {
                    return Outgoing {
                        kind: Kind::Event,
                        subject,
                        payload,
                        message_id: Some(uuid),
                    };
                }
                Route::Publish { uuid, .. } => (
                    "too_large",
                    Cow::Owned(format!(
                        "event of {size} bytes is larger than the broker's messages allow \
                         ({max_event_bytes} bytes); its start is kept"
                    )),
                    Some(uuid.into_owned()),
                ),
                Route::Unroutable(reason) => ("unroutable", Cow::Borrowed(reason), None),
            };
            let (payload, truncated_from) = if too_large {
                (payload.slice(..max_event_bytes), Some(size))
            } else {
                (payload, None)
            };
            tracing::warn!(%reason, index, delivery_id, "event dead-lettered");
            // Okta's retry of this delivery carries the same uuid, or the same eventId.
            let message_id = match (&uuid, delivery_id) {
                (Some(uuid), _) => Some(Cow::Owned(format!("receiver:{uuid}"))),
                (None, Some(id)) => Some(Cow::Owned(format!("receiver:{id}:{index}"))),
                (None, None) => None,
            };
            Outgoing {
                kind: Kind::DeadLetter {
                    code,
                    reason,
                    uuid,
                    truncated_from,
                },
                subject: subject::dlq_subject(subject::RECEIVER_DLQ_TOKEN),
                payload,
                message_id,
            }
        })
        .collect()
}
