//! `GET /events/{uuid}`: one event: the stored event (collapsible JSON), where it came from,
//! and for every subscriber of its type its fate with the attempt timeline (each attempt's
//! time, duration, outcome, HTTP status and the start of the answer, the error, the next
//! attempt). `POST /events/{uuid}/replay` (an operator's): sends it again to one subscriber:
//! its dead letter if it has one, else the stored event.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use hookrelay::attempts::{self, Attempt};
use hookrelay::dead_letters;
use hookrelay::stored::{Fate, StoredCopy, Whereabouts};
use serde::Serialize;

use crate::AppState;
use crate::auth::session::random_id;
use crate::auth::{Operator, Viewer};
use crate::page::{Failure, Format, Layout, Params, done, link, respond};
use crate::pages::{ago, json, shown_time};

/// One attempt, as the timeline shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    #[serde(flatten)]
    pub attempt: Attempt,
    #[serde(skip)]
    pub started: String,
    #[serde(skip)]
    pub duration: String,
}

impl AttemptView {
    fn of(attempt: Attempt) -> Self {
        let duration = match attempt.duration_ms {
            ms @ 0..1000 => format!("{ms} ms"),
            ms => format!("{:.1} s", ms as f64 / 1000.0),
        };
        AttemptView {
            started: shown_time(attempt.started()),
            duration,
            attempt,
        }
    }

    pub fn outcome(&self) -> &'static str {
        self.attempt.outcome.as_str()
    }
}

/// One subscriber of the event.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberView {
    pub subscriber: String,
    /// `delivered`, `filtered`, `dead`, `waiting`.
    pub status: &'static str,
    #[serde(flatten)]
    pub fate: Fate,
    /// What the fate means, in a sentence.
    pub said: String,
    pub replay: Option<u64>,
    pub attempts: Vec<AttemptView>,
    pub paused: bool,
}

#[derive(Template, Serialize)]
#[template(path = "event.html")]
pub struct EventPage {
    #[serde(skip)]
    layout: Layout,
    #[serde(flatten)]
    whereabouts: Whereabouts,
    status: &'static str,
    #[serde(skip)]
    stored_shown: String,
    #[serde(skip)]
    ago: String,
    #[serde(skip)]
    source_said: &'static str,
    subscribers: Vec<SubscriberView>,
    /// The event as stored.
    event: serde_json::Value,
    #[serde(skip)]
    event_html: String,
    /// Replays of it: their sequences and subscribers.
    replays: Vec<(u64, String)>,
    /// Makes a replay form sent twice replay once.
    #[serde(skip)]
    token: String,
    /// The event's trace in the trace viewer (`console.trace_url`).
    trace_link: Option<String>,
    #[serde(skip)]
    back: String,
}

impl EventPage {
    pub fn stored_shown(&self) -> &str {
        &self.stored_shown
    }
}

/// The words for a source.
fn source_said(source: &str) -> &'static str {
    match source {
        "hook" => "Okta's event hook",
        "system-log" => "the System Log reader (the hook had missed it)",
        "backfill" => "hookrelayctl backfill",
        "simulate" => "hookrelayctl simulate",
        _ => "elsewhere",
    }
}

/// The first storing of `uuid` and its bytes, if it is stored (the index finds it by the uuid's
/// hash; the message's own `Nats-Msg-Id` tells a shared hash apart).
async fn first_storing(
    state: &AppState,
    uuid: &str,
) -> anyhow::Result<Option<(StoredCopy, bytes::Bytes)>> {
    for sequence in state.index.copies(uuid).0 {
        let (copy, payload) = hookrelay::stored::copy_at(&state.events, sequence).await?;
        if hookrelay::subject::header::value(Some(&copy.headers), "Nats-Msg-Id") == Some(uuid) {
            return Ok(Some((copy, payload)));
        }
    }
    Ok(None)
}

