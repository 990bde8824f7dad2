//! The store contract: reads from the mirror, writes as all-or-nothing jobs
//! of the writer thread. Records are encoded (and their bytes decoded) by
//! the caller's task, so the writer thread only compares and stores bytes.

use async_trait::async_trait;
use tessera_core::codec;
use tessera_core::store::{
    Attachment, AttachmentKind, AttachmentWrite, Attachments, CreateOutcome, Durability, Epochs,
    Journal, JournalEntry, Maintenance, Page, Records, StoreError, SubjectIndex, WriteOutcome,
    journal_cursor, page_of_ids, parse_journal_cursor,
};
use tessera_core::{Revision, SessionId, SessionRecord, Timestamp, TokenHash};

use crate::EmbeddedStore;
use crate::mirror::{encode_attachment, encode_journal, live, live_attachment, live_journal};
use crate::schema::{journal_key, journal_position};

fn no_revision() -> StoreError {
    StoreError::corrupt("a stored record has no revision (not of the current record format)")
}

#[async_trait]
impl Records for EmbeddedStore {
    async fn create(
        &self,
        record: &SessionRecord,
        forget_at: Timestamp,
    ) -> Result<CreateOutcome, StoreError> {
        let bytes = codec::encode(record, forget_at).into_boxed_slice();
        let (id, subject) = (record.id, record.subject.clone());
        self.write(move |batch| {
            if batch.record(&id).is_some() {
                return Ok(CreateOutcome::AlreadyExists);
            }
            batch.put_record(&id, bytes)?;
            if let Some(subject) = subject.as_deref() {
                batch.add_subject(subject, &id);
            }
            Ok(CreateOutcome::Created)
        })
        .await
    }

    async fn load(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.read(|mirror| {
            mirror
                .live(id, now)
                .map(|bytes| codec::decode(bytes, None))
                .transpose()
        })?
    }

    async fn update(
        &self,
        record: &SessionRecord,
        expected: Revision,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let bytes = codec::encode(record, forget_at).into_boxed_slice();
        let (id, subject) = (record.id, record.subject.clone());
        self.write(move |batch| {
            let Some(stored) = batch.live(&id, now) else {
                return Ok(WriteOutcome::NotFound);
            };
            let current = codec::revision_of(stored).ok_or_else(no_revision)?;
            if current != expected {
                return Ok(WriteOutcome::Conflict { current });
            }
            let before = codec::subject_of(stored).map(Box::<str>::from);
            batch.put_record(&id, bytes)?;
            batch.move_subject(&id, before.as_deref(), subject.as_deref());
            Ok(WriteOutcome::Written)
        })
        .await
    }

    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let id = *id;
        self.write(move |batch| {
            let Some(stored) = batch.live(&id, now) else {
                return Ok(WriteOutcome::NotFound);
            };
            let mut touched: Box<[u8]> = stored.into();
            if !codec::touch_in_place(&mut touched, last_seen_at, forget_at) {
                return Err(no_revision());
            }
            // Nothing moves forward: nothing to write (and no commit).
            if *touched != *stored {
                batch.put_record(&id, touched)?;
            }
            Ok(WriteOutcome::Written)
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let id = *id;
        self.write(move |batch| {
            let Some(stored) = batch.record(&id) else {
                return Ok(false);
            };
            let subject = codec::subject_of(stored).map(Box::<str>::from);
            batch.end_session(&id)?;
            if let Some(subject) = subject.as_deref() {
                batch.remove_subject(subject, &id);
            }
            Ok(true)
        })
        .await
    }

    /// Sessions converted from store format 1 left a pointer from their old
    /// token's hash; it answers while the session's record lives.
    async fn find_legacy(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<SessionId>, StoreError> {
        self.read(|mirror| {
            mirror
                .legacy
                .get(key)
                .filter(|id| mirror.live(id, now).is_some())
                .copied()
        })
    }

    /// Goes through the writer thread, so it proves that writes can be
    /// made, not only that the mirror answers.
    async fn ping(&self) -> Result<(), StoreError> {
        self.write(|batch| {
            batch.global_epoch();
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl SubjectIndex for EmbeddedStore {
    async fn list_subject(
        &self,
        subject: &str,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        self.read(|mirror| {
            let ids = mirror.subjects.ids(subject);
            let live_ids = ids.filter(|id| mirror.live(id, now).is_some());
            let (page, next) = page_of_ids(live_ids, cursor, limit)?;
            let mut items = Vec::with_capacity(page.len());
            for id in page {
                if let Some(bytes) = mirror.live(&id, now) {
                    let record = codec::decode(bytes, None)?;
                    if record.subject.as_deref() == Some(subject) {
                        items.push(record);
                    }
                }
            }
            Ok(Page { items, next })
        })?
    }

    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        let (subject, except) = (subject.to_owned(), except.copied());
        self.write(move |batch| {
            let mut doomed = Vec::new();
            for id in batch.subject_ids(&subject) {
                if Some(id) == except {
                    continue;
                }
                if batch
                    .live(&id, now)
                    .is_some_and(|bytes| codec::subject_of(bytes) == Some(subject.as_str()))
                {
                    doomed.push(id);
                }
            }
            for id in &doomed {
                batch.end_session(id)?;
                batch.remove_subject(&subject, id);
            }
            Ok(doomed)
        })
        .await
    }
}

#[async_trait]
impl Epochs for EmbeddedStore {
    /// Every epoch is committed to disk (fsync) before it is returned.
    fn durability(&self) -> Durability {
        Durability::Persistent
    }

    async fn global_epoch(&self) -> Result<u64, StoreError> {
        self.read(|mirror| mirror.global_epoch)
    }

    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        self.write(|batch| {
            let epoch = batch.global_epoch() + 1;
            batch.set_global_epoch(epoch)?;
            Ok(epoch)
        })
        .await
    }

    async fn raise_global_epoch(&self, epoch: u64) -> Result<u64, StoreError> {
        self.write(move |batch| {
            let current = batch.global_epoch();
            if current >= epoch {
                return Ok(current);
            }
            batch.set_global_epoch(epoch)?;
            Ok(epoch)
        })
        .await
    }

    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        self.read(|mirror| mirror.subject_epochs.get(subject).copied().unwrap_or(0))
    }

    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let subject = subject.to_owned();
        self.write(move |batch| {
            let epoch = batch.subject_epoch(&subject) + 1;
            batch.set_subject_epoch(&subject, epoch)?;
            Ok(epoch)
        })
        .await
    }

    async fn raise_subject_epoch(&self, subject: &str, epoch: u64) -> Result<u64, StoreError> {
        let subject = subject.to_owned();
        self.write(move |batch| {
            let current = batch.subject_epoch(&subject);
            if current >= epoch {
                return Ok(current);
            }
            batch.set_subject_epoch(&subject, epoch)?;
            Ok(epoch)
        })
        .await
    }
}

#[async_trait]
impl Maintenance for EmbeddedStore {
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.sweep(now).await
    }

    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        self.read(|mirror| {
            let ids = mirror
                .records
                .iter()
                .filter(|(_, bytes)| live(bytes, now))
                .map(|(id, _)| *id);
            let (page, next) = page_of_ids(ids, cursor, limit)?;
            let mut items = Vec::with_capacity(page.len());
            for id in page {
                if let Some(bytes) = mirror.live(&id, now) {
                    items.push(codec::decode(bytes, None)?);
                }
            }
            Ok(Page { items, next })
        })?
    }
}

