//! One group of writes inside one write transaction, and what its jobs read.
//!
//! Jobs decide from the mirror plus the group's own earlier writes (an
//! overlay), never by reading and decoding records from the file: the
//! mirror equals the database as of the last commit (see [`crate::mirror`]),
//! and only the writer thread, which runs the group, changes either. So
//! `mirror + overlay` is exactly what the transaction would read, at the
//! cost of a hash lookup instead of a B-tree walk and a JSON decode.
//!
//! Every write goes to the transaction's tables, to the overlay, and to the
//! list of [`Effect`]s that the writer applies to the mirror after commit.

use std::collections::HashMap;
use std::sync::Arc;

use tessera_core::codec::encode_entry;
use tessera_core::{Session, SessionId, StoreError, StoredEntry, Timestamp, TokenHash, Tombstone};

use crate::error::{failure_text, unavailable};
use crate::mirror::{Effect, Mirror, MirrorEntry};
use crate::schema::{ENTRIES, GLOBAL_EPOCH_KEY, IDS, META, SUBJECT_EPOCHS, SUBJECTS};

/// The tables of one write transaction.
pub(crate) struct Tables<'t> {
    meta: redb::Table<'t, &'static str, u64>,
    entries: redb::Table<'t, &'static [u8; 32], &'static [u8]>,
    ids: redb::Table<'t, &'static [u8; 16], &'static [u8; 32]>,
    subjects: redb::MultimapTable<'t, &'static str, &'static [u8; 16]>,
    subject_epochs: redb::Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    pub(crate) fn open(txn: &'t redb::WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Self {
            meta: txn.open_table(META)?,
            entries: txn.open_table(ENTRIES)?,
            ids: txn.open_table(IDS)?,
            subjects: txn.open_multimap_table(SUBJECTS)?,
            subject_epochs: txn.open_table(SUBJECT_EPOCHS)?,
        })
    }
}

/// The group's own writes, which later jobs of the group must see.
#[derive(Default)]
struct Overlay {
    entries: HashMap<TokenHash, Option<MirrorEntry>>,
    ids: HashMap<SessionId, Option<TokenHash>>,
    /// `true`: added to the subject's index; `false`: removed from it.
    subjects: HashMap<(Box<str>, SessionId), bool>,
    global_epoch: Option<u64>,
    subject_epochs: HashMap<Box<str>, u64>,
}

/// One group of jobs inside one write transaction.
pub(crate) struct Batch<'t> {
    tables: Tables<'t>,
    mirror: &'t Mirror,
    overlay: Overlay,
    pub(crate) effects: Vec<Effect>,
    pub(crate) failure: Option<String>,
    /// Whether the database engine refused a write (an I/O error such as a
    /// full disk): the writer then reopens the database before the next group.
    pub(crate) engine_failed: bool,
}

impl<'t> Batch<'t> {
    /// A batch over a transaction's tables and the mirror as of its start.
    pub(crate) fn new(tables: Tables<'t>, mirror: &'t Mirror) -> Self {
        Self {
            tables,
            mirror,
            overlay: Overlay::default(),
            effects: Vec::new(),
            failure: None,
            engine_failed: false,
        }
    }

    /// Whether an earlier job broke the group (then later jobs must not run).
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Passes on the outcome of a write; a refused write breaks the group.
    fn check(
        &mut self,
        outcome: Result<(), redb::StorageError>,
        what: &str,
    ) -> Result<(), StoreError> {
        outcome.map_err(|e| {
            self.engine_failed = true;
            self.failure.get_or_insert_with(|| failure_text(what, &e));
            unavailable(what, e)
        })
    }

    // ---- reads: the overlay, then the mirror ----

    /// The record under `key`.
    pub(crate) fn entry(&self, key: &TokenHash) -> Result<Option<StoredEntry>, StoreError> {
        let found = match self.overlay.entries.get(key) {
            Some(written) => written.as_ref(),
            None => self.mirror.entries.get(key),
        };
        Ok(found.map(|entry| match entry {
            MirrorEntry::Live(session) => StoredEntry::Live(session.clone()),
            MirrorEntry::Tombstone(tombstone) => StoredEntry::Tombstone(*tombstone),
        }))
    }

    /// The live session under `key`, unless it may be forgotten at `now`.
    pub(crate) fn live(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(match self.entry(key)? {
            Some(StoredEntry::Live(session)) if session.forget_at() > now => Some(session),
            _ => None,
        })
    }

    /// Whether anything is stored under `key`.
    pub(crate) fn has_entry(&self, key: &TokenHash) -> Result<bool, StoreError> {
        Ok(match self.overlay.entries.get(key) {
            Some(written) => written.is_some(),
            None => self.mirror.entries.contains_key(key),
        })
    }

    /// The key of the live session with this id.
    pub(crate) fn key_of(&self, id: &SessionId) -> Result<Option<TokenHash>, StoreError> {
        Ok(match self.overlay.ids.get(id) {
            Some(written) => *written,
            None => self.mirror.ids.get(id).copied(),
        })
    }

    /// The ids the subject index lists for `subject`.
    pub(crate) fn subject_ids(&self, subject: &str) -> Result<Vec<SessionId>, StoreError> {
        let mut ids: Vec<SessionId> = self
            .mirror
            .subjects
            .get(subject)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        for ((indexed, id), added) in &self.overlay.subjects {
            if &**indexed != subject {
                continue;
            }
            ids.retain(|known| known != id);
            if *added {
                ids.push(*id);
            }
        }
        Ok(ids)
    }

