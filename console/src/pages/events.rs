//! `GET /events`: the stored events, newest first, 50 a page, paged by stream sequence (the
//! next page is the events before the last one shown): by type, source and time from the
//! index alone; by status through each event's fate; by a user (`q`: an actor's or target's
//! alternateId or id) by reading events, newest first, for at most a second, saying how far back
//! it looked. `GET /events/new`: how many newer events match, for the "N new events" line the
//! page polls.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use askama::Template;
use async_nats::jetstream::{consumer, stream::Stream};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use hookrelay::stored::{self, Evidence, Status, StoredCopy, Summary, Whereabouts};
use hookrelay::subject::{self, header, source};
use serde::Serialize;

use crate::AppState;
use crate::auth::Viewer;
use crate::index::{Entry, Found, Peek, Query};
use crate::page::{Failure, Format, Layout, Params, link, respond};
use crate::pages::{ago, parse_time, shown_time};

/// Events a page shows.
pub const PAGE: usize = 50;
/// How long a search that reads events (`q`, `status`) may read before it answers with what it
/// found and how far back it looked.
const SEARCH_BUDGET: Duration = Duration::from_millis(800);
/// Events read at a time by a search.
const SEARCH_BATCH: usize = 1000;

/// The filters of the events page, as given.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub types: Vec<String>,
    pub q: String,
    pub status: Option<Status>,
    /// [`source::ALL`] values (`reconciler` is read as `system-log`).
    pub sources: Vec<String>,
    pub since: String,
    pub until: String,
    since_time: Option<SystemTime>,
    until_time: Option<SystemTime>,
}

impl Filters {
    pub fn read(params: &Params, format: Format) -> Result<Self, Failure> {
        let status = match params.get("status") {
            None => None,
            Some(s) => Some(
                Status::ALL
                    .into_iter()
                    .find(|status| status.as_str() == s)
                    .ok_or_else(|| {
                        Failure::bad_request(
                            format,
                            format!(
                                "status must be delivered, waiting, dead or filtered, not {s:?}"
                            ),
                        )
                    })?,
            ),
        };
        let mut sources = Vec::new();
        for s in params.all("source") {
            let s = if s == "reconciler" {
                source::SYSTEM_LOG.to_owned()
            } else {
                s
            };
            if !source::ALL.contains(&s.as_str()) {
                return Err(Failure::bad_request(
                    format,
                    format!("source must be hook, reconciler, backfill or simulate, not {s:?}"),
                ));
            }
            sources.push(s);
        }
        let time = |key: &str| -> Result<(String, Option<SystemTime>), Failure> {
            match params.get(key) {
                None => Ok((String::new(), None)),
                Some(text) => match parse_time(text) {
                    Some(t) => Ok((text.to_owned(), Some(t))),
                    None => Err(Failure::bad_request(
                        format,
                        format!(
                            "{key} must be a time (2026-12-04T10:00:00Z) or a time ago (24h), not {text:?}"
                        ),
                    )),
                },
            }
        };
        let (since, since_time) = time("since")?;
        let (until, until_time) = time("until")?;
        let types = params.all("type");
        if let Some(bad) = types.iter().find(|t| !subject::is_valid_event_type(t)) {
            return Err(Failure::bad_request(
                format,
                format!("{bad:?} is not an event type"),
            ));
        }
        Ok(Filters {
            types,
            q: params
                .get("q")
                .unwrap_or_default()
                .chars()
                .take(256)
                .collect(),
            status,
            sources,
            since,
            until,
            since_time,
            until_time,
        })
    }

    fn query(&self) -> Query {
        Query {
            types: self.types.clone(),
            sources: self.sources.clone(),
            since: self.since_time,
            until: self.until_time,
        }
    }

    /// The query string of these filters, plus `extra`.
    pub fn link(&self, path: &str, extra: &[(&str, &str)]) -> String {
        let mut params: Vec<(&str, &str)> =
            self.types.iter().map(|t| ("type", t.as_str())).collect();
        params.push(("q", &self.q));
        params.push(("status", self.status.map_or("", Status::as_str)));
        params.extend(self.sources.iter().map(|s| ("source", s.as_str())));
        params.push(("since", &self.since));
        params.push(("until", &self.until));
        params.extend_from_slice(extra);
        link(path, &params)
    }

    /// The one type chosen, for the type select.
    pub fn event_type(&self) -> &str {
        self.types.first().map_or("", String::as_str)
    }

