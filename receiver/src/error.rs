//! Every answer other than 200 is an [`ApiError`]: a status and a small JSON body
//! `{"error": "<code>", "message": "<sentence>"}`. Internal causes are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What went wrong with a request, as the caller is told.
#[derive(Debug)]
pub enum ApiError {
    /// The secret header is missing or wrong.
    Unauthorized,
    /// A GET without `x-okta-verification-challenge`, or with an unreadable one.
    BadChallenge(&'static str),
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The body could not be read: too large (413) or broken (400).
    Body { status: StatusCode, message: String },
    /// The body did not arrive within `receiver.body_read_timeout`.
    BodyTimeout,
    /// The body is not an Okta delivery.
    InvalidDelivery(String),
    /// JetStream did not store every event in time; Okta should retry.
    Unavailable,
    /// No route here.
    NotFound,
    /// The route exists, the method does not.
    MethodNotAllowed,
}

/// Every error code an answer can carry: what `hookrelay_receiver_deliveries_rejected_total`
/// counts by, each series there from the start.
pub(crate) const CODES: [&str; 9] = [
    "unauthorized",
    "bad_verification",
    "unsupported_media_type",
    "bad_body",
    "body_timeout",
    "invalid_delivery",
    "unavailable",
    "not_found",
    "method_not_allowed",
];

impl ApiError {
    /// The status and the error code (`unauthorized`, …) of this answer.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        let (status, code, _) = self.parts();
        (status, code)
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong secret header".into(),
            ),
            ApiError::BadChallenge(why) => {
                (StatusCode::BAD_REQUEST, "bad_verification", (*why).into())
            }
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be application/json".into(),
            ),
            ApiError::Body { status, message } => (*status, "bad_body", message.clone()),
            ApiError::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the body did not arrive in time".into(),
            ),
            ApiError::InvalidDelivery(message) => {
                (StatusCode::BAD_REQUEST, "invalid_delivery", message.clone())
            }
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the events could not be stored now; retry".into(),
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such path".into()),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET for verification and POST for deliveries".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        (
            status,
            Json(serde_json::json!({ "error": code, "message": message })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_code_is_counted_from_the_start() {
        let every = [
            ApiError::Unauthorized,
            ApiError::BadChallenge("x"),
            ApiError::UnsupportedMediaType,
            ApiError::Body {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: String::new(),
            },
            ApiError::BodyTimeout,
            ApiError::InvalidDelivery(String::new()),
            ApiError::Unavailable,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
        ];
        let codes: Vec<&str> = every.iter().map(|e| e.status_and_code().1).collect();
        assert_eq!(codes, CODES);
    }
}
