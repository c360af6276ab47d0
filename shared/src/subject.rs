//! Subject and header names, and the checks that keep anything unsafe out of them.
//!
//! Events live on `okta.events.<eventType>` (an event type such as `user.lifecycle.create`
//! spans several subject tokens), dead letters on `okta.dlq.<subscriber>`, and dead letters
//! replayed to one subscriber on `okta.replay.<subscriber>.<eventType>` (in the events stream).

/// Subjects of the events stream start with this.
pub const EVENTS_PREFIX: &str = "okta.events";
/// Subjects of the dead-letter stream start with this.
pub const DLQ_PREFIX: &str = "okta.dlq";
/// Subjects of replayed dead letters start with this; they live in the events stream.
pub const REPLAY_PREFIX: &str = "okta.replay";
/// The dead-letter token of events the receiver could not route (`okta.dlq.receiver`).
pub const RECEIVER_DLQ_TOKEN: &str = "receiver";

/// Longest event type accepted as a subject.
pub const MAX_EVENT_TYPE_LEN: usize = 128;
/// Longest uuid accepted as a `Nats-Msg-Id`.
pub const MAX_ID_LEN: usize = 128;

/// Header names hookrelay puts on NATS messages, besides `Nats-Msg-Id` (the event's uuid).
///
/// An event carries only what its subject and JetStream's own metadata do not: its type is the
/// subject after `okta.events.` ([`event_type_of`]) and the time it was stored is the stream's
/// timestamp. Every header costs the broker time on every message (`bench/run` measures it).
pub mod header {
    /// The delivery's `eventId` (one per Okta request, shared by the events of a batch).
    pub const DELIVERY_ID: &str = "Hookrelay-Delivery-Id";
    /// Okta's `X-Okta-Request-Id` of the request that carried the event.
    pub const OKTA_REQUEST_ID: &str = "Hookrelay-Okta-Request-Id";
    /// The event's uuid, on dead letters (whose own `Nats-Msg-Id` differs).
    pub const EVENT_UUID: &str = "Hookrelay-Event-Uuid";
    /// Who dead-lettered the event: a subscriber's name or `receiver`.
    pub const DEAD_LETTERED_BY: &str = "Hookrelay-Dead-Lettered-By";
    /// Why, in one line.
    pub const ERROR: &str = "Hookrelay-Error";
    /// How many times the subscriber was handed the event.
    pub const DELIVERY_COUNT: &str = "Hookrelay-Delivery-Count";
    /// The subject the event was on.
    pub const ORIGINAL_SUBJECT: &str = "Hookrelay-Original-Subject";
    /// The event's sequence in the events stream.
    pub const ORIGINAL_SEQUENCE: &str = "Hookrelay-Original-Sequence";
    /// On a dead letter that keeps only the start of its event: the event's size in bytes.
    pub const TRUNCATED_FROM: &str = "Hookrelay-Truncated-From";
    /// When it was dead-lettered, RFC 3339 with microseconds.
    pub const DEAD_LETTERED_AT: &str = "Hookrelay-Dead-Lettered-At";
    /// Which ingress stored an event that did not come through the hook: one of
    /// [`super::source`]'s values other than `hook`. Absent on events the hook delivered.
    pub const SOURCE: &str = "Hookrelay-Source";

    /// W3C trace context of the event's PRODUCER span, with tracing on (`hookrelay::telemetry`).
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";

    /// The trace id a message's `traceparent` names, if it has one.
    pub fn trace_id(headers: Option<&async_nats::HeaderMap>) -> Option<&str> {
        let traceparent = value(headers, TRACEPARENT)?;
        let trace_id = traceparent.split('-').nth(1)?;
        (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(trace_id)
    }

    /// The value of header `name` on a message, if it has it: the one way every reader
    /// (`hookrelayctl`, the console, the worker's dead letters) reads hookrelay's headers.
    pub fn value<'a>(headers: Option<&'a async_nats::HeaderMap>, name: &str) -> Option<&'a str> {
        headers?.get(name).map(|v| v.as_str())
    }

    /// Where a stored event came from: its [`SOURCE`] header, or `hook` without one.
    pub fn source(headers: Option<&async_nats::HeaderMap>) -> &str {
        value(headers, SOURCE).unwrap_or(super::source::HOOK)
    }
}

/// The ingresses an event can come from, as [`header::SOURCE`] names them.
pub mod source {
    /// Okta's event hook, through the receiver (no header).
    pub const HOOK: &str = "hook";
    /// The reconciler, reading Okta's System Log for what the hook missed.
    pub const SYSTEM_LOG: &str = "system-log";
    /// `hookrelayctl backfill`.
    pub const BACKFILL: &str = "backfill";
    /// `hookrelayctl simulate`, through the receiver: its deliveries carry [`SIMULATE_HEADER`].
    pub const SIMULATE: &str = "simulate";
    /// The HTTP header `hookrelayctl simulate` marks its deliveries with. Only a sender with
    /// the hook's secret gets far enough for it to count; Okta never sends it.
    pub const SIMULATE_HEADER: &str = "x-hookrelay-simulated";
    /// Every source, in the order pages list them.
    pub const ALL: [&str; 4] = [HOOK, SYSTEM_LOG, BACKFILL, SIMULATE];
}