    pub fn status_str(&self) -> &str {
        self.status.map_or("", Status::as_str)
    }

    pub fn source_str(&self) -> &str {
        self.sources.first().map_or("", |s| {
            if s == source::SYSTEM_LOG {
                "reconciler"
            } else {
                s
            }
        })
    }

    /// Whether any filter is set.
    pub fn any(&self) -> bool {
        !self.types.is_empty()
            || !self.q.is_empty()
            || self.status.is_some()
            || !self.sources.is_empty()
            || self.since_time.is_some()
            || self.until_time.is_some()
    }
}

/// One subscriber's status of an event, as a row shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RowFate {
    pub subscriber: String,
    pub status: &'static str,
}

/// One event, as the list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub sequence: u64,
    pub uuid: String,
    pub event_type: String,
    pub stored: String,
    #[serde(skip)]
    pub stored_shown: String,
    #[serde(skip)]
    pub ago: String,
    pub published: Option<String>,
    pub display_message: Option<String>,
    pub actor: Option<String>,
    pub targets: Vec<String>,
    pub source: String,
    pub status: &'static str,
    pub subscribers: Vec<RowFate>,
}

impl Row {
    pub fn targets_shown(&self) -> String {
        self.targets.join(", ")
    }
}

/// How far a search read.
#[derive(Debug, Clone, Serialize)]
pub struct Searched {
    /// Events read.
    pub events: u64,
    /// The storing time of the oldest event read.
    pub back_to: Option<String>,
    /// Whether every event that could match was read (otherwise the next page searches on).
    pub complete: bool,
}

/// The first read of the stream, while it lasts.
#[derive(Debug, Clone, Serialize)]
pub struct Indexing {
    pub indexed: u64,
    pub of: u64,
}

#[derive(Template, Serialize)]
#[template(path = "events.html")]
pub struct EventsPage {
    #[serde(skip)]
    layout: Layout,
    #[serde(skip)]
    filters: Filters,
    #[serde(skip)]
    types: Vec<String>,
    events: Vec<Row>,
    /// The next (older) page.
    next: Option<String>,
    /// The newest event the index had when the page was made: newer ones are "new".
    newest: u64,
    searched: Option<Searched>,
    indexing: Option<Indexing>,
    /// What the page polls for new events.
    #[serde(skip)]
    poll: String,
}

/// The fetched event at the head of a row.
struct Fetched {
    copy: StoredCopy,
    payload: Bytes,
}

/// Reads the events at `sequences`: in one ordered read when they lie close together, one by
/// one (32 at a time) otherwise.
async fn fetch(events: &Stream, sequences: &[u64]) -> anyhow::Result<HashMap<u64, Fetched>> {
    let Some((&lo, &hi)) = sequences.iter().min().zip(sequences.iter().max()) else {
        return Ok(HashMap::new());
    };
    let wanted: HashSet<u64> = sequences.iter().copied().collect();
    if (hi - lo + 1) as usize <= sequences.len() * 4 {
        let mut found = HashMap::new();
        let config = consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: lo },
            filter_subject: format!("{}.>", subject::EVENTS_PREFIX),
            ..Default::default()
        };
        hookrelay::broker::read_stream_until(events, config, |message| {
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let sequence = info.stream_sequence;
            if wanted.contains(&sequence) {
                let copy = StoredCopy {
                    sequence,
                    subject: message.subject.to_string(),
                    stored: info.published.into(),
                    headers: message.headers.clone().unwrap_or_default(),
                };
                found.insert(
                    sequence,
                    Fetched {
                        copy,
                        payload: message.payload.clone(),
                    },
                );
            }
            Ok(sequence < hi)
        })
        .await?;
        return Ok(found);
    }
    futures::stream::iter(wanted)
        .map(|sequence| async move {
            let (copy, payload) = stored::copy_at(events, sequence).await?;
            Ok::<_, anyhow::Error>((sequence, Fetched { copy, payload }))
        })
        .buffer_unordered(32)
        .try_collect()
        .await
}

