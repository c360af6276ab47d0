//! The [`Action`] trait: what a subscriber does with one event. An action says how it failed,
//! and the subscriber decides what follows: a transient failure is retried on the subscriber's
//! backoff, a permanent one is dead-lettered at once.

use std::sync::Arc;
use std::time::SystemTime;

use async_nats::HeaderMap;
use bytes::Bytes;
use hookrelay::event::OktaEvent;
use hookrelay::jq::Fields;

/// One stored event, handed to an action. Its JSON is parsed only when an action asks for it
/// ([`Event::okta`]): forwarding the raw bytes (`http`) or nothing (`noop`) never pays for it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event's uuid: the stored message's `Nats-Msg-Id` (a replay's `Hookrelay-Event-Uuid`),
    /// which the receiver took from the event.
    pub uuid: String,
    /// Its type, such as `user.lifecycle.create`: the subject it was stored on.
    pub event_type: String,
    /// The event exactly as Okta sent it; forward these bytes rather than re-serialising.
    pub raw: Bytes,
    /// The NATS headers the receiver set (`Hookrelay-Delivery-Id`, …).
    pub headers: HeaderMap,
    /// When JetStream stored the event: the receiver answered Okta right after.
    pub stored_at: SystemTime,
    // Boxed: most events are never parsed, and every event's task carries this.
    parsed: std::sync::OnceLock<Result<Box<OktaEvent>, String>>,
    /// The event as jq reads it, for a `filter` and a `transform`: parsed once for both.
    jq: std::sync::OnceLock<Result<Box<hookrelay::jq::Input>, String>>,
    /// The top-level fields they read: all that is built for them (all when `None`).
    jq_fields: Option<Arc<Fields>>,
    /// What a downstream answered this attempt, for its record: status and the body's start.
    answer: std::sync::OnceLock<(u16, Bytes)>,
}

impl Event {
    pub fn new(
        uuid: String,
        event_type: String,
        raw: Bytes,
        headers: Option<HeaderMap>,
        stored_at: SystemTime,
    ) -> Self {
        Event {
            uuid,
            event_type,
            raw,
            headers: headers.unwrap_or_default(),
            stored_at,
            parsed: std::sync::OnceLock::new(),
            jq: std::sync::OnceLock::new(),
            jq_fields: None,
            answer: std::sync::OnceLock::new(),
        }
    }

    /// Builds the event for jq with only `fields`: what every jq expression that will run on
    /// it reads ([`Fields::read_by`]).
    pub fn reading(mut self, fields: Arc<Fields>) -> Self {
        self.jq_fields = Some(fields);
        self
    }

    /// Notes what a downstream answered, for the attempt's record (the console's timeline):
    /// its HTTP status and the start of its body. The first answer of an attempt counts.
    pub fn answered(&self, status: u16, body_start: Bytes) {
        let _ = self.answer.set((status, body_start));
    }

    /// What [`Event::answered`] noted.
    pub fn answer(&self) -> Option<&(u16, Bytes)> {
        self.answer.get()
    }

    /// The members actions commonly need, parsed on first use. An event that does not parse is
    /// a permanent failure: no retry fixes it.
    pub fn okta(&self) -> Result<&OktaEvent, ActionError> {
        let parsed = self.parsed.get_or_init(|| {
            serde_json::from_slice(&self.raw)
                .map(Box::new)
                .map_err(|e| format!("not an Okta event: {e}"))
        });
        match parsed {
            Ok(event) => Ok(event),
            Err(e) => Err(ActionError::Permanent(e.clone())),
        }
    }

    /// The event as jq reads it (the fields given to [`Event::reading`]), parsed on first use.
    /// An event that does not parse is a permanent failure.
    pub fn jq_input(&self) -> Result<&hookrelay::jq::Input, ActionError> {
        let parsed = (self.jq).get_or_init(|| {
            let fields = self.jq_fields.as_deref().unwrap_or(&Fields::All);
            hookrelay::jq::Input::parse_fields(self.raw.clone(), fields).map(Box::new)
        });
        match parsed {
            Ok(input) => Ok(input),
            Err(e) => Err(ActionError::Permanent(format!("the event is {e}"))),
        }
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
    /// The downstream asked for a pause (`Retry-After` on a 429 or 503): the subscriber starts
    /// no action before it is over, and this event is retried no sooner.
    #[error("{reason}")]
    Throttled {
        reason: String,
        retry_after: std::time::Duration,
    },
}

/// What a subscriber does with each event. Implement it for custom logic, then give it a
/// `type` in the configuration (see the README's "Add a subscriber").
///
/// An action may run more than once for the same event (after a crash, a timeout, or Okta's own
/// duplicates beyond the dedupe window): make its effect idempotent, keyed on `event.uuid`.
#[async_trait::async_trait]
pub trait Action: Send + Sync + 'static {
    async fn handle(&self, event: &Event) -> Result<(), ActionError>;
}
