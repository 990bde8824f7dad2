//! The errors of session operations in a handler, and the HTTP responses
//! they become.

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use tessera_core::SessionError;
use tessera_core::sealed::SealError;

use crate::cookies::CookieTooLarge;
use crate::csrf::CsrfError;

/// What went wrong with a request's session. Every variant maps to a clear
/// status (see [`Error::status`]); bad input never becomes a 500.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An unsafe request failed the CSRF check (403).
    #[error(transparent)]
    Csrf(#[from] CsrfError),
    /// The session engine refused the operation (status by kind: 401, 403,
    /// 409, 413, 400 or 503).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The session no longer fits in the allowed cookies (sealed mode, 413).
    #[error(transparent)]
    CookieTooLarge(#[from] CookieTooLarge),
    /// A value could not be turned into JSON, or JSON into the asked type (500:
    /// a bug in the application's types, not bad input).
    #[error("session value `{key}` cannot be (de)serialised as the requested type: {message}")]
    Serde {
        /// The data key.
        key: String,
        /// What serde said.
        message: String,
    },
    /// The session could not be sealed (500).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The client presented too many invalid session tokens recently (429).
    #[error("too many invalid session tokens from this address; try again later")]
    Guessing,
    /// The form body could not be read while looking for the CSRF field (400),
    /// or exceeded the limit (413).
    #[error("cannot read the request body: {message}")]
    Body {
        /// What failed.
        message: String,
        /// Whether the limit was the reason.
        too_large: bool,
    },
    /// The handler uses [`Session`](crate::Session) but the
    /// [`SessionLayer`](crate::SessionLayer) is not installed (500).
    #[error("no SessionLayer on this route: add `.layer(session_layer)` to the router")]
    MissingLayer,
    /// The OS random number generator failed (500).
    #[error("the operating system's random number generator failed")]
    Entropy,
}

impl Error {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Csrf(_) => StatusCode::FORBIDDEN,
            Error::Session(err) => session_status(err),
            Error::CookieTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Guessing => StatusCode::TOO_MANY_REQUESTS,
            Error::Body { too_large, .. } => {
                if *too_large {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                }
            }
            Error::Serde { .. } | Error::Seal(_) | Error::MissingLayer | Error::Entropy => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A stable snake_case code for the error (also sent as `Tessera-Error`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Csrf(CsrfError::CrossSite { .. }) => "csrf_cross_site",
            Error::Csrf(CsrfError::MissingToken { .. }) => "csrf_missing_token",
            Error::Csrf(CsrfError::NoSession) => "csrf_no_session",
            Error::Csrf(CsrfError::InvalidToken) => "csrf_invalid_token",
            Error::Session(SessionError::Invalid { .. }) => "invalid_session",
            Error::Session(SessionError::NotAuthenticated) => "not_authenticated",
            Error::Session(SessionError::ReauthenticationRequired { .. }) => {
                "reauthentication_required"
            }
            Error::Session(SessionError::VersionConflict { .. }) => "version_conflict",
            Error::Session(SessionError::Store(_)) => "store_unavailable",
            Error::Session(
                SessionError::DataTooLarge { .. } | SessionError::SubjectTooLong { .. },
            ) => "payload_too_large",
            Error::Session(_) => "invalid_request",
            Error::CookieTooLarge(_) => "session_too_large",
            Error::Serde { .. } => "session_value_type",
            Error::Seal(_) => "seal_failed",
            Error::Guessing => "token_guessing",
            Error::Body { .. } => "bad_body",
            Error::MissingLayer => "missing_layer",
            Error::Entropy => "entropy",
        }
    }
}

fn session_status(err: &SessionError) -> StatusCode {
    match err {
        SessionError::Invalid { .. } | SessionError::NotAuthenticated => StatusCode::UNAUTHORIZED,
        SessionError::ReauthenticationRequired { .. } => StatusCode::FORBIDDEN,
        SessionError::VersionConflict { .. } => StatusCode::CONFLICT,
        SessionError::DataTooLarge { .. } | SessionError::SubjectTooLong { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        SessionError::Data(_) | SessionError::EmptySubject => StatusCode::BAD_REQUEST,
        SessionError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        SessionError::TimeoutNotAllowed { .. } | SessionError::Token(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "session error");
        } else {
            tracing::debug!(code = self.code(), error = %self, "session request refused");
        }
        (
            status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (http::HeaderName::from_static("tessera-error"), self.code()),
            ],
            format!("{}\n", self),
        )
            .into_response()
    }
}
