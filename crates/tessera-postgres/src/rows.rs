//! Converting between session records and table rows.

use std::sync::Arc;

use tessera_core::codec::{decode_entry, encode_session};
use tessera_core::{Session, SessionId, StoreError, StoredEntry, Timestamp, TokenHash};

/// Database columns are signed; versions and timeouts are unsigned and far
/// below `i64::MAX` in practice, so the conversions saturate.
pub(crate) fn to_db(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn version_from_db(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The columns a live row derives from its session.
pub(crate) struct LiveColumns {
    pub(crate) subject: Option<String>,
    pub(crate) version: i64,
    pub(crate) last_seen_at: i64,
    pub(crate) idle_timeout_ms: i64,
    pub(crate) absolute_expires_at: i64,
    pub(crate) forget_at: i64,
    pub(crate) record: Vec<u8>,
}

impl LiveColumns {
    pub(crate) fn of(session: &Session) -> Result<Self, StoreError> {
        Ok(Self {
            subject: session.subject.clone(),
            version: to_db(session.version),
            last_seen_at: session.last_seen_at.as_millis(),
            idle_timeout_ms: to_db(session.idle_timeout_ms),
            absolute_expires_at: session.absolute_expires_at.as_millis(),
            forget_at: session.forget_at().as_millis(),
            record: encode_session(session)?,
        })
    }
}

/// Decodes a row's record. `last_seen_at` is the column, which touching
/// moves without rewriting the record.
pub(crate) fn decode_row(
    live: bool,
    last_seen_at: i64,
    record: &[u8],
) -> Result<StoredEntry, StoreError> {
    match (live, decode_entry(record)?) {
        (true, StoredEntry::Live(mut session)) => {
            if session.last_seen_at.as_millis() != last_seen_at {
                Arc::make_mut(&mut session).last_seen_at = Timestamp(last_seen_at);
            }
            Ok(StoredEntry::Live(session))
        }
        (false, entry @ StoredEntry::Tombstone(_)) => Ok(entry),
        (live, _) => Err(StoreError::corrupt(format!(
            "row marked {} holds the other kind of record",
            if live { "live" } else { "tombstone" }
        ))),
    }
}

pub(crate) fn decode_live(last_seen_at: i64, record: &[u8]) -> Result<Arc<Session>, StoreError> {
    match decode_row(true, last_seen_at, record)? {
        StoredEntry::Live(session) => Ok(session),
        StoredEntry::Tombstone(_) => Err(StoreError::corrupt("live row holds a tombstone")),
    }
}

pub(crate) fn token_hash_from_db(bytes: &[u8]) -> Result<TokenHash, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(TokenHash)
        .map_err(|_| StoreError::corrupt(format!("token hash of {} bytes", bytes.len())))
}

pub(crate) fn session_id_from_db(bytes: &[u8]) -> Result<SessionId, StoreError> {
    <[u8; 16]>::try_from(bytes)
        .map(SessionId)
        .map_err(|_| StoreError::corrupt(format!("session id of {} bytes", bytes.len())))
}