/// Where the event whose first storing this is stands, for every subscriber of its type.
pub async fn whereabouts_of(
    state: &AppState,
    first: &StoredCopy,
    payload: &Bytes,
) -> anyhow::Result<Option<Whereabouts>> {
    let Some(uuid) = header::value(Some(&first.headers), "Nats-Msg-Id") else {
        return Ok(None);
    };
    let event_type = subject::event_type_of(&first.subject).unwrap_or("?");
    let (_, replays) = state.index.copies(uuid);
    let mut copies = vec![first.clone()];
    copies.extend(replays.into_iter().map(|(sequence, to)| StoredCopy {
        sequence,
        subject: subject::replay_subject(&to, event_type),
        stored: first.stored,
        headers: Default::default(),
    }));
    let letters = state.letters.of_event(state.index.hash(uuid), uuid);
    let filters = (state.settings.worker.subscribers.iter())
        .any(|s| s.filter.is_some() && s.event_types.iter().any(|t| t == event_type));
    let event = filters
        .then(|| hookrelay::jq::Input::parse(payload.clone()).ok())
        .flatten();
    let evidence = Evidence {
        letters: &letters,
        event: event.as_ref(),
        attempts: state.attempts().await,
    };
    stored::whereabouts(&state.positions, &state.settings, uuid, &copies, &evidence).await
}

/// The row of a fetched event.
async fn row(state: &AppState, fetched: &Fetched) -> anyhow::Result<Option<Row>> {
    let Some(whereabouts) = whereabouts_of(state, &fetched.copy, &fetched.payload).await? else {
        return Ok(None);
    };
    let summary = Summary::of(&fetched.payload);
    let stored = whereabouts.stored;
    Ok(Some(Row {
        sequence: whereabouts.sequence,
        status: whereabouts.status().as_str(),
        subscribers: (whereabouts.subscribers.iter())
            .map(|s| RowFate {
                subscriber: s.subscriber.clone(),
                status: s.fate.status().as_str(),
            })
            .collect(),
        uuid: whereabouts.uuid,
        event_type: whereabouts.event_type,
        stored: humantime::format_rfc3339_millis(stored).to_string(),
        stored_shown: shown_time(stored),
        ago: ago(stored),
        published: summary.published,
        display_message: summary.display_message,
        actor: summary.actor.and_then(|a| a.alternate_id.or(a.id)),
        targets: (summary.target.into_iter().flatten())
            .filter_map(|t| t.alternate_id.or(t.id))
            .collect(),
        source: whereabouts.source,
    }))
}

/// Whether a row has the wanted status (`filtered`: a subscriber's filter left it out).
fn has_status(row: &Row, wanted: Status) -> bool {
    match wanted {
        Status::Filtered => row
            .subscribers
            .iter()
            .any(|s| s.status == Status::Filtered.as_str()),
        other => row.status == other.as_str(),
    }
}

/// Case-insensitive: whether `needle` (ASCII-lowered) is in `haystack`.
fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    memchr::memchr2_iter(lower, upper, haystack).any(|at| {
        haystack
            .get(at..at + needle.len())
            .is_some_and(|window| window.eq_ignore_ascii_case(needle))
    })
}

/// What a page found: rows, where the next page starts, and how far a search read.
struct Answer {
    rows: Vec<Row>,
    next_before: Option<u64>,
    searched: Option<Searched>,
}

/// Pages through the index from `before`: every event the index keeps is a row, until a page
/// is full; with `q` or a status, events are read in batches and kept if they match, for at most
/// [`SEARCH_BUDGET`].
async fn find(state: &AppState, filters: &Filters, before: Option<u64>) -> anyhow::Result<Answer> {
    let matcher = state.index.matcher(&filters.query());
    // An event's uuid: the index answers at once.
    if !filters.q.is_empty() {
        let (events, _) = state.index.copies(&filters.q);
        let found: Vec<Found> = (events.iter())
            .filter_map(|&sequence| {
                Some(Found {
                    sequence,
                    entry: state.index.entry(sequence)?,
                })
            })
            .filter(|f| matcher.matches(&f.entry) && before.is_none_or(|b| f.sequence < b))
            .collect();
        if !found.is_empty() {
            let rows = rows_of(state, &found, filters, |_, _| true).await?;
            return Ok(Answer {
                rows,
                next_before: None,
                searched: None,
            });
        }
    }
    if filters.q.is_empty() && filters.status.is_none() {
        let found = state
            .index
            .newest(&matcher, before, PAGE + 1, |_, _, _| Some(true));
        let more = found.len() > PAGE;
        let page = &found[..found.len().min(PAGE)];
        let rows = rows_of(state, page, filters, |_, _| true).await?;
        return Ok(Answer {
            next_before: more.then(|| page.last().map(|f| f.sequence)).flatten(),
            rows,
            searched: None,
        });
    }
    // A search: batches of candidates, newest first, kept if they match.
    let candidate = candidates(state, filters).await?;
    let started = Instant::now();
    let needle = filters.q.as_bytes().to_ascii_lowercase();
    let mut rows = Vec::new();
    let mut cursor = before;
    let mut read = 0u64;
    let mut oldest: Option<u32> = None;
    let complete = loop {
        let batch = state
            .index
            .newest(&matcher, cursor, SEARCH_BATCH, |sequence, entry, peek| {
                Some(candidate(sequence, entry, peek))
            });
        let Some(last) = batch.last() else { break true };
        cursor = Some(last.sequence);
        read += batch.len() as u64;
        oldest = Some(last.entry.stored);
        let kept = rows_of(state, &batch, filters, |fetched, _| {
            matches_q(fetched, &filters.q, &needle)
        })
        .await?;
        rows.extend(kept);
        if rows.len() > PAGE {
            // The next page starts after the last row shown.
            rows.truncate(PAGE);
            break false;
        }
        if started.elapsed() >= SEARCH_BUDGET {
            break false;
        }
    };
    let next_before = if complete {
        None
    } else if rows.len() >= PAGE {
        rows.last().map(|r| r.sequence)
    } else {
        cursor
    };
    Ok(Answer {
        rows,
        next_before,
        searched: Some(Searched {
            events: read,
            back_to: oldest.map(|s| shown_time(UNIX_EPOCH + Duration::from_secs(u64::from(s)))),
            complete,
        }),
    })
}

