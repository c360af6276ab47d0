//! jq in the configuration: a subscriber's `filter` and the `http` action's `transform`, in
//! the language operators already use for JSON. Compiled once at start with jaq (a Rust
//! implementation of jq: `jaq-core`, `jaq-std`, `jaq-json`), then run on each event.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::{Num, Val};

mod fields;
pub use fields::Fields;

type Data = data::JustLut<Val>;

/// A compiled jq expression.
pub struct Jq {
    filter: jaq_core::Filter<Data>,
}

impl std::fmt::Debug for Jq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jq")
    }
}

/// An event parsed for jq, with the bytes it was parsed from.
#[derive(Debug, Clone)]
pub struct Input {
    val: Val,
    json: bytes::Bytes,
}

impl Input {
    /// Parses one JSON value, such as an event as Okta sent it.
    pub fn parse(json: impl Into<bytes::Bytes>) -> Result<Self, String> {
        Self::parse_fields(json, &Fields::All)
    }

    /// Parses one JSON value with only the top-level `fields` of an object, for expressions
    /// that read no others ([`Fields::read_by`]): the rest is checked and skipped.
    pub fn parse_fields(json: impl Into<bytes::Bytes>, fields: &Fields) -> Result<Self, String> {
        use serde::de::DeserializeSeed as _;
        let json = json.into();
        if let Fields::Only(_) = fields {
            let mut reader = serde_json::Deserializer::from_slice(&json);
            let parsed = (Projection(fields).deserialize(&mut reader)).and_then(|val| {
                reader.end()?;
                Ok(val)
            });
            if let Ok(val) = parsed {
                return Ok(Input { val, json });
            }
            // Not an object, or not JSON: the whole parse below says which.
        }
        // Through serde_json rather than jaq's own reader: 15% faster on an Okta event.
        match serde_json::from_slice(&json) {
            Ok(val) => Ok(Input { val, json }),
            Err(e) => Err(format!("not JSON: {e}")),
        }
    }
}

/// An object with only some of its top-level fields.
struct Projection<'a>(&'a Fields);

impl<'de> serde::de::DeserializeSeed<'de> for Projection<'_> {
    type Value = Val;

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<Val, D::Error> {
        reader.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Projection<'_> {
    type Value = Val;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let mut kept = jaq_json::Map::default();
        while let Some(key) = map.next_key_seed(Key(self.0))? {
            match key {
                Some(key) => {
                    let value = map.next_value::<Val>()?;
                    kept.insert(Val::utf8_str(key.into_bytes()), value);
                }
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Val::obj(kept))
    }
}

/// A key, kept if the fields hold it.
struct Key<'a>(&'a Fields);

impl<'de> serde::de::DeserializeSeed<'de> for Key<'_> {
    type Value = Option<String>;

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        reader.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.holds(key).then(|| key.to_owned()))
    }
}

impl Jq {
    /// Compiles `code` with jq's standard library. The error says what is wrong and where
    /// (`line:column`): a syntax error, or a function, variable or module that does not exist.
    pub fn compile(code: &str) -> Result<Self, String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(&arena, File { code, path: () })
            .map_err(|errors| {
                let mut found = Vec::new();
                for (_, error) in errors {
                    match error {
                        jaq_core::load::Error::Io(io) => {
                            found.extend(io.into_iter().map(|(_, e)| e));
                        }
                        jaq_core::load::Error::Lex(lex) => {
                            found.extend(
                                lex.into_iter()
                                    .map(|(expect, at)| syntax(code, at, expect.as_str())),
                            );
                        }
                        jaq_core::load::Error::Parse(parse) => {
                            found.extend(
                                parse
                                    .into_iter()
                                    .map(|(expect, at)| syntax(code, at, expect.as_str())),
                            );
                        }
                    }
                }
                found.join("; ")
            })?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errors| {
                let found: Vec<String> = (errors.into_iter())
                    .flat_map(|(_, undefined)| undefined)
                    .map(|(name, kind)| {
                        let what = match kind {
                            jaq_core::compile::Undefined::Filter(arity) => {
                                format!("function `{name}/{arity}`")
                            }
                            other => format!("{} `{name}`", other.as_str()),
                        };
                        format!("jq: unknown {what} at {}", position(code, name))
                    })
                    .collect();
                found.join("; ")
            })?;
        Ok(Jq { filter })
    }

    /// Whether jq's `select(<this>)` keeps `input`: some output is neither `false` nor `null`.
    /// An error before such an output is the expression's error (jq's message).
    pub fn selects(&self, input: &Input) -> Result<bool, String> {
        for output in self.run(input) {
            if jaq_core::ValT::as_bool(&output?) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The one value `input` becomes, as compact JSON. No output, more than one, or one that
    /// JSON cannot hold (`nan`, `infinite`, a byte string) is an error.
    pub fn transform(&self, input: &Input) -> Result<Vec<u8>, String> {
        let mut outputs = self.run(input);
        let value = match outputs.next() {
            Some(value) => value?,
            None => return Err("jq: the transform gave no value (`empty`)".into()),
        };
        if outputs.next().is_some() {
            return Err("jq: the transform gave more than one value".into());
        }
        // Room for the event written whole, as a SIEM-shaped transform does.
        let mut json = Vec::with_capacity(input.json.len() + 256);
        write_json(&mut json, &value, input)
            .map_err(|what| format!("jq: the transform's value is not JSON: it holds {what}"))?;
        Ok(json)
    }

    fn run<'a>(&'a self, input: &Input) -> impl Iterator<Item = Result<Val, String>> + 'a {
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        (self.filter.id.run((ctx, input.val.clone())))
            .map(unwrap_valr)
            .map(|result| result.map_err(|e| error_text(&e.to_string())))
    }
}

