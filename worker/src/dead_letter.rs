//! Dead letters: an event a subscriber gave up on, stored on `okta.dlq.<subscriber>` with the
//! original payload and headers, plus who gave up, why, after how many deliveries, and where
//! the original was. Only once JetStream has acknowledged the dead letter is the original
//! terminated.

use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::{HeaderMap, Subject};
use hookrelay::broker;
use hookrelay::subject::{self, header};

use crate::action::Event;

/// The longest error kept in the `Hookrelay-Error` header.
const MAX_ERROR_LEN: usize = 1024;

/// What to record about the event that failed.
pub struct DeadLetter<'a> {
    pub subscriber: &'a str,
    /// The subject the event was delivered on.
    pub subject: &'a Subject,
    pub event: &'a Event,
    pub stream_sequence: u64,
    pub delivered: i64,
    pub error: &'a str,
}

impl DeadLetter<'_> {
    /// Publishes the dead letter and waits for JetStream's acknowledgement. Deduplicated on the
    /// original's stream sequence, so a retry after a crash stores it once.
    pub async fn publish(&self, js: &jetstream::Context) -> Result<(), async_nats::Error> {
        let mut headers = HeaderMap::new();
        let original = &self.event.headers;
        // A replayed dead letter already names its event; its message id is the replay's.
        let replayed = original.get(header::EVENT_UUID).is_some();
        for (name, values) in original.iter() {
            let name: &str = name.as_ref();
            if name.eq_ignore_ascii_case("Nats-Msg-Id") {
                if replayed {
                    continue;
                }
                for value in values {
                    headers.append(header::EVENT_UUID, value.as_str());
                }
            } else {
                for value in values {
                    headers.append(name, value.as_str());
                }
            }
        }
        headers.insert(header::DEAD_LETTERED_BY, self.subscriber);
        headers.insert(
            header::ERROR,
            subject::header_safe(self.error, MAX_ERROR_LEN).as_str(),
        );
        headers.insert(header::DELIVERY_COUNT, self.delivered.to_string().as_str());
        // The event's own subject, also for a replay (`okta.replay.<subscriber>.<type>`).
        let original_subject = subject::event_type_of(self.subject)
            .map_or_else(|| self.subject.to_string(), subject::event_subject);
        headers.insert(header::ORIGINAL_SUBJECT, original_subject.as_str());
        headers.insert(
            header::ORIGINAL_SEQUENCE,
            self.stream_sequence.to_string().as_str(),
        );
        headers.insert(header::DEAD_LETTERED_AT, broker::now_rfc3339().as_str());
        // With tracing on, the dead letter continues the event's trace from the attempt that
        // gave up: a replay of it is that attempt's child.
        hookrelay::telemetry::inject_nats(&tracing::Span::current(), &mut headers);
        let publish = PublishMessage::build()
            .headers(headers)
            .message_id(format!("{}:{}", self.subscriber, self.stream_sequence))
            .payload(self.event.raw.clone());
        js.send_publish(subject::dlq_subject(self.subscriber), publish)
            .await?
            .await?;
        Ok(())
    }
}
