//! The errors of session operations.

use std::time::Duration;

use serde::Serialize;

use crate::device::DeviceBindingError;
use crate::record::{AuthLevel, DataError};
use crate::sealed::SealError;
use crate::store::StoreError;
use crate::token::TokenError;

/// Why a presented credential does not give a session (the `reason` of
/// the HTTP API's `invalid_session` errors, `docs/http-api.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InvalidReason {
    /// Not a well-formed token (rejected without a store access).
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
    /// The client does not match the session's client (policy `reject`).
    BindingMismatch,
    /// The session is bound to a device and the request lacks its
    /// current bound cookie (`docs/dbsc.md`).
    DeviceBound,
}

impl InvalidReason {
    /// The stable snake_case name used by the HTTP API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::Malformed => "malformed",
            InvalidReason::Unknown => "unknown",
            InvalidReason::ExpiredIdle => "expired_idle",
            InvalidReason::ExpiredAbsolute => "expired_absolute",
            InvalidReason::Revoked => "revoked",
            InvalidReason::Reused => "reused",
            InvalidReason::BindingMismatch => "binding_mismatch",
            InvalidReason::DeviceBound => "device_bound",
        }
    }
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of a [`SessionManager`](crate::SessionManager) operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The token does not give a valid session.
    #[error("invalid session: {reason}")]
    Invalid {
        /// Why.
        reason: InvalidReason,
    },
    /// Compare-and-swap failed: the session changed since the version the caller read.
    #[error(
        "session changed concurrently: expected version {expected}, current is {current_version}"
    )]
    VersionConflict {
        /// The version the caller expected.
        expected: u64,
        /// The version now stored; read again and retry.
        current_version: u64,
    },
    /// Other requests kept changing the session: every retry of the write
    /// lost its compare-and-swap.
    #[error(
        "the session changed under each of {attempts} attempts to write it (last seen at version {last_version}); try again"
    )]
    WriteContention {
        /// How many attempts were made.
        attempts: usize,
        /// The version the last attempt read.
        last_version: u64,
    },
    /// The subject is longer than the limit.
    #[error("subject is {len} bytes, the limit is {limit}")]
    SubjectTooLong {
        /// The subject's length in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The subject is empty.
    #[error("subject must not be empty")]
    EmptySubject,
    /// The session data is larger than the limit.
    #[error("session data is {size} bytes of JSON, the limit is {limit}")]
    DataTooLarge {
        /// The data's size in bytes of compact JSON.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The data is not a JSON object, or a patch made it something else.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A per-session timeout is zero or longer than the configured one.
    #[error(
        "{setting} of {requested:?} is not allowed: it must be above zero and at most {limit:?}"
    )]
    TimeoutNotAllowed {
        /// `idle_timeout` or `absolute_timeout`.
        setting: &'static str,
        /// The requested value.
        requested: Duration,
        /// The configured maximum.
        limit: Duration,
    },
    /// An operation that needs a signed-in session got an anonymous one.
    #[error("the session is not signed in")]
    NotAuthenticated,
    /// Authentication is too weak or too old for this action.
    #[error(
        "this action needs authentication level {required_level} within {max_age:?}; the session has level {current_level}"
    )]
    ReauthenticationRequired {
        /// The level required.
        required_level: AuthLevel,
        /// The session's level.
        current_level: AuthLevel,
        /// How recent the authentication must be.
        max_age: Duration,
    },
    /// Token generation failed (no entropy from the OS).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A sealed session could not be sealed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A sealing operation on a manager that keeps sessions in its store.
    #[error("this manager keeps sessions in its store; it seals none")]
    NotSealed,
    /// A device-binding registration or refresh was refused.
    #[error(transparent)]
    DeviceBinding(#[from] DeviceBindingError),
    /// An anonymous session was refused: too many were created in the
    /// last minute (by this client, or by all clients together).
    #[error(
        "too many anonymous sessions were created by {scope} in the last minute (the cap is {per_minute}); try again in a minute"
    )]
    TooManyAnonymous {
        /// `this client address` or `all clients`.
        scope: &'static str,
        /// The cap per minute.
        per_minute: u32,
    },
    /// The store failed; callers fail closed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SessionError {
    /// The reason, when this is an invalid-session error.
    pub fn invalid_reason(&self) -> Option<InvalidReason> {
        match self {
            SessionError::Invalid { reason } => Some(*reason),
            _ => None,
        }
    }

    pub(crate) fn invalid(reason: InvalidReason) -> Self {
        SessionError::Invalid { reason }
    }
}
