//! Errors of setting the store up, and the mapping of client errors to [`StoreError`].

use std::time::Duration;

use tessera_core::store::StoreError;

/// Why the store could not be set up (configuration or first connection).
/// Failures of single operations afterwards are [`StoreError`]s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// A setting is invalid; the message names it and what is allowed.
    #[error("invalid Redis store settings: {0}")]
    Config(String),
    /// The server is set up in a way that could lose revocations; the
    /// message says what to change.
    #[error("the Redis server cannot keep revocations safely: {0}")]
    Server(String),
    /// Redis could not be reached, or refused the connection.
    #[error("cannot reach Redis: {0}")]
    Unavailable(#[from] StoreError),
}

/// Maps a client error to a store error. Every failure to talk to Redis, or
/// of a command, makes the store unavailable for that call: callers fail
/// closed and retry later.
pub(crate) fn store_error(what: &str, error: redis::RedisError) -> StoreError {
    let message = if error.is_connection_refusal() {
        format!("{what}: Redis refused the connection")
    } else if error.is_connection_dropped() || error.is_io_error() {
        format!("{what}: the connection to Redis failed: {error}")
    } else if error.is_timeout() {
        format!("{what}: Redis did not answer in time")
    } else {
        format!("{what}: {error}")
    };
    StoreError::unavailable(message, error)
}

/// The error of an operation that ran out of time.
pub(crate) fn timed_out(what: &str, timeout: Duration) -> StoreError {
    StoreError::Unavailable {
        message: format!("{what}: Redis did not answer within {timeout:?}"),
        source: None,
    }
}

/// A reply of a shape the store never writes.
pub(crate) fn bad_reply(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::corrupt(format!("{what}: unexpected reply from Redis: {detail}"))
}
