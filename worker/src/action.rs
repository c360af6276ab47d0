//! The [`Action`] trait: what a subscriber does with one event. An action says how it failed,
//! and the subscriber decides what follows: a transient failure is retried on the subscriber's
//! backoff, a permanent one is dead-lettered at once.

use std::time::SystemTime;

use async_nats::HeaderMap;
use bytes::Bytes;
use hookrelay::event::OktaEvent;

/// One stored event, handed to an action.
#[derive(Debug, Clone)]
pub struct Event {
    /// The members actions commonly need, parsed.
    pub okta: OktaEvent,
    /// The event exactly as Okta sent it; forward these bytes rather than re-serialising.
    pub raw: Bytes,
    /// The NATS headers the receiver set (`Hookrelay-Delivery-Id`, …).
    pub headers: HeaderMap,
    /// When JetStream stored the event: the receiver answered Okta right after.
    pub stored_at: SystemTime,
}

impl Event {
    /// Parses a stored message. An unparsable one is a permanent failure: no retry fixes it.
    pub fn parse(
        raw: Bytes,
        headers: Option<HeaderMap>,
        stored_at: SystemTime,
    ) -> Result<Self, ActionError> {
        let okta = serde_json::from_slice(&raw)
            .map_err(|e| ActionError::Permanent(format!("not an Okta event: {e}")))?;
        Ok(Event {
            okta,
            raw,
            headers: headers.unwrap_or_default(),
            stored_at,
        })
    }
}

/// How an action failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// Worth retrying later: a downstream that is down, slow or rate-limiting.
    #[error("{0}")]
    Transient(String),
    /// Never worth retrying: the event itself cannot be handled.
    #[error("{0}")]
    Permanent(String),
}

/// What a subscriber does with each event. Implement it for custom logic, then give it a
/// `type` in the configuration (see the README's "Add a subscriber").
///
/// An action may run more than once for the same event (after a crash, a timeout, or Okta's own
/// duplicates beyond the dedupe window): make its effect idempotent, keyed on
/// `event.okta.uuid`.
#[async_trait::async_trait]
pub trait Action: Send + Sync + 'static {
    async fn handle(&self, event: &Event) -> Result<(), ActionError>;
}