/// The event type of an event subject, `okta.events.<eventType>` or a replay's
/// `okta.replay.<subscriber>.<eventType>`, if it is one.
pub fn event_type_of(subject: &str) -> Option<&str> {
    let event_type = match subject.strip_prefix(EVENTS_PREFIX) {
        Some(rest) => rest.strip_prefix('.')?,
        None => {
            let rest = subject.strip_prefix(REPLAY_PREFIX)?.strip_prefix('.')?;
            rest.split_once('.')?.1
        }
    };
    Some(event_type).filter(|event_type| !event_type.is_empty())
}

/// The subject that replays an event of this type to one subscriber only.
pub fn replay_subject(subscriber: &str, event_type: &str) -> String {
    format!("{REPLAY_PREFIX}.{subscriber}.{event_type}")
}

/// The subject of an event of this type. The type must pass [`is_valid_event_type`].
pub fn event_subject(event_type: &str) -> String {
    format!("{EVENTS_PREFIX}.{event_type}")
}

/// The dead-letter subject of a subscriber (or of the receiver).
pub fn dlq_subject(owner: &str) -> String {
    format!("{DLQ_PREFIX}.{owner}")
}

/// Whether `event_type` can become subject tokens: dot-separated, non-empty tokens of ASCII
/// letters, digits, `_` and `-` (no wildcards, spaces or control characters), of sane length.
pub fn is_valid_event_type(event_type: &str) -> bool {
    !event_type.is_empty()
        && event_type.len() <= MAX_EVENT_TYPE_LEN
        && event_type.split('.').all(is_valid_name)
}

/// Whether `name` is one safe token: a stream, consumer or subscriber name.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_EVENT_TYPE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `id` is safe as a header value and a dedupe key: visible ASCII, no spaces, of sane
/// length. Okta's uuids and eventIds are UUIDs, well inside this.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Makes free text (an error message) safe for a header value: one line of visible ASCII,
/// at most `max` bytes.
pub fn header_safe(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if c.is_ascii_graphic() || c == ' ' {
            c
        } else {
            ' '
        };
        if out.len() + 1 > max {
            break;
        }
        out.push(c);
    }
    out
}

/// The durable consumer name of a subscriber for one event type:
/// `user-added_user_lifecycle_create`.
pub fn durable_name(subscriber: &str, event_type: &str) -> String {
    format!("{subscriber}_{}", event_type.replace('.', "_"))
}

/// The durable consumer name of a subscriber's replayed dead letters: `user-added__replay`.
pub fn replay_durable_name(subscriber: &str) -> String {
    format!("{subscriber}__replay")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_type_is_read_back_from_the_subject() {
        let subject = event_subject("user.lifecycle.create");
        assert_eq!(event_type_of(&subject), Some("user.lifecycle.create"));
        assert_eq!(event_type_of("okta.events."), None);
        assert_eq!(event_type_of("okta.eventsx.a"), None);
        assert_eq!(event_type_of("okta.dlq.receiver"), None);
        let replay = replay_subject("user-added", "user.lifecycle.create");
        assert_eq!(replay, "okta.replay.user-added.user.lifecycle.create");
        assert_eq!(event_type_of(&replay), Some("user.lifecycle.create"));
        assert_eq!(event_type_of("okta.replay.user-added"), None);
        assert_eq!(event_type_of("okta.replay.user-added."), None);
    }

    #[test]
    fn event_types_that_are_safe_subject_tokens() {
        for ok in [
            "user.lifecycle.create",
            "user.authentication.auth_via_mfa",
            "a",
            "x-1.y_2",
        ] {
            assert!(is_valid_event_type(ok), "{ok}");
        }
        let long = "a".repeat(MAX_EVENT_TYPE_LEN + 1);
        for bad in [
            "",
            ".",
            "user..create",
            "user.",
            ".user",
            "user.*",
            "user.>",
            ">",
            "user create",
            "user\tcreate",
            "user\r\n.create",
            "üser.create",
            long.as_str(),
        ] {
            assert!(!is_valid_event_type(bad), "{bad:?}");
        }
    }

    #[test]
    fn ids_that_are_safe_header_values() {
        assert!(is_valid_id("4ad3d9e2-0c7b-11ee-8a9b-9b0e0b3c1f5a"));
        let long = "a".repeat(MAX_ID_LEN + 1);
        for bad in ["", "a b", "a\r\nb", "a\0", "é", long.as_str()] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn header_safe_text_is_one_bounded_line() {
        assert_eq!(header_safe("bad\r\nthing\té", 100), "bad  thing  ");
        assert_eq!(header_safe("abcdef", 3), "abc");
    }
}
