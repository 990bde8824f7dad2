//! The in-memory mirror of the database that every read is served from.
//!
//! This process is the database's only writer (the file is locked), and all
//! writes go through one writer thread. The mirror starts as a full load of
//! the database; after each commit the writer applies to it exactly the
//! changes ([`Changes`]) that the committed transaction made, under the
//! mirror's write lock and before any caller of that transaction is
//! answered. So between commits the mirror equals the database, readers see
//! each commit all at once, and an acknowledged write is visible to every
//! later read. A failed commit changes neither.
//!
//! Records are kept as the codec's bytes, as the database holds them (and
//! as `tessera_core::MemoryStore` keeps them): a validation is one hash
//! lookup and one decode. The subject index exists only here: built from
//! the records at load, and changed by every commit that changes a
//! record's subject. Attachments and the journal are kept here too, as the
//! bytes of their tables (`crate::schema`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable};
use tessera_core::codec;
use tessera_core::{SessionId, Timestamp, TokenHash};

use crate::error::EmbeddedError;
use crate::schema::{
    ATTACHMENTS, GLOBAL_EPOCH_KEY, JOURNAL, LEGACY_TOKENS, META, RECORDS, SUBJECT_EPOCHS,
};

/// The whole database, in memory.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Mirror {
    /// Every record, as the codec encoded it.
    pub(crate) records: HashMap<SessionId, Box<[u8]>>,
    /// The subject index: exactly the records of each subject.
    pub(crate) subjects: Subjects,
    /// Pointers from the token hashes of format 1 to the sessions converted from it.
    pub(crate) legacy: HashMap<TokenHash, SessionId>,
    pub(crate) global_epoch: u64,
    pub(crate) subject_epochs: HashMap<Box<str>, u64>,
    /// Attachments by session id and kind tag: generation, forget deadline
    /// and bytes, as the `attachments` table holds them.
    pub(crate) attachments: HashMap<(SessionId, u8), Box<[u8]>>,
    /// The journal by key (time, nonce): forget deadline and bytes.
    pub(crate) journal: BTreeMap<[u8; 16], Box<[u8]>>,
}

/// The sessions of each subject. Most subjects have one session at a
/// time: it is kept inline, and a set is made only for a second (as
/// `tessera_core::MemoryStore` does).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Subjects(HashMap<Box<str>, Ids>);

#[derive(Debug, Clone, PartialEq)]
enum Ids {
    One(SessionId),
    Many(HashSet<SessionId>),
}

impl Subjects {
    pub(crate) fn insert(&mut self, subject: Box<str>, id: SessionId) {
        let Some(ids) = self.0.get_mut(&subject) else {
            self.0.insert(subject, Ids::One(id));
            return;
        };
        match ids {
            Ids::One(existing) if *existing == id => {}
            Ids::One(existing) => {
                let first = *existing;
                *ids = Ids::Many(HashSet::from([first, id]));
            }
            Ids::Many(set) => {
                set.insert(id);
            }
        }
    }

    pub(crate) fn remove(&mut self, subject: &str, id: &SessionId) {
        let Some(ids) = self.0.get_mut(subject) else {
            return;
        };
        match ids {
            Ids::One(existing) if existing == id => {
                self.0.remove(subject);
            }
            Ids::One(_) => {}
            Ids::Many(set) => {
                set.remove(id);
                if set.len() == 1
                    && let Some(last) = set.iter().next().copied()
                {
                    *ids = Ids::One(last);
                }
            }
        }
    }

