//! The pages, a module each: their handlers are thin, and read and act through `hookrelay`'s
//! `stored`, `dead_letters`, `attempts`, `pause` and `subscribers`, as `hookrelayctl` does.

pub mod dead_letters;
pub mod event;
pub mod events;
pub mod json;
pub mod okta;
pub mod subscribers;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use crate::AppState;
use crate::page::{Failure, Format};

/// `GET /`: the events.
pub async fn home() -> Redirect {
    Redirect::to("/events")
}

/// Any other path: sign in first, then it is not found.
pub async fn not_found(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    if state.sessions.find(&headers).await.is_none() {
        return crate::auth::not_signed_in(&headers, &uri);
    }
    Failure::not_found(Format::of(&headers), "There is no such page.").into_response()
}

/// A time as pages show it: `2026-12-04 16:20:58 UTC`.
pub fn shown_time(time: std::time::SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(time).to_string();
    format!("{} UTC", text.trim_end_matches('Z').replace('T', " "))
}

/// How long ago `time` was, roughly: `5 s`, `3 min`, `2 h`, `4 d`.
pub fn ago(time: std::time::SystemTime) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(time)
        .map_or(0, |d| d.as_secs());
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86400),
    }
}

/// Parses a time a filter was given: RFC 3339, a browser's `datetime-local`
/// (`2026-12-04T10:00`, read as UTC), or a time ago (`36h`, `7d`).
pub fn parse_time(text: &str) -> Option<std::time::SystemTime> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return std::time::SystemTime::now().checked_sub(ago);
    }
    let text = if text.len() == 16 {
        format!("{text}:00")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339_weak(&text).ok()
}

/// `1 event`, `2 events`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    hookrelay::count(n as u64, one, many)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_times_are_rfc_3339_a_browsers_local_time_or_a_time_ago() {
        let at = parse_time("2026-12-04T10:00").expect("datetime-local");
        assert_eq!(shown_time(at), "2026-12-04 10:00:00 UTC");
        assert_eq!(parse_time("2026-12-04T10:00:00Z"), Some(at));
        let day_ago = parse_time("24h").expect("a time ago");
        assert!(ago(day_ago).starts_with("1 d") || ago(day_ago).starts_with("24 h"));
        assert_eq!(parse_time("soon"), None);
    }
}
