//! Converting between sessions and what the scripts take and return.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::Value;
use tessera_core::codec::{decode_entry, encode_session};
use tessera_core::{
    EXPIRED_RETENTION, Session, StoreError, StoredEntry, Timestamp, TokenHash, WriteOutcome,
};

use crate::error::bad_reply;
use crate::keys::encode_subject;

/// The fields of a live record, as the scripts take them (after the key).
pub(crate) struct LiveFields {
    record: Vec<u8>,
    version: String,
    last_seen: String,
    idle: String,
    absolute: String,
    pub(crate) forget: String,
    subject: String,
}

impl LiveFields {
    pub(crate) fn of(session: &Session) -> Result<Self, StoreError> {
        Ok(Self {
            record: encode_session(session)?,
            version: session.version.to_string(),
            last_seen: session.last_seen_at.as_millis().to_string(),
            idle: session.idle_timeout_ms.to_string(),
            absolute: session.absolute_expires_at.as_millis().to_string(),
            forget: session.forget_at().as_millis().to_string(),
            subject: encode_subject(session.subject.as_deref()),
        })
    }

    pub(crate) fn push(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        invocation
            .arg(&self.record)
            .arg(&self.version)
            .arg(&self.last_seen)
            .arg(&self.idle)
            .arg(&self.absolute)
            .arg(&self.forget)
            .arg(&self.subject);
    }
}

/// How long a pointer from a token hash to its session must live: until
/// the latest moment its session (or a tombstone) may still be loaded. A
/// pointer that outlives its record is harmless: it reads as absent.
pub(crate) fn pointer_deadline(session: &Session) -> i64 {
    let bound = session
        .absolute_expires_at
        .plus(EXPIRED_RETENTION)
        .max(session.forget_at())
        .as_millis();
    bound.max(wall_clock_ms().saturating_add(1000))
}

pub(crate) fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(crate) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

pub(crate) fn array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

/// Decodes a live record, with `last_seen` from its own field (touching
/// moves the field without rewriting the record).
pub(crate) fn decode_live(
    record: &[u8],
    last_seen: Option<&Value>,
) -> Result<Arc<Session>, StoreError> {
    let StoredEntry::Live(mut session) = decode_entry(record)? else {
        return Err(StoreError::corrupt("a live record holds a tombstone"));
    };
    if let Some(seen) = last_seen.and_then(int)
        && session.last_seen_at.as_millis() != seen
    {
        Arc::make_mut(&mut session).last_seen_at = Timestamp(seen);
    }
    Ok(session)
}

/// Decodes a load reply: `{1, record, last_seen}`, `{2, tombstone}` or nil.
pub(crate) fn decode_load(reply: Value, now: Timestamp) -> Result<Option<StoredEntry>, StoreError> {
    let items = array(reply);
    match items.first().and_then(int) {
        None => Ok(None),
        Some(1) => {
            let record = items
                .get(1)
                .and_then(bytes)
                .ok_or_else(|| bad_reply("load", "live record without data"))?;
            let session = decode_live(record, items.get(2))?;
            Ok((session.forget_at() > now).then_some(StoredEntry::Live(session)))
        }
        Some(2) => {
            let record = items
                .get(1)
                .and_then(bytes)
                .ok_or_else(|| bad_reply("load", "tombstone without data"))?;
            match decode_entry(record)? {
                StoredEntry::Tombstone(t) => {
                    Ok((t.forget_at > now).then_some(StoredEntry::Tombstone(t)))
                }
                StoredEntry::Live(_) => Err(StoreError::corrupt("a tombstone key holds a session")),
            }
        }
        Some(other) => Err(bad_reply("load", format!("code {other}"))),
    }
}

/// Decodes a compare-and-swap reply; on success also the old subject field.
pub(crate) fn decode_cas(
    what: &str,
    reply: Value,
) -> Result<(WriteOutcome, Option<Vec<u8>>), StoreError> {
    let items = array(reply);
    match items.first().and_then(int) {
        Some(0) => Ok((WriteOutcome::NotFound, None)),
        Some(1) => {
            let current = items
                .get(1)
                .and_then(int)
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| bad_reply(what, "conflict without a version"))?;
            Ok((WriteOutcome::VersionConflict { current }, None))
        }
        Some(2) => Ok((
            WriteOutcome::Written,
            items.get(1).and_then(bytes).map(<[u8]>::to_vec),
        )),
        _ => Err(bad_reply(what, "unknown outcome")),
    }
}

/// Decodes an `HMGET k r s` reply into a live session, if it is one and
/// has not passed its forget deadline.
pub(crate) fn decode_hmget(
    reply: Value,
    now: Timestamp,
) -> Result<Option<(TokenHash, Arc<Session>)>, StoreError> {
    let items = array(reply);
    let (Some(key), Some(record)) = (items.first().and_then(bytes), items.get(1).and_then(bytes))
    else {
        return Ok(None);
    };
    let key = std::str::from_utf8(key)
        .ok()
        .and_then(TokenHash::from_hex)
        .ok_or_else(|| StoreError::corrupt("a live record names an unreadable key"))?;
    let session = decode_live(record, items.get(2))?;
    Ok((session.forget_at() > now).then_some((key, session)))
}
