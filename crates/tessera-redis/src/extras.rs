//! Attachments (a string per session and kind, `{prefix}a:<id>:<kind>`,
//! expiring by itself at its forget deadline) and the journal (one sorted
//! set, `{prefix}j`, whose members sort by their bytes: time and nonce,
//! then the forget deadline and the entry).

use async_trait::async_trait;
use redis::{Value, cmd};
use tessera_core::store::{
    Attachment, AttachmentKind, AttachmentWrite, Attachments, Journal, JournalEntry, Page,
    StoreError, journal_cursor, parse_journal_cursor,
};
use tessera_core::{SessionId, Timestamp};

use crate::error::bad_reply;
use crate::scripts;
use crate::store::{RedisStore, evalsha, px};

/// Journal members read per command while paging or sweeping.
const JOURNAL_BATCH: usize = 256;

/// Bytes 0..8 of a number, big-endian.
fn number(bytes: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The position of a journal entry in byte order: its time with the sign
/// bit flipped (so that the bytes sort as the numbers do), then its nonce.
fn journal_key(at: Timestamp, nonce: &[u8; 8]) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&(at.0 ^ i64::MIN).to_be_bytes());
    key[8..].copy_from_slice(nonce);
    key
}

/// A journal member: its position, forget deadline and bytes.
fn journal_member(entry: &JournalEntry, forget_at: Timestamp) -> Vec<u8> {
    let mut member = journal_key(entry.at, &entry.nonce).to_vec();
    member.extend_from_slice(&forget_at.as_millis().to_be_bytes());
    member.extend_from_slice(&entry.value);
    member
}

/// The entry a member holds and its forget deadline.
fn journal_entry(member: &[u8]) -> Option<(JournalEntry, Timestamp)> {
    let at = Timestamp(number(member, 0)? ^ i64::MIN);
    let nonce: [u8; 8] = member.get(8..16)?.try_into().ok()?;
    let forget_at = Timestamp(number(member, 16)?);
    let value = member.get(24..)?.to_vec();
    Some((JournalEntry { at, nonce, value }, forget_at))
}

/// A `ZRANGE … BYLEX` bound just before (`(`) a member or position.
fn before(bytes: &[u8]) -> Vec<u8> {
    let mut bound = vec![b'('];
    bound.extend_from_slice(bytes);
    bound
}

impl RedisStore {
    /// Up to [`JOURNAL_BATCH`] members from `start` towards `stop`
    /// (`rev`: newest first).
    async fn journal_batch(
        &self,
        start: &[u8],
        stop: &[u8],
        rev: bool,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut range = cmd("ZRANGE");
        range
            .arg(self.keys().journal())
            .arg(start)
            .arg(stop)
            .arg("BYLEX");
        if rev {
            range.arg("REV");
        }
        range.arg("LIMIT").arg(0).arg(JOURNAL_BATCH);
        self.command("read the journal", &range).await
    }

    /// Removes the journal entries forgotten at `now`; returns how many went.
    pub(crate) async fn sweep_journal(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut removed = 0;
        let mut start = b"-".to_vec();
        loop {
            let batch = self.journal_batch(&start, b"+", false).await?;
            let forgotten: Vec<&Vec<u8>> = batch
                .iter()
                .filter(|member| journal_entry(member).is_none_or(|(_, forget)| forget <= now))
                .collect();
            if !forgotten.is_empty() {
                let mut drop = cmd("ZREM");
                drop.arg(self.keys().journal()).arg(forgotten);
                removed += self.command::<u64>("sweep the journal", &drop).await?;
            }
            match batch.last() {
                Some(last) if batch.len() == JOURNAL_BATCH => start = before(last),
                _ => return Ok(removed),
            }
        }
    }
}

