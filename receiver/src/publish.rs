//! Stores one Okta delivery in JetStream: every event on its subject, deduplicated on its uuid,
//! every unroutable event in the receiver's dead letters, and nothing reported stored until
//! JetStream has acknowledged all of them.

use std::future::IntoFuture;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use hookrelay::broker;
use hookrelay::event::{self, Envelope, Route};
use hookrelay::subject::{self, header};

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
    /// JetStream refused or did not acknowledge in time; Okta should retry.
    #[error("JetStream did not store the delivery: {0}")]
    Broker(String),
}

/// Publishes deliveries to JetStream.
#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
    timeout: Duration,
}

enum Kind {
    Event,
    DeadLetter,
}

impl Publisher {
    /// `timeout` bounds the whole delivery: every publish and every acknowledgement.
    pub fn new(js: jetstream::Context, timeout: Duration) -> Self {
        Publisher { js, timeout }
    }

    /// Stores every event of `body`. The stored bytes of each event are a slice of `body`, not a
    /// copy. `okta_request_id` must already be a safe header value.
    pub async fn publish(
        &self,
        body: Bytes,
        okta_request_id: Option<&str>,
    ) -> Result<Stored, PublishError> {
        let envelope = Envelope::parse(&body).map_err(PublishError::Invalid)?;
        let delivery_id = envelope.delivery_id();
        let received_at = broker::now_rfc3339();

        let all_acknowledged = async {
            // Send every event first, then wait for the acknowledgements together: one round
            // trip for the whole batch instead of one per event.
            let mut pending = Vec::with_capacity(envelope.data.events.len());
            for (index, raw) in envelope.data.events.iter().enumerate() {
                let payload = body.slice_ref(raw.get().as_bytes());
                let mut headers = HeaderMap::new();
                headers.insert(header::RECEIVED_AT, received_at.as_str());
                if let Some(id) = delivery_id {
                    headers.insert(header::DELIVERY_ID, id);
                }
                if let Some(id) = okta_request_id {
                    headers.insert(header::OKTA_REQUEST_ID, id);
                }
                let (kind, subject, message) = match event::route(raw) {
                    Route::Publish {
                        subject,
                        uuid,
                        event_type,
                    } => {
                        headers.insert(header::EVENT_TYPE, event_type.as_ref());
                        let message = PublishMessage::build()
                            .headers(headers)
                            .message_id(&uuid)
                            .payload(payload);
                        (Kind::Event, subject, message)
                    }
                    Route::Unroutable(reason) => {
                        tracing::warn!(
                            reason,
                            index,
                            delivery_id,
                            "unroutable event dead-lettered"
                        );
                        headers.insert(header::DEAD_LETTERED_BY, subject::RECEIVER_DLQ_TOKEN);
                        headers.insert(header::ERROR, reason);
                        headers.insert(header::DEAD_LETTERED_AT, received_at.as_str());
                        let mut message = PublishMessage::build().headers(headers).payload(payload);
                        if let Some(id) = delivery_id {
                            // Okta's retry of this delivery carries the same eventId.
                            message = message.message_id(format!("receiver:{id}:{index}"));
                        }
                        let subject = subject::dlq_subject(subject::RECEIVER_DLQ_TOKEN);
                        (Kind::DeadLetter, subject, message)
                    }
                };
                let ack = self
                    .js
                    .send_publish(subject, message)
                    .await
                    .map_err(|e| PublishError::Broker(e.to_string()))?;
                pending.push(async move { (kind, ack.into_future().await) });
            }

            let mut stored = Stored::default();
            for (kind, ack) in futures::future::join_all(pending).await {
                let ack = ack.map_err(|e| PublishError::Broker(e.to_string()))?;
                match kind {
                    Kind::Event if ack.duplicate => stored.duplicates += 1,
                    Kind::Event => stored.published += 1,
                    Kind::DeadLetter => stored.dead_lettered += 1,
                }
            }
            Ok(stored)
        };

        tokio::time::timeout(self.timeout, all_acknowledged)
            .await
            .map_err(|_| {
                PublishError::Broker(format!("no acknowledgement within {:?}", self.timeout))
            })?
    }
}
