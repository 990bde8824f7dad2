//! The subject index: 1024 hashes (buckets), `{prefix}i:<bucket>`. A
//! subject's sessions are indexed in the bucket its SHA-256 picks, one
//! field per session: its raw 16-byte id and the subject's 4-byte tag
//! (also from the SHA-256), value empty; listing a subject reads its
//! bucket and keeps the fields with its tag (`crate::keys::IndexSlot`).
//! Small hashes, because Redis 7.0 keeps a hash of at most 128 short
//! fields as one compact listpack, where an entry costs about its 20
//! bytes and a few more: a hash per subject cost a key of its own per
//! signed-in user (about 100 bytes). Buckets have no hash tag: they spread
//! over a cluster's slots.
//!
//! Writes only ever add entries (`HSET`, in the same round trip as the
//! record). Entries of deleted or expired records, and of records whose
//! subject changed at login, stay until a listing of the subject or
//! [`Maintenance::sweep_expired`](tessera_core::store::Maintenance::sweep_expired)
//! drops them.

use async_trait::async_trait;
use redis::{Cmd, Value, cmd};
use tessera_core::store::{Page, StoreError, SubjectIndex, page_of_ids, parse_id_cursor};
use tessera_core::{SessionId, SessionRecord, Timestamp};

use crate::error::bad_reply;
use crate::keys::IndexSlot;
use crate::store::{RedisStore, live_record};

impl RedisStore {
    /// The ids a subject's index names. On the first page of a listing
    /// the subject's sessions still kept in the previous layout are
    /// converted first (one more command in the same round trip when there
    /// are none).
    pub(crate) async fn indexed_ids(
        &self,
        subject: &str,
        convert_legacy: bool,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut commands = vec![self.list_index_command(subject)];
        if convert_legacy {
            let mut legacy = cmd("ZRANGE");
            legacy.arg(self.keys().legacy_index(subject)).arg(0).arg(-1);
            commands.push(legacy);
        }
        let mut replies = self
            .round_trip("list subject", &commands)
            .await?
            .into_iter();
        let fields = replies.next().unwrap_or(Value::Nil);
        let legacy: Vec<String> = match replies.next() {
            Some(reply) => {
                redis::from_redis_value(reply).map_err(|e| bad_reply("list subject", e))?
            }
            None => Vec::new(),
        };
        if legacy.is_empty() {
            return ids_of_fields(subject, fields);
        }
        self.convert_legacy_subject(subject, &legacy, now).await?;
        let fields: Value = self
            .command("list subject", &self.list_index_command(subject))
            .await?;
        ids_of_fields(subject, fields)
    }

    fn list_index_command(&self, subject: &str) -> Cmd {
        let mut fields = cmd("HKEYS");
        fields.arg(self.keys().subject_index(subject));
        fields
    }

    /// The live records of `ids` that belong to `subject`, in id order.
    /// Entries of records that are gone or belong to another subject are
    /// dropped from the index on the way.
    pub(crate) async fn indexed_records(
        &self,
        subject: &str,
        ids: &[SessionId],
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let values = self.read_records("list subject", ids).await?;
        let mut records = Vec::with_capacity(ids.len());
        let (mut gone, mut moved) = (Vec::new(), Vec::new());
        for (id, value) in ids.iter().zip(values) {
            let Some(bytes) = value else {
                gone.push(*id);
                continue;
            };
            match live_record(&bytes, now) {
                Ok(Some(record)) if record.subject.as_deref() == Some(subject) => {
                    records.push(record);
                }
                Ok(Some(_)) => moved.push(*id),
                // Forgotten: Redis removes it at its deadline.
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, session_id = %id, "skipping an unreadable session record");
                }
            }
        }
        if !gone.is_empty() || !moved.is_empty() {
            let slot = IndexSlot::of(subject);
            let mut drop = cmd("HDEL");
            drop.arg(self.keys().subject_index(subject));
            for id in gone.iter().chain(&moved) {
                drop.arg(&slot.field(id)[..]);
            }
            self.command::<i64>("tidy subject index", &drop).await?;
        }
        if !moved.is_empty() {
            // A login may have brought a session back to this subject
            // between the read and the removal: such an entry goes back.
            let values = self.read_records("tidy subject index", &moved).await?;
            let mut back = Vec::new();
            for (id, value) in moved.iter().zip(values) {
                let record = value.and_then(|bytes| live_record(&bytes, now).ok().flatten());
                if let Some(record) = record
                    && record.subject.as_deref() == Some(subject)
                {
                    back.push(self.index_command(subject, id));
                    records.push(record);
                }
            }
            self.round_trip("tidy subject index", &back).await?;
        }
        records.sort_by_key(|record| record.id);
        Ok(records)
    }
}

/// The ids of a subject's sessions in an `HKEYS` reply of its bucket:
/// fields with its tag (other subjects' are skipped, as are fields of
/// another shape, no entries of this store).
fn ids_of_fields(subject: &str, reply: Value) -> Result<Vec<SessionId>, StoreError> {
    let fields: Vec<Vec<u8>> =
        redis::from_redis_value(reply).map_err(|e| bad_reply("list subject", e))?;
    let slot = IndexSlot::of(subject);
    Ok(fields.iter().filter_map(|f| slot.id_of(f)).collect())
}

#[async_trait]
impl SubjectIndex for RedisStore {
    async fn list_subject(
        &self,
        subject: &str,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        // A foreign cursor is refused before anything is read.
        cursor.map(parse_id_cursor).transpose()?;
        let ids = self.indexed_ids(subject, cursor.is_none(), now).await?;
        let (page, next) = page_of_ids(ids.into_iter(), cursor, limit)?;
        let items = self.indexed_records(subject, &page, now).await?;
        Ok(Page { items, next })
    }

    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        let ids = self.indexed_ids(subject, true, now).await?;
        let records = self.indexed_records(subject, &ids, now).await?;
        let targets: Vec<SessionId> = records
            .iter()
            .map(|record| record.id)
            .filter(|id| Some(id) != except)
            .collect();
        let deletes: Vec<Cmd> = targets.iter().map(|id| self.delete_command(id)).collect();
        let keys: Vec<String> = targets
            .iter()
            .flat_map(|id| self.session_keys(id))
            .collect();
        let replies = self.revoke("delete subject", &deletes, &keys).await?;
        let deleted: Vec<SessionId> = targets
            .into_iter()
            .zip(replies)
            .filter(|(_, reply)| matches!(reply, Value::Int(n) if *n > 0))
            .map(|(id, _)| id)
            .collect();
        if !deleted.is_empty() {
            // After the records: an entry never goes before its record.
            let slot = IndexSlot::of(subject);
            let mut drop = cmd("HDEL");
            drop.arg(self.keys().subject_index(subject));
            for id in &deleted {
                drop.arg(&slot.field(id)[..]);
            }
            self.command::<i64>("tidy subject index", &drop).await?;
        }
        Ok(deleted)
    }
}
