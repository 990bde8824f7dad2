//! One group of writes inside one write transaction, and what its jobs read.
//!
//! Jobs decide from the mirror plus the group's own earlier writes (its
//! [`Changes`]), never by reading records from the file: the mirror equals
//! the database as of the last commit (see [`crate::mirror`]), and only the
//! writer thread, which runs the group, changes either. So `mirror +
//! changes` is exactly what the transaction would read, at the cost of a
//! hash lookup instead of a B-tree walk.
//!
//! Every write goes to the transaction's tables and to the changes, which
//! the writer applies to the mirror after the commit. The subject index
//! lives in the mirror only (see [`crate::schema`]): its changes go to the
//! changes alone.

use tessera_core::store::{AttachmentKind, StoreError};
use tessera_core::{SessionId, Timestamp, TokenHash};

use crate::error::{failure_text, unavailable};
use crate::mirror::{Changes, Mirror, live};
use crate::schema::{
    ATTACHMENTS, GLOBAL_EPOCH_KEY, JOURNAL, LEGACY_TOKENS, META, RECORDS, SUBJECT_EPOCHS,
    attachment_key,
};

/// The tables of one write transaction.
pub(crate) struct Tables<'t> {
    meta: redb::Table<'t, &'static str, u64>,
    records: redb::Table<'t, &'static [u8; 16], &'static [u8]>,
    subject_epochs: redb::Table<'t, &'static str, u64>,
    legacy: redb::Table<'t, &'static [u8; 32], &'static [u8; 16]>,
    attachments: redb::Table<'t, &'static [u8; 17], &'static [u8]>,
    journal: redb::Table<'t, &'static [u8; 16], &'static [u8]>,
}

impl<'t> Tables<'t> {
    pub(crate) fn open(txn: &'t redb::WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Self {
            meta: txn.open_table(META)?,
            records: txn.open_table(RECORDS)?,
            subject_epochs: txn.open_table(SUBJECT_EPOCHS)?,
            legacy: txn.open_table(LEGACY_TOKENS)?,
            attachments: txn.open_table(ATTACHMENTS)?,
            journal: txn.open_table(JOURNAL)?,
        })
    }
}

