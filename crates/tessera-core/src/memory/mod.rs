//! An in-process store: sharded tables of encoded records, no global lock.

mod table;

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::clock::Timestamp;
use crate::codec;
use crate::record::{Revision, SessionRecord};
use crate::store::{
    Attachment, AttachmentKind, AttachmentWrite, Attachments, CreateOutcome, Epochs, Journal,
    JournalEntry, Maintenance, Page, Records, StoreError, SubjectIndex, WriteOutcome,
    journal_after, journal_cursor, page_of_ids, parse_journal_cursor,
};
use crate::token::{SessionId, TokenHash};

/// A record as the table keeps it: the codec's bytes, which hold its id
/// and forget deadline too.
fn stored(record: &SessionRecord, forget_at: Timestamp) -> Box<[u8]> {
    codec::encode(record, forget_at).into_boxed_slice()
}

/// Whether a stored record is still to be kept at `now`.
fn live(bytes: &[u8], now: Timestamp) -> bool {
    codec::forget_at_of(bytes).is_some_and(|at| at > now)
}

/// The sessions of one subject. Most subjects have one session at a
/// time; it is kept inline, and a set is allocated only for a second.
// Boxed: a set inline would make every entry of the index wider, for the
// sake of the few subjects with several sessions.
#[allow(clippy::box_collection)]
enum SubjectSessions {
    One(SessionId),
    Many(Box<HashSet<SessionId>>),
}

impl SubjectSessions {
    fn insert(&mut self, id: SessionId) {
        match self {
            SubjectSessions::One(existing) if *existing == id => {}
            SubjectSessions::One(existing) => {
                *self = SubjectSessions::Many(Box::new(HashSet::from([*existing, id])));
            }
            SubjectSessions::Many(ids) => {
                ids.insert(id);
            }
        }
    }

    /// Keeps the ids `keep` accepts; whether none is left.
    fn retain(&mut self, mut keep: impl FnMut(&SessionId) -> bool) -> bool {
        match self {
            SubjectSessions::One(existing) => !keep(existing),
            SubjectSessions::Many(ids) => {
                ids.retain(|id| keep(id));
                let last = match ids.len() {
                    0 => return true,
                    1 => ids.iter().next().copied(),
                    _ => None,
                };
                if let Some(last) = last {
                    *self = SubjectSessions::One(last);
                }
                false
            }
        }
    }

    fn ids(&self) -> Vec<SessionId> {
        match self {
            SubjectSessions::One(id) => vec![*id],
            SubjectSessions::Many(ids) => ids.iter().copied().collect(),
        }
    }
}

/// An attachment as the map keeps it.
struct StoredAttachment {
    generation: u64,
    forget_at: i64,
    value: Box<[u8]>,
}

/// The journal: entries by (time, nonce), each with its forget deadline.
type JournalMap = BTreeMap<(Timestamp, [u8; 8]), (Vec<u8>, Timestamp)>;

struct Maps {
    records: table::RecordTable,
    attachments: DashMap<(SessionId, AttachmentKind), StoredAttachment>,
    journal: Mutex<JournalMap>,
    /// Subject index, keyed by a hash of the subject so that a million
    /// signed-in sessions keep no second copy of every subject. Sessions
    /// of subjects whose hashes collide share an entry; listing reads the
    /// records and keeps those of the subject asked for.
    subjects: DashMap<u64, SubjectSessions>,
    subject_hasher: RandomState,
    epoch: AtomicU64,
    subject_epochs: DashMap<Box<str>, u64>,
}