/// What may have the status a search looks for, told from memory before any event is read:
/// `dead` needs a dead letter of its uuid; `waiting`, a subscriber whose consumer has not
/// acknowledged it (or none yet), a dead letter or a replay; `filtered`, a subscriber with a
/// filter. What passes is read and its fate checked.
async fn candidates(
    state: &AppState,
    filters: &Filters,
) -> anyhow::Result<impl Fn(u64, &Entry, &Peek) -> bool + use<>> {
    let subscribers = &state.settings.worker.subscribers;
    // For each type a subscriber takes: the lowest ack floor of its consumers, and whether a
    // subscriber of it filters.
    let mut floors: HashMap<String, (u64, bool)> = HashMap::new();
    for sub in subscribers {
        for event_type in &sub.event_types {
            let durable = subject::durable_name(&sub.name, event_type);
            let floor = (stored::Positions::position(&state.positions, &durable).await?)
                .map_or(0, |p| p.ack_floor);
            let entry = floors
                .entry(event_type.clone())
                .or_insert((u64::MAX, false));
            entry.0 = entry.0.min(floor);
            entry.1 |= sub.filter.is_some();
        }
    }
    let by_id: HashMap<u16, (u64, bool)> = (state.index.types().into_iter())
        .filter_map(|t| Some((state.index.type_id(&t)?, *floors.get(&t)?)))
        .collect();
    let letters = state.letters.clone();
    let status = filters.status;
    Ok(move |sequence: u64, entry: &Entry, peek: &Peek| {
        let taken = by_id.get(&entry.event_type);
        match status {
            None | Some(Status::Delivered) => true,
            Some(Status::Dead) => !letters.subscribers_of(entry.uuid).is_empty(),
            Some(Status::Waiting) => {
                taken.is_some_and(|(floor, _)| sequence > *floor)
                    || !letters.subscribers_of(entry.uuid).is_empty()
                    || peek.has_replays(entry.uuid)
            }
            Some(Status::Filtered) => taken.is_some_and(|(_, filters)| *filters),
        }
    })
}

/// Whether a fetched event is `q`'s: its uuid, or its actor's or a target's alternateId or id
/// (any case). `needle` is `q` in lower case, looked for in the bytes before any parsing.
fn matches_q(fetched: &Fetched, q: &str, needle: &[u8]) -> bool {
    q.is_empty()
        || (contains_ignoring_case(&fetched.payload, needle)
            && (Summary::of(&fetched.payload).involves(q)
                || header::value(Some(&fetched.copy.headers), "Nats-Msg-Id")
                    .is_some_and(|uuid| uuid.eq_ignore_ascii_case(q))))
}

