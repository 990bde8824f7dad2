//! The API's error bodies (`{error, message}`, docs/http-api.md) and how every
//! failure maps to one of them.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tessera::store::StoreError;
use tessera::{InvalidReason, SessionError};
use utoipa::ToSchema;

/// The stable error codes of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Missing or wrong API key.
    Unauthorized,
    /// The API key lacks the scope this endpoint needs.
    Forbidden,
    /// Too many failed API key checks from this client address.
    RateLimited,
    /// The token does not give a valid session (see `reason`).
    InvalidSession,
    /// Compare-and-swap failed (see `current_version`).
    VersionConflict,
    /// The request is malformed.
    InvalidRequest,
    /// The body or the session data is over its limit.
    PayloadTooLarge,
    /// No such session or route.
    NotFound,
    /// The store did not answer; nothing is treated as valid meanwhile.
    StoreUnavailable,
}

impl ErrorCode {
    /// Every code, in a fixed order (metrics labels).
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::InvalidSession,
        ErrorCode::VersionConflict,
        ErrorCode::InvalidRequest,
        ErrorCode::PayloadTooLarge,
        ErrorCode::NotFound,
        ErrorCode::StoreUnavailable,
    ];

    /// The snake_case name used in bodies and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidSession => "invalid_session",
            ErrorCode::VersionConflict => "version_conflict",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::StoreUnavailable => "store_unavailable",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized | ErrorCode::InvalidSession => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::VersionConflict => StatusCode::CONFLICT,
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Why a session is invalid, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not a well-formed token.
    Malformed,
    /// No such session.
    Unknown,
    /// The idle deadline passed.
    ExpiredIdle,
    /// The absolute deadline passed.
    ExpiredAbsolute,
    /// Logged out, revoked, or superseded by login.
    Revoked,
    /// A rotated-away token came back after its grace; the session was revoked.
    Reused,
    /// The client does not match the session's client (binding `reject`).
    BindingMismatch,
    /// The session is bound to a device (DBSC) and the request lacks its
    /// current bound cookie (forward-auth with `--dbsc`).
    DeviceBound,
}

impl From<InvalidReason> for Reason {
    fn from(reason: InvalidReason) -> Self {
        match reason {
            InvalidReason::Malformed => Reason::Malformed,
            InvalidReason::Unknown => Reason::Unknown,
            InvalidReason::ExpiredIdle => Reason::ExpiredIdle,
            InvalidReason::ExpiredAbsolute => Reason::ExpiredAbsolute,
            InvalidReason::Revoked => Reason::Revoked,
            InvalidReason::Reused => Reason::Reused,
            InvalidReason::BindingMismatch => Reason::BindingMismatch,
            InvalidReason::DeviceBound => Reason::DeviceBound,
            // A reason newer than this API version answers as the safest one.
            _ => Reason::Revoked,
        }
    }
}

/// An error body: `{error, message}`, plus `reason` for `invalid_session`
/// and `current_version` for `version_conflict`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The stable error code.
    pub error: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Why the session is invalid (only with `invalid_session`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The version now stored (only with `version_conflict`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

/// An API failure, rendered as an [`ErrorBody`] with its status.
#[derive(Debug, Clone)]
pub struct ApiError {
    body: ErrorBody,
}

impl ApiError {
    /// An error with a code and a message.
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            body: ErrorBody {
                error,
                message: message.into(),
                reason: None,
                current_version: None,
            },
        }
    }

    /// `400 invalid_request`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// `404 not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `401 unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "this endpoint needs `Authorization: Bearer <api key>` with a valid key",
        )
    }

    /// `401 invalid_session` with its reason.
    pub fn invalid_session(reason: InvalidReason) -> Self {
        let mut error = Self::new(
            ErrorCode::InvalidSession,
            format!("the token does not give a valid session: {reason}"),
        );
        error.body.reason = Some(reason.into());
        error
    }

    /// A failure of the server itself (never bad input): logged, and
    /// answered as `503 store_unavailable`, the contract's code for "try
    /// again later", without the details.
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(%message, "internal error");
        Self::new(
            ErrorCode::StoreUnavailable,
            "the server cannot handle this session right now; try again later",
        )
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.body.error
    }

    /// The body.
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Invalid { reason } => ApiError::invalid_session(reason),
            SessionError::VersionConflict {
                expected,
                current_version,
            } => {
                let mut api = ApiError::new(
                    ErrorCode::VersionConflict,
                    format!(
                        "the session changed: expected version {expected}, current is {current_version}; read it again and retry"
                    ),
                );
                api.body.current_version = Some(current_version);
                api
            }
            SessionError::WriteContention { last_version, .. } => {
                let mut api = ApiError::new(ErrorCode::VersionConflict, error.to_string());
                api.body.current_version = Some(last_version);
                api
            }
            SessionError::DataTooLarge { .. } => {
                ApiError::new(ErrorCode::PayloadTooLarge, error.to_string())
            }
            SessionError::Store(store) => store_unavailable(&store),
            SessionError::TooManyAnonymous { .. } => {
                ApiError::new(ErrorCode::RateLimited, error.to_string())
            }
            SessionError::SubjectTooLong { .. }
            | SessionError::EmptySubject
            | SessionError::Data(_)
            | SessionError::TimeoutNotAllowed { .. }
            | SessionError::NotAuthenticated
            | SessionError::ReauthenticationRequired { .. } => {
                ApiError::invalid_request(error.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// `503 store_unavailable`, logging the store's own error for the operator.
pub fn store_unavailable(error: &StoreError) -> ApiError {
    tracing::error!(error = %error, "session store failed");
    ApiError::new(
        ErrorCode::StoreUnavailable,
        "the session store is unavailable; no session can be validated until it answers",
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.body.error.status();
        let code = self.body.error;
        let mut response = (status, Json(self.body)).into_response();
        if code == ErrorCode::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(code);
        response
    }
}
