//! Sessions still kept in the previous layout, converted when first found.
//!
//! Before records were keyed by session id, this store kept each session
//! as a hash `{prefix}{<id hex>}` (fields `k`: the current token's hash in
//! hex, `r`: the format 1 record, JSON; `s`: last seen and `f`: forget
//! deadline, ms; `v`, `i`, `a`, `u`), a pointer `{prefix}p:<token hash hex>`
//! → id hex per token, tombstones `{prefix}{<id hex>}:t:<token hash hex>`
//! for rotated-away tokens, and a sorted set `{prefix}x:<subject>` of ids
//! per subject. All of it expires by itself; epochs kept their keys.
//!
//! Such a session becomes a record of the current layout (the token it had
//! stays its token, so its holder keeps it) the first time it is found:
//!
//! * through its token: [`Records::find_legacy`](tessera_core::store::Records::find_legacy)
//!   follows the old pointer, which stays until it expires and keeps
//!   leading to the session after the manager replaced the old token;
//! * through its subject: the first page of a listing, and a deletion of
//!   the subject's sessions, convert every session the old sorted set names.
//!
//! A deletion by id removes the old hash too (`DEL` of both keys), so
//! revoking a session that was never converted ends it. Conversion is
//! deterministic (the codec derives everything, the CSRF secret included,
//! from the old record), so nodes converting one session at once write the
//! same bytes (`SET … NX`). On a single server one script writes the
//! record and removes the old hash, and only while the old hash is as it
//! was read: a conversion can neither lose a session nor bring back one
//! that was converted and then deleted. In a cluster the two keys live in
//! different slots: the record is written first and the old hash removed
//! after, so a failure in between leaves a session found twice, never one
//! lost; the old hash never outlives the record made from it (its deadline
//! is the one the record starts with, and deadlines only move forward), and
//! every deletion removes both. What remains in a cluster: a node that read
//! the old hash, then stalled while another node converted the session,
//! renewed its token and the user signed out, would write the session back
//! under its old token. Tombstones are dropped: a token rotated away before
//! the upgrade is unknown after it. Sessions that are never found expire
//! where they are; `export_page` does not see them (their tokens could not
//! be found in another store anyway).

use redis::{Cmd, Value, cmd};
use tessera_core::store::StoreError;
use tessera_core::{SessionId, SessionRecord, Timestamp, TokenHash, codec, forget_at};

use crate::error::bad_reply;
use crate::scripts;
use crate::store::{RedisStore, evalsha_keys, px};

/// A session read from the previous layout.
struct Legacy {
    id: SessionId,
    record: SessionRecord,
    forget_at: Timestamp,
}

/// The fields of an old hash that a conversion reads.
const FIELDS: [&str; 4] = ["k", "r", "s", "f"];

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(text) => std::str::from_utf8(text).ok()?.parse().ok(),
        _ => None,
    }
}

impl RedisStore {
    fn legacy_read_command(&self, id: &SessionId) -> Cmd {
        let mut read = cmd("HMGET");
        read.arg(self.keys().legacy_record(id)).arg(&FIELDS[..]);
        read
    }

    /// Decodes an `HMGET k r s f` of an old hash; `None` when there is none.
    fn legacy_of(id: SessionId, reply: Value) -> Result<Option<Legacy>, StoreError> {
        let fields = match reply {
            Value::Array(fields) => fields,
            Value::Nil => return Ok(None),
            other => {
                return Err(bad_reply(
                    "read a session of the previous layout",
                    format!("{other:?}"),
                ));
            }
        };
        let (Some(Value::BulkString(key)), Some(Value::BulkString(json))) =
            (fields.first(), fields.get(1))
        else {
            return Ok(None);
        };
        let key = std::str::from_utf8(key)
            .ok()
            .and_then(TokenHash::from_hex)
            .ok_or_else(|| {
                StoreError::corrupt(format!(
                    "the previous layout's record of session {id} names an unreadable token hash"
                ))
            })?;
        let mut record = codec::decode_legacy(json, &key).map_err(|error| match error {
            StoreError::Invalid { message } => StoreError::corrupt(message),
            other => other,
        })?;
        if record.id != id {
            return Err(StoreError::corrupt(format!(
                "the previous layout's record under session {id} holds session {}",
                record.id
            )));
        }
        // A touch moved `s` without rewriting the record.
        if let Some(seen) = fields.get(2).and_then(integer) {
            record.last_seen_at = record.last_seen_at.max(Timestamp(seen));
        }
        let forget_at = fields
            .get(3)
            .and_then(integer)
            .map_or_else(|| forget_at(&record), Timestamp);
        Ok(Some(Legacy {
            id,
            record,
            forget_at,
        }))
    }

