//! Which of the event's top-level fields a jq expression can read, so that an event is built
//! for jq with only those (`.target` and `.actor` of an Okta event's fifteen, for a Slack
//! message). Building jaq's value of a whole event is most of what a filter costs.
//!
//! The reading is conservative: any construct whose reach is not plain (`..`, `keys`,
//! `to_entries`, `has`, `tojson`, a `def`, the event bound to a variable, compared or added to)
//! reads every field. The event passed on whole without being looked into (`select(…)`,
//! `{event: .}`) reads none: a transform writes it as the bytes it was parsed from.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Pattern, Term};
use jaq_core::path::Part;

/// The top-level fields an expression reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fields {
    /// Whichever it likes: the event is built whole.
    All,
    /// Only these (sorted, no duplicates).
    Only(Vec<String>),
}

impl Fields {
    /// What `code` reads of the event it runs on. Code that does not parse reads all.
    pub fn read_by(code: &str) -> Fields {
        let Some(term) = jaq_core::load::parse(code, |p| p.term()) else {
            return Fields::All;
        };
        let mut keys = Vec::new();
        match walk(&term, true, &mut keys) {
            Ok(_) => {
                keys.sort();
                keys.dedup();
                Fields::Only(keys)
            }
            Err(Whole) => Fields::All,
        }
    }

    /// What two expressions run on the same event read together.
    pub fn and(self, other: Fields) -> Fields {
        match (self, other) {
            (Fields::Only(mut a), Fields::Only(b)) => {
                a.extend(b);
                a.sort();
                a.dedup();
                Fields::Only(a)
            }
            _ => Fields::All,
        }
    }

    pub(super) fn holds(&self, key: &str) -> bool {
        match self {
            Fields::All => true,
            Fields::Only(keys) => keys.binary_search_by(|k| k.as_str().cmp(key)).is_ok(),
        }
    }
}

/// The expression may read the whole event.
struct Whole;

/// What a term outputs, as far as the event goes. Ordered: a choice between two outputs is the
/// greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Out {
    /// Never the event, nor anything holding it.
    Inside,
    /// Maybe the event itself.
    Event,
    /// Maybe an array or object holding the event (`{event: .}`).
    Holding,
}

/// An output used as more than a truth value or the final output: it must not be or hold the
/// event, else the event is read whole.
fn used(out: Out) -> Result<Out, Whole> {
    match out {
        Out::Inside => Ok(Out::Inside),
        Out::Event | Out::Holding => Err(Whole),
    }
}

/// What a term puts into an array or object it builds.
fn held(out: Out) -> Out {
    match out {
        Out::Inside => Out::Inside,
        Out::Event | Out::Holding => Out::Holding,
    }
}

