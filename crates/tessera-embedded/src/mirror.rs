//! The in-memory mirror of the database that every read is served from.
//!
//! This process is the database's only writer (the file is locked), and all
//! writes go through one writer thread. The mirror starts as a full load of
//! the database; after each commit the writer applies to it exactly the
//! primitive changes ([`Effect`]s) that the committed transaction made, in
//! the same order, under the mirror's write lock and before any caller of
//! that transaction is answered. So between commits the mirror equals the
//! database, readers see each commit all at once, and an acknowledged write
//! is visible to every later read. A failed commit changes neither.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use redb::{ReadableMultimapTable, ReadableTable};
use tessera_core::codec::decode_entry;
use tessera_core::{Session, SessionId, StoredEntry, Timestamp, TokenHash, Tombstone};

use crate::error::EmbeddedError;
use crate::schema::{ENTRIES, GLOBAL_EPOCH_KEY, IDS, META, SUBJECT_EPOCHS, SUBJECTS};

/// A record as the mirror holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MirrorEntry {
    Live(Arc<Session>),
    Tombstone(Tombstone),
}

impl MirrorEntry {
    pub(crate) fn forget_at(&self) -> Timestamp {
        match self {
            MirrorEntry::Live(session) => session.forget_at(),
            MirrorEntry::Tombstone(tombstone) => tombstone.forget_at,
        }
    }
}

impl From<StoredEntry> for MirrorEntry {
    fn from(entry: StoredEntry) -> Self {
        match entry {
            StoredEntry::Live(session) => MirrorEntry::Live(session),
            StoredEntry::Tombstone(tombstone) => MirrorEntry::Tombstone(tombstone),
        }
    }
}

/// One primitive change a write transaction made; applied to the mirror
/// after the transaction commits.
#[derive(Debug)]
pub(crate) enum Effect {
    PutEntry(TokenHash, MirrorEntry),
    RemoveEntry(TokenHash),
    PutId(SessionId, TokenHash),
    RemoveId(SessionId),
    AddSubject(Box<str>, SessionId),
    RemoveSubject(Box<str>, SessionId),
    GlobalEpoch(u64),
    SubjectEpoch(Box<str>, u64),
}

/// The whole database, in memory.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Mirror {
    pub(crate) entries: HashMap<TokenHash, MirrorEntry>,
    pub(crate) ids: HashMap<SessionId, TokenHash>,
    pub(crate) subjects: HashMap<Box<str>, HashSet<SessionId>>,
    pub(crate) global_epoch: u64,
    pub(crate) subject_epochs: HashMap<Box<str>, u64>,
}

impl Mirror {
    /// Reads the whole database and checks that its tables agree with each
    /// other (every transaction keeps them so; a disagreement means damage).
    pub(crate) fn load(db: &redb::Database, path: &Path) -> Result<Mirror, EmbeddedError> {
        use redb::ReadableDatabase;
        let fail = |e: redb::Error| EmbeddedError::database(path, e);
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let mut mirror = Mirror::default();

        let meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
        mirror.global_epoch = meta
            .get(GLOBAL_EPOCH_KEY)
            .map_err(|e| fail(e.into()))?
            .map(|v| v.value())
            .unwrap_or(0);

        let entries = txn.open_table(ENTRIES).map_err(|e| fail(e.into()))?;
        for row in entries.iter().map_err(|e| fail(e.into()))? {
            let (key, value) = row.map_err(|e| fail(e.into()))?;
            let key = TokenHash(*key.value());
            let entry = decode_entry(value.value()).map_err(|e| {
                EmbeddedError::corrupt(path, format!("record {}: {e}", key.to_hex()))
            })?;
            mirror.entries.insert(key, entry.into());
        }

        let ids = txn.open_table(IDS).map_err(|e| fail(e.into()))?;
        for row in ids.iter().map_err(|e| fail(e.into()))? {
            let (id, key) = row.map_err(|e| fail(e.into()))?;
            mirror
                .ids
                .insert(SessionId(*id.value()), TokenHash(*key.value()));
        }

        let subjects = txn
            .open_multimap_table(SUBJECTS)
            .map_err(|e| fail(e.into()))?;
        for row in subjects.iter().map_err(|e| fail(e.into()))? {
            let (subject, ids) = row.map_err(|e| fail(e.into()))?;
            let mut set = HashSet::new();
            for id in ids {
                set.insert(SessionId(*id.map_err(|e| fail(e.into()))?.value()));
            }
            mirror.subjects.insert(subject.value().into(), set);
        }

        let epochs = txn.open_table(SUBJECT_EPOCHS).map_err(|e| fail(e.into()))?;
        for row in epochs.iter().map_err(|e| fail(e.into()))? {
            let (subject, epoch) = row.map_err(|e| fail(e.into()))?;
            mirror
                .subject_epochs
                .insert(subject.value().into(), epoch.value());
        }

        mirror
            .check_indexes()
            .map_err(|message| EmbeddedError::corrupt(path, message))?;
        Ok(mirror)
    }