    /// The ids of the subject's sessions.
    pub(crate) fn ids(&self, subject: &str) -> impl Iterator<Item = SessionId> + '_ {
        let (one, many) = match self.0.get(subject) {
            None => (None, None),
            Some(Ids::One(id)) => (Some(*id), None),
            Some(Ids::Many(set)) => (None, Some(set.iter().copied())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// What one group of writes changed: the final state of every key it
/// wrote. Applied to the mirror after the group's transaction commits; the
/// group's later jobs read it before the mirror (see [`crate::batch`]).
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// `None`: removed.
    pub(crate) records: HashMap<SessionId, Option<Box<[u8]>>>,
    /// `true`: added to the subject's index; `false`: removed from it.
    pub(crate) subjects: HashMap<(Box<str>, SessionId), bool>,
    /// Legacy pointers removed.
    pub(crate) legacy_removed: HashSet<TokenHash>,
    pub(crate) global_epoch: Option<u64>,
    pub(crate) subject_epochs: HashMap<Box<str>, u64>,
    /// Attachments written (`Some`) or removed (`None`).
    pub(crate) attachments: HashMap<(SessionId, u8), Option<Box<[u8]>>>,
    /// Journal entries appended (`Some`) or removed (`None`).
    pub(crate) journal: HashMap<[u8; 16], Option<Box<[u8]>>>,
    /// How many writes went to the transaction.
    pub(crate) writes: usize,
}

/// Whether encoded record bytes may still be returned at `now`.
pub(crate) fn live(bytes: &[u8], now: Timestamp) -> bool {
    codec::forget_at_of(bytes).is_some_and(|at| at > now)
}

/// The forget deadline at `at` of a stored attachment or journal entry.
fn deadline(bytes: &[u8], at: usize) -> Option<Timestamp> {
    let field: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(Timestamp(i64::from_be_bytes(field)))
}

/// An attachment as stored: generation, forget deadline, bytes.
pub(crate) fn encode_attachment(generation: u64, forget_at: Timestamp, value: &[u8]) -> Box<[u8]> {
    let mut bytes = Vec::with_capacity(16 + value.len());
    bytes.extend_from_slice(&generation.to_be_bytes());
    bytes.extend_from_slice(&forget_at.as_millis().to_be_bytes());
    bytes.extend_from_slice(value);
    bytes.into()
}

/// The generation and bytes of a stored attachment, unless it may be
/// forgotten at `now` (or is too short to be one).
pub(crate) fn live_attachment(bytes: &[u8], now: Timestamp) -> Option<(u64, &[u8])> {
    let generation = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    (deadline(bytes, 8)? > now).then(|| (generation, &bytes[16..]))
}

/// A journal entry as stored: forget deadline, bytes.
pub(crate) fn encode_journal(forget_at: Timestamp, value: &[u8]) -> Box<[u8]> {
    let mut bytes = Vec::with_capacity(8 + value.len());
    bytes.extend_from_slice(&forget_at.as_millis().to_be_bytes());
    bytes.extend_from_slice(value);
    bytes.into()
}

/// The bytes of a stored journal entry, unless it may be forgotten at `now`.
pub(crate) fn live_journal(bytes: &[u8], now: Timestamp) -> Option<&[u8]> {
    (deadline(bytes, 0)? > now).then(|| &bytes[8..])
}

impl Mirror {
    /// Reads the whole database, checks that every record decodes and
    /// lies under its own id, and builds the subject index.
    pub(crate) fn load(db: &redb::Database, path: &Path) -> Result<Mirror, EmbeddedError> {
        let fail = |e: redb::Error| EmbeddedError::database(path, e);
        let txn = db.begin_read().map_err(|e| fail(e.into()))?;
        let mut mirror = Mirror::default();

        let meta = txn.open_table(META).map_err(|e| fail(e.into()))?;
        mirror.global_epoch = meta
            .get(GLOBAL_EPOCH_KEY)
            .map_err(|e| fail(e.into()))?
            .map(|v| v.value())
            .unwrap_or(0);

        let records = txn.open_table(RECORDS).map_err(|e| fail(e.into()))?;
        for row in records.iter().map_err(|e| fail(e.into()))? {
            let (key, value) = row.map_err(|e| fail(e.into()))?;
            let id = SessionId(*key.value());
            let bytes = value.value();
            // A full decode: a record this build cannot read is found now,
            // not when its holder comes back.
            let record = codec::decode(bytes, None)
                .map_err(|e| EmbeddedError::corrupt(path, format!("record {id}: {e}")))?;
            if record.id != id {
                return Err(EmbeddedError::corrupt(
                    path,
                    format!("record {id} holds session {}", record.id),
                ));
            }
            if let Some(subject) = record.subject {
                mirror.subjects.insert(subject.into_boxed_str(), id);
            }
            mirror.records.insert(id, bytes.into());
        }

        let legacy = txn.open_table(LEGACY_TOKENS).map_err(|e| fail(e.into()))?;
        for row in legacy.iter().map_err(|e| fail(e.into()))? {
            let (key, id) = row.map_err(|e| fail(e.into()))?;
            mirror
                .legacy
                .insert(TokenHash(*key.value()), SessionId(*id.value()));
        }

        let epochs = txn.open_table(SUBJECT_EPOCHS).map_err(|e| fail(e.into()))?;
        for row in epochs.iter().map_err(|e| fail(e.into()))? {
            let (subject, epoch) = row.map_err(|e| fail(e.into()))?;
            mirror
                .subject_epochs
                .insert(subject.value().into(), epoch.value());
        }

        let attachments = txn.open_table(ATTACHMENTS).map_err(|e| fail(e.into()))?;
        for row in attachments.iter().map_err(|e| fail(e.into()))? {
            let (key, value) = row.map_err(|e| fail(e.into()))?;
            let key = key.value();
            let mut id = [0; 16];
            id.copy_from_slice(&key[..16]);
            mirror
                .attachments
                .insert((SessionId(id), key[16]), value.value().into());
        }

        let journal = txn.open_table(JOURNAL).map_err(|e| fail(e.into()))?;
        for row in journal.iter().map_err(|e| fail(e.into()))? {
            let (key, value) = row.map_err(|e| fail(e.into()))?;
            mirror.journal.insert(*key.value(), value.value().into());
        }
        Ok(mirror)
    }

    /// The subject index built afresh from the records: what
    /// [`subjects`](Self::subjects) must always equal.
    #[cfg(test)]
    pub(crate) fn subjects_from_records(&self) -> Subjects {
        let mut subjects = Subjects::default();
        for (id, bytes) in &self.records {
            if let Some(subject) = codec::subject_of(bytes) {
                subjects.insert(subject.into(), *id);
            }
        }
        subjects
    }

    /// Applies the changes of one committed transaction.
    pub(crate) fn apply(&mut self, changes: Changes) {
        for (id, bytes) in changes.records {
            match bytes {
                Some(bytes) => {
                    self.records.insert(id, bytes);
                }
                None => {
                    self.records.remove(&id);
                }
            }
        }
        for ((subject, id), added) in changes.subjects {
            if added {
                self.subjects.insert(subject, id);
            } else {
                self.subjects.remove(&subject, &id);
            }
        }
        for key in changes.legacy_removed {
            self.legacy.remove(&key);
        }
        if let Some(epoch) = changes.global_epoch {
            self.global_epoch = epoch;
        }
        self.subject_epochs.extend(changes.subject_epochs);
        for (key, bytes) in changes.attachments {
            match bytes {
                Some(bytes) => self.attachments.insert(key, bytes),
                None => self.attachments.remove(&key),
            };
        }
        for (key, bytes) in changes.journal {
            match bytes {
                Some(bytes) => self.journal.insert(key, bytes),
                None => self.journal.remove(&key),
            };
        }
    }

    /// The record with this id, unless it may be forgotten at `now`.
    pub(crate) fn live(&self, id: &SessionId, now: Timestamp) -> Option<&[u8]> {
        self.records
            .get(id)
            .map(|bytes| &bytes[..])
            .filter(|bytes| live(bytes, now))
    }

    /// Ids of records that may be forgotten at `now`, and legacy pointers
    /// whose record is gone or may be forgotten.
    pub(crate) fn expired(&self, now: Timestamp) -> (Vec<SessionId>, Vec<TokenHash>) {
        let records = self
            .records
            .iter()
            .filter(|(_, bytes)| !live(bytes, now))
            .map(|(id, _)| *id)
            .collect();
        let pointers = self
            .legacy
            .iter()
            .filter(|(_, id)| self.live(id, now).is_none())
            .map(|(key, _)| *key)
            .collect();
        (records, pointers)
    }

    /// Attachments that may be forgotten at `now` or whose session is
    /// gone, and journal entries that may be forgotten.
    pub(crate) fn expired_extras(&self, now: Timestamp) -> (Vec<(SessionId, u8)>, Vec<[u8; 16]>) {
        let attachments = self
            .attachments
            .iter()
            .filter(|((id, _), bytes)| {
                live_attachment(bytes, now).is_none() || !self.records.contains_key(id)
            })
            .map(|(key, _)| *key)
            .collect();
        let journal = self
            .journal
            .iter()
            .filter(|(_, bytes)| live_journal(bytes, now).is_none())
            .map(|(key, _)| *key)
            .collect();
        (attachments, journal)
    }
}

#[cfg(test)]
mod subject_tests {
    use super::*;

    #[test]
    fn a_subject_holds_one_id_inline_grows_to_a_set_and_shrinks_back() {
        let ids: Vec<SessionId> = (0..3u8).map(|n| SessionId([n; 16])).collect();
        let mut subjects = Subjects::default();
        subjects.insert("ann".into(), ids[0]);
        subjects.insert("ann".into(), ids[0]);
        assert!(
            matches!(subjects.0["ann"], Ids::One(_)),
            "no set for a repeat"
        );
        subjects.insert("ann".into(), ids[1]);
        subjects.insert("ann".into(), ids[2]);
        let mut listed: Vec<_> = subjects.ids("ann").collect();
        listed.sort();
        assert_eq!(listed, ids);
        subjects.remove("ann", &ids[1]);
        subjects.remove("ann", &ids[0]);
        assert_eq!(subjects.0["ann"], Ids::One(ids[2]), "back inline");
        subjects.remove("ann", &ids[0]);
        assert_eq!(subjects.ids("ann").collect::<Vec<_>>(), vec![ids[2]]);
        subjects.remove("ann", &ids[2]);
        assert!(subjects.0.is_empty(), "an empty subject goes");
        assert_eq!(subjects.ids("ann").count(), 0);
    }
}