/// Walks `term`, run on the event itself when `on_event` (else on something inside it), adding
/// the top-level fields it reads to `keys`.
fn walk(term: &Term<&str>, on_event: bool, keys: &mut Vec<String>) -> Result<Out, Whole> {
    let this = if on_event { Out::Event } else { Out::Inside };
    match term {
        Term::Id => Ok(this),
        Term::Recurse => used(this),
        Term::Num(_) | Term::Var(_) | Term::Break(_) => Ok(Out::Inside),
        Term::Str(_, parts) => {
            for part in parts {
                if let StrPart::Term(t) = part {
                    used(walk(t, on_event, keys)?)?;
                }
            }
            Ok(Out::Inside)
        }
        Term::Arr(None) => Ok(Out::Inside),
        Term::Arr(Some(t)) => Ok(held(walk(t, on_event, keys)?)),
        Term::Neg(t) => used(walk(t, on_event, keys)?),
        Term::Obj(entries) => {
            let mut out = Out::Inside;
            for (key, value) in entries {
                match value {
                    Some(value) => out = out.max(held(walk(value, on_event, keys)?)),
                    // `{uuid}` is `{uuid: .uuid}`; `{$x}` reads nothing.
                    None => match (literal(key), key) {
                        (Some(name), _) => {
                            if on_event {
                                keys.push(name);
                            }
                            continue;
                        }
                        (None, Term::Var(_)) => continue,
                        (None, _) => return Err(Whole),
                    },
                };
                used(walk(key, on_event, keys)?)?;
            }
            Ok(out)
        }
        Term::BinOp(l, op, r) => match op {
            BinaryOp::Pipe(None) => match walk(l, on_event, keys)? {
                Out::Holding => Err(Whole),
                l => walk(r, l == Out::Event, keys),
            },
            BinaryOp::Pipe(Some(pattern)) => {
                used(walk(l, on_event, keys)?)?;
                pattern_keys(pattern, on_event, keys)?;
                walk(r, on_event, keys)
            }
            // Either side's output; `//` tests the left for truth only.
            BinaryOp::Comma | BinaryOp::Alt => {
                Ok(walk(l, on_event, keys)?.max(walk(r, on_event, keys)?))
            }
            BinaryOp::Or | BinaryOp::And => {
                walk(l, on_event, keys)?;
                walk(r, on_event, keys)?;
                Ok(Out::Inside)
            }
            BinaryOp::Math(_) | BinaryOp::Cmp(_) => {
                used(walk(l, on_event, keys)?)?;
                used(walk(r, on_event, keys)?)
            }
            // An update's output is its whole input, changed.
            BinaryOp::Assign | BinaryOp::Update | BinaryOp::UpdateMath(_) | BinaryOp::UpdateAlt => {
                if on_event {
                    return Err(Whole);
                }
                used(walk(l, false, keys)?)?;
                used(walk(r, false, keys)?)
            }
        },
        Term::Label(_, t) => walk(t, on_event, keys),
        Term::Fold(_, xs, pattern, args) => {
            used(walk(xs, on_event, keys)?)?;
            pattern_keys(pattern, on_event, keys)?;
            let (init, update) = args.split_first().ok_or(Whole)?;
            used(walk(init, on_event, keys)?)?;
            // The accumulator starts from `init` (not the event) and is only ever an update's
            // output.
            for arg in update {
                used(walk(arg, false, keys)?)?;
            }
            Ok(Out::Inside)
        }
        Term::TryCatch(t, catch) => {
            let out = walk(t, on_event, keys)?;
            match catch {
                // The error caught may be the event (`error(.)`).
                Some(catch) => Ok(out.max(walk(catch, on_event, keys)?)),
                None => Ok(out),
            }
        }
        Term::IfThenElse(branches, otherwise) => {
            let mut out = Out::Inside;
            for (condition, then) in branches {
                walk(condition, on_event, keys)?;
                out = out.max(walk(then, on_event, keys)?);
            }
            match otherwise {
                Some(t) => Ok(out.max(walk(t, on_event, keys)?)),
                // `if c then x end` is `if c then x else . end`.
                None => Ok(out.max(this)),
            }
        }
        // A definition can run its body on anything it is given.
        Term::Def(..) => Err(Whole),
        Term::Call(name, args) => call(name, args, on_event, keys),
        Term::Path(base, path) => {
            let mut on_base = match walk(base, on_event, keys)? {
                Out::Holding => return Err(Whole),
                base => base == Out::Event,
            };
            for (part, _optional) in &path.0 {
                // Index expressions run on the path's own input, as in `.a[.i]`.
                match part {
                    Part::Index(index) if on_base => match literal(index) {
                        Some(name) => keys.push(name),
                        None => return Err(Whole),
                    },
                    Part::Index(index) => drop(used(walk(index, on_event, keys)?)?),
                    Part::Range(..) if on_base => return Err(Whole),
                    Part::Range(from, to) => {
                        for bound in from.iter().chain(to) {
                            used(walk(bound, on_event, keys)?)?;
                        }
                    }
                }
                on_base = false;
            }
            Ok(if on_base { Out::Event } else { Out::Inside })
        }
    }
}

/// A call. On something inside the event, a call can reach nothing above it (a variable
/// holding the event reads all already). On the event itself, only these are followed; any
/// other call may read any field (`keys`, `has`, `tojson`, `length`, …).
fn call(
    name: &str,
    args: &[Term<&str>],
    on_event: bool,
    keys: &mut Vec<String>,
) -> Result<Out, Whole> {
    if !on_event {
        for arg in args {
            walk(arg, false, keys)?;
        }
        return Ok(Out::Inside);
    }
    match (name, args) {
        ("empty" | "not" | "true" | "false" | "null" | "now", []) => Ok(Out::Inside),
        ("select", [condition]) => {
            walk(condition, true, keys)?;
            Ok(Out::Event)
        }
        ("any" | "all", [generator, condition]) => match walk(generator, true, keys)? {
            Out::Holding => Err(Whole),
            each => {
                walk(condition, each == Out::Event, keys)?;
                Ok(Out::Inside)
            }
        },
        ("first" | "last", [generator]) => walk(generator, true, keys),
        ("isempty", [generator]) => walk(generator, true, keys).map(|_| Out::Inside),
        ("limit", [count, generator]) => {
            used(walk(count, true, keys)?)?;
            walk(generator, true, keys)
        }
        ("error", [message]) => used(walk(message, true, keys)?),
        _ => Err(Whole),
    }
}

