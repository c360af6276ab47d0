//! Okta's event hook delivery ([`Envelope`]) as the receiver reads it, and one event
//! ([`OktaEvent`]) as a worker action reads it.
//!
//! The receiver never rebuilds an event: it finds each element of `data.events` in the request
//! body and stores those bytes unchanged, so what a subscriber gets is exactly what Okta sent.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::subject;

/// A delivery: one POST from Okta, carrying one or more events. Borrowed from the body.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// Identifies the delivery (not an event); kept for tracing.
    #[serde(rename = "eventId", borrow, default)]
    pub event_id: Option<Cow<'a, str>>,
    /// Holds the events.
    #[serde(borrow)]
    pub data: EnvelopeData<'a>,
}

/// The `data` member of an [`Envelope`].
#[derive(Debug, Deserialize)]
pub struct EnvelopeData<'a> {
    /// Each element is one System Log event, left unparsed.
    #[serde(borrow)]
    pub events: Vec<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// Parses a request body. Fails on anything that is not a JSON object with a
    /// `data.events` array, and on nesting deeper than [`MAX_DEPTH`] levels.
    pub fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        let envelope: Envelope = serde_json::from_slice(body)?;
        // serde_json limits the depth of what it parses, but not of what it keeps as raw
        // values: check the events, so that no subscriber gets what it cannot parse.
        if envelope
            .data
            .events
            .iter()
            .any(|event| deeper_than(event.get().as_bytes(), MAX_DEPTH - ENVELOPE_DEPTH))
        {
            return Err(serde::de::Error::custom(format!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(envelope)
    }

    /// The delivery id, if it is safe to carry in a header.
    pub fn delivery_id(&self) -> Option<&str> {
        self.event_id
            .as_deref()
            .filter(|id| subject::is_valid_id(id))
    }
}

/// The deepest nesting accepted in a delivery: as deep as serde_json parses, so whatever the
/// receiver stores, a subscriber can parse.
pub const MAX_DEPTH: usize = 127;
/// The levels around each event: `{"data":{"events":[`.
const ENVELOPE_DEPTH: usize = 3;

/// Whether valid JSON nests deeper than `limit` levels.
fn deeper_than(json: &[u8], limit: usize) -> bool {
    // So deep a nesting needs as many brackets: counting them is cheap, and enough for any
    // real event.
    if memchr::memchr2_iter(b'[', b'{', json).count() <= limit {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Where one event of a delivery goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// To `subject`, deduplicated on `uuid`.
    Publish {
        subject: String,
        uuid: Cow<'a, str>,
        event_type: Cow<'a, str>,
    },
    /// To the receiver's dead letters, for this reason.
    Unroutable(&'static str),
}

/// The two members the receiver needs to route an event.
#[derive(Default)]
struct EventHead<'a> {
    uuid: Option<Cow<'a, str>>,
    event_type: Option<Cow<'a, str>>,
}

impl<'a> EventHead<'a> {
    /// Reads `uuid` and `eventType` from an event, stopping as soon as it has both: Okta puts
    /// them first, and the rest of the event (about 2 kB, already validated as JSON by the
    /// envelope's parse) need not be read again. The first non-null occurrence of a member
    /// counts.
    fn read(raw: &'a RawValue) -> Result<Self, serde_json::Error> {
        let mut head = EventHead::default();
        let mut json = serde_json::Deserializer::from_str(raw.get());
        match serde::Deserializer::deserialize_map(&mut json, HeadVisitor(&mut head)) {
            Ok(()) => Ok(head),
            // The visitor stops reading with an error once it has both members.
            Err(_) if head.uuid.is_some() && head.event_type.is_some() => Ok(head),
            Err(e) => Err(e),
        }
    }
}

struct HeadVisitor<'h, 'a>(&'h mut EventHead<'a>);

impl<'de> serde::de::Visitor<'de> for HeadVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(BorrowedStr(key)) = map.next_key()? {
            let slot = match key.as_ref() {
                "uuid" => &mut self.0.uuid,
                "eventType" => &mut self.0.event_type,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            *slot = map.next_value::<Option<BorrowedStr<'de>>>()?.map(|s| s.0);
            if self.0.uuid.is_some() && self.0.event_type.is_some() {
                return Err(serde::de::Error::custom("both members read"));
            }
        }
        Ok(())
    }
}

/// A string borrowed from the input when it has no escapes (serde's `Cow<str>` always copies).
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> serde::de::Visitor<'de> for StrVisitor {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// Decides where one element of `data.events` goes. Nothing that fails the subject and header
/// checks of [`crate::subject`] is ever routed.
pub fn route(raw: &RawValue) -> Route<'_> {
    let Ok(head) = EventHead::read(raw) else {
        return Route::Unroutable("event is not an object with string `uuid` and `eventType`");
    };
    let Some(uuid) = head.uuid else {
        return Route::Unroutable("event has no `uuid`");
    };
    let Some(event_type) = head.event_type else {
        return Route::Unroutable("event has no `eventType`");
    };
    if !subject::is_valid_id(&uuid) {
        return Route::Unroutable("event `uuid` is not a safe header value");
    }
    if !subject::is_valid_event_type(&event_type) {
        return Route::Unroutable("event `eventType` is not a safe subject");
    }
    Route::Publish {
        subject: subject::event_subject(&event_type),
        uuid,
        event_type,
    }
}

