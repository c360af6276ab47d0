//! The hook's shared secret: Okta sends it verbatim in a configured header with every request,
//! verification included. It is the only proof of origin, so it is checked first, before the
//! body is read, and compared in constant time.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

/// The header and the value it must carry.
pub struct HeaderSecret {
    header: HeaderName,
    secret: SecretString,
}

impl HeaderSecret {
    pub fn new(header: HeaderName, secret: SecretString) -> Self {
        HeaderSecret { header, secret }
    }

    /// Whether the request carries the secret. Only a length difference can be told from the
    /// time this takes.
    pub fn verify(&self, headers: &HeaderMap) -> bool {
        let expected = self.secret.expose_secret().as_bytes();
        headers
            .get(&self.header)
            .is_some_and(|value| bool::from(value.as_bytes().ct_eq(expected)))
    }
}

/// Middleware on the hook route: 401 unless the secret header is right.
pub async fn require_secret(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.secret.verify(request.headers()) {
        next.run(request).await
    } else {
        tracing::warn!(header = %state.secret.header, "request without the right secret header refused");
        ApiError::Unauthorized.into_response()
    }
}