/// Sessions in this process's memory: fast, lost on restart, not shared
/// between processes. Records are kept encoded (the codec's compact
/// bytes), reads take only a shard read lock.
///
/// Expired records are hidden at once and removed by
/// [`Maintenance::sweep_expired`], which
/// [`spawn_sweeper`](crate::store::spawn_sweeper) runs periodically.
#[derive(Clone)]
pub struct MemoryStore {
    maps: Arc<Maps>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            maps: Arc::new(Maps {
                records: table::RecordTable::new(),
                attachments: DashMap::new(),
                journal: Mutex::new(BTreeMap::new()),
                subjects: DashMap::new(),
                subject_hasher: RandomState::new(),
                // Above every epoch an earlier process can have handed out
                // (see `Epochs`): its sealed sessions end with it.
                epoch: AtomicU64::new(
                    u64::try_from(crate::clock::Clock::now(&crate::clock::SystemClock).0)
                        .unwrap_or(0),
                ),
                subject_epochs: DashMap::new(),
            }),
        }
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("records", &self.maps.records.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records held (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.maps.records.len()
    }

    /// How many records the table has room for without growing; follows
    /// [`len`](Self::len) down after sweeping a mass expiry.
    pub fn capacity(&self) -> usize {
        self.maps.records.capacity()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.maps.records.len() == 0
    }

    fn subject_key(&self, subject: &str) -> u64 {
        self.maps.subject_hasher.hash_one(subject)
    }

    fn index(&self, subject: &str, id: SessionId) {
        match self.maps.subjects.entry(self.subject_key(subject)) {
            Entry::Occupied(mut sessions) => sessions.get_mut().insert(id),
            Entry::Vacant(vacant) => {
                vacant.insert(SubjectSessions::One(id));
            }
        }
    }

    fn unindex(&self, subject: &str, id: &SessionId) {
        self.maps
            .subjects
            .remove_if_mut(&self.subject_key(subject), |_, sessions| {
                sessions.retain(|kept| kept != id)
            });
    }

    /// The live records of a subject's index entry, dropping stale ids.
    fn subject_records(&self, subject: &str, now: Timestamp) -> Vec<SessionRecord> {
        let key = self.subject_key(subject);
        let ids = match self.maps.subjects.get(&key) {
            Some(sessions) => sessions.ids(),
            None => return Vec::new(),
        };
        let mut records = Vec::with_capacity(ids.len());
        let mut stale = Vec::new();
        for id in ids {
            let Some(decoded) = self.maps.records.with(&id, |bytes| {
                live(bytes, now).then(|| codec::decode(bytes, None))
            }) else {
                stale.push(id);
                continue;
            };
            let Some(decoded) = decoded else {
                continue;
            };
            match decoded {
                Ok(record) if record.subject.as_deref() == Some(subject) => records.push(record),
                // Indexed elsewhere now (a login changed its subject): stale
                // here, unless its subject shares this entry's hash.
                Ok(record)
                    if record.subject.as_deref().map(|s| self.subject_key(s)) != Some(key) =>
                {
                    stale.push(id)
                }
                Ok(_) | Err(_) => {}
            }
        }
        if !stale.is_empty() {
            self.maps.subjects.remove_if_mut(&key, |_, sessions| {
                sessions.retain(|id| !stale.contains(id))
            });
        }
        records
    }
}

#[async_trait]
impl Records for MemoryStore {
    async fn create(
        &self,
        record: &SessionRecord,
        forget_at: Timestamp,
    ) -> Result<CreateOutcome, StoreError> {
        if !self.maps.records.insert_new(stored(record, forget_at)) {
            return Ok(CreateOutcome::AlreadyExists);
        }
        if let Some(subject) = &record.subject {
            self.index(subject, record.id);
        }
        Ok(CreateOutcome::Created)
    }

    async fn load(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.maps
            .records
            .with(id, |bytes| {
                live(bytes, now).then(|| codec::decode(bytes, None))
            })
            .flatten()
            .transpose()
    }