    /// Writes each session as a record of the current layout (indexed
    /// under its subject) and removes its old hash and old index entry,
    /// with `cleanup` commands alongside. On a single server one script per
    /// session does both in one step, only while the old hash is as it was
    /// read; in a cluster the record is written first and the old hash
    /// removed after.
    async fn convert(&self, sessions: &[Legacy], mut cleanup: Vec<Cmd>) -> Result<(), StoreError> {
        const WHAT: &str = "convert sessions of the previous layout";
        let mut writes = Vec::new();
        for session in sessions {
            let bytes = codec::encode(&session.record, session.forget_at);
            let (old, new) = (
                self.keys().legacy_record(&session.id),
                self.keys().record(&session.id),
            );
            if self.is_cluster() {
                writes.push(self.create_command(&session.id, &bytes, session.forget_at));
                let mut drop = cmd("DEL");
                drop.arg(old);
                cleanup.push(drop);
            } else {
                let mut convert = evalsha_keys(&scripts::CONVERT, &[&old, &new]);
                convert
                    .arg(session.record.revision().token.to_hex())
                    .arg(bytes)
                    .arg(px(session.forget_at));
                writes.push(convert);
            }
            if let Some(subject) = &session.record.subject {
                writes.push(self.index_command(subject, &session.id));
                let mut unindex = cmd("ZREM");
                unindex
                    .arg(self.keys().legacy_index(subject))
                    .arg(hex::encode(session.id.0));
                cleanup.push(unindex);
            }
        }
        if self.is_cluster() {
            self.round_trip(WHAT, &writes).await?;
            self.round_trip(WHAT, &cleanup).await.map(drop)
        } else {
            writes.extend(cleanup);
            self.round_trip(WHAT, &writes).await.map(drop)
        }
    }

    /// [`Records::find_legacy`](tessera_core::store::Records::find_legacy):
    /// the session an old pointer names, converted if it is not yet.
    pub(crate) async fn find_legacy_session(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<SessionId>, StoreError> {
        let pointer: Option<String> = self
            .command(
                "follow a pointer of the previous layout",
                cmd("GET").arg(self.keys().legacy_pointer(key)),
            )
            .await?;
        let Some(id) = pointer.as_deref().and_then(parse_id_hex) else {
            if pointer.is_some() {
                tracing::warn!(
                    "ignoring a pointer of the previous layout that names no session id"
                );
            }
            return Ok(None);
        };
        let mut exists = cmd("EXISTS");
        exists.arg(self.keys().record(&id));
        let replies = self
            .round_trip(
                "find a session of the previous layout",
                &[exists.clone(), self.legacy_read_command(&id)],
            )
            .await?;
        let mut replies = replies.into_iter();
        if matches!(replies.next(), Some(Value::Int(n)) if n > 0) {
            // Converted already (the manager may since have replaced the
            // old token: it then finds it as the previous one).
            return Ok(Some(id));
        }
        let Some(legacy) = Self::legacy_of(id, replies.next().unwrap_or(Value::Nil))? else {
            // No old hash either: gone, or converted meanwhile by another node.
            let converted: i64 = self
                .command("find a session of the previous layout", &exists)
                .await?;
            return Ok((converted > 0).then_some(id));
        };
        if legacy.forget_at <= now {
            return Ok(None);
        }
        // A token rotated away before the upgrade (a tombstone) is dropped:
        // only the session's token of the time finds it.
        let current = legacy.record.revision().token == *key;
        self.convert(&[legacy], Vec::new()).await?;
        Ok(current.then_some(id))
    }

    /// Converts the sessions of `subject` that the previous layout's index
    /// names (`ids`, hex), and empties that index.
    pub(crate) async fn convert_legacy_subject(
        &self,
        subject: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let parsed: Vec<(&String, Option<SessionId>)> =
            ids.iter().map(|text| (text, parse_id_hex(text))).collect();
        let reads: Vec<Cmd> = parsed
            .iter()
            .filter_map(|(_, id)| id.as_ref())
            .map(|id| self.legacy_read_command(id))
            .collect();
        let mut replies = self
            .round_trip("read sessions of the previous layout", &reads)
            .await?
            .into_iter();
        let (mut live, mut done) = (Vec::new(), Vec::new());
        for (text, id) in parsed {
            let Some(id) = id else {
                done.push(text);
                continue;
            };
            match Self::legacy_of(id, replies.next().unwrap_or(Value::Nil)) {
                // Converted, and its old index entry removed, by `convert`.
                Ok(Some(legacy)) if legacy.forget_at > now => live.push(legacy),
                // Gone or forgotten.
                Ok(_) => done.push(text),
                Err(error) => {
                    tracing::warn!(%error, session_id = %id, "leaving an unreadable session of the previous layout where it is");
                }
            }
        }
        let mut cleanup = Vec::new();
        if !done.is_empty() {
            let mut unindex = cmd("ZREM");
            unindex.arg(self.keys().legacy_index(subject)).arg(done);
            cleanup.push(unindex);
        }
        self.convert(&live, cleanup).await
    }
}

/// A session id as the previous layout wrote it (32 hex digits).
fn parse_id_hex(text: &str) -> Option<SessionId> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(text, &mut id).ok()?;
    Some(SessionId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_ids_are_32_hex_digits() {
        assert_eq!(parse_id_hex(&"ab".repeat(16)), Some(SessionId([0xab; 16])));
        assert_eq!(parse_id_hex("abc"), None);
        assert_eq!(parse_id_hex(&"zz".repeat(16)), None);
    }
}
