//! `GET /subscribers`: each subscriber's event types, action and destination (origin only),
//! whether it runs or is paused (by whom, since when), what waits for it, what it works on, its
//! redeliveries and dead letters, its last success and last failure, and its last hour as a
//! sparkline. `POST /subscribers/{name}/pause` and `/resume` (an operator's): every worker
//! running it stops starting its events within a second, or drains what waited.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use hookrelay::subscribers::{self, Overview};
use serde::Serialize;

use crate::AppState;
use crate::activity::{MINUTES, Recent};
use crate::auth::{Operator, Viewer};
use crate::page::{Failure, Format, Layout, Params, done, respond};

/// One subscriber, as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberView {
    #[serde(flatten)]
    pub overview: Overview,
    #[serde(flatten)]
    pub recent: Recent,
    /// The sparkline's points: successes, then failures (an SVG polyline's `points`).
    #[serde(skip)]
    pub spark: (String, String),
    #[serde(skip)]
    pub handled: u32,
}

/// Width and height of a sparkline, in SVG units.
const SPARK: (usize, u32) = (2 * MINUTES, 24);

/// The `points` of a polyline of `values`, scaled to the sparkline's height by `max`.
fn points(values: impl Iterator<Item = u32>, max: u32) -> String {
    let (width, height) = SPARK;
    let step = width / MINUTES;
    values
        .enumerate()
        .map(|(i, v)| {
            let y = f64::from(height)
                - f64::from(v) * f64::from(height - 2) / f64::from(max.max(1))
                - 1.0;
            format!("{},{y:.1}", i * step)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Template, Serialize)]
#[template(path = "subscribers.html")]
pub struct SubscribersPage {
    #[serde(skip)]
    layout: Layout,
    subscribers: Vec<SubscriberView>,
}

/// `GET /subscribers`.
pub async fn list(
    State(state): State<AppState>,
    Viewer(session): Viewer,
    format: Format,
    params: Params,
) -> Result<Response, Failure> {
    let all = subscribers::overview(
        &state.events,
        &state.dlq,
        Some(&state.pauses),
        &state.settings,
    )
    .await
    .map_err(|e| Failure::broker(format, &e))?;
    let subscribers = all
        .into_iter()
        .map(|overview| {
            let recent = state.activity.recent(&overview.name);
            let max = recent
                .per_minute
                .iter()
                .map(|(ok, failed)| *ok.max(failed))
                .max()
                .unwrap_or(0);
            let spark = (
                points(recent.per_minute.iter().map(|m| m.0), max),
                points(recent.per_minute.iter().map(|m| m.1), max),
            );
            let handled = recent.per_minute.iter().map(|m| m.0 + m.1).sum();
            SubscriberView {
                overview,
                recent,
                spark,
                handled,
            }
        })
        .collect();
    let mut layout = Layout::new(&session, "subscribers");
    layout.flash = match (params.get("paused"), params.get("resumed")) {
        (Some(name), _) => Some(format!(
            "Paused {name}: its workers start none of its events now; they wait until you resume it."
        )),
        (_, Some(name)) => Some(format!("Resumed {name}: its workers drain what waited.")),
        _ => None,
    };
    let page = SubscribersPage {
        layout,
        subscribers,
    };
    Ok(respond(format, &page, &page))
}

async fn set(
    state: &AppState,
    user: &str,
    format: Format,
    name: &str,
    paused: bool,
) -> Result<Response, Failure> {
    let by = format!("{user} (console)");
    let set = subscribers::set_paused(&state.js, &state.settings, name, paused, &by).await;
    let state_now = set.map_err(|e| {
        if state
            .settings
            .worker
            .subscribers
            .iter()
            .any(|s| s.name == name)
        {
            Failure::broker(format, &e)
        } else {
            Failure::not_found(format, format!("There is no subscriber {name:?}."))
        }
    })?;
    let action = if paused { "pause" } else { "resume" };
    state.metrics.acted(action, 1);
    tracing::info!(user, subscriber = name, action, "subscriber {action}d");
    let to = crate::page::link(
        "/subscribers",
        &[(if paused { "paused" } else { "resumed" }, name)],
    );
    Ok(done(
        format,
        &to,
        &serde_json::json!({"subscriber": name, "state": state_now}),
    ))
}

/// `POST /subscribers/{name}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    Operator(session): Operator,
    format: Format,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    set(&state, &session.user, format, &name, true).await
}

/// `POST /subscribers/{name}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    Operator(session): Operator,
    format: Format,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    set(&state, &session.user, format, &name, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_spans_its_box() {
        let line = points([0, 5, 10].into_iter(), 10);
        assert_eq!(line, "0,23.0 2,12.0 4,1.0");
    }
}