    async fn update(
        &self,
        record: &SessionRecord,
        expected: Revision,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let written = self.maps.records.with_mut(&record.id, |bytes| {
            if !live(bytes, now) {
                return Ok(WriteOutcome::NotFound);
            }
            let current = codec::revision_of(bytes)
                .ok_or_else(|| StoreError::corrupt("a stored record has no revision"))?;
            if current != expected {
                return Ok(WriteOutcome::Conflict { current });
            }
            *bytes = stored(record, forget_at);
            Ok(WriteOutcome::Written)
        });
        match written {
            None => return Ok(WriteOutcome::NotFound),
            Some(Ok(WriteOutcome::Written)) => {}
            Some(other) => return other,
        }
        // A subject that changed leaves a stale entry under the old one,
        // dropped by the next listing or sweep.
        if let Some(subject) = &record.subject {
            self.index(subject, record.id);
        }
        Ok(WriteOutcome::Written)
    }

    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let touched = self.maps.records.with_mut(id, |bytes| {
            if !live(bytes, now) {
                return Ok(WriteOutcome::NotFound);
            }
            if !codec::touch_in_place(bytes, last_seen_at, forget_at) {
                return Err(StoreError::corrupt(
                    "a stored record is not of the current format",
                ));
            }
            Ok(WriteOutcome::Written)
        });
        touched.unwrap_or(Ok(WriteOutcome::NotFound))
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        for kind in AttachmentKind::ALL {
            self.maps.attachments.remove(&(*id, kind));
        }
        let Some(stored) = self.maps.records.remove_if(id, |_| true) else {
            return Ok(false);
        };
        if let Some(subject) = codec::subject_of(&stored) {
            self.unindex(subject, id);
        }
        Ok(true)
    }

    async fn find_legacy(
        &self,
        _key: &TokenHash,
        _now: Timestamp,
    ) -> Result<Option<SessionId>, StoreError> {
        // A memory store never outlives the process that wrote it.
        Ok(None)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl SubjectIndex for MemoryStore {
    async fn list_subject(
        &self,
        subject: &str,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let mut records = self.subject_records(subject, now);
        let (ids, next) = page_of_ids(records.iter().map(|r| r.id), cursor, limit)?;
        records.retain(|r| ids.contains(&r.id));
        records.sort_by_key(|r| r.id);
        Ok(Page {
            items: records,
            next,
        })
    }

    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut deleted = Vec::new();
        for record in self.subject_records(subject, now) {
            if Some(&record.id) != except && self.delete(&record.id).await? {
                deleted.push(record.id);
            }
        }
        Ok(deleted)
    }
}

#[async_trait]
impl Epochs for MemoryStore {
    fn durability(&self) -> crate::store::Durability {
        crate::store::Durability::Volatile
    }

    async fn global_epoch(&self) -> Result<u64, StoreError> {
        Ok(self.maps.epoch.load(Ordering::SeqCst))
    }

    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        Ok(self.maps.epoch.fetch_add(1, Ordering::SeqCst) + 1)
    }

    async fn raise_global_epoch(&self, epoch: u64) -> Result<u64, StoreError> {
        Ok(self
            .maps
            .epoch
            .fetch_max(epoch, Ordering::SeqCst)
            .max(epoch))
    }

    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        Ok(self
            .maps
            .subject_epochs
            .get(subject)
            .map(|epoch| *epoch)
            .unwrap_or(0))
    }

    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        let mut epoch = self.maps.subject_epochs.entry(subject.into()).or_insert(0);
        *epoch += 1;
        Ok(*epoch)
    }

    async fn raise_subject_epoch(&self, subject: &str, epoch: u64) -> Result<u64, StoreError> {
        let mut stored = self.maps.subject_epochs.entry(subject.into()).or_insert(0);
        *stored = (*stored).max(epoch);
        Ok(*stored)
    }
}

#[async_trait]
impl Maintenance for MemoryStore {
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let expired = self.maps.records.drain_where(|bytes| !live(bytes, now));
        let mut removed = u64::try_from(expired.len()).unwrap_or(u64::MAX);
        for stored in expired {
            if let (Some(subject), Some(id)) = (codec::subject_of(&stored), codec::id_of(&stored)) {
                self.unindex(subject, &id);
            }
        }
        // Attachments forgotten, or whose session is gone.
        let records = &self.maps.records;
        let attachments_before = self.maps.attachments.len();
        self.maps
            .attachments
            .retain(|(id, _), a| a.forget_at > now.0 && records.contains(id));
        removed += u64::try_from(attachments_before.saturating_sub(self.maps.attachments.len()))
            .unwrap_or(0);
        if let Ok(mut journal) = self.maps.journal.lock() {
            let before = journal.len();
            journal.retain(|_, (_, forget_at)| *forget_at > now);
            removed += u64::try_from(before - journal.len()).unwrap_or(0);
        }
        // Index entries whose record is gone (a subject that changed, a
        // race with a delete) go too.
        let records = &self.maps.records;
        let before = self.maps.subjects.len();
        self.maps
            .subjects
            .retain(|_, sessions| !sessions.retain(|id| records.contains(id)));
        removed += u64::try_from(before.saturating_sub(self.maps.subjects.len())).unwrap_or(0);
        // Memory follows the live sessions: after a mass expiry the tables
        // give back what they no longer need.
        if removed > 0 && self.maps.records.len() * 4 < self.maps.records.capacity() {
            self.maps.records.shrink_to_fit();
            self.maps.subjects.shrink_to_fit();
        }
        Ok(removed)
    }

    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let (ids, next) = page_of_ids(self.maps.records.ids().into_iter(), cursor, limit)?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.load(&id, now).await? {
                items.push(record);
            }
        }
        Ok(Page { items, next })
    }
}

