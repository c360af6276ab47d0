//! Every page answers in HTML, or in JSON when asked with `Accept: application/json` (scripts
//! get the same data as people). Failures answer the same way: an HTML page that says what went
//! wrong, or `{"error": "<code>", "message": "…"}`.

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use hookrelay::config::Role;
use serde::Serialize;

use crate::assets::{ASSETS, Assets};
use crate::auth::session::Session;

/// How a request wants its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

impl Format {
    pub fn of(headers: &axum::http::HeaderMap) -> Format {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if accept.contains("application/json") && !accept.contains("text/html") {
            Format::Json
        } else {
            Format::Html
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Format {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Format::of(&parts.headers))
    }
}

/// What every page's frame shows: the navigation and who is signed in.
#[derive(Debug, Clone)]
pub struct Layout {
    pub user: String,
    pub role: Role,
    /// The navigation entry of this page.
    pub nav: &'static str,
    /// A line saying what the last action did ("Replayed 3 dead letters to crm").
    pub flash: Option<String>,
    pub assets: &'static Assets,
}

impl Layout {
    pub fn new(session: &Session, nav: &'static str) -> Self {
        Layout {
            user: session.user.clone(),
            role: session.role,
            nav,
            flash: None,
            assets: &ASSETS,
        }
    }

    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// The class of a navigation link: `current` for this page's.
    pub fn nav_class(&self, entry: &str) -> &'static str {
        if entry == self.nav { "current" } else { "" }
    }
}

/// `page` as HTML, or `data` as JSON.
pub fn respond<T: Template, D: Serialize>(format: Format, page: &T, data: &D) -> Response {
    match format {
        Format::Json => axum::Json(data).into_response(),
        Format::Html => match page.render() {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "a page did not render");
                Failure::new(
                    format,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "The page could not be shown.",
                )
                .into_response()
            }
        },
    }
}

/// After an action: back to `to` (303) for a person, or `data` as JSON for a script.
pub fn done<D: Serialize>(format: Format, to: &str, data: &D) -> Response {
    match format {
        Format::Json => axum::Json(data).into_response(),
        Format::Html => Redirect::to(to).into_response(),
    }
}

/// A request that could not be answered as asked.
#[derive(Debug)]
pub struct Failure {
    pub format: Format,
    pub status: StatusCode,
    /// A short machine-readable code: `not_found`, `forbidden`, `bad_request`, …
    pub code: &'static str,
    /// What to tell the person; never an internal cause (those are logged).
    pub message: String,
}

impl Failure {
    pub fn new(
        format: Format,
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Failure {
            format,
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(format: Format, message: impl Into<String>) -> Self {
        Self::new(format, StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(format: Format, message: impl Into<String>) -> Self {
        Self::new(format, StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The broker failed: logged with its cause, answered without it.
    pub fn broker(format: Format, error: &anyhow::Error) -> Self {
        tracing::warn!(error = %format!("{error:#}"), "a console request failed");
        Self::new(
            format,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "NATS did not answer as it should; try again in a moment (the console's log says why).",
        )
    }
}

#[derive(Template)]
#[template(path = "failure.html")]
struct FailurePage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
    assets: &'static Assets,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self.format {
            Format::Json => (
                self.status,
                axum::Json(serde_json::json!({"error": self.code, "message": self.message})),
            )
                .into_response(),
            Format::Html => {
                let page = FailurePage {
                    status: self.status.as_u16(),
                    title: self.status.canonical_reason().unwrap_or("Error"),
                    message: &self.message,
                    assets: &ASSETS,
                };
                let html = page.render().unwrap_or_else(|_| self.message.clone());
                (self.status, Html(html)).into_response()
            }
        }
    }
}

/// A query string or a form, with repeated fields (`uuid=a&uuid=b`) kept.
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(text: &[u8]) -> Self {
        Params(form_urlencoded::parse(text).into_owned().collect())
    }

    /// The first value of `name`, if not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        (self.0.iter())
            .find(|(n, v)| n == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }

    /// Every non-empty value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        (self.0.iter())
            .filter(|(n, v)| n == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    /// The query string's parameters.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(
            parts.uri.query().unwrap_or_default().as_bytes(),
        ))
    }
}

/// A link to `path` with these query parameters (empty ones left out).
pub fn link(path: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(name, value);
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_what_asks_for_json_and_not_for_html() {
        let of = |accept: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(header::ACCEPT, accept.parse().expect("a value"));
            Format::of(&headers)
        };
        assert_eq!(of("application/json"), Format::Json);
        assert_eq!(
            of("text/html,application/xhtml+xml,*/*;q=0.8"),
            Format::Html
        );
        assert_eq!(of("*/*"), Format::Html);
    }

    #[test]
    fn repeated_fields_are_kept_and_links_escape_their_values() {
        let params = Params::parse(b"uuid=a&uuid=b&subscriber=crm&reason=&all=1");
        assert_eq!(params.all("uuid"), ["a", "b"]);
        assert_eq!(params.get("reason"), None);
        assert_eq!(params.get("subscriber"), Some("crm"));
        assert_eq!(
            link("/events", &[("q", "a&b=c"), ("type", "")]),
            "/events?q=a%26b%3Dc"
        );
        assert_eq!(link("/events", &[]), "/events");
    }
}
