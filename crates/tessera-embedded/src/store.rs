//! The [`SessionStore`] operations: reads from the mirror, writes as
//! all-or-nothing jobs of the writer thread.

use std::sync::Arc;

use async_trait::async_trait;
use tessera_core::{
    CreateOutcome, ExportPage, Session, SessionId, SessionStore, StoreError, StoredEntry,
    Timestamp, TokenHash, Tombstone, WriteOutcome, page_of_keys,
};

use crate::EmbeddedStore;
use crate::mirror::MirrorEntry;

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn create(
        &self,
        key: &TokenHash,
        session: &Session,
    ) -> Result<CreateOutcome, StoreError> {
        let (key, session) = (*key, session.clone());
        self.write(move |batch| {
            if batch.has_entry(&key)? || batch.key_of(&session.id)?.is_some() {
                return Ok(CreateOutcome::AlreadyExists);
            }
            batch.put_session(&key, &session)?;
            batch.put_id(&session.id, &key)?;
            if let Some(subject) = session.subject.as_deref() {
                batch.add_subject(subject, &session.id)?;
            }
            Ok(CreateOutcome::Created)
        })
        .await
    }

    async fn load(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<StoredEntry>, StoreError> {
        self.read(|mirror| match mirror.entries.get(key) {
            Some(MirrorEntry::Live(session)) if session.forget_at() > now => {
                Some(StoredEntry::Live(session.clone()))
            }
            Some(MirrorEntry::Tombstone(tombstone)) if tombstone.forget_at > now => {
                Some(StoredEntry::Tombstone(*tombstone))
            }
            _ => None,
        })
    }

    async fn load_by_id(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<(TokenHash, Arc<Session>)>, StoreError> {
        self.read(|mirror| mirror.by_id(id, now))
    }

    async fn update(
        &self,
        key: &TokenHash,
        session: &Session,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let (key, session) = (*key, session.clone());
        self.write(move |batch| {
            let Some(stored) = batch.live(&key, now)? else {
                return Ok(WriteOutcome::NotFound);
            };
            if stored.id != session.id {
                return Ok(WriteOutcome::NotFound);
            }
            if stored.version != expected_version {
                return Ok(WriteOutcome::VersionConflict {
                    current: stored.version,
                });
            }
            batch.put_session(&key, &session)?;
            batch.move_subject(
                &session.id,
                stored.subject.as_deref(),
                session.subject.as_deref(),
            )?;
            Ok(WriteOutcome::Written)
        })
        .await
    }

    async fn touch(
        &self,
        key: &TokenHash,
        last_seen_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let key = *key;
        self.write(move |batch| {
            let Some(stored) = batch.live(&key, now)? else {
                return Ok(WriteOutcome::NotFound);
            };
            if stored.last_seen_at < last_seen_at {
                let mut touched = (*stored).clone();
                touched.last_seen_at = last_seen_at;
                batch.put_session(&key, &touched)?;
            }
            Ok(WriteOutcome::Written)
        })
        .await
    }

    async fn rotate(
        &self,
        old_key: &TokenHash,
        new_key: &TokenHash,
        session: &Session,
        expected_version: u64,
        tombstone: &Tombstone,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let (old_key, new_key, session, tombstone) =
            (*old_key, *new_key, session.clone(), *tombstone);
        self.write(move |batch| {
            let Some(stored) = batch.live(&old_key, now)? else {
                return Ok(WriteOutcome::NotFound);
            };
            if stored.id != session.id {
                return Ok(WriteOutcome::NotFound);
            }
            if stored.version != expected_version {
                return Ok(WriteOutcome::VersionConflict {
                    current: stored.version,
                });
            }
            if new_key == old_key || batch.has_entry(&new_key)? {
                // Keys are hashes of 256 random bits: this is a caller bug,
                // and overwriting would orphan another record.
                return Err(StoreError::corrupt(
                    "rotate: the new key is already in use; nothing was written",
                ));
            }
            batch.put_session(&new_key, &session)?;
            batch.put_tombstone(&old_key, &tombstone)?;
            batch.put_id(&session.id, &new_key)?;
            batch.move_subject(
                &session.id,
                stored.subject.as_deref(),
                session.subject.as_deref(),
            )?;
            Ok(WriteOutcome::Written)
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let id = *id;
        self.write(move |batch| {
            let Some(key) = batch.key_of(&id)? else {
                return Ok(false);
            };
            let entry = batch.entry(&key)?;
            batch.remove_id(&id)?;
            match entry {
                Some(StoredEntry::Live(session)) => {
                    batch.remove_entry(&key)?;
                    if let Some(subject) = session.subject.as_deref() {
                        batch.remove_subject(subject, &id)?;
                    }
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await
    }

    async fn list_by_subject(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Arc<Session>>, StoreError> {
        self.read(|mirror| {
            let Some(ids) = mirror.subjects.get(subject) else {
                return Vec::new();
            };
            ids.iter()
                .filter_map(|id| mirror.by_id(id, now))
                .map(|(_, session)| session)
                .filter(|session| session.subject.as_deref() == Some(subject))
                .collect()
        })
    }

    async fn delete_by_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        let (subject, except) = (subject.to_owned(), except.copied());
        self.write(move |batch| {
            let mut doomed = Vec::new();
            for id in batch.subject_ids(&subject)? {
                if Some(id) == except {
                    continue;
                }
                let Some(key) = batch.key_of(&id)? else {
                    continue;
                };
                if let Some(session) = batch.live(&key, now)?
                    && session.subject.as_deref() == Some(subject.as_str())
                {
                    doomed.push((id, key));
                }
            }
            for (id, key) in &doomed {
                batch.remove_entry(key)?;
                batch.remove_id(id)?;
                batch.remove_subject(&subject, id)?;
            }
            Ok(doomed.into_iter().map(|(id, _)| id).collect())
        })
        .await
    }

    async fn global_epoch(&self) -> Result<u64, StoreError> {
        self.read(|mirror| mirror.global_epoch)
    }

    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        self.write(|batch| {
            let epoch = batch.global_epoch()? + 1;
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
            let epoch = batch.subject_epoch(&subject)? + 1;
            batch.set_subject_epoch(&subject, epoch)?;
            Ok(epoch)
        })
        .await
    }

    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.sweep(now).await
    }

    /// Goes through the writer thread and reads the database, so it proves
    /// that writes can be made, not only that the mirror answers.
    async fn ping(&self) -> Result<(), StoreError> {
        self.write(|batch| batch.global_epoch().map(|_| ())).await
    }

    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<ExportPage, StoreError> {
        self.read(|mirror| {
            let (keys, next) = page_of_keys(mirror.ids.values().copied(), cursor, limit)?;
            let sessions = keys
                .into_iter()
                .filter_map(|key| mirror.live(&key, now).map(|session| (key, session.clone())))
                .collect();
            Ok(ExportPage { sessions, next })
        })?
    }
}