#[async_trait]
impl Attachments for MemoryStore {
    async fn load_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        now: Timestamp,
    ) -> Result<Option<Attachment>, StoreError> {
        Ok(self
            .maps
            .attachments
            .get(&(*id, kind))
            .filter(|a| a.forget_at > now.0)
            .map(|a| Attachment {
                generation: a.generation,
                value: a.value.to_vec(),
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
        let stored = || StoredAttachment {
            generation: expected.map_or(1, |g| g + 1),
            forget_at: forget_at.0,
            value: value.into(),
        };
        match self.maps.attachments.entry((*id, kind)) {
            Entry::Occupied(mut slot) => {
                let current = (slot.get().forget_at > now.0).then_some(slot.get().generation);
                if current != expected {
                    return Ok(AttachmentWrite::Conflict { current });
                }
                slot.insert(stored());
            }
            Entry::Vacant(slot) => {
                if expected.is_some() {
                    return Ok(AttachmentWrite::Conflict { current: None });
                }
                slot.insert(stored());
            }
        }
        Ok(AttachmentWrite::Written {
            generation: expected.map_or(1, |g| g + 1),
        })
    }

    async fn delete_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
    ) -> Result<bool, StoreError> {
        Ok(self.maps.attachments.remove(&(*id, kind)).is_some())
    }
}

#[async_trait]
impl Journal for MemoryStore {
    async fn append_journal(
        &self,
        entry: &JournalEntry,
        forget_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut journal = self
            .maps
            .journal
            .lock()
            .map_err(|_| StoreError::corrupt("the journal's lock is poisoned"))?;
        journal.insert((entry.at, entry.nonce), (entry.value.clone(), forget_at));
        Ok(())
    }

    async fn journal_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<JournalEntry>, StoreError> {
        let after = cursor.map(parse_journal_cursor).transpose()?;
        let journal = self
            .maps
            .journal
            .lock()
            .map_err(|_| StoreError::corrupt("the journal's lock is poisoned"))?;
        let limit = limit.max(1);
        let mut items: Vec<JournalEntry> = journal
            .iter()
            .rev()
            .filter(|(_, (_, forget_at))| *forget_at > now)
            .map(|((at, nonce), (value, _))| JournalEntry {
                at: *at,
                nonce: *nonce,
                value: value.clone(),
            })
            .filter(|entry| after.as_ref().is_none_or(|c| journal_after(entry, c)))
            .take(limit + 1)
            .collect();
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
    fn a_subject_set_grows_from_one_inline_id_and_shrinks_back() {
        let ids: Vec<SessionId> = (0..3u8).map(|n| SessionId([n; 16])).collect();
        let mut set = SubjectSessions::One(ids[0]);
        set.insert(ids[0]);
        assert!(
            matches!(set, SubjectSessions::One(_)),
            "no set for a repeat"
        );
        set.insert(ids[1]);
        set.insert(ids[2]);
        let mut listed = set.ids();
        listed.sort();
        assert_eq!(listed, ids);
        assert!(!set.retain(|id| *id != ids[1]));
        assert!(!set.retain(|id| *id != ids[0]));
        assert!(
            matches!(set, SubjectSessions::One(id) if id == ids[2]),
            "back inline"
        );
        assert!(
            !set.retain(|id| *id != ids[0]),
            "removing an absent id leaves the last"
        );
        assert!(set.retain(|id| *id != ids[2]), "now empty");
    }
}
