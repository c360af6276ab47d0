//! What every answer carries, and what no page accepts.
//!
//! - Headers: a Content-Security-Policy that allows the console's own scripts and styles only
//!   (no inline script, no `eval`), `frame-ancestors 'none'`, `X-Content-Type-Options:
//!   nosniff`, `Referrer-Policy: same-origin`, and `Cache-Control: no-store` on pages (assets
//!   set their own).
//! - Cross-site requests: a request that changes anything (any method but GET, HEAD and
//!   OPTIONS) is refused with 403 when the browser says it comes from another site
//!   (`Sec-Fetch-Site`) or its `Origin` is not this host, as Go's
//!   `net/http.CrossOriginProtection` does. Together with the `SameSite=Lax` session cookie, a
//!   page elsewhere cannot make a signed-in operator replay or pause anything.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::page::{Failure, Format};

/// The policy: the console's own files only; images also from `data:` (none yet, but an SVG
/// sparkline may be one).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    base-uri 'none'; frame-ancestors 'none'";

/// Sets the security headers on every answer.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Whether a request that changes something comes from another site. `own` is the console's
/// own origin (`console.url`): behind a proxy the `Host` the console sees may not be the one
/// the browser used.
pub fn is_cross_site(method: &Method, headers: &axum::http::HeaderMap, own: &str) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        // Not from a browser that says where it comes from: a script, or an old browser's
        // same-origin form (the session cookie's SameSite holds for the rest).
        return false;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    origin == "null" || (origin != own && origin_host != host)
}

/// Refuses cross-site requests that change something.
pub async fn refuse_cross_site(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let own = state
        .settings
        .console
        .base_url()
        .origin()
        .ascii_serialization();
    if is_cross_site(request.method(), request.headers(), &own) {
        return Failure::new(
            Format::of(request.headers()),
            StatusCode::FORBIDDEN,
            "cross_site",
            "This request came from another site, and is refused.",
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, pairs: &[(&str, &str)]) -> bool {
        let mut headers = axum::http::HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("a name"),
                value.parse().expect("a value"),
            );
        }
        is_cross_site(&method, &headers, "https://hookrelay.example.com")
    }

    #[test]
    fn cross_site_requests_are_told_from_same_site_ones() {
        let host = ("host", "console.example.com");
        assert!(
            !request(Method::GET, &[("sec-fetch-site", "cross-site")]),
            "reads are fine"
        );
        assert!(!request(Method::POST, &[("sec-fetch-site", "same-origin")]));
        assert!(
            !request(Method::POST, &[("sec-fetch-site", "none")]),
            "typed in, a bookmark"
        );
        assert!(request(Method::POST, &[("sec-fetch-site", "cross-site")]));
        assert!(
            request(Method::POST, &[("sec-fetch-site", "same-site")]),
            "a sibling subdomain"
        );
        assert!(!request(
            Method::POST,
            &[host, ("origin", "https://console.example.com")]
        ));
        assert!(request(
            Method::POST,
            &[host, ("origin", "https://evil.example")]
        ));
        assert!(request(Method::POST, &[host, ("origin", "null")]));
        assert!(
            !request(Method::POST, &[host]),
            "no Origin: not a browser's cross-site request"
        );
        assert!(
            request(
                Method::POST,
                &[
                    host,
                    ("origin", "https://console.example.com"),
                    ("sec-fetch-site", "cross-site")
                ]
            ),
            "Sec-Fetch-Site wins"
        );
    }
}
