//! The memory store's record table: encoded records in sharded hash
//! tables, each record found by the session id inside its own bytes.
//!
//! A `DashMap<SessionId, Box<[u8]>>` keeps the 16-byte id beside a 16-byte
//! pointer in every slot; here a slot is only the pointer (the id is read
//! from the record, `crate::codec::id_of`), which with the tables' spare
//! slots saves about 30 bytes per session.

use std::hash::{BuildHasher, RandomState};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::codec;
use crate::token::SessionId;

/// Shards: enough that the runtime's workers rarely wait on one another.
const SHARDS: usize = 64;

type Shard = HashTable<Box<[u8]>>;

/// Encoded records by session id.
pub(super) struct RecordTable {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
}

/// Whether `bytes` are the record of `id`.
fn is_record_of(bytes: &[u8], id: &SessionId) -> bool {
    codec::id_of(bytes).is_some_and(|stored| stored == *id)
}

impl RecordTable {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn hash(&self, id: &SessionId) -> u64 {
        self.hasher.hash_one(id.0)
    }

    /// The hash of a stored record (records always carry their id).
    fn hash_of(&self, bytes: &[u8]) -> u64 {
        self.hash(&codec::id_of(bytes).unwrap_or(SessionId([0; 16])))
    }

    /// The shard of a hash. The table inside uses the hash's low bits for
    /// the slot and its top seven for the probe tag; the shard takes bits
    /// in between, so that neither is the same for a whole shard.
    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    fn read(&self, hash: u64) -> RwLockReadGuard<'_, Shard> {
        self.shard(hash)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, hash: u64) -> RwLockWriteGuard<'_, Shard> {
        self.shard(hash)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `f` with the record of `id`, under the shard's read lock.
    pub(super) fn with<T>(&self, id: &SessionId, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
        let hash = self.hash(id);
        let shard = self.read(hash);
        shard
            .find(hash, |bytes| is_record_of(bytes, id))
            .map(|bytes| f(bytes))
    }

    /// Calls `f` with the record of `id`, under the shard's write lock.
    pub(super) fn with_mut<T>(
        &self,
        id: &SessionId,
        f: impl FnOnce(&mut Box<[u8]>) -> T,
    ) -> Option<T> {
        let hash = self.hash(id);
        let mut shard = self.write(hash);
        shard.find_mut(hash, |bytes| is_record_of(bytes, id)).map(f)
    }

    /// Inserts a record unless one with its id exists; whether it went in.
    pub(super) fn insert_new(&self, bytes: Box<[u8]>) -> bool {
        let Some(id) = codec::id_of(&bytes) else {
            return false;
        };
        let hash = self.hash(&id);
        let mut shard = self.write(hash);
        match shard.entry(
            hash,
            |stored| is_record_of(stored, &id),
            |stored| self.hash_of(stored),
        ) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(bytes);
                true
            }
        }
    }

    /// Removes the record of `id`, if `remove` agrees; returns it.
    pub(super) fn remove_if(
        &self,
        id: &SessionId,
        remove: impl FnOnce(&[u8]) -> bool,
    ) -> Option<Box<[u8]>> {
        let hash = self.hash(id);
        let mut shard = self.write(hash);
        match shard.find_entry(hash, |bytes| is_record_of(bytes, id)) {
            Ok(entry) if remove(entry.get()) => Some(entry.remove().0),
            _ => None,
        }
    }

    pub(super) fn contains(&self, id: &SessionId) -> bool {
        self.with(id, |_| ()).is_some()
    }

    /// Every id, shard by shard (each shard read at once).
    pub(super) fn ids(&self) -> Vec<SessionId> {
        let mut ids = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
            ids.extend(shard.iter().filter_map(|bytes| codec::id_of(bytes)));
        }
        ids
    }

    /// Removes the records `remove` chooses, and returns them.
    pub(super) fn drain_where(&self, mut remove: impl FnMut(&[u8]) -> bool) -> Vec<Box<[u8]>> {
        let mut removed = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            removed.extend(shard.extract_if(|bytes| remove(bytes)));
        }
        removed
    }

    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub(super) fn capacity(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .capacity()
            })
            .sum()
    }

    /// Gives back the room the tables no longer need.
    pub(super) fn shrink_to_fit(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            shard.shrink_to_fit(|bytes| self.hash_of(bytes));
        }
    }
}