/// One group of jobs inside one write transaction.
pub(crate) struct Batch<'t> {
    tables: Tables<'t>,
    mirror: &'t Mirror,
    pub(crate) changes: Changes,
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
            changes: Changes::default(),
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
        self.changes.writes += 1;
        outcome.map_err(|e| {
            self.engine_failed = true;
            self.failure.get_or_insert_with(|| failure_text(what, &e));
            unavailable(what, e)
        })
    }

    // ---- reads: the group's changes, then the mirror ----

    /// The record with this id, forgotten or not.
    pub(crate) fn record(&self, id: &SessionId) -> Option<&[u8]> {
        match self.changes.records.get(id) {
            Some(written) => written.as_deref(),
            None => self.mirror.records.get(id).map(|bytes| &bytes[..]),
        }
    }

    /// The record with this id, unless it may be forgotten at `now`.
    pub(crate) fn live(&self, id: &SessionId, now: Timestamp) -> Option<&[u8]> {
        self.record(id).filter(|bytes| live(bytes, now))
    }

    /// The ids the subject index lists for `subject`.
    pub(crate) fn subject_ids(&self, subject: &str) -> Vec<SessionId> {
        let mut ids: Vec<SessionId> = self.mirror.subjects.ids(subject).collect();
        for ((indexed, id), added) in &self.changes.subjects {
            if &**indexed != subject {
                continue;
            }
            ids.retain(|known| known != id);
            if *added {
                ids.push(*id);
            }
        }
        ids
    }

    /// An attachment as stored (generation, deadline, bytes), forgotten or not.
    pub(crate) fn attachment(&self, id: &SessionId, tag: u8) -> Option<&[u8]> {
        match self.changes.attachments.get(&(*id, tag)) {
            Some(written) => written.as_deref(),
            None => self.mirror.attachments.get(&(*id, tag)).map(|b| &b[..]),
        }
    }

    /// A journal entry as stored (deadline, bytes).
    pub(crate) fn journal_entry(&self, key: &[u8; 16]) -> Option<&[u8]> {
        match self.changes.journal.get(key) {
            Some(written) => written.as_deref(),
            None => self.mirror.journal.get(key).map(|b| &b[..]),
        }
    }

    /// The session a legacy pointer stored under `key` leads to.
    pub(crate) fn legacy_id(&self, key: &TokenHash) -> Option<SessionId> {
        if self.changes.legacy_removed.contains(key) {
            return None;
        }
        self.mirror.legacy.get(key).copied()
    }

    /// The global revocation epoch.
    pub(crate) fn global_epoch(&self) -> u64 {
        self.changes
            .global_epoch
            .unwrap_or(self.mirror.global_epoch)
    }

    /// A subject's revocation epoch.
    pub(crate) fn subject_epoch(&self, subject: &str) -> u64 {
        self.changes
            .subject_epochs
            .get(subject)
            .or_else(|| self.mirror.subject_epochs.get(subject))
            .copied()
            .unwrap_or(0)
    }

    // ---- writes: the table and the changes ----

    /// Stores a record (encoded) under its id.
    pub(crate) fn put_record(
        &mut self,
        id: &SessionId,
        bytes: Box<[u8]>,
    ) -> Result<(), StoreError> {
        let outcome = self.tables.records.insert(&id.0, &*bytes).map(|_| ());
        self.check(outcome, "write a record")?;
        self.changes.records.insert(*id, Some(bytes));
        Ok(())
    }

    /// Removes the record with this id.
    pub(crate) fn remove_record(&mut self, id: &SessionId) -> Result<(), StoreError> {
        let outcome = self.tables.records.remove(&id.0).map(|_| ());
        self.check(outcome, "remove a record")?;
        self.changes.records.insert(*id, None);
        Ok(())
    }

    /// Removes a session's record with its attachments (and nothing of its
    /// subject index: see [`remove_subject`](Self::remove_subject)).
    pub(crate) fn end_session(&mut self, id: &SessionId) -> Result<(), StoreError> {
        self.remove_record(id)?;
        for kind in AttachmentKind::ALL {
            if self.attachment(id, kind.tag()).is_some() {
                self.remove_attachment(id, kind.tag())?;
            }
        }
        Ok(())
    }

    /// Stores an attachment (as [`crate::mirror::encode_attachment`] makes it).
    pub(crate) fn put_attachment(
        &mut self,
        id: &SessionId,
        tag: u8,
        bytes: Box<[u8]>,
    ) -> Result<(), StoreError> {
        let key = attachment_key(id, tag);
        let outcome = self.tables.attachments.insert(&key, &*bytes).map(|_| ());
        self.check(outcome, "write an attachment")?;
        self.changes.attachments.insert((*id, tag), Some(bytes));
        Ok(())
    }

    /// Removes an attachment.
    pub(crate) fn remove_attachment(&mut self, id: &SessionId, tag: u8) -> Result<(), StoreError> {
        let key = attachment_key(id, tag);
        let outcome = self.tables.attachments.remove(&key).map(|_| ());
        self.check(outcome, "remove an attachment")?;
        self.changes.attachments.insert((*id, tag), None);
        Ok(())
    }

    /// Appends a journal entry (as [`crate::mirror::encode_journal`] makes it).
    pub(crate) fn put_journal(
        &mut self,
        key: [u8; 16],
        bytes: Box<[u8]>,
    ) -> Result<(), StoreError> {
        let outcome = self.tables.journal.insert(&key, &*bytes).map(|_| ());
        self.check(outcome, "append to the journal")?;
        self.changes.journal.insert(key, Some(bytes));
        Ok(())
    }

    /// Removes a journal entry.
    pub(crate) fn remove_journal(&mut self, key: &[u8; 16]) -> Result<(), StoreError> {
        let outcome = self.tables.journal.remove(key).map(|_| ());
        self.check(outcome, "remove a journal entry")?;
        self.changes.journal.insert(*key, None);
        Ok(())
    }

    /// Adds a session to its subject's index (in memory, with the commit).
    pub(crate) fn add_subject(&mut self, subject: &str, id: &SessionId) {
        self.changes.subjects.insert((subject.into(), *id), true);
    }

    /// Removes a session from its subject's index (in memory, with the commit).
    pub(crate) fn remove_subject(&mut self, subject: &str, id: &SessionId) {
        self.changes.subjects.insert((subject.into(), *id), false);
    }

    /// Moves a session between subjects in the index.
    pub(crate) fn move_subject(&mut self, id: &SessionId, from: Option<&str>, to: Option<&str>) {
        if from == to {
            return;
        }
        if let Some(from) = from {
            self.remove_subject(from, id);
        }
        if let Some(to) = to {
            self.add_subject(to, id);
        }
    }

    /// Removes a legacy pointer.
    pub(crate) fn remove_legacy(&mut self, key: &TokenHash) -> Result<(), StoreError> {
        let outcome = self.tables.legacy.remove(&key.0).map(|_| ());
        self.check(outcome, "remove a legacy token pointer")?;
        self.changes.legacy_removed.insert(*key);
        Ok(())
    }

    /// Sets the global revocation epoch.
    pub(crate) fn set_global_epoch(&mut self, epoch: u64) -> Result<(), StoreError> {
        let outcome = self.tables.meta.insert(GLOBAL_EPOCH_KEY, epoch).map(|_| ());
        self.check(outcome, "write the global epoch")?;
        self.changes.global_epoch = Some(epoch);
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
        self.changes.subject_epochs.insert(subject.into(), epoch);
        Ok(())
    }
}
