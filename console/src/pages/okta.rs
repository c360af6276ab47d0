//! `GET /okta`: what Okta says of the org's event hooks (status, verification, URL, event
//! types; through the Management API when access is configured, asked at most every 30 s), the
//! System Log reader's cursor and how far behind it is, the events it recovered in the last
//! 24 h, and the failed hook deliveries Okta recorded (which the reader keeps).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use hookrelay::Settings;
use hookrelay::okta::HookFailure;
use hookrelay::okta::hooks::EventHooks;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Viewer;
use crate::page::{Failure, Format, Layout, respond};
use crate::pages::{ago, shown_time};

/// How long Okta's answer is reused: its Management API has rate limits of its own.
const HOOKS_FRESH_FOR: Duration = Duration::from_secs(30);

/// One event hook, as Okta reports it (never its secret: Okta does not return it).
#[derive(Debug, Clone, Serialize)]
pub struct HookView {
    pub id: String,
    pub name: String,
    pub status: String,
    pub verification_status: String,
    pub uri: String,
    pub event_types: Vec<String>,
}

/// What Okta answered to a list of the hooks, or why it did not.
type HooksAnswer = Result<Vec<HookView>, String>;

/// The Management API client, if access is configured, and its last answer.
pub struct OktaView {
    hooks: Option<EventHooks>,
    /// Why there is no client, when access is configured but wrong.
    unusable: Option<String>,
    last: Mutex<Option<(Instant, HooksAnswer)>>,
}

impl OktaView {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let okta = &settings.okta;
        if !okta.is_configured() {
            return Ok(OktaView {
                hooks: None,
                unusable: None,
                last: Mutex::new(None),
            });
        }
        let (hooks, unusable) = match okta
            .access()
            .map_err(|e| e.to_string())
            .and_then(|access| EventHooks::new(&access).map_err(|e| e.to_string()))
        {
            Ok(hooks) => (Some(hooks), None),
            Err(why) => (None, Some(why)),
        };
        Ok(OktaView {
            hooks,
            unusable,
            last: Mutex::new(None),
        })
    }

    /// The hooks, from Okta or from its answer of the last 30 s.
    async fn hooks(&self) -> Option<HooksAnswer> {
        let Some(client) = &self.hooks else {
            return self.unusable.clone().map(Err);
        };
        if let Some((at, answer)) = &*self.last.lock().expect("not poisoned")
            && at.elapsed() < HOOKS_FRESH_FOR
        {
            return Some(answer.clone());
        }
        let answer = client
            .list()
            .await
            .map(|hooks| {
                hooks
                    .into_iter()
                    .map(|h| HookView {
                        id: h.id,
                        name: h.name,
                        status: h.status,
                        verification_status: h.verification_status,
                        uri: h.channel.config.uri,
                        event_types: h.events.items,
                    })
                    .collect()
            })
            .map_err(|e| e.to_string());
        *self.last.lock().expect("not poisoned") = Some((Instant::now(), answer.clone()));
        Some(answer)
    }
}

/// The reader's cursor, as it saves it (`reconciler::state::Cursor`).
#[derive(Debug, Deserialize)]
struct Cursor {
    newest_published: Option<String>,
    saved_at: String,
}

/// The System Log reader, as the page shows it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Reader {
    /// Whether a reader holds the lease now (one polls, others stand by).
    pub polling: bool,
    /// The newest event it has read (`published`), or when it saved its cursor.
    pub read_up_to: Option<String>,
    /// How far behind now that is, in seconds.
    pub behind_seconds: Option<u64>,
    #[serde(skip)]
    pub behind: String,
    pub saved_at: Option<String>,
    pub recovered_24h: u64,
    pub hook_failures: Vec<HookFailure>,
}

async fn reader(state: &AppState) -> Reader {
    let bucket = &state.settings.reconciler.bucket;
    let mut reader = Reader {
        recovered_24h: state.index.count_since(
            hookrelay::subject::source::SYSTEM_LOG,
            SystemTime::now() - Duration::from_secs(24 * 3600),
        ),
        ..Reader::default()
    };
    if let Ok(store) = state.js.get_key_value(bucket).await {
        if let Ok(Some(value)) = store.get("cursor").await
            && let Ok(cursor) = serde_json::from_slice::<Cursor>(&value)
        {
            let up_to = cursor
                .newest_published
                .clone()
                .unwrap_or(cursor.saved_at.clone());
            if let Ok(at) = humantime::parse_rfc3339_weak(&up_to) {
                let behind = SystemTime::now().duration_since(at).unwrap_or_default();
                reader.behind_seconds = Some(behind.as_secs());
                reader.behind = ago(at);
                reader.read_up_to = Some(shown_time(at));
            }
            reader.saved_at = Some(cursor.saved_at);
        }
        if let Ok(Some(value)) = store.get(hookrelay::okta::HOOK_FAILURES_KEY).await {
            reader.hook_failures = serde_json::from_slice(&value).unwrap_or_default();
        }
    }
    if let Ok(leases) = state.js.get_key_value(format!("{bucket}_lease")).await {
        reader.polling = matches!(leases.get("lease").await, Ok(Some(_)));
    }
    reader
}

#[derive(Template, Serialize)]
#[template(path = "okta.html")]
pub struct OktaPage {
    #[serde(skip)]
    layout: Layout,
    /// Whether Okta API access is configured.
    configured: bool,
    hooks: Option<Vec<HookView>>,
    /// Why the hooks could not be read.
    hooks_error: Option<String>,
    reader: Reader,
    /// The event types the reader reads.
    reconciled: Vec<String>,
    /// The path Okta's hook must call on the receiver.
    receiver_path: String,
}

/// `GET /okta`.
pub async fn show(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    format: Format,
) -> Result<Response, Failure> {
    let (hooks, hooks_error) = match state.okta.hooks().await {
        Some(Ok(hooks)) => (Some(hooks), None),
        Some(Err(why)) => (None, Some(why)),
        None => (None, None),
    };
    let page = OktaPage {
        layout: Layout::new(&session, "okta"),
        configured: state.settings.okta.is_configured(),
        hooks,
        hooks_error,
        reader: reader(&state).await,
        reconciled: state.settings.reconciled_event_types(),
        receiver_path: state.settings.receiver.path.clone(),
    };
    Ok(respond(format, &page, &page))
}
