//! Who may see and do what. Every page but `/login`, the assets and health needs a session
//! ([`require_session`], on the router's signed-in routes); a handler that reads takes a
//! [`Viewer`], one that changes something an [`Operator`], so it cannot forget to check. People
//! sign in with a password ([`password`]) or with Okta ([`oidc`]); [`session`] keeps them signed in.

pub mod oidc;
pub mod password;
pub mod session;

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use hookrelay::config::Role;

use crate::AppState;
use crate::assets::{ASSETS, Assets};
use crate::page::{Failure, Format, Params, link};
use session::Session;

/// Someone signed in: anyone may read.
pub struct Viewer(pub Session);

/// Someone signed in as an operator: may replay, discard and pause.
pub struct Operator(pub Session);

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Session>() {
            Some(session) => Ok(Viewer(session.clone())),
            // Only on a route without `require_session`: refuse rather than serve.
            None => Err(Failure::new(
                Format::of(&parts.headers),
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Sign in first.",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Viewer(session) = Viewer::from_request_parts(parts, state).await?;
        if session.role != Role::Operator {
            return Err(Failure::new(
                Format::of(&parts.headers),
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{} is a viewer: replaying, discarding and pausing need an operator.",
                    session.user
                ),
            ));
        }
        Ok(Operator(session))
    }
}

/// Lets a request through only with a live session, which handlers then find in its
/// extensions. Without one: a page is sent to `/login` (and back after), a script gets 401.
pub async fn require_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match state.sessions.find(request.headers()).await {
        Some((_, session)) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        None => not_signed_in(request.headers(), request.uri()),
    }
}

/// The answer to a request without a session.
pub fn not_signed_in(headers: &HeaderMap, uri: &axum::http::Uri) -> Response {
    match Format::of(headers) {
        Format::Json => Failure::new(
            Format::Json,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Sign in first: POST /login with username and password, and send the cookie it sets.",
        )
        .into_response(),
        Format::Html => {
            let next = uri.path_and_query().map_or("/events", |p| p.as_str());
            Redirect::to(&link("/login", &[("next", next)])).into_response()
        }
    }
}

/// Where to go after signing in: a path of the console, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && !next.starts_with("/login") =>
        {
            next.to_owned()
        }
        _ => "/events".to_owned(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    error: Option<String>,
    okta: bool,
    passwords: bool,
    first_sign_in: bool,
    assets: &'static Assets,
}

impl LoginPage {
    fn new(state: &AppState, next: String, error: Option<String>) -> Self {
        LoginPage {
            next,
            error,
            okta: state.oidc.is_some(),
            passwords: !state.settings.console.users.is_empty()
                || state.passwords.is_first_sign_in(),
            first_sign_in: state.passwords.is_first_sign_in(),
            assets: &ASSETS,
        }
    }

    fn answer(self, status: StatusCode) -> Response {
        match self.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "the sign-in page did not render");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// `GET /login`: the sign-in page (or straight on, when signed in already).
pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let next = safe_next(params.get("next"));
    if state.sessions.find(&headers).await.is_some() {
        return Redirect::to(&next).into_response();
    }
    let error = params.get("error").map(|e| match e {
        "signed_out" => "You are signed out.".to_owned(),
        other => other.chars().take(300).collect(),
    });
    LoginPage::new(&state, next, error).answer(StatusCode::OK)
}