#[async_trait]
impl Attachments for EmbeddedStore {
    async fn load_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        now: Timestamp,
    ) -> Result<Option<Attachment>, StoreError> {
        self.read(|mirror| {
            mirror
                .attachments
                .get(&(*id, kind.tag()))
                .and_then(|bytes| live_attachment(bytes, now))
                .map(|(generation, value)| Attachment {
                    generation,
                    value: value.to_vec(),
                })
        })
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
        let (id, tag) = (*id, kind.tag());
        let generation = expected.map_or(1, |g| g.saturating_add(1));
        let bytes = encode_attachment(generation, forget_at, value);
        self.write(move |batch| {
            let current = batch
                .attachment(&id, tag)
                .and_then(|stored| live_attachment(stored, now))
                .map(|(generation, _)| generation);
            if current != expected {
                return Ok(AttachmentWrite::Conflict { current });
            }
            batch.put_attachment(&id, tag, bytes)?;
            Ok(AttachmentWrite::Written { generation })
        })
        .await
    }

    async fn delete_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
    ) -> Result<bool, StoreError> {
        let (id, tag) = (*id, kind.tag());
        self.write(move |batch| {
            if batch.attachment(&id, tag).is_none() {
                return Ok(false);
            }
            batch.remove_attachment(&id, tag)?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl Journal for EmbeddedStore {
    async fn append_journal(
        &self,
        entry: &JournalEntry,
        forget_at: Timestamp,
    ) -> Result<(), StoreError> {
        let key = journal_key(entry.at, &entry.nonce);
        let bytes = encode_journal(forget_at, &entry.value);
        self.write(move |batch| batch.put_journal(key, bytes)).await
    }

    async fn journal_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<JournalEntry>, StoreError> {
        let before = cursor
            .map(parse_journal_cursor)
            .transpose()?
            .map(|(at, nonce)| journal_key(at, &nonce));
        let limit = limit.max(1);
        self.read(|mirror| {
            let older = match before {
                Some(key) => mirror.journal.range(..key),
                None => mirror.journal.range::<[u8; 16], _>(..),
            };
            let mut items: Vec<JournalEntry> = older
                .rev()
                .filter_map(|(key, bytes)| {
                    let value = live_journal(bytes, now)?;
                    let (at, nonce) = journal_position(key);
                    Some(JournalEntry {
                        at,
                        nonce,
                        value: value.to_vec(),
                    })
                })
                .take(limit + 1)
                .collect();
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(journal_cursor)
            } else {
                None
            };
            Page { items, next }
        })
    }
}
