//! `GET /dead-letters[?subscriber=&reason=]`: what subscribers gave up on, newest first, 50 a
//! page. `GET /dead-letters/replay` and `/discard` preview what an action will do ("will
//! replay N dead letters to S"); `POST` does it (form fields `subscriber`, then repeated `uuid`
//! or `all=1` with the filters, and `confirm=N`, the count the preview showed): at most N go,
//! through `hookrelay::dead_letters`, as `hookrelayctl dead-letters replay` does, and the page
//! says how many went (or JSON `{"replayed": N}`).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use hookrelay::dead_letters::{self, DeadLetter, Filter};
use serde::Serialize;

use crate::AppState;
use crate::auth::{Operator, Viewer};
use crate::page::{Failure, Format, Layout, Params, done, link, respond};
use crate::pages::{ago, shown_time};

const PAGE: usize = 50;
/// Dead letters a preview lists (it counts them all).
const PREVIEWED: usize = 20;

/// One dead letter, as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LetterView {
    #[serde(flatten)]
    pub letter: DeadLetter,
    #[serde(skip)]
    pub stored_shown: String,
    #[serde(skip)]
    pub ago: String,
}

impl LetterView {
    fn of(letter: DeadLetter) -> Self {
        LetterView {
            stored_shown: shown_time(letter.stored),
            ago: ago(letter.stored),
            letter,
        }
    }

    pub fn uuid(&self) -> &str {
        self.letter.uuid.as_deref().unwrap_or("")
    }

    pub fn event_type(&self) -> &str {
        self.letter.event_type.as_deref().unwrap_or("")
    }

    pub fn deliveries(&self) -> String {
        self.letter.deliveries.map_or("–".into(), |n| n.to_string())
    }
}

/// The filter of a request: `subscriber` and `reason`.
fn filter_of(params: &Params) -> Filter {
    Filter {
        subscribers: params
            .get("subscriber")
            .map(str::to_owned)
            .into_iter()
            .collect(),
        reason: params.get("reason").map(str::to_owned),
        ..Filter::default()
    }
}

#[derive(Template, Serialize)]
#[template(path = "dead_letters.html")]
pub struct DeadLettersPage {
    #[serde(skip)]
    layout: Layout,
    letters: Vec<LetterView>,
    /// How many match the filter in all.
    total: usize,
    #[serde(skip)]
    subscriber: String,
    #[serde(skip)]
    reason: String,
    /// Each subscriber with dead letters, and how many.
    #[serde(skip)]
    subscribers: Vec<(String, u64)>,
    /// The reasons, with how many have each.
    #[serde(skip)]
    reasons: Vec<(String, usize)>,
    next: Option<String>,
}

impl DeadLettersPage {
    /// The preview links of "all that match", when a subscriber is chosen.
    pub fn all_link(&self, action: &str) -> String {
        link(
            &format!("/dead-letters/{action}"),
            &[
                ("subscriber", &self.subscriber),
                ("reason", &self.reason),
                ("all", "1"),
            ],
        )
    }
}

/// `GET /dead-letters`.
pub async fn list(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    format: Format,
    params: Params,
) -> Result<Response, Failure> {
    let filter = filter_of(&params);
    let before = params.get("before").and_then(|b| b.parse().ok());
    let (letters, total) = state.letters.page(&filter, before, PAGE + 1);
    let more = letters.len() > PAGE;
    let letters: Vec<LetterView> = letters.into_iter().take(PAGE).map(LetterView::of).collect();
    let subscriber = params.get("subscriber").unwrap_or_default().to_owned();
    let reason = params.get("reason").unwrap_or_default().to_owned();
    let next = more.then(|| {
        let last = letters.last().map_or(0, |l| l.letter.sequence).to_string();
        link(
            "/dead-letters",
            &[
                ("subscriber", &subscriber),
                ("reason", &reason),
                ("before", &last),
            ],
        )
    });
    let mut subscribers: Vec<(String, u64)> = state.letters.counts().into_iter().collect();
    subscribers.sort();
    let mut layout = Layout::new(&session, "dead-letters");
    layout.flash = flash(&params);
    let page = DeadLettersPage {
        reasons: state.letters.reasons(params.get("subscriber")),
        layout,
        letters,
        total,
        subscriber,
        reason,
        subscribers,
        next,
    };
    Ok(respond(format, &page, &page))
}

/// What the last action did, from the query string it redirected to.
fn flash(params: &Params) -> Option<String> {
    let to = params.get("subscriber").unwrap_or("its subscriber");
    let skipped = params
        .get("skipped")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let skipped = match skipped {
        0 => String::new(),
        n => format!(
            " {} left in place (the console's log says why).",
            crate::pages::count(n, "was", "were")
        ),
    };
    if let Some(n) = params.get("replayed").and_then(|n| n.parse::<usize>().ok()) {
        Some(format!(
            "Replayed {} to {to}.{skipped}",
            crate::pages::count(n, "dead letter", "dead letters")
        ))
    } else {
        params
            .get("discarded")
            .and_then(|n| n.parse::<usize>().ok())
            .map(|n| {
                format!(
                    "Discarded {}.",
                    crate::pages::count(n, "dead letter", "dead letters")
                )
            })
    }
}

/// Which action a request is for, from its path.
fn action_of(uri: &axum::http::Uri) -> &'static str {
    if uri.path().ends_with("/discard") {
        "discard"
    } else {
        "replay"
    }
}