    /// The global revocation epoch.
    pub(crate) fn global_epoch(&self) -> Result<u64, StoreError> {
        Ok(self
            .overlay
            .global_epoch
            .unwrap_or(self.mirror.global_epoch))
    }

    /// A subject's revocation epoch.
    pub(crate) fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        Ok(self
            .overlay
            .subject_epochs
            .get(subject)
            .or_else(|| self.mirror.subject_epochs.get(subject))
            .copied()
            .unwrap_or(0))
    }

    // ---- writes: the table, the overlay, and an effect for the mirror ----

    fn record(&mut self, key: TokenHash, entry: Option<MirrorEntry>) {
        self.overlay.entries.insert(key, entry.clone());
        self.effects.push(match entry {
            Some(entry) => Effect::PutEntry(key, entry),
            None => Effect::RemoveEntry(key),
        });
    }

    /// Stores a live session under `key`.
    pub(crate) fn put_session(
        &mut self,
        key: &TokenHash,
        session: &Session,
    ) -> Result<(), StoreError> {
        let session = Arc::new(session.clone());
        let bytes = encode_entry(&StoredEntry::Live(session.clone()))?;
        let outcome = self
            .tables
            .entries
            .insert(&key.0, bytes.as_slice())
            .map(|_| ());
        self.check(outcome, "write a record")?;
        self.record(*key, Some(MirrorEntry::Live(session)));
        Ok(())
    }

    /// Stores a tombstone under `key`.
    pub(crate) fn put_tombstone(
        &mut self,
        key: &TokenHash,
        tombstone: &Tombstone,
    ) -> Result<(), StoreError> {
        let bytes = encode_entry(&StoredEntry::Tombstone(*tombstone))?;
        let outcome = self
            .tables
            .entries
            .insert(&key.0, bytes.as_slice())
            .map(|_| ());
        self.check(outcome, "write a tombstone")?;
        self.record(*key, Some(MirrorEntry::Tombstone(*tombstone)));
        Ok(())
    }

    /// Removes the record under `key`.
    pub(crate) fn remove_entry(&mut self, key: &TokenHash) -> Result<(), StoreError> {
        let outcome = self.tables.entries.remove(&key.0).map(|_| ());
        self.check(outcome, "remove a record")?;
        self.record(*key, None);
        Ok(())
    }

    /// Points the id index at `key`.
    pub(crate) fn put_id(&mut self, id: &SessionId, key: &TokenHash) -> Result<(), StoreError> {
        let outcome = self.tables.ids.insert(&id.0, &key.0).map(|_| ());
        self.check(outcome, "write the id index")?;
        self.overlay.ids.insert(*id, Some(*key));
        self.effects.push(Effect::PutId(*id, *key));
        Ok(())
    }

    /// Removes an id from the id index.
    pub(crate) fn remove_id(&mut self, id: &SessionId) -> Result<(), StoreError> {
        let outcome = self.tables.ids.remove(&id.0).map(|_| ());
        self.check(outcome, "remove from the id index")?;
        self.overlay.ids.insert(*id, None);
        self.effects.push(Effect::RemoveId(*id));
        Ok(())
    }

    /// Adds a session to its subject's index.
    pub(crate) fn add_subject(&mut self, subject: &str, id: &SessionId) -> Result<(), StoreError> {
        let outcome = self.tables.subjects.insert(subject, &id.0).map(|_| ());
        self.check(outcome, "write the subject index")?;
        self.overlay.subjects.insert((subject.into(), *id), true);
        self.effects.push(Effect::AddSubject(subject.into(), *id));
        Ok(())
    }

    /// Removes a session from its subject's index.
    pub(crate) fn remove_subject(
        &mut self,
        subject: &str,
        id: &SessionId,
    ) -> Result<(), StoreError> {
        let outcome = self.tables.subjects.remove(subject, &id.0).map(|_| ());
        self.check(outcome, "remove from the subject index")?;
        self.overlay.subjects.insert((subject.into(), *id), false);
        self.effects
            .push(Effect::RemoveSubject(subject.into(), *id));
        Ok(())
    }

    /// Moves a session between subjects in the index.
    pub(crate) fn move_subject(
        &mut self,
        id: &SessionId,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<(), StoreError> {
        if from == to {
            return Ok(());
        }
        if let Some(from) = from {
            self.remove_subject(from, id)?;
        }
        if let Some(to) = to {
            self.add_subject(to, id)?;
        }
        Ok(())
    }

    /// Sets the global revocation epoch.
    pub(crate) fn set_global_epoch(&mut self, epoch: u64) -> Result<(), StoreError> {
        let outcome = self.tables.meta.insert(GLOBAL_EPOCH_KEY, epoch).map(|_| ());
        self.check(outcome, "write the global epoch")?;
        self.overlay.global_epoch = Some(epoch);
        self.effects.push(Effect::GlobalEpoch(epoch));
        Ok(())
    }

    /// Sets a subject's revocation epoch.
    pub(crate) fn set_subject_epoch(
        &mut self,
        subject: &str,
        epoch: u64,
    ) -> Result<(), StoreError> {
        let outcome = self
            .tables
            .subject_epochs
            .insert(subject, epoch)
            .map(|_| ());
        self.check(outcome, "write a subject epoch")?;
        self.overlay.subject_epochs.insert(subject.into(), epoch);
        self.effects
            .push(Effect::SubjectEpoch(subject.into(), epoch));
        Ok(())
    }
}