    /// Checks the invariants every write transaction keeps: each live
    /// session is reachable from its id, each id leads to its live session,
    /// and the subject index lists exactly the live sessions of each subject.
    pub(crate) fn check_indexes(&self) -> Result<(), String> {
        let mut live = 0usize;
        for (key, entry) in &self.entries {
            if let MirrorEntry::Live(session) = entry {
                live += 1;
                if self.ids.get(&session.id) != Some(key) {
                    return Err(format!(
                        "session {} is missing from the id index",
                        session.id
                    ));
                }
                if let Some(subject) = session.subject.as_deref()
                    && !self
                        .subjects
                        .get(subject)
                        .is_some_and(|ids| ids.contains(&session.id))
                {
                    return Err(format!(
                        "session {} is missing from its subject's index",
                        session.id
                    ));
                }
            }
        }
        if self.ids.len() != live {
            return Err(format!(
                "the id index has {} entries for {live} live sessions",
                self.ids.len()
            ));
        }
        for (subject, ids) in &self.subjects {
            for id in ids {
                let indexed = self
                    .ids
                    .get(id)
                    .and_then(|key| self.entries.get(key))
                    .is_some_and(|entry| {
                        matches!(entry, MirrorEntry::Live(s) if s.subject.as_deref() == Some(&**subject))
                    });
                if !indexed {
                    return Err(format!(
                        "the subject index lists session {id}, which is not a live session of that subject"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Applies the changes of one committed transaction.
    pub(crate) fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::PutEntry(key, entry) => {
                    self.entries.insert(key, entry);
                }
                Effect::RemoveEntry(key) => {
                    self.entries.remove(&key);
                }
                Effect::PutId(id, key) => {
                    self.ids.insert(id, key);
                }
                Effect::RemoveId(id) => {
                    self.ids.remove(&id);
                }
                Effect::AddSubject(subject, id) => {
                    self.subjects.entry(subject).or_default().insert(id);
                }
                Effect::RemoveSubject(subject, id) => {
                    if let Some(ids) = self.subjects.get_mut(&subject) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            self.subjects.remove(&subject);
                        }
                    }
                }
                Effect::GlobalEpoch(epoch) => self.global_epoch = epoch,
                Effect::SubjectEpoch(subject, epoch) => {
                    self.subject_epochs.insert(subject, epoch);
                }
            }
        }
    }

    /// The live session stored under `key`, unless it may be forgotten at `now`.
    pub(crate) fn live(&self, key: &TokenHash, now: Timestamp) -> Option<&Arc<Session>> {
        match self.entries.get(key) {
            Some(MirrorEntry::Live(session)) if session.forget_at() > now => Some(session),
            _ => None,
        }
    }

    /// The live session with this id and its key.
    pub(crate) fn by_id(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Option<(TokenHash, Arc<Session>)> {
        let key = self.ids.get(id)?;
        self.live(key, now)
            .filter(|session| session.id == *id)
            .map(|session| (*key, session.clone()))
    }

    /// Keys of records and tombstones that may be forgotten at `now`.
    pub(crate) fn expired_keys(&self, now: Timestamp) -> Vec<TokenHash> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.forget_at() <= now)
            .map(|(key, _)| *key)
            .collect()
    }
}