/// `GET /events/{uuid}`.
pub async fn show(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    format: Format,
    Path(uuid): Path<String>,
    params: Params,
) -> Result<Response, Failure> {
    let broker = |e: anyhow::Error| Failure::broker(format, &e);
    let (_, replays) = state.index.copies(&uuid);
    let found = first_storing(&state, &uuid).await.map_err(broker)?;
    let Some((first, payload)) = found else {
        let (_, caught_up, _) = state.index.progress();
        let mut message = format!(
            "Event {uuid} is not stored (events are kept for {} after they arrive). If Okta has \
             it (its System Log keeps 90 days), `hookrelayctl backfill --since <before it \
             happened>` stores it.",
            humantime::format_duration(state.settings.nats.retention)
        );
        if !caught_up {
            message
                .push_str(" The console is still reading the stream: it may be there in a moment.");
        }
        return Err(Failure::not_found(format, message));
    };
    let whereabouts = super::events::whereabouts_of(&state, &first, &payload)
        .await
        .map_err(broker)?
        .ok_or_else(|| Failure::not_found(format, format!("Event {uuid} has no uuid header.")))?;
    let pauses = hookrelay::pause::states(&state.pauses)
        .await
        .unwrap_or_default();
    let records = state.attempts().await;
    let mut subscribers = Vec::new();
    for fate in &whereabouts.subscribers {
        let attempts = match records {
            Some(store) => attempts::history(store, &fate.subscriber, &uuid)
                .await
                .map_err(broker)?,
            None => Vec::new(),
        };
        subscribers.push(SubscriberView {
            subscriber: fate.subscriber.clone(),
            status: fate.fate.status().as_str(),
            said: fate.fate.to_string(),
            fate: fate.fate.clone(),
            replay: fate.replay,
            attempts: attempts.into_iter().map(AttemptView::of).collect(),
            paused: pauses.get(&fate.subscriber).is_some_and(|s| s.paused),
        });
    }
    let mut layout = Layout::new(&session, "events");
    layout.flash = params
        .get("replayed")
        .map(|to| format!("Sent again to {to}."));
    let page = EventPage {
        status: whereabouts.status().as_str(),
        stored_shown: shown_time(whereabouts.stored),
        ago: ago(whereabouts.stored),
        source_said: source_said(&whereabouts.source),
        event: serde_json::from_slice(&payload).unwrap_or(serde_json::Value::Null),
        event_html: json::render(&payload),
        replays,
        token: random_id(),
        trace_link: (whereabouts.trace_id.as_ref())
            .filter(|_| !state.settings.console.trace_url.is_empty())
            .map(|id| state.settings.console.trace_url.replace("{trace_id}", id)),
        back: params
            .get("back")
            .filter(|b| b.starts_with("/events"))
            .unwrap_or("/events")
            .to_owned(),
        whereabouts,
        subscribers,
        layout,
    };
    Ok(respond(format, &page, &page))
}

/// `POST /events/{uuid}/replay` (form: `subscriber`, `token`): the event again to one
/// subscriber. A dead-lettered event is replayed from its dead letter (which is then deleted),
/// as `hookrelayctl dead-letters replay` does; any other is replayed from the stored event.
pub async fn replay(
    State(state): State<AppState>,
    Operator(session): Operator,
    format: Format,
    Path(uuid): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Failure> {
    let form = Params::parse(&body);
    let broker = |e: anyhow::Error| Failure::broker(format, &e);
    let subscriber = form.get("subscriber").ok_or_else(|| {
        Failure::bad_request(format, "say which subscriber: the form field `subscriber`")
    })?;
    let token = form.get("token").unwrap_or("once");
    let sub = (state.settings.worker.subscribers.iter())
        .find(|s| s.name == subscriber)
        .ok_or_else(|| {
            Failure::bad_request(
                format,
                format!("no subscriber {subscriber:?} in the configuration"),
            )
        })?;
    let first = first_storing(&state, &uuid)
        .await
        .map_err(broker)?
        .map(|(copy, _)| copy);
    let Some(first) = first else {
        return Err(Failure::not_found(
            format,
            format!("Event {uuid} is not stored."),
        ));
    };
    let event_type = hookrelay::subject::event_type_of(&first.subject).unwrap_or_default();
    if !sub.event_types.iter().any(|t| t == event_type) {
        return Err(Failure::bad_request(
            format,
            format!("{subscriber} does not take {event_type} events"),
        ));
    }
    let letters: Vec<_> = (state
        .letters
        .of_event(state.index.hash(&uuid), &uuid)
        .into_iter())
    .filter(|l| l.subscriber == subscriber)
    .collect();
    if let Some(letter) = letters.last() {
        let replayed = dead_letters::replay(
            &state.js,
            &state.settings,
            std::slice::from_ref(letter),
            false,
            |_, _| {},
        )
        .await
        .map_err(broker)?;
        if let Some((_, why)) = replayed.skipped.first() {
            return Err(Failure::bad_request(
                format,
                format!("Not replayed: {why}."),
            ));
        }
        state.letters.forget(&[letter.sequence]);
    } else {
        dead_letters::replay_event(
            &state.js,
            &state.settings,
            first.sequence,
            subscriber,
            token,
        )
        .await
        .map_err(|e| Failure::bad_request(format, format!("Not replayed: {e:#}.")))?;
    }
    state.metrics.acted("replay", 1);
    tracing::info!(user = %session.user, %uuid, subscriber, "replayed an event");
    let to = link(&format!("/events/{uuid}"), &[("replayed", subscriber)]);
    Ok(done(
        format,
        &to,
        &serde_json::json!({"replayed": 1, "subscriber": subscriber}),
    )
    .into_response())
}