/// The rows of `found` that `prefilter` (on the fetched event) and the status filter keep, in
/// `found`'s order.
async fn rows_of(
    state: &AppState,
    found: &[Found],
    filters: &Filters,
    prefilter: impl Fn(&Fetched, &Entry) -> bool,
) -> anyhow::Result<Vec<Row>> {
    let sequences: Vec<u64> = found.iter().map(|f| f.sequence).collect();
    let mut fetched = fetch(&state.events, &sequences).await?;
    let mut wanted = Vec::new();
    for f in found {
        if let Some(event) = fetched.remove(&f.sequence)
            && prefilter(&event, &f.entry)
        {
            wanted.push(event);
        }
    }
    let rows: Vec<Option<Row>> = futures::stream::iter(wanted)
        .map(|event| {
            let state = state.clone();
            async move { row(&state, &event).await }
        })
        .buffered(16)
        .try_collect()
        .await?;
    let mut rows: Vec<Row> = rows.into_iter().flatten().collect();
    if let Some(status) = filters.status {
        rows.retain(|r| has_status(r, status));
    }
    Ok(rows)
}

/// `GET /events`.
pub async fn list(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    format: Format,
    params: Params,
) -> Result<Response, Failure> {
    let filters = Filters::read(&params, format)?;
    let before = match params.get("before") {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            Failure::bad_request(
                format,
                format!("before must be a stream sequence, not {text:?}"),
            )
        })?),
    };
    let newest = state.index.last();
    let found = find(&state, &filters, before)
        .await
        .map_err(|e| Failure::broker(format, &e))?;
    let (indexed, caught_up, expected) = state.index.progress();
    let next = found
        .next_before
        .map(|b| filters.link("/events", &[("before", &b.to_string())]));
    let page = EventsPage {
        layout: Layout::new(&session, "events"),
        types: state.index.types(),
        events: found.rows,
        next,
        newest,
        searched: found.searched,
        indexing: (!caught_up).then_some(Indexing {
            indexed,
            of: expected,
        }),
        poll: filters.link("/events/new", &[("after", &newest.to_string())]),
        filters,
    };
    Ok(respond(format, &page, &page))
}

#[derive(Template)]
#[template(path = "new_events.html")]
struct NewEvents {
    count: usize,
    more: bool,
    poll: String,
    show: String,
}

/// The most new events counted.
const NEW_CAP: usize = 1000;

/// `GET /events/new?after=<sequence>&<filters>`: how many events newer than `after` match
/// (read and checked when the filters need it, up to 200).
pub async fn new_events(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    format: Format,
    params: Params,
) -> Result<Response, Failure> {
    let filters = Filters::read(&params, format)?;
    let after: u64 = params
        .get("after")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| Failure::bad_request(format, "after must be a stream sequence"))?;
    let matcher = state.index.matcher(&filters.query());
    let count = if filters.q.is_empty() && filters.status.is_none() {
        state.index.count_after(&matcher, after, NEW_CAP)
    } else {
        let found = state.index.newest(&matcher, None, 200, |sequence, _, _| {
            (sequence > after).then_some(true)
        });
        let needle = filters.q.as_bytes().to_ascii_lowercase();
        rows_of(&state, &found, &filters, |fetched, _| {
            matches_q(fetched, &filters.q, &needle)
        })
        .await
        .map_err(|e| Failure::broker(format, &e))?
        .len()
    };
    if format == Format::Json {
        return Ok(axum::Json(serde_json::json!({"new": count, "after": after})).into_response());
    }
    let page = NewEvents {
        count,
        more: count >= NEW_CAP,
        poll: filters.link("/events/new", &[("after", &after.to_string())]),
        show: filters.link("/events", &[]),
    };
    Ok(respond(format, &page, &()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_found_in_an_event_in_any_case() {
        let event = br#"{"target":[{"alternateId":"Jane.Doe@Example.com"}]}"#;
        assert!(contains_ignoring_case(event, b"jane.doe@example.com"));
        assert!(!contains_ignoring_case(event, b"john.doe@example.com"));
        assert!(contains_ignoring_case(event, b""));
        assert!(!contains_ignoring_case(b"jane", b"jane.doe"));
    }

    #[test]
    fn filters_come_back_as_the_links_of_the_next_page() {
        let params = Params::parse(b"type=user.lifecycle.create&q=jane%40example.com&status=dead&source=reconciler&since=24h");
        let filters = Filters::read(&params, Format::Html).expect("valid");
        assert_eq!(filters.sources, ["system-log"]);
        assert_eq!(
            filters.link("/events", &[("before", "42")]),
            "/events?type=user.lifecycle.create&q=jane%40example.com&status=dead&source=system-log&since=24h&before=42"
        );
        for bad in ["status=done", "source=okta", "since=soon", "type=user.*"] {
            let error = Filters::read(&Params::parse(bad.as_bytes()), Format::Json).expect_err(bad);
            assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
