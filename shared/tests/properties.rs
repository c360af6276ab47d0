//! Property tests of what the receiver does with untrusted bytes: parsing a delivery and
//! deciding subjects and headers. `PROPTEST_CASES` sets how many cases each property tries
//! (256 by default, as CI runs them; README "Security" gives the longer run).

use hookrelay::event::{Envelope, Route, route};
use hookrelay::subject::{self, EVENTS_PREFIX, MAX_EVENT_TYPE_LEN, MAX_ID_LEN};
use proptest::prelude::*;
use serde_json::{Value, json};

/// What a NATS subject must be for hookrelay to publish on it: tokens of letters, digits, `_`
/// and `-`, no wildcards, whitespace or empty tokens, under the events prefix.
fn assert_safe_subject(subject: &str) {
    let event_type = subject
        .strip_prefix(EVENTS_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .expect("under okta.events.");
    assert!(event_type.len() <= MAX_EVENT_TYPE_LEN);
    for token in event_type.split('.') {
        assert!(!token.is_empty(), "empty token in {subject:?}");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "unsafe token in {subject:?}"
        );
    }
}

/// What a header value must be: visible ASCII, no CR, LF, spaces or controls, bounded.
fn assert_safe_header(value: &str) {
    assert!(!value.is_empty() && value.len() <= MAX_ID_LEN, "{value:?}");
    assert!(value.bytes().all(|b| b.is_ascii_graphic()), "{value:?}");
}

/// Strings an attacker would try: wildcards, dots, whitespace, controls, unicode, long runs.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}(\\.[a-z]{1,8}){0,4}",
        "[a-zA-Z0-9._*> \\-]{0,40}",
        "\\PC{0,40}",
        "[\\x00-\\x7f]{0,40}",
        "[a-z.]{100,200}",
        Just(String::new()),
    ]
}

/// JSON values of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        hostile_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("uuid".to_string()),
                    Just("eventType".to_string()),
                    "[a-zA-Z]{1,10}"
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Whatever the uuid and event type, an event is routed exactly when both are safe, to the
    /// subject of its type, deduplicated on its uuid; nothing unsafe reaches a subject or a
    /// header.
    #[test]
    fn only_safe_events_are_routed_and_exactly_as_sent(
        uuid in hostile_string(),
        event_type in hostile_string(),
        filler in any_json(),
    ) {
        let event = json!({"filler": filler, "uuid": uuid, "eventType": event_type});
        let body = json!({"eventId": "d1", "data": {"events": [event]}}).to_string();
        let envelope = Envelope::parse(body.as_bytes()).expect("a valid delivery");
        let safe = subject::is_valid_id(&uuid) && subject::is_valid_event_type(&event_type);
        match route(envelope.data.events[0]) {
            Route::Publish { subject, uuid: routed_uuid, event_type: routed_type } => {
                prop_assert!(safe);
                prop_assert_eq!(routed_uuid.as_ref(), uuid.as_str());
                prop_assert_eq!(routed_type.as_ref(), event_type.as_str());
                prop_assert_eq!(subject.clone(), format!("okta.events.{event_type}"));
                assert_safe_subject(&subject);
                assert_safe_header(&routed_uuid);
            }
            Route::Unroutable(reason) => {
                prop_assert!(!safe, "{uuid:?} {event_type:?} refused: {reason}");
            }
        }
    }

    /// The receiver reads `uuid` and `eventType` without parsing the whole event; it agrees
    /// with a full parse on every JSON value.
    #[test]
    fn routing_agrees_with_a_full_parse(event in any_json()) {
        let body = json!({"data": {"events": [event.clone()]}}).to_string();
        let envelope = Envelope::parse(body.as_bytes()).expect("a valid delivery");
        let member = |name: &str| event.get(name).and_then(Value::as_str);
        match (route(envelope.data.events[0]), member("uuid"), member("eventType")) {
            (Route::Publish { uuid, event_type, .. }, Some(u), Some(t)) => {
                prop_assert_eq!(uuid.as_ref(), u);
                prop_assert_eq!(event_type.as_ref(), t);
            }
            (Route::Publish { .. }, _, _) => prop_assert!(false, "routed without both members"),
            (Route::Unroutable(_), Some(u), Some(t)) => {
                prop_assert!(!(subject::is_valid_id(u) && subject::is_valid_event_type(t)));
            }
            (Route::Unroutable(_), _, _) => {}
        }
    }

    /// Any bytes at all: parsing never panics, and whatever parses routes without panicking
    /// to safe subjects and headers.
    #[test]
    fn arbitrary_bodies_never_panic(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            any_json().prop_map(|v| json!({"data": {"events": [v]}}).to_string().into_bytes()),
            any_json().prop_map(|v| v.to_string().into_bytes()),
        ]
    ) {
        if let Ok(envelope) = Envelope::parse(&bytes) {
            if let Some(id) = envelope.delivery_id() {
                assert_safe_header(id);
            }
            for raw in &envelope.data.events {
                if let Route::Publish { subject, uuid, .. } = route(raw) {
                    assert_safe_subject(&subject);
                    assert_safe_header(&uuid);
                }
            }
        }
    }
}

#[test]
fn pathological_nesting_is_refused_not_overflowed() {
    for depth in [200, 10_000, 1_000_000] {
        let body = format!(
            "{{\"data\":{{\"events\":[{}{}]}}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(Envelope::parse(body.as_bytes()).is_err(), "depth {depth}");
    }
}