/// The client a sign-in comes from: behind a proxy, the last address of the header it adds
/// (`console.client_ip_header`); else the connection's.
fn client_of(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> std::net::IpAddr {
    let header = &state.settings.console.client_ip_header;
    (!header.is_empty())
        .then(|| {
            let values = headers
                .get_all(header.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok());
            let last = values.flat_map(|v| v.split(',')).last()?;
            last.trim().parse().ok()
        })
        .flatten()
        .unwrap_or(peer.ip())
}

/// `POST /login` (form fields `username`, `password`, `next`): a session, or one generic
/// refusal; a client that keeps failing waits (429 with `Retry-After`).
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let format = Format::of(&headers);
    let form = Params::parse(&body);
    let next = safe_next(form.get("next"));
    let client = client_of(&state, &headers, peer);
    if let Err(wait) = state.passwords.may_try(client) {
        state.metrics.sign_in("password", "throttled");
        let seconds = wait.as_secs().max(1);
        let message = format!("Too many failed sign-ins from here: try again in {seconds} s.");
        let mut response = match format {
            Format::Json => {
                Failure::new(format, StatusCode::TOO_MANY_REQUESTS, "throttled", message)
                    .into_response()
            }
            Format::Html => {
                LoginPage::new(&state, next, Some(message)).answer(StatusCode::TOO_MANY_REQUESTS)
            }
        };
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    let (name, password) = (
        form.get("username").unwrap_or_default(),
        form.get("password").unwrap_or_default(),
    );
    let Some((user, role)) = state.passwords.check(name, password).await else {
        state.passwords.failed(client);
        state.metrics.sign_in("password", "refused");
        tracing::info!(client = %client, "a sign-in with a password was refused");
        let message = "The name or the password is not right.";
        return match format {
            Format::Json => {
                Failure::new(format, StatusCode::UNAUTHORIZED, "unauthenticated", message)
                    .into_response()
            }
            Format::Html => {
                LoginPage::new(&state, next, Some(message.into())).answer(StatusCode::UNAUTHORIZED)
            }
        };
    };
    state.passwords.succeeded(client);
    signed_in(&state, format, &user, role, "password", &next, None).await
}

/// Starts a session and answers: to `next` for a person, `{user, role}` for a script.
async fn signed_in(
    state: &AppState,
    format: Format,
    user: &str,
    role: Role,
    via: &'static str,
    next: &str,
    also_clear: Option<String>,
) -> Response {
    let cookie = match state.sessions.start(user, role, via).await {
        Ok(cookie) => cookie,
        Err(e) => return Failure::broker(format, &e).into_response(),
    };
    state.metrics.sign_in(via, "ok");
    tracing::info!(user, role = role.as_str(), via, "signed in");
    let mut response = match format {
        Format::Json => axum::Json(serde_json::json!({"user": user, "role": role})).into_response(),
        Format::Html => Redirect::to(next).into_response(),
    };
    for cookie in [Some(cookie), also_clear].into_iter().flatten() {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The Okta client, or a 404 when sign-in with Okta is not configured.
fn oidc_of(state: &AppState, format: Format) -> Result<&oidc::Oidc, Failure> {
    state.oidc.as_ref().ok_or_else(|| {
        Failure::not_found(
            format,
            "Sign-in with Okta is not configured ([console.oidc]).",
        )
    })
}

/// `GET /login/okta`: off to Okta's sign-in, remembering what to check when it sends the
/// browser back.
pub async fn okta_start(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let format = Format::of(&headers);
    let oidc = match oidc_of(&state, format) {
        Ok(oidc) => oidc,
        Err(failure) => return failure.into_response(),
    };
    let next = safe_next(params.get("next"));
    let (url, pending) = match oidc.start(&next).await {
        Ok(started) => started,
        Err(e) => {
            tracing::warn!(error = %e, "sign-in with Okta could not start");
            return LoginPage::new(&state, next, Some(e.to_string()))
                .answer(StatusCode::BAD_GATEWAY);
        }
    };
    let cookie = match state.sessions.remember_login(&pending).await {
        Ok(cookie) => cookie,
        Err(e) => return Failure::broker(format, &e).into_response(),
    };
    let mut response = Redirect::to(&url).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Template)]
#[template(path = "refused.html")]
struct RefusedPage {
    user: String,
    groups: Vec<String>,
    wanted: Vec<String>,
    assets: &'static Assets,
}

/// `GET /login/okta/callback`: where Okta sends the browser back with a code.
pub async fn okta_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let format = Format::of(&headers);
    let oidc = match oidc_of(&state, format) {
        Ok(oidc) => oidc,
        Err(failure) => return failure.into_response(),
    };
    let callback = oidc::Callback {
        code: params.get("code").map(str::to_owned),
        state: params.get("state").map(str::to_owned),
        error: params.get("error").map(str::to_owned),
        error_description: params.get("error_description").map(str::to_owned),
    };
    let (pending, clear) = state.sessions.take_login::<oidc::Pending>(&headers).await;
    let next = safe_next(pending.as_ref().map(|p| p.next.as_str()));
    let clear_cookie = |mut response: Response| {
        if let Ok(value) = HeaderValue::from_str(&clear) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    };
    let identity = match oidc.finish(pending, &callback).await {
        Ok(identity) => identity,
        Err(e) => {
            state.metrics.sign_in("okta", "refused");
            tracing::info!(reason = %e, "a sign-in with Okta was refused");
            let status = match e {
                oidc::OidcError::Refused(_) => StatusCode::UNAUTHORIZED,
                oidc::OidcError::Unavailable(_) => StatusCode::BAD_GATEWAY,
            };
            return clear_cookie(LoginPage::new(&state, next, Some(e.to_string())).answer(status));
        }
    };
    let Some(role) = identity.role else {
        state.metrics.sign_in("okta", "refused");
        tracing::info!(user = %identity.user, "signed in with Okta, but in no console group");
        let settings = state
            .settings
            .console
            .oidc
            .as_ref()
            .expect("Okta sign-in is configured");
        let page = RefusedPage {
            user: identity.user,
            groups: identity.groups,
            wanted: settings
                .operator_groups
                .iter()
                .chain(&settings.viewer_groups)
                .cloned()
                .collect(),
            assets: &ASSETS,
        };
        let html = page.render().unwrap_or_default();
        return clear_cookie((StatusCode::FORBIDDEN, Html(html)).into_response());
    };
    signed_in(
        &state,
        format,
        &identity.user,
        role,
        "okta",
        &next,
        Some(clear),
    )
    .await
}

/// `POST /logout`: ends the session (its id no longer works) and clears the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let clear = state.sessions.end(&headers).await;
    let mut response = match Format::of(&headers) {
        Format::Json => axum::Json(serde_json::json!({"signed_out": true})).into_response(),
        Format::Html => Redirect::to("/login?error=signed_out").into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_the_console_are_places_to_go_next() {
        assert_eq!(safe_next(Some("/events?q=a")), "/events?q=a");
        for elsewhere in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "events",
            "/login?next=/x",
        ] {
            assert_eq!(safe_next(Some(elsewhere)), "/events", "{elsewhere}");
        }
        assert_eq!(safe_next(None), "/events");
    }
}