/// The dead letters an action applies to, oldest first: the subscriber's (required), and
/// either those of the given uuids or (`all=1`) all that match the reason.
fn chosen(
    state: &AppState,
    params: &Params,
    format: Format,
) -> Result<(String, Vec<DeadLetter>), Failure> {
    let subscriber = params.get("subscriber").ok_or_else(|| {
        Failure::bad_request(format, "say whose dead letters: the field `subscriber`")
    })?;
    let uuids = params.all("uuid");
    let all = params.get("all") == Some("1");
    if uuids.is_empty() && !all {
        return Err(Failure::bad_request(
            format,
            "say which dead letters: `uuid` (repeatable) or `all=1`",
        ));
    }
    let filter = Filter {
        subscribers: vec![subscriber.to_owned()],
        uuids,
        reason: params.get("reason").map(str::to_owned),
        ..Filter::default()
    };
    Ok((subscriber.to_owned(), state.letters.matching(&filter)))
}

#[derive(Template, Serialize)]
#[template(path = "preview.html")]
pub struct Preview {
    #[serde(skip)]
    layout: Layout,
    action: &'static str,
    subscriber: String,
    count: usize,
    letters: Vec<LetterView>,
    /// The form's hidden fields: what was chosen.
    #[serde(skip)]
    fields: Vec<(String, String)>,
}

/// `GET /dead-letters/replay` or `/discard`: what the action would do.
pub async fn preview(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    format: Format,
    uri: axum::http::Uri,
    params: Params,
) -> Result<Response, Failure> {
    let (subscriber, letters) = chosen(&state, &params, format)?;
    let mut fields: Vec<(String, String)> = vec![("subscriber".into(), subscriber.clone())];
    if params.get("all") == Some("1") {
        fields.push(("all".into(), "1".into()));
        if let Some(reason) = params.get("reason") {
            fields.push(("reason".into(), reason.into()));
        }
    } else {
        fields.extend(
            params
                .all("uuid")
                .into_iter()
                .map(|u| ("uuid".to_owned(), u)),
        );
    }
    let page = Preview {
        layout: Layout::new(&session, "dead-letters"),
        action: action_of(&uri),
        count: letters.len(),
        letters: letters
            .into_iter()
            .rev()
            .take(PREVIEWED)
            .map(LetterView::of)
            .collect(),
        subscriber,
        fields,
    };
    Ok(respond(format, &page, &page))
}

/// The subscriber and the dead letters an action's form chose, at most the `confirm=N` it
/// must carry.
fn confirmed(
    state: &AppState,
    body: &[u8],
    format: Format,
) -> Result<(String, Vec<DeadLetter>), Failure> {
    let form = Params::parse(body);
    let confirm = form
        .get("confirm")
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| {
            Failure::bad_request(
                format,
                "say how many you saw in the preview: `confirm=N` (GET the same URL for the preview)",
            )
        })?;
    let (subscriber, mut letters) = chosen(state, &form, format)?;
    letters.truncate(confirm);
    Ok((subscriber, letters))
}

/// `POST /dead-letters/replay`: at most `confirm` of the chosen dead letters go back to their
/// subscriber.
pub async fn replay(
    State(state): State<AppState>,
    Operator(session): Operator,
    format: Format,
    body: axum::body::Bytes,
) -> Result<Response, Failure> {
    let (subscriber, letters) = confirmed(&state, &body, format)?;
    let replayed = dead_letters::replay(&state.js, &state.settings, &letters, false, |_, _| {})
        .await
        .map_err(|e| Failure::broker(format, &e))?;
    let gone: Vec<u64> = (letters.iter())
        .map(|l| l.sequence)
        .filter(|s| !replayed.skipped.iter().any(|(k, _)| k == s))
        .collect();
    state.letters.forget(&gone);
    for (sequence, why) in &replayed.skipped {
        tracing::warn!(sequence, why, "dead letter left in place");
    }
    state.metrics.acted("replay", replayed.replayed as u64);
    tracing::info!(user = %session.user, subscriber, replayed = replayed.replayed, "replayed dead letters");
    let to = link(
        "/dead-letters",
        &[
            ("subscriber", &subscriber),
            ("replayed", &replayed.replayed.to_string()),
            ("skipped", &replayed.skipped.len().to_string()),
        ],
    );
    Ok(done(
        format,
        &to,
        &serde_json::json!({"replayed": replayed.replayed, "skipped": replayed.skipped}),
    ))
}

/// `POST /dead-letters/discard`: at most `confirm` of the chosen dead letters are deleted.
pub async fn discard(
    State(state): State<AppState>,
    Operator(session): Operator,
    format: Format,
    body: axum::body::Bytes,
) -> Result<Response, Failure> {
    let (subscriber, letters) = confirmed(&state, &body, format)?;
    let discarded = dead_letters::discard(&state.dlq, &letters)
        .await
        .map_err(|e| Failure::broker(format, &e))?;
    state
        .letters
        .forget(&letters.iter().map(|l| l.sequence).collect::<Vec<_>>());
    state.metrics.acted("discard", discarded as u64);
    tracing::info!(user = %session.user, subscriber, discarded, "discarded dead letters");
    let to = link(
        "/dead-letters",
        &[
            ("subscriber", &subscriber),
            ("discarded", &discarded.to_string()),
        ],
    );
    Ok(done(
        format,
        &to,
        &serde_json::json!({"discarded": discarded}),
    ))
}