/// One Okta System Log event, with the members actions commonly need. The stored message
/// keeps every other member; actions that forward the event use those bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OktaEvent {
    /// Identifies the event; Okta's retries and duplicates carry the same one.
    pub uuid: String,
    /// Such as `user.lifecycle.create`.
    pub event_type: String,
    /// When the event happened (RFC 3339), the only ordering Okta offers.
    #[serde(default)]
    pub published: Option<String>,
    /// A human summary, such as "Create okta user".
    #[serde(default)]
    pub display_message: Option<String>,
    /// Who did it.
    #[serde(default)]
    pub actor: Option<Actor>,
    /// What it was done to. Okta's Preview sample sends `null`.
    #[serde(default)]
    pub target: Option<Vec<Target>>,
}

/// The `actor` of an event.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub alternate_id: Option<String>,
    pub display_name: Option<String>,
}

/// One element of an event's `target`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(default)]
    pub id: Option<String>,
    /// `User`, `AppInstance`, …
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// For a user, the login (usually an email address).
    #[serde(default)]
    pub alternate_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

impl OktaEvent {
    /// The event's targets; empty when Okta sent `null` or nothing.
    pub fn targets(&self) -> &[Target] {
        self.target.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../testdata/sample-user-lifecycle-create.json");

    #[test]
    fn sample_delivery_parses_and_routes_its_event() {
        let envelope = Envelope::parse(SAMPLE.as_bytes()).expect("sample parses");
        assert_eq!(
            envelope.delivery_id(),
            Some("b5a188b9-5ece-4636-b041-482ffda96311")
        );
        assert_eq!(envelope.data.events.len(), 1);
        let Route::Publish {
            subject,
            uuid,
            event_type,
        } = route(envelope.data.events[0])
        else {
            panic!("sample event must be routable");
        };
        assert_eq!(subject, "okta.events.user.lifecycle.create");
        assert_eq!(uuid, "4ad3d9e2-0c7b-11ee-8a9b-9b0e0b3c1f5a");
        assert_eq!(event_type, "user.lifecycle.create");

        let event: OktaEvent =
            serde_json::from_str(envelope.data.events[0].get()).expect("event parses");
        assert_eq!(
            event.targets()[0].alternate_id.as_deref(),
            Some("john.doe@example.com")
        );
        assert_eq!(event.targets()[0].kind.as_deref(), Some("User"));
    }

    #[test]
    fn raw_events_are_slices_of_the_body() {
        let body = SAMPLE.as_bytes();
        let envelope = Envelope::parse(body).expect("sample parses");
        let raw = envelope.data.events[0].get().as_bytes();
        let range = body.as_ptr_range();
        assert!(
            range.contains(&raw.as_ptr()),
            "the event is borrowed, not copied"
        );
        assert!(raw.starts_with(br#"{"uuid""#));
    }

    #[test]
    fn envelopes_without_an_events_array_are_refused() {
        for body in [
            "",
            "[]",
            "{}",
            r#"{"data":{}}"#,
            r#"{"data":{"events":{}}}"#,
            r#"{"data":{"events":[1,2]"#,
            r#"{"data":null}"#,
        ] {
            assert!(Envelope::parse(body.as_bytes()).is_err(), "{body}");
        }
        let empty = Envelope::parse(br#"{"data":{"events":[]}}"#).expect("empty batch parses");
        assert!(empty.data.events.is_empty());
        assert_eq!(empty.delivery_id(), None);
    }

    #[test]
    fn unroutable_events_say_why() {
        let cases = [
            ("1", "not an object"),
            (r#"{"eventType":"a.b"}"#, "no `uuid`"),
            (r#"{"uuid":"u1"}"#, "no `eventType`"),
            (r#"{"uuid":7,"eventType":"a.b"}"#, "not an object"),
            (r#"{"uuid":"u 1","eventType":"a.b"}"#, "`uuid`"),
            (r#"{"uuid":"u\r\n1","eventType":"a.b"}"#, "`uuid`"),
            (r#"{"uuid":"u1","eventType":"a.*"}"#, "`eventType`"),
            (r#"{"uuid":"u1","eventType":"okta.>"}"#, "`eventType`"),
            (r#"{"uuid":"u1","eventType":"a..b"}"#, "`eventType`"),
            (r#"{"uuid":"u1","eventType":""}"#, "`eventType`"),
        ];
        for (json, why) in cases {
            let raw: Box<RawValue> = serde_json::from_str(json).expect("valid json");
            match route(&raw) {
                Route::Unroutable(reason) => assert!(reason.contains(why), "{json}: {reason}"),
                other => panic!("{json} routed to {other:?}"),
            }
        }
    }

    #[test]
    fn escaped_members_are_unescaped_before_checks() {
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"uuid":"u\u00201","eventType":"a.b"}"#).expect("json");
        assert!(matches!(route(&raw), Route::Unroutable(_)));
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"uuid":"u\u002d1","eventType":"a.b"}"#).expect("json");
        assert!(matches!(route(&raw), Route::Publish { uuid, .. } if uuid == "u-1"));
    }

    #[test]
    fn routing_reads_only_as_far_as_it_needs() {
        // The rest of the event is not read again: the envelope's parse validated it already.
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"uuid":"u1","eventType":"a.b","rest":[1,2,{"x":null}]}"#)
                .expect("json");
        let Route::Publish {
            uuid, event_type, ..
        } = route(&raw)
        else {
            panic!("routable");
        };
        assert!(matches!(uuid, Cow::Borrowed("u1")), "borrowed, not copied");
        assert!(matches!(event_type, Cow::Borrowed("a.b")));
        // Wherever the members are, and whatever comes before them.
        let raw: Box<RawValue> = serde_json::from_str(
            r#"{"a":{"uuid":"inner"},"eventType":"a.b","b":[],"uuid":"u2","uuid":"u3"}"#,
        )
        .expect("json");
        assert!(matches!(route(&raw), Route::Publish { uuid, .. } if uuid == "u2"));
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"uuid":null,"eventType":"a.b","uuid":"u4"}"#).expect("json");
        assert!(matches!(route(&raw), Route::Publish { uuid, .. } if uuid == "u4"));
    }

    #[test]
    fn nesting_is_limited_as_serde_json_limits_it() {
        let nested = |depth: usize, inner: &str| {
            let event = format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth));
            format!(r#"{{"data":{{"events":[{event}]}}}}"#)
        };
        for depth in [1, 100, 124, 125, 126, 127, 128, 500] {
            for inner in ["", r#""[[[[{{{{\"[""#] {
                let body = nested(depth, inner);
                let full = serde_json::from_str::<serde_json::Value>(&body);
                assert_eq!(
                    Envelope::parse(body.as_bytes()).is_ok(),
                    full.is_ok(),
                    "depth {depth} {inner}"
                );
            }
        }
        assert!(Envelope::parse(nested(124, "").as_bytes()).is_ok());
        assert!(Envelope::parse(nested(125, "").as_bytes()).is_err());
        // Brackets in strings do not count.
        let many_in_strings = format!(r#"{{"data":{{"events":[["{}"]]}}}}"#, "[".repeat(1000));
        assert!(Envelope::parse(many_in_strings.as_bytes()).is_ok());
    }

    #[test]
    fn preview_sample_with_null_target_parses_with_no_targets() {
        let event: OktaEvent = serde_json::from_str(
            r#"{"uuid":"u1","eventType":"user.lifecycle.create","target":null}"#,
        )
        .expect("parses");
        assert!(event.targets().is_empty());
    }
}