#[async_trait]
impl Attachments for RedisStore {
    async fn load_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        now: Timestamp,
    ) -> Result<Option<Attachment>, StoreError> {
        let key = self.keys().attachment(id, kind);
        let stored: Option<Vec<u8>> = self
            .command("load an attachment", cmd("GET").arg(key))
            .await?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let (Some(generation), Some(forget_at)) = (number(&stored, 0), number(&stored, 8)) else {
            return Err(StoreError::corrupt(format!(
                "the attachment of session {id} is {} bytes, too short to be one",
                stored.len()
            )));
        };
        if Timestamp(forget_at) <= now {
            return Ok(None);
        }
        Ok(Some(Attachment {
            generation: u64::try_from(generation).unwrap_or(0),
            value: stored[16..].to_vec(),
        }))
    }

    async fn store_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        value: &[u8],
        expected: Option<u64>,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<AttachmentWrite, StoreError> {
        let generation = expected.map_or(1, |g| g.saturating_add(1));
        let mut stored = Vec::with_capacity(16 + value.len());
        stored.extend_from_slice(&generation.to_be_bytes());
        stored.extend_from_slice(&forget_at.as_millis().to_be_bytes());
        stored.extend_from_slice(value);
        let mut write = evalsha(
            &scripts::STORE_ATTACHMENT,
            &self.keys().attachment(id, kind),
        );
        write
            .arg(expected.map(|g| g.to_string()).unwrap_or_default())
            .arg(stored)
            .arg(px(forget_at))
            .arg(now.as_millis());
        let what = "write an attachment";
        let reply = self.round_trip(what, &[write]).await?;
        let outcome: Vec<u64> = reply
            .into_iter()
            .next()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|e| bad_reply(what, e))?
            .unwrap_or_default();
        match outcome[..] {
            [1] => Ok(AttachmentWrite::Written { generation }),
            [0] => Ok(AttachmentWrite::Conflict { current: None }),
            [0, current] => Ok(AttachmentWrite::Conflict {
                current: Some(current),
            }),
            _ => Err(bad_reply(what, format!("{outcome:?}"))),
        }
    }

    async fn delete_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
    ) -> Result<bool, StoreError> {
        let key = self.keys().attachment(id, kind);
        let deleted: i64 = self
            .command("delete an attachment", cmd("DEL").arg(key))
            .await?;
        Ok(deleted > 0)
    }
}

#[async_trait]
impl Journal for RedisStore {
    async fn append_journal(
        &self,
        entry: &JournalEntry,
        forget_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut add = cmd("ZADD");
        add.arg(self.keys().journal())
            .arg(0)
            .arg(journal_member(entry, forget_at));
        self.command::<Value>("append to the journal", &add)
            .await
            .map(drop)
    }

    async fn journal_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<JournalEntry>, StoreError> {
        let limit = limit.max(1);
        let mut start = match cursor.map(parse_journal_cursor).transpose()? {
            Some((at, nonce)) => before(&journal_key(at, &nonce)),
            None => b"+".to_vec(),
        };
        let mut items = Vec::new();
        // Forgotten entries the sweep has not removed yet are skipped, so
        // a page may need more than one batch.
        while items.len() <= limit {
            let batch = self.journal_batch(&start, b"-", true).await?;
            items.extend(
                batch
                    .iter()
                    .filter_map(|member| journal_entry(member))
                    .filter(|(_, forget_at)| *forget_at > now)
                    .map(|(entry, _)| entry),
            );
            match batch.last() {
                Some(last) if batch.len() == JOURNAL_BATCH => start = before(last),
                _ => break,
            }
        }
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(journal_cursor)
        } else {
            None
        };
        Ok(Page { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_members_sort_as_their_entries_and_read_back() {
        let entry = |at: i64, nonce: u8| JournalEntry {
            at: Timestamp(at),
            nonce: [nonce; 8],
            value: b"x".to_vec(),
        };
        let members: Vec<Vec<u8>> = [entry(-5, 9), entry(3, 1), entry(3, 2), entry(400, 0)]
            .iter()
            .map(|e| journal_member(e, Timestamp(77)))
            .collect();
        let mut sorted = members.clone();
        sorted.sort();
        assert_eq!(sorted, members, "bytes sort as (time, nonce)");
        let (read, forget) = journal_entry(&members[1]).expect("entry");
        assert_eq!((read, forget), (entry(3, 1), Timestamp(77)));
        assert!(journal_entry(&[1, 2, 3]).is_none());
    }
}