/// The most of a run-time error kept. jaq puts the value it failed on in its message, which
/// can be the whole event; the message goes into the dead letter and the worker's log.
const MAX_ERROR: usize = 120;

/// `jq: <message>`, cut at [`MAX_ERROR`] characters (as jq cuts the values in its own).
fn error_text(message: &str) -> String {
    match message.char_indices().nth(MAX_ERROR) {
        None => format!("jq: {message}"),
        Some((cut, _)) => format!("jq: {}…", &message[..cut]),
    }
}

/// Writes `value` as compact JSON, or says what in it JSON cannot hold. (jaq's own writer goes
/// through `fmt` and writes `nan` and byte strings as they are; this is several times faster.)
/// The event itself, passed on untouched (`{event: .}`), is written as the bytes it was parsed
/// from: it may have been built with only the fields the expression reads.
fn write_json(out: &mut Vec<u8>, value: &Val, input: &Input) -> Result<(), &'static str> {
    use std::io::Write as _;
    match value {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(true) => out.extend_from_slice(b"true"),
        Val::Bool(false) => out.extend_from_slice(b"false"),
        Val::Num(Num::Int(n)) => write!(out, "{n}").expect("a Vec takes every write"),
        Val::Num(Num::BigInt(n)) => write!(out, "{n}").expect("a Vec takes every write"),
        // A number as the input wrote it.
        Val::Num(Num::Dec(text)) => out.extend_from_slice(text.as_bytes()),
        Val::Num(Num::Float(f)) if f.is_finite() => {
            serde_json::to_writer(&mut *out, f).expect("a finite float is JSON");
        }
        Val::Num(Num::Float(_)) => return Err("nan or an infinite number"),
        Val::TStr(text) => write_str(out, text),
        Val::BStr(_) => return Err("a byte string"),
        Val::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, item, input)?;
            }
            out.push(b']');
        }
        Val::Obj(fields) if is_event(fields, input) => out.extend_from_slice(&input.json),
        Val::Obj(fields) => {
            out.push(b'{');
            for (i, (key, field)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let Val::TStr(key) = key else {
                    return Err("an object key that is not a string");
                };
                write_str(out, key);
                out.push(b':');
                write_json(out, field, input)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Whether `fields` are the event's own (not a copy, which would be changed or built anew).
fn is_event(fields: &jaq_json::Map, input: &Input) -> bool {
    matches!(&input.val, Val::Obj(event) if std::ptr::eq(&**event, fields))
}

/// A JSON string; bytes that are not UTF-8 become U+FFFD, as jq writes them.
fn write_str(out: &mut Vec<u8>, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    serde_json::to_writer(&mut *out, &*text).expect("a string is JSON");
}

/// `jq: syntax error at 1:7: expected …, found …`.
fn syntax(code: &str, at: &str, expected: &str) -> String {
    let found = match at.chars().next() {
        None => "the end".to_owned(),
        Some(_) => {
            let token: String = at.chars().take(12).collect();
            format!("`{}`", token.split_whitespace().next().unwrap_or(&token))
        }
    };
    format!(
        "jq: syntax error at {}: expected {expected}, found {found}",
        position(code, at)
    )
}

/// `line:column` (both from 1, columns in characters) of `part`, a slice of `code`.
fn position(code: &str, part: &str) -> String {
    let offset = (part.as_ptr() as usize)
        .checked_sub(code.as_ptr() as usize)
        .filter(|offset| *offset <= code.len())
        .unwrap_or(code.len());
    // A slice of a `str` starts on a character boundary.
    let before = code.get(..offset).unwrap_or(code);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("{line}:{column}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Input {
        Input::parse(json.to_owned()).expect("JSON")
    }

    #[test]
    fn a_filter_keeps_what_select_keeps() {
        let event = input(r#"{"outcome": {"result": "FAILURE"}, "target": null}"#);
        let keeps = |code: &str| Jq::compile(code).expect(code).selects(&event);
        assert_eq!(keeps(r#".outcome.result == "FAILURE""#), Ok(true));
        assert_eq!(keeps(r#".outcome.result == "SUCCESS""#), Ok(false));
        assert_eq!(keeps(".target"), Ok(false), "null is false to select");
        assert_eq!(keeps(".outcome"), Ok(true), "any other value is true");
        assert_eq!(keeps("empty"), Ok(false));
        assert_eq!(keeps("false, true"), Ok(true), "some output");
        let error = keeps(r#".target[0].alternateId | endswith("@example.com")"#);
        assert!(
            error.as_ref().is_err_and(|e| e.starts_with("jq: ")),
            "{error:?}"
        );
        // jaq's message holds the value it failed on: the whole event here, which is cut.
        let long = input(&format!(
            r#"{{"a": "{}", "secret": "s3cr3t"}}"#,
            "x".repeat(300)
        ));
        let error = (Jq::compile("error").expect("error").selects(&long)).expect_err("fails");
        assert!(error.chars().count() <= MAX_ERROR + 6, "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
    }

    #[test]
    fn a_transform_makes_one_json_value() {
        let event = input(r#"{"uuid": "u1", "target": [{"alternateId": "a@example.com"}]}"#);
        let made = |code: &str| Jq::compile(code).expect(code).transform(&event);
        assert_eq!(
            made(r#"{text: "new: \(.target[0].alternateId)", id: .uuid}"#).as_deref(),
            Ok(br#"{"text":"new: a@example.com","id":"u1"}"#.as_slice())
        );
        let numbers = input(r#"{"lat": 43.60, "big": 123456789012345678901234567890, "n": 7}"#);
        let made_of = |code: &str| Jq::compile(code).expect(code).transform(&numbers);
        assert_eq!(
            made_of(r#"[.lat, .n, .n / 2, .n * 1.0e300, "é\n\"", .big]"#)
                .map(|json| String::from_utf8(json).expect("UTF-8")),
            Ok(r#"[43.6,7,3.5,7e+300,"é\n\"",1.2345678901234568e+29]"#.to_owned()),
            "numbers as jq 1.6 writes them (past 64 bits, a double), strings escaped as JSON needs"
        );
        for (code, says) in [
            ("empty", "no value"),
            (".uuid, .uuid", "more than one"),
            ("nan", "not JSON"),
            ("{a: nan}", "not JSON"),
            ("{a: infinite}", "not JSON"),
            ("{(1): 2}", "jq: "),
        ] {
            let error = made(code).expect_err(code);
            assert!(error.contains(says), "{code}: {error}");
        }
    }

    #[test]
    fn an_event_is_built_with_the_fields_read_and_checked_whole() {
        let json: &'static [u8] =
            br#"{"a": {"x": [1, "\u00e9"]}, "b": {"big": "skipped"}, "c": 3, "a": 2}"#;
        let fields = Fields::read_by(".a, .c, .d");
        let input = Input::parse_fields(json, &fields).expect("JSON");
        let all = Jq::compile("[.[]]").expect("jq");
        assert_eq!(
            all.transform(&input).as_deref(),
            Ok(br#"[2,3]"#.as_slice()),
            "only a and c, a's last value where JSON repeats it (as a whole parse keeps it)"
        );
        let whole = Input::parse(json).expect("JSON");
        assert_eq!(
            all.transform(&whole).as_deref(),
            Ok(br#"[2,{"big":"skipped"},3]"#.as_slice())
        );
        for broken in [&br#"{"a": 1, "b": [}"#[..], br#"{"a": 1} x"#, b"{"] {
            let error = Input::parse_fields(broken, &fields).expect_err("not JSON");
            assert!(error.starts_with("not JSON"), "{error}");
        }
        // The event passed on whole is written as it came, though built with `c` alone.
        let wrap = r#"{t: .c, event: .}"#;
        let input = Input::parse_fields(json, &Fields::read_by(wrap)).expect("JSON");
        let written = Jq::compile(wrap)
            .expect("jq")
            .transform(&input)
            .expect("JSON");
        assert_eq!(
            written,
            [&br#"{"t":3,"event":"#[..], json, b"}"].concat(),
            "{}",
            String::from_utf8_lossy(&written)
        );
        let not_object = Input::parse_fields(&b"[1, 2]"[..], &fields).expect("JSON");
        assert_eq!(
            all.transform(&not_object).as_deref(),
            Ok(b"[1,2]".as_slice())
        );
    }

    #[test]
    fn compile_errors_say_what_and_where() {
        let error = |code: &str| Jq::compile(code).expect_err(code);
        let syntax = error(".a |\n  if . then 1 els 2 end");
        assert!(syntax.starts_with("jq: syntax error at 2:"), "{syntax}");
        let unknown = error(r#".a | frobnicate(1)"#);
        assert_eq!(unknown, "jq: unknown function `frobnicate/1` at 1:6");
        let unclosed = error(r#"{text: "x""#);
        assert!(unclosed.contains("syntax error at 1:"), "{unclosed}");
        assert!(Jq::compile(r#"select(.a) | {b: .a}"#).is_ok());
    }
}
