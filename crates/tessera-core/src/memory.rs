//! An in-process store: sharded maps, no global lock, a background sweeper.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::record::{Session, StoredEntry, Tombstone};
use crate::store::{
    CreateOutcome, ExportPage, SessionStore, StoreError, WriteOutcome, page_of_keys,
};
use crate::token::{SessionId, TokenHash};

enum MemEntry {
    Live(Arc<Session>),
    Tombstone(Box<Tombstone>),
}

impl MemEntry {
    fn forget_at(&self) -> Timestamp {
        match self {
            MemEntry::Live(session) => session.forget_at(),
            MemEntry::Tombstone(tombstone) => tombstone.forget_at,
        }
    }
}

/// The live sessions of one subject. Most subjects have one session at a
/// time; it is kept inline, and a set is allocated only for a second.
// Boxed: a set inline would make every entry of the index 48 bytes wide
// instead of 24, for the sake of the few subjects with several sessions.
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

    /// Removes `id`; whether none is left.
    fn remove(&mut self, id: &SessionId) -> bool {
        match self {
            SubjectSessions::One(existing) => existing == id,
            SubjectSessions::Many(ids) => {
                ids.remove(id);
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

#[derive(Default)]
struct Maps {
    entries: DashMap<TokenHash, MemEntry>,
    /// Current key of every live session. Writers of one session hold its
    /// entry here first, which orders all writes to that session.
    ids: DashMap<SessionId, TokenHash>,
    subjects: DashMap<Box<str>, SubjectSessions>,
    epoch: AtomicU64,
    subject_epochs: DashMap<Box<str>, u64>,
}

/// Sessions in this process's memory: fast, lost on restart, not shared
/// between processes. Reads take only a shard read lock.
///
/// Expired records are hidden at once and removed by [`MemoryStore::sweep_expired`],
/// which [`MemoryStore::spawn_sweeper`] runs periodically.
#[derive(Clone, Default)]
pub struct MemoryStore {
    maps: Arc<Maps>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.maps.entries.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live sessions and tombstones held (including expired ones
    /// not yet swept).
    pub fn len(&self) -> usize {
        self.maps.entries.len()
    }

    /// How many entries the tables have room for without growing; follows
    /// [`len`](Self::len) down after sweeping a mass expiry.
    pub fn capacity(&self) -> usize {
        self.maps.entries.capacity()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.maps.entries.is_empty()
    }

    /// Runs [`SessionStore::sweep_expired`] every `interval` on the current
    /// tokio runtime, with the system clock. The task ends when every clone of
    /// the store is dropped.
    pub fn spawn_sweeper(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        self.spawn_sweeper_with_clock(interval, Arc::new(SystemClock))
    }

    /// As [`spawn_sweeper`](Self::spawn_sweeper), with an explicit clock.
    pub fn spawn_sweeper_with_clock(
        &self,
        interval: Duration,
        clock: Arc<dyn Clock>,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.maps);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(maps) = weak.upgrade() else { break };
                let store = MemoryStore { maps };
                let removed = store.sweep(clock.now());
                if removed > 0 {
                    tracing::debug!(removed, "memory store swept expired entries");
                }
            }
        })
    }

    fn live(&self, key: &TokenHash, now: Timestamp) -> Option<Arc<Session>> {
        match self.maps.entries.get(key).as_deref() {
            Some(MemEntry::Live(session)) if session.forget_at() > now => Some(session.clone()),
            _ => None,
        }
    }

    fn index_subject(&self, subject: Option<&str>, id: SessionId) {
        if let Some(subject) = subject {
            match self.maps.subjects.entry(subject.into()) {
                Entry::Occupied(mut sessions) => sessions.get_mut().insert(id),
                Entry::Vacant(vacant) => {
                    vacant.insert(SubjectSessions::One(id));
                }
            }
        }
    }

    fn unindex_subject(&self, subject: Option<&str>, id: &SessionId) {
        if let Some(subject) = subject {
            self.maps
                .subjects
                .remove_if_mut(subject, |_, sessions| sessions.remove(id));
        }
    }

    fn sweep(&self, now: Timestamp) -> u64 {
        let expired: Vec<TokenHash> = self
            .maps
            .entries
            .iter()
            .filter(|entry| entry.value().forget_at() <= now)
            .map(|entry| *entry.key())
            .collect();
        let mut removed = 0;
        for key in expired {
            if let Some((_, entry)) = self
                .maps
                .entries
                .remove_if(&key, |_, entry| entry.forget_at() <= now)
            {
                removed += 1;
                if let MemEntry::Live(session) = entry {
                    self.maps
                        .ids
                        .remove_if(&session.id, |_, current| *current == key);
                    self.unindex_subject(session.subject.as_deref(), &session.id);
                }
            }
        }
        // Memory follows the live sessions: after a mass expiry the tables
        // give back what they no longer need.
        if removed > 0 && self.maps.entries.len() * 4 < self.maps.entries.capacity() {
            self.maps.entries.shrink_to_fit();
            self.maps.ids.shrink_to_fit();
            self.maps.subjects.shrink_to_fit();
        }
        removed
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(
        &self,
        key: &TokenHash,
        session: &Session,
    ) -> Result<CreateOutcome, StoreError> {
        let Entry::Vacant(id_slot) = self.maps.ids.entry(session.id) else {
            return Ok(CreateOutcome::AlreadyExists);
        };
        match self.maps.entries.entry(*key) {
            Entry::Occupied(_) => return Ok(CreateOutcome::AlreadyExists),
            Entry::Vacant(slot) => {
                slot.insert(MemEntry::Live(Arc::new(session.clone())));
            }
        }
        id_slot.insert(*key);
        self.index_subject(session.subject.as_deref(), session.id);
        Ok(CreateOutcome::Created)
    }

    async fn load(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<StoredEntry>, StoreError> {
        Ok(match self.maps.entries.get(key).as_deref() {
            Some(MemEntry::Live(session)) if session.forget_at() > now => {
                Some(StoredEntry::Live(session.clone()))
            }
            Some(MemEntry::Tombstone(tombstone)) if tombstone.forget_at > now => {
                Some(StoredEntry::Tombstone(**tombstone))
            }
            _ => None,
        })
    }

    async fn load_by_id(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<(TokenHash, Arc<Session>)>, StoreError> {
        let Some(key) = self.maps.ids.get(id).map(|key| *key) else {
            return Ok(None);
        };
        Ok(self
            .live(&key, now)
            .filter(|session| session.id == *id)
            .map(|session| (key, session)))
    }

    async fn update(
        &self,
        key: &TokenHash,
        session: &Session,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let Some(current_key) = self.maps.ids.get_mut(&session.id) else {
            return Ok(WriteOutcome::NotFound);
        };
        if *current_key != *key {
            return Ok(WriteOutcome::NotFound);
        }
        let previous_subject;
        {
            let Some(mut entry) = self.maps.entries.get_mut(key) else {
                return Ok(WriteOutcome::NotFound);
            };
            let MemEntry::Live(stored) = &*entry else {
                return Ok(WriteOutcome::NotFound);
            };
            if stored.forget_at() <= now {
                return Ok(WriteOutcome::NotFound);
            }
            if stored.version != expected_version {
                return Ok(WriteOutcome::VersionConflict {
                    current: stored.version,
                });
            }
            previous_subject = stored.subject.clone();
            *entry = MemEntry::Live(Arc::new(session.clone()));
        }
        if previous_subject != session.subject {
            self.unindex_subject(previous_subject.as_deref(), &session.id);
            self.index_subject(session.subject.as_deref(), session.id);
        }
        drop(current_key);
        Ok(WriteOutcome::Written)
    }

    async fn touch(
        &self,
        key: &TokenHash,
        last_seen_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let Some(mut entry) = self.maps.entries.get_mut(key) else {
            return Ok(WriteOutcome::NotFound);
        };
        let MemEntry::Live(stored) = &mut *entry else {
            return Ok(WriteOutcome::NotFound);
        };
        if stored.forget_at() <= now {
            return Ok(WriteOutcome::NotFound);
        }
        if stored.last_seen_at < last_seen_at {
            Arc::make_mut(stored).last_seen_at = last_seen_at;
        }
        Ok(WriteOutcome::Written)
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
        let Some(mut current_key) = self.maps.ids.get_mut(&session.id) else {
            return Ok(WriteOutcome::NotFound);
        };
        if *current_key != *old_key {
            return Ok(WriteOutcome::NotFound);
        }
        let previous_subject = match self.maps.entries.get(old_key).as_deref() {
            Some(MemEntry::Live(stored)) if stored.forget_at() > now => {
                if stored.version != expected_version {
                    return Ok(WriteOutcome::VersionConflict {
                        current: stored.version,
                    });
                }
                stored.subject.clone()
            }
            _ => return Ok(WriteOutcome::NotFound),
        };
        // Holding the id entry orders every writer of this session, so the
        // old entry cannot change between the check above and the swap below.
        self.maps
            .entries
            .insert(*new_key, MemEntry::Live(Arc::new(session.clone())));
        self.maps
            .entries
            .insert(*old_key, MemEntry::Tombstone(Box::new(*tombstone)));
        *current_key = *new_key;
        drop(current_key);
        if previous_subject != session.subject {
            self.unindex_subject(previous_subject.as_deref(), &session.id);
            self.index_subject(session.subject.as_deref(), session.id);
        }
        Ok(WriteOutcome::Written)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let Some((_, key)) = self.maps.ids.remove(id) else {
            return Ok(false);
        };
        match self.maps.entries.remove(&key) {
            Some((_, MemEntry::Live(session))) => {
                self.unindex_subject(session.subject.as_deref(), id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn list_by_subject(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Arc<Session>>, StoreError> {
        let ids: Vec<SessionId> = match self.maps.subjects.get(subject) {
            Some(sessions) => sessions.ids(),
            None => return Ok(Vec::new()),
        };
        let mut sessions = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some((_, session)) = self.load_by_id(&id, now).await?
                && session.subject.as_deref() == Some(subject)
            {
                sessions.push(session);
            }
        }
        Ok(sessions)
    }

    async fn global_epoch(&self) -> Result<u64, StoreError> {
        Ok(self.maps.epoch.load(Ordering::SeqCst))
    }

    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        Ok(self.maps.epoch.fetch_add(1, Ordering::SeqCst) + 1)
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

    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        Ok(self.sweep(now))
    }

    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<ExportPage, StoreError> {
        let live_keys = self.maps.ids.iter().map(|entry| *entry.value());
        let (keys, next) = page_of_keys(live_keys, cursor, limit)?;
        let sessions = keys
            .into_iter()
            .filter_map(|key| self.live(&key, now).map(|session| (key, session)))
            .collect();
        Ok(ExportPage { sessions, next })
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
        assert!(!set.remove(&ids[1]));
        assert!(!set.remove(&ids[0]));
        assert!(
            matches!(set, SubjectSessions::One(id) if id == ids[2]),
            "back inline"
        );
        assert!(
            !set.remove(&ids[0]),
            "removing an absent id leaves the last"
        );
        assert!(set.remove(&ids[2]), "now empty");
    }
}
