//! What a request's session operations can fail with, and the status and
//! stable code each becomes in an HTTP response.

use tessera_core::SessionError;
use tessera_core::sealed::SealError;
use tessera_core::store::StoreError;

use crate::cookies::CookieTooLarge;
use crate::csrf::CsrfError;

/// What went wrong with a request's session. Every variant maps to a clear
/// status ([`Error::status`]) and code ([`Error::code`]); bad input never
/// becomes a 500, and no response body carries a store's own error text
/// ([`Error::public_message`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// A value could not be turned into JSON, or JSON into the asked type
    /// (500: a bug in the application's types, not bad input).
    #[error("session value `{key}` cannot be (de)serialised as the requested type: {message}")]
    Serde {
        /// The data key.
        key: String,
        /// What serde said.
        message: String,
    },
    /// The client presented too many invalid session credentials recently (429).
    #[error("too many invalid session credentials from this address; try again later")]
    Guessing,
    /// The form body could not be read while looking for the CSRF field
    /// (400), or exceeded the limit (413).
    #[error("cannot read the request body: {message}")]
    Body {
        /// What failed.
        message: String,
        /// Whether the limit was the reason.
        too_large: bool,
    },
    /// A handler asks for the session but no session layer (middleware)
    /// wraps its route (500).
    #[error(
        "no session layer on this route: add the session layer (axum: `.layer(session_layer)`, actix-web: `.wrap(session_middleware)`) to the app"
    )]
    MissingLayer,
    /// The OS random number generator failed (500).
    #[error("the operating system's random number generator failed")]
    Entropy,
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Error::Session(SessionError::Store(error))
    }
}

impl From<SealError> for Error {
    fn from(error: SealError) -> Self {
        Error::Session(SessionError::Seal(error))
    }
}

impl From<tessera_core::DataError> for Error {
    fn from(error: tessera_core::DataError) -> Self {
        Error::Session(SessionError::Data(error))
    }
}

impl Error {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            Error::Csrf(_) => 403,
            Error::Session(err) => session_status(err),
            Error::CookieTooLarge(_) => 413,
            Error::Guessing => 429,
            Error::Body { too_large, .. } => {
                if *too_large {
                    413
                } else {
                    400
                }
            }
            Error::Serde { .. } | Error::MissingLayer | Error::Entropy => 500,
        }
    }

    /// A stable snake_case code for the error (also sent as `Tessera-Error`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Csrf(CsrfError::CrossSite { .. }) => "csrf_cross_site",
            Error::Csrf(CsrfError::MissingToken { .. }) => "csrf_missing_token",
            Error::Csrf(CsrfError::NoSession | CsrfError::SecureCookieOverHttp { .. }) => {
                "csrf_no_session"
            }
            Error::Csrf(CsrfError::InvalidToken) => "csrf_invalid_token",
            Error::Session(SessionError::Invalid { .. }) => "invalid_session",
            Error::Session(SessionError::NotAuthenticated) => "not_authenticated",
            Error::Session(SessionError::ReauthenticationRequired { .. }) => {
                "reauthentication_required"
            }
            Error::Session(
                SessionError::VersionConflict { .. } | SessionError::WriteContention { .. },
            ) => "version_conflict",
            Error::Session(SessionError::Store(_)) => "store_unavailable",
            Error::Session(
                SessionError::DataTooLarge { .. } | SessionError::SubjectTooLong { .. },
            ) => "payload_too_large",
            Error::Session(SessionError::Seal(_) | SessionError::NotSealed) => "seal_failed",
            Error::Session(SessionError::Token(_)) => "entropy",
            Error::Session(SessionError::TooManyAnonymous { .. }) => "rate_limited",
            Error::Session(_) => "invalid_request",
            Error::CookieTooLarge(_) => "session_too_large",
            Error::Serde { .. } => "session_value_type",
            Error::Guessing => "token_guessing",
            Error::Body { .. } => "bad_body",
            Error::MissingLayer => "missing_layer",
            Error::Entropy => "entropy",
        }
    }

    /// The text a response body may show: the error's own message, except
    /// where it would carry a backend's words (a store's error text,
    /// internal failures), which only the server's log gets.
    pub fn public_message(&self) -> String {
        match self {
            Error::Session(SessionError::Store(_)) => {
                "the session store is unavailable; try again in a moment".to_owned()
            }
            _ if self.status() >= 500 => {
                "the session could not be handled because of an internal error".to_owned()
            }
            _ => self.to_string(),
        }
    }

    /// Logs the error at the level its status deserves: server errors with
    /// every detail, refusals briefly.
    pub fn log(&self) {
        if self.status() >= 500 {
            tracing::error!(code = self.code(), error = %self, "session error");
        } else {
            tracing::debug!(code = self.code(), error = %self, "session request refused");
        }
    }
}

fn session_status(err: &SessionError) -> u16 {
    match err {
        SessionError::Invalid { .. } | SessionError::NotAuthenticated => 401,
        SessionError::ReauthenticationRequired { .. } => 403,
        SessionError::VersionConflict { .. } | SessionError::WriteContention { .. } => 409,
        SessionError::DataTooLarge { .. } | SessionError::SubjectTooLong { .. } => 413,
        SessionError::Data(_)
        | SessionError::EmptySubject
        | SessionError::TimeoutNotAllowed { .. } => 400,
        SessionError::Store(_) => 503,
        SessionError::TooManyAnonymous { .. } => 429,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_never_reach_a_response_body() {
        let err = Error::from(StoreError::unavailable(
            "connect to redis://app:hunter2@10.0.0.5:6379",
            std::io::Error::other("ECONNREFUSED 10.0.0.5"),
        ));
        assert_eq!(err.status(), 503);
        assert_eq!(err.code(), "store_unavailable");
        let shown = err.public_message();
        assert!(
            !shown.contains("10.0.0.5") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