/// The keys a destructuring pattern computes (`{(f): $x}`) run on the event.
fn pattern_keys(
    pattern: &Pattern<&str>,
    on_event: bool,
    keys: &mut Vec<String>,
) -> Result<(), Whole> {
    match pattern {
        Pattern::Var(_) => Ok(()),
        Pattern::Arr(items) => items
            .iter()
            .try_for_each(|p| pattern_keys(p, on_event, keys)),
        Pattern::Obj(entries) => entries.iter().try_for_each(|(key, p)| {
            used(walk(key, on_event, keys)?)?;
            pattern_keys(p, on_event, keys)
        }),
    }
}

/// The text of a string literal without escapes or interpolation (`"a"`, or `a` in `.a`).
fn literal(term: &Term<&str>) -> Option<String> {
    match term {
        Term::Str(None, parts) => match &parts[..] {
            [] => Some(String::new()),
            [StrPart::Str(text)] => Some((*text).to_owned()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(keys: &[&str]) -> Fields {
        Fields::Only(keys.iter().map(|k| (*k).to_owned()).collect())
    }

    #[test]
    fn plain_paths_read_their_first_field() {
        let filter = Fields::read_by;
        assert_eq!(filter(".eventType"), only(&["eventType"]));
        assert_eq!(
            filter(r#"any(.target[]?; .type == "User" and (.alternateId | endswith("@x")))"#),
            only(&["target"]),
            "the condition runs on each target, not on the event"
        );
        assert_eq!(
            filter(r#".outcome.result == "FAILURE" and .actor.id != null"#),
            only(&["actor", "outcome"])
        );
        assert_eq!(filter("select(.a) | .b"), only(&["a", "b"]));
        assert_eq!(filter(".a as $x | .b | .c"), only(&["a", "b"]));
        assert_eq!(
            filter("{uuid, $__loc__, t: .target[0]}"),
            only(&["target", "uuid"])
        );
        assert_eq!(
            filter(r#"reduce .target[] as $t (0; . + ($t.id | length))"#),
            only(&["target"])
        );
        assert_eq!(
            filter(r#"{text: "\(.actor.displayName) at \(.published[:19])"}"#),
            only(&["actor", "published"])
        );
        // Passed on or written whole, not looked into: the event is written as its bytes.
        assert_eq!(filter("."), only(&[]));
        assert_eq!(filter(".a // ."), only(&["a"]));
        assert_eq!(filter("if .a then .b end"), only(&["a", "b"]));
        assert_eq!(
            filter(r#"{time: (.published[:19] + "Z" | fromdateiso8601), event: .}"#),
            only(&["published"])
        );
        assert_eq!(filter("[., .uuid]"), only(&["uuid"]));
        assert_eq!(filter("select(.a) | first(.)"), only(&["a"]));
    }

    #[test]
    fn anything_that_may_see_the_whole_event_reads_it_all() {
        for code in [
            "keys",
            "has(\"a\")",
            "length",
            "tojson",
            "to_entries",
            "..",
            ".[]",
            ".[$k]",
            ".[\"a\\n\"]",
            ". as $e | $e.a",
            "def f: .a; f",
            ". == {}",
            ". + {a: 1}",
            ".a = 1",
            "[.] | .[0] | keys",
            "{event: .} | .event",
            "{event: .} as $e | 1",
            "{a: [.]} == {}",
            "\"\\(.)\"",
            "reduce . as $e (0; 1)",
            "reduce .a[] as $x (.; .)",
            "error(.)",
            "@json",
            "not_a_builtin",
            ".a |",
        ] {
            assert_eq!(Fields::read_by(code), Fields::All, "{code}");
        }
    }

    #[test]
    fn two_expressions_read_what_either_reads() {
        assert_eq!(
            only(&["b", "c"]).and(only(&["a", "b"])),
            only(&["a", "b", "c"])
        );
        assert_eq!(only(&["a"]).and(Fields::All), Fields::All);
    }
}
