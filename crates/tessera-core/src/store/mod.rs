//! The storage contract, split by concern: what every backend implements
//! (`docs/writing-a-store.md`). Stores keep and find records; every
//! decision (deadlines, rotation, revocation) is the
//! [`SessionManager`](crate::SessionManager)'s, and stores receive its
//! results (a record's forget deadline, say) instead of computing them.
//!
//! * [`Records`]: one record per session, found by its id; create-if-absent,
//!   compare-and-swap update, touch, delete.
//! * [`SubjectIndex`]: every session of a subject, listed and deleted.
//! * [`Epochs`]: the global and per-subject revocation epochs.
//! * [`Maintenance`]: removing what expired, and paging through everything
//!   (for copying a store); [`spawn_sweeper`] is the one loop that sweeps.
//! * [`Attachments`]: small state kept beside a session in a keyspace of
//!   its own (a device binding), compare-and-swapped on a generation.
//! * [`Journal`]: an append-only, newest-first log of operators' actions.
//!
//! A type implementing all six is a [`SessionStore`]. None of the traits
//! has a default method, so a store or a wrapper that leaves one out does
//! not compile. Wrappers that do the same thing around every operation
//! (timing, counting, failing on purpose) implement [`Intercept`] instead
//! and wrap the store in [`Intercepted`].
//!
//! # Writing a store
//!
//! A store implements these 23 methods, and nothing else:
//!
//! | trait | methods |
//! |---|---|
//! | [`Records`] | [`create`](Records::create), [`load`](Records::load), [`update`](Records::update), [`touch`](Records::touch), [`delete`](Records::delete), [`find_legacy`](Records::find_legacy), [`ping`](Records::ping) |
//! | [`SubjectIndex`] | [`list_subject`](SubjectIndex::list_subject), [`delete_subject`](SubjectIndex::delete_subject) |
//! | [`Epochs`] | [`durability`](Epochs::durability), [`global_epoch`](Epochs::global_epoch), [`bump_global_epoch`](Epochs::bump_global_epoch), [`raise_global_epoch`](Epochs::raise_global_epoch), [`subject_epoch`](Epochs::subject_epoch), [`bump_subject_epoch`](Epochs::bump_subject_epoch), [`raise_subject_epoch`](Epochs::raise_subject_epoch) |
//! | [`Maintenance`] | [`sweep_expired`](Maintenance::sweep_expired), [`export_page`](Maintenance::export_page) |
//! | [`Attachments`] | [`load_attachment`](Attachments::load_attachment), [`store_attachment`](Attachments::store_attachment), [`delete_attachment`](Attachments::delete_attachment) |
//! | [`Journal`] | [`append_journal`](Journal::append_journal), [`journal_page`](Journal::journal_page) |
//!
//! Each trait's documentation states what its methods guarantee. The traits
//! are declared with the `async_trait` attribute: a store crate depends on
//! `async-trait = "0.1"` and puts `#[async_trait]` on its `impl` blocks, and
//! the store type must be `Send + Sync + 'static`.
//!
//! Keep each record as the bytes [`codec::encode`](crate::codec::encode)
//! writes, and read it back with [`codec::decode`](crate::codec::decode):
//! older record formats stay readable after an upgrade. The bytes start
//! with a fixed header, so that the hot paths need not decode the record:
//! [`revision_of`](crate::codec::revision_of) is what `update` compares,
//! [`forget_at_of`](crate::codec::forget_at_of) says whether a record may
//! still be returned, [`touch_in_place`](crate::codec::touch_in_place) is
//! `touch`, and [`subject_of`](crate::codec::subject_of) finds the index
//! entry to drop. A store that never kept records under the hash of a
//! first-format token answers `find_legacy` with `Ok(None)`. Paging through
//! a map without an order of its own can use [`page_of_ids`].
//!
//! Then prove the store with the conformance suite, from its tests, with
//! `tessera-core`'s `testkit` feature:
//! `tessera_core::testkit::assert_conformance` (see the example below)
//! runs every case against a fresh store from the factory it is given.
//!
//! # A complete store
//!
//! One mutex around a map of encoded records keyed by session id, a map of
//! each subject's ids, the epochs, the attachments and the journal; it
//! passes the whole suite. A copy is the quickest start for a store of
//! your own: replace the maps with your backend, keeping each method's
//! promise. Three promises are easy to miss: a global epoch that does not
//! exist yet starts at the current time (see [`Epochs`]), deleting a
//! session deletes its attachments too, and [`durability`](Epochs::durability)
//! says whether the epochs survive a restart (this one keeps everything in
//! memory: they do not).
//!
//! ```
//! use std::collections::{BTreeMap, HashMap, HashSet};
//! use std::sync::{Mutex, MutexGuard};
//!
//! use async_trait::async_trait;
//! use tessera_core::codec;
//! use tessera_core::store::{
//!     Attachment, AttachmentKind, AttachmentWrite, Attachments, CreateOutcome, Durability,
//!     Epochs, Journal, JournalEntry, Maintenance, Page, Records, StoreError, SubjectIndex,
//!     WriteOutcome, journal_cursor, page_of_ids, parse_journal_cursor,
//! };
//! use tessera_core::{Clock, Revision, SessionId, SessionRecord, SystemClock, Timestamp, TokenHash};
//!
//! pub struct MutexStore {
//!     inner: Mutex<Inner>,
//! }
//!
//! impl Default for MutexStore {
//!     fn default() -> Self {
//!         // A global epoch that did not exist starts at the current time:
//!         // above every epoch an earlier life of the store handed out.
//!         let global_epoch = u64::try_from(SystemClock.now().as_millis()).unwrap_or(0);
//!         Self {
//!             inner: Mutex::new(Inner {
//!                 global_epoch,
//!                 ..Inner::default()
//!             }),
//!         }
//!     }
//! }
//!
//! #[derive(Default)]
//! struct Inner {
//!     /// Every record as the codec encodes it, forget deadline included.
//!     records: HashMap<SessionId, Vec<u8>>,
//!     /// The ids of each subject's records.
//!     subjects: HashMap<String, HashSet<SessionId>>,
//!     global_epoch: u64,
//!     subject_epochs: HashMap<String, u64>,
//!     /// Each attachment with its forget deadline.
//!     attachments: HashMap<(SessionId, AttachmentKind), (Attachment, Timestamp)>,
//!     /// The journal in (time, nonce) order, each entry with its forget deadline.
//!     journal: BTreeMap<(Timestamp, [u8; 8]), (Vec<u8>, Timestamp)>,
//! }
//!
//! impl MutexStore {
//!     fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
//!         self.inner
//!             .lock()
//!             .map_err(|_| StoreError::corrupt("the store's lock is poisoned"))
//!     }
//! }
//!
//! impl Inner {
//!     fn index(&mut self, subject: &str, id: SessionId) {
//!         self.subjects
//!             .entry(subject.to_owned())
//!             .or_default()
//!             .insert(id);
//!     }
//!
//!     fn unindex(&mut self, subject: &str, id: &SessionId) {
//!         if let Some(ids) = self.subjects.get_mut(subject) {
//!             ids.remove(id);
//!             if ids.is_empty() {
//!                 self.subjects.remove(subject);
//!             }
//!         }
//!     }
//!
//!     /// Removes a record, its index entry and its attachments.
//!     fn remove(&mut self, id: &SessionId) -> Option<Vec<u8>> {
//!         for kind in AttachmentKind::ALL {
//!             self.attachments.remove(&(*id, kind));
//!         }
//!         let bytes = self.records.remove(id)?;
//!         if let Some(subject) = codec::subject_of(&bytes) {
//!             self.unindex(subject, id);
//!         }
//!         Some(bytes)
//!     }
//! }
//!
//! /// Whether an encoded record may still be returned at `now`.
//! fn live(bytes: &[u8], now: Timestamp) -> bool {
//!     codec::forget_at_of(bytes).is_some_and(|forget_at| forget_at > now)
//! }
//!
//! #[async_trait]
//! impl Records for MutexStore {
//!     async fn create(
//!         &self,
//!         record: &SessionRecord,
//!         forget_at: Timestamp,
//!     ) -> Result<CreateOutcome, StoreError> {
//!         let mut inner = self.lock()?;
//!         if inner.records.contains_key(&record.id) {
//!             return Ok(CreateOutcome::AlreadyExists);
//!         }
//!         inner
//!             .records
//!             .insert(record.id, codec::encode(record, forget_at));
//!         if let Some(subject) = &record.subject {
//!             inner.index(subject, record.id);
//!         }
//!         Ok(CreateOutcome::Created)
//!     }
//!
//!     async fn load(
//!         &self,
//!         id: &SessionId,
//!         now: Timestamp,
//!     ) -> Result<Option<SessionRecord>, StoreError> {
//!         let inner = self.lock()?;
//!         match inner.records.get(id) {
//!             Some(bytes) if live(bytes, now) => codec::decode(bytes, None).map(Some),
//!             _ => Ok(None),
//!         }
//!     }
//!
//!     async fn update(
//!         &self,
//!         record: &SessionRecord,
//!         expected: Revision,
//!         forget_at: Timestamp,
//!         now: Timestamp,
//!     ) -> Result<WriteOutcome, StoreError> {
//!         let mut inner = self.lock()?;
//!         let Some(stored) = inner.records.get(&record.id).filter(|b| live(b, now)) else {
//!             return Ok(WriteOutcome::NotFound);
//!         };
//!         // Compare-and-swap: the version and the token hash, both.
//!         let current = codec::revision_of(stored)
//!             .ok_or_else(|| StoreError::corrupt("a stored record has no revision"))?;
//!         if current != expected {
//!             return Ok(WriteOutcome::Conflict { current });
//!         }
//!         let old_subject = codec::subject_of(stored).map(str::to_owned);
//!         inner
//!             .records
//!             .insert(record.id, codec::encode(record, forget_at));
//!         // A login can change the subject: the index follows.
//!         if old_subject != record.subject {
//!             if let Some(old) = old_subject {
//!                 inner.unindex(&old, &record.id);
//!             }
//!             if let Some(subject) = &record.subject {
//!                 inner.index(subject, record.id);
//!             }
//!         }
//!         Ok(WriteOutcome::Written)
//!     }
//!
//!     async fn touch(
//!         &self,
//!         id: &SessionId,
//!         last_seen_at: Timestamp,
//!         forget_at: Timestamp,
//!         now: Timestamp,
//!     ) -> Result<WriteOutcome, StoreError> {
//!         let mut inner = self.lock()?;
//!         let Some(bytes) = inner.records.get_mut(id).filter(|b| live(b, now)) else {
//!             return Ok(WriteOutcome::NotFound);
//!         };
//!         // Forward only, and the revision stays as it is.
//!         if !codec::touch_in_place(bytes, last_seen_at, forget_at) {
//!             return Err(StoreError::corrupt(
//!                 "a stored record is not of the current format",
//!             ));
//!         }
//!         Ok(WriteOutcome::Written)
//!     }
//!
//!     async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
//!         Ok(self.lock()?.remove(id).is_some())
//!     }
//!
//!     async fn find_legacy(
//!         &self,
//!         _key: &TokenHash,
//!         _now: Timestamp,
//!     ) -> Result<Option<SessionId>, StoreError> {
//!         // This store never kept records under a token's hash.
//!         Ok(None)
//!     }
//!
//!     async fn ping(&self) -> Result<(), StoreError> {
//!         self.lock().map(drop)
//!     }
//! }
//!
//! #[async_trait]
//! impl SubjectIndex for MutexStore {
//!     async fn list_subject(
//!         &self,
//!         subject: &str,
//!         cursor: Option<&str>,
//!         limit: usize,
//!         now: Timestamp,
//!     ) -> Result<Page<SessionRecord>, StoreError> {
//!         let inner = self.lock()?;
//!         let ids = inner.subjects.get(subject).into_iter().flatten();
//!         let live_ids = ids.filter(|id| inner.records.get(*id).is_some_and(|b| live(b, now)));
//!         let (page, next) = page_of_ids(live_ids.copied(), cursor, limit)?;
//!         let mut items = Vec::with_capacity(page.len());
//!         for id in page {
//!             items.push(codec::decode(&inner.records[&id], None)?);
//!         }
//!         Ok(Page { items, next })
//!     }
//!
//!     async fn delete_subject(
//!         &self,
//!         subject: &str,
//!         except: Option<&SessionId>,
//!         now: Timestamp,
//!     ) -> Result<Vec<SessionId>, StoreError> {
//!         let mut inner = self.lock()?;
//!         let ids: Vec<SessionId> = inner
//!             .subjects
//!             .get(subject)
//!             .into_iter()
//!             .flatten()
//!             .copied()
//!             .collect();
//!         let mut deleted = Vec::new();
//!         for id in ids.into_iter().filter(|id| Some(id) != except) {
//!             if inner.remove(&id).is_some_and(|bytes| live(&bytes, now)) {
//!                 deleted.push(id);
//!             }
//!         }
//!         Ok(deleted)
//!     }
//! }
//!
//! #[async_trait]
//! impl Epochs for MutexStore {
//!     fn durability(&self) -> Durability {
//!         // Everything is in this process's memory.
//!         Durability::Volatile
//!     }
//!
//!     async fn global_epoch(&self) -> Result<u64, StoreError> {
//!         Ok(self.lock()?.global_epoch)
//!     }
//!
//!     async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
//!         let mut inner = self.lock()?;
//!         inner.global_epoch += 1;
//!         Ok(inner.global_epoch)
//!     }
//!
//!     async fn raise_global_epoch(&self, epoch: u64) -> Result<u64, StoreError> {
//!         let mut inner = self.lock()?;
//!         inner.global_epoch = inner.global_epoch.max(epoch);
//!         Ok(inner.global_epoch)
//!     }
//!
//!     async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
//!         Ok(self
//!             .lock()?
//!             .subject_epochs
//!             .get(subject)
//!             .copied()
//!             .unwrap_or(0))
//!     }
//!
//!     async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
//!         let mut inner = self.lock()?;
//!         let epoch = inner.subject_epochs.entry(subject.to_owned()).or_insert(0);
//!         *epoch += 1;
//!         Ok(*epoch)
//!     }
//!
//!     async fn raise_subject_epoch(&self, subject: &str, epoch: u64) -> Result<u64, StoreError> {
//!         let mut inner = self.lock()?;
//!         let stored = inner.subject_epochs.entry(subject.to_owned()).or_insert(0);
//!         *stored = (*stored).max(epoch);
//!         Ok(*stored)
//!     }
//! }
//!
//! #[async_trait]
//! impl Maintenance for MutexStore {
//!     async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
//!         let mut inner = self.lock()?;
//!         let expired: Vec<SessionId> = inner
//!             .records
//!             .iter()
//!             .filter(|(_, bytes)| !live(bytes, now))
//!             .map(|(id, _)| *id)
//!             .collect();
//!         for id in &expired {
//!             inner.remove(id);
//!         }
//!         let mut removed = expired.len();
//!         // Attachments past their deadline, or whose session is gone.
//!         let Inner {
//!             records,
//!             attachments,
//!             journal,
//!             ..
//!         } = &mut *inner;
//!         let before = attachments.len() + journal.len();
//!         attachments.retain(|(id, _), (_, forget_at)| *forget_at > now && records.contains_key(id));
//!         journal.retain(|_, (_, forget_at)| *forget_at > now);
//!         removed += before - attachments.len() - journal.len();
//!         Ok(removed as u64)
//!     }
//!
//!     async fn export_page(
//!         &self,
//!         cursor: Option<&str>,
//!         limit: usize,
//!         now: Timestamp,
//!     ) -> Result<Page<SessionRecord>, StoreError> {
//!         let inner = self.lock()?;
//!         let (page, next) = page_of_ids(inner.records.keys().copied(), cursor, limit)?;
//!         let mut items = Vec::with_capacity(page.len());
//!         for id in page {
//!             match inner.records.get(&id) {
//!                 Some(bytes) if live(bytes, now) => items.push(codec::decode(bytes, None)?),
//!                 _ => {}
//!             }
//!         }
//!         Ok(Page { items, next })
//!     }
//! }
//!
//! #[async_trait]
//! impl Attachments for MutexStore {
//!     async fn load_attachment(
//!         &self,
//!         id: &SessionId,
//!         kind: AttachmentKind,
//!         now: Timestamp,
//!     ) -> Result<Option<Attachment>, StoreError> {
//!         let inner = self.lock()?;
//!         Ok(inner
//!             .attachments
//!             .get(&(*id, kind))
//!             .filter(|(_, forget_at)| *forget_at > now)
//!             .map(|(attachment, _)| attachment.clone()))
//!     }
//!
//!     async fn store_attachment(
//!         &self,
//!         id: &SessionId,
//!         kind: AttachmentKind,
//!         value: &[u8],
//!         expected: Option<u64>,
//!         forget_at: Timestamp,
//!         now: Timestamp,
//!     ) -> Result<AttachmentWrite, StoreError> {
//!         let mut inner = self.lock()?;
//!         // Compare-and-swap on the generation; a forgotten one is none.
//!         let current = inner
//!             .attachments
//!             .get(&(*id, kind))
//!             .filter(|(_, forget_at)| *forget_at > now)
//!             .map(|(attachment, _)| attachment.generation);
//!         if current != expected {
//!             return Ok(AttachmentWrite::Conflict { current });
//!         }
//!         let generation = current.map_or(1, |g| g + 1);
//!         let value = value.to_vec();
//!         inner
//!             .attachments
//!             .insert((*id, kind), (Attachment { generation, value }, forget_at));
//!         Ok(AttachmentWrite::Written { generation })
//!     }
//!
//!     async fn delete_attachment(
//!         &self,
//!         id: &SessionId,
//!         kind: AttachmentKind,
//!     ) -> Result<bool, StoreError> {
//!         Ok(self.lock()?.attachments.remove(&(*id, kind)).is_some())
//!     }
//! }
//!
//! #[async_trait]
//! impl Journal for MutexStore {
//!     async fn append_journal(
//!         &self,
//!         entry: &JournalEntry,
//!         forget_at: Timestamp,
//!     ) -> Result<(), StoreError> {
//!         let mut inner = self.lock()?;
//!         inner
//!             .journal
//!             .insert((entry.at, entry.nonce), (entry.value.clone(), forget_at));
//!         Ok(())
//!     }
//!
//!     async fn journal_page(
//!         &self,
//!         cursor: Option<&str>,
//!         limit: usize,
//!         now: Timestamp,
//!     ) -> Result<Page<JournalEntry>, StoreError> {
//!         let after = cursor.map(parse_journal_cursor).transpose()?;
//!         let inner = self.lock()?;
//!         let limit = limit.max(1);
//!         // Newest first: backwards from the cursor's position.
//!         let older = match after {
//!             Some(position) => inner.journal.range(..position),
//!             None => inner.journal.range(..),
//!         };
//!         let mut items: Vec<JournalEntry> = older
//!             .rev()
//!             .filter(|(_, (_, forget_at))| *forget_at > now)
//!             .take(limit + 1)
//!             .map(|((at, nonce), (value, _))| JournalEntry {
//!                 at: *at,
//!                 nonce: *nonce,
//!                 value: value.clone(),
//!             })
//!             .collect();
//!         let next = if items.len() > limit {
//!             items.truncate(limit);
//!             items.last().map(journal_cursor)
//!         } else {
//!             None
//!         };
//!         Ok(Page { items, next })
//!     }
//! }
//!
//! // In the store's tests (the suite needs a multi-threaded runtime):
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! tessera_core::testkit::assert_conformance(|| async { MutexStore::default() }).await;
//! # }
//! ```

mod extra;
mod intercept;
mod redact;
mod sweeper;

use std::sync::Arc;

use async_trait::async_trait;

pub use self::extra::{
    Attachment, AttachmentKind, AttachmentWrite, Attachments, Journal, JournalEntry, journal_after,
    journal_cursor, parse_journal_cursor,
};
pub use self::intercept::{Call, Intercept, Intercepted, Operation};
pub use self::redact::redact_url;
pub use self::sweeper::{Sweeper, spawn_sweeper, spawn_sweeper_with_clock};
use crate::clock::Timestamp;
use crate::record::{Revision, SessionRecord};
use crate::token::{SessionId, TokenHash};

/// A boxed error from a backend's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of the store itself (not a protocol outcome such as a version conflict).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached or did not answer in time. Callers fail
    /// closed: no session is valid while its store is unavailable.
    #[error("session store unavailable: {message}")]
    Unavailable {
        /// What went wrong, for the operator.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend holds a record this version cannot read.
    #[error("session store holds an unreadable record: {message}")]
    Corrupt {
        /// What could not be read.
        message: String,
    },
    /// An argument the store cannot use (such as a foreign cursor).
    #[error("invalid request to the session store: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
}

impl StoreError {
    /// An `Unavailable` error wrapping a backend error.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A `Corrupt` error.
    pub fn corrupt(message: impl Into<String>) -> Self {
        StoreError::Corrupt {
            message: message.into(),
        }
    }

    /// An `Invalid` error.
    pub fn invalid(message: impl Into<String>) -> Self {
        StoreError::Invalid {
            message: message.into(),
        }
    }
}

/// The outcome of a create-if-absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The record was stored.
    Created,
    /// A record with that id was already present; nothing was written.
    AlreadyExists,
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write happened.
    Written,
    /// The stored record's revision differs from the expected one; nothing
    /// was written.
    Conflict {
        /// The revision the store holds.
        current: Revision,
    },
    /// No record with that id (never created, deleted, or forgotten);
    /// nothing was written.
    NotFound,
}

/// One page of a listing: items and where the next page starts.
#[derive(Debug, Clone, Default)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` when this was the last one.
    /// Opaque: pass it back as it is.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// The page of the first `limit` (at least one) of `items`, which were
    /// fetched with one more than that to learn whether a next page
    /// exists; `next` is then the cursor of its last item.
    pub fn of_one_more(mut items: Vec<T>, limit: usize, cursor: impl FnOnce(&T) -> String) -> Self {
        let limit = limit.max(1);
        let more = items.len() > limit;
        items.truncate(limit);
        let next = items.last().filter(|_| more).map(cursor);
        Page { items, next }
    }
}

/// Records, one per session, keyed by the session's public id.
///
/// Guarantees (proven by the conformance suite in `testkit`):
///
/// * **create-if-absent**: [`create`](Self::create) never overwrites a record;
/// * **load**: nothing is returned once `now` reaches the `forget_at` it
///   was last written with;
/// * **compare-and-swap**: [`update`](Self::update) writes only while the
///   stored [`Revision`] is the expected one, so concurrent writers lose
///   no update;
/// * **touch** moves `last_seen_at` and `forget_at` forward, never back,
///   and never revives a record that is gone;
/// * **delete** is immediate.
#[async_trait]
pub trait Records: Send + Sync + 'static {
    /// Stores a new record unless one with its id exists. `forget_at` is
    /// when the store may forget it (the manager's deadline plus retention).
    async fn create(
        &self,
        record: &SessionRecord,
        forget_at: Timestamp,
    ) -> Result<CreateOutcome, StoreError>;

    /// The record with this id, or `None` if there is none or its
    /// `forget_at` is not after `now`.
    async fn load(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Replaces the record with `record.id` if its stored revision is
    /// `expected` (and it is not forgotten by `now`).
    async fn update(
        &self,
        record: &SessionRecord,
        expected: Revision,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError>;

    /// Moves a record's `last_seen_at` and `forget_at` forward (never back)
    /// without changing its revision.
    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError>;

    /// Deletes the record with this id; `true` if one was there.
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError>;

    /// The session a token of the first format belongs to, found through
    /// the pointers of the layout that stored records under the hash of
    /// such a token (`docs/tokens-and-cookies.md`). A store that holds such
    /// a session makes sure a record of it exists under its id (whose token
    /// is `key`) before answering. Stores that never kept that layout
    /// answer `Ok(None)`.
    async fn find_legacy(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<SessionId>, StoreError>;

    /// Whether the store answers (for readiness checks).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The sessions of each subject.
///
/// Guarantees: a listing returns every record of the subject that was
/// written (created, or updated to carry the subject) before the listing
/// started and is still loadable, and no record of another subject; the
/// store may keep stale entries (of deleted records, or of records whose
/// subject changed) as long as listing skips them, and must drop them
/// when it lists or sweeps.
#[async_trait]
pub trait SubjectIndex: Send + Sync + 'static {
    /// Up to `limit` records of the subject starting at `cursor` (`None`:
    /// the beginning), in no particular order.
    async fn list_subject(
        &self,
        subject: &str,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError>;

    /// Deletes every record of the subject except `except`; returns the
    /// ids deleted.
    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError>;
}

/// Whether a store's revocation epochs survive a restart of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Kept on disk (or replicated): a restart loses nothing.
    Persistent,
    /// Lost when the store (or its server) restarts: a memory store, a
    /// Redis server without persistence.
    Volatile,
}

/// Revocation epochs: counters shared by everyone using the store that
/// only ever grow. Sessions created before the global epoch moved on are
/// revoked; sealed sessions also die when their subject's epoch moves on.
///
/// A store whose epochs were lost (a restart of a volatile store, a
/// server that lost its data) must not read them as 0 again: revoked
/// sealed sessions would come back. A global epoch that does not exist
/// yet therefore starts at the current time in milliseconds (a value
/// above every epoch a previous life of the store can have handed out),
/// which ends every sealed session of that previous life.
#[async_trait]
pub trait Epochs: Send + Sync + 'static {
    /// Whether the epochs survive a restart of the store; sealed sessions
    /// need them to, unless the application opts in to losing them
    /// ([`SessionManagerBuilder::allow_volatile_epochs`](crate::SessionManagerBuilder::allow_volatile_epochs)).
    fn durability(&self) -> Durability;

    /// The global revocation epoch (a missing one starts at the current
    /// time in milliseconds, see above).
    async fn global_epoch(&self) -> Result<u64, StoreError>;

    /// Increments the global epoch and returns the new value.
    async fn bump_global_epoch(&self) -> Result<u64, StoreError>;

    /// Raises the global epoch to at least `epoch` (for copies between stores).
    async fn raise_global_epoch(&self, epoch: u64) -> Result<u64, StoreError>;

    /// The revocation epoch of one subject (starts at 0).
    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError>;

    /// Increments a subject's epoch and returns the new value.
    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError>;

    /// Raises a subject's epoch to at least `epoch` (for copies between stores).
    async fn raise_subject_epoch(&self, subject: &str, epoch: u64) -> Result<u64, StoreError>;
}

/// Housekeeping: removing what expired, and paging through everything.
#[async_trait]
pub trait Maintenance: Send + Sync + 'static {
    /// Physically removes records whose `forget_at` is not after `now`,
    /// and the index entries that pointed at them; returns how many
    /// records and entries went. Stores whose backend expires records by
    /// itself drop stale index entries here.
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Up to `limit` records starting at `cursor` (`None`: the beginning),
    /// for copying a whole store (`tesserad migrate`). Paging through a
    /// store that is being written to returns every record that lived
    /// throughout at least once; records created or changed meanwhile may
    /// or may not appear, and may appear twice.
    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError>;
}

/// A complete store: every part of the contract. Implemented for every
/// type that implements the six parts.
pub trait SessionStore:
    Records + SubjectIndex + Epochs + Maintenance + Attachments + Journal
{
}

impl<T: Records + SubjectIndex + Epochs + Maintenance + Attachments + Journal> SessionStore for T {}

/// Pages through ids that have a total order and no natural cursor (hash
/// maps): the cursor is the hex of the last id returned, and each page is
/// the `limit` smallest ids after it. Costs one pass over `ids` per page.
pub fn page_of_ids(
    ids: impl Iterator<Item = SessionId>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<SessionId>, Option<String>), StoreError> {
    let after = cursor.map(parse_id_cursor).transpose()?;
    let limit = limit.max(1);
    let mut page: Vec<SessionId> = ids.filter(|id| after.is_none_or(|a| *id > a)).collect();
    let more = page.len() > limit;
    if more {
        page.select_nth_unstable(limit - 1);
        page.truncate(limit);
    }
    page.sort_unstable();
    let next = if more {
        page.last().map(id_cursor)
    } else {
        None
    };
    Ok((page, next))
}

/// A cursor that resumes after `id`, for stores ordered by id.
pub fn id_cursor(id: &SessionId) -> String {
    crate::token::hex(&id.0)
}

/// The id an [`id_cursor`] resumes after.
pub fn parse_id_cursor(text: &str) -> Result<SessionId, StoreError> {
    let bad = || StoreError::invalid("not a cursor of this store");
    if text.len() != 32 || !text.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(SessionId(out))
}

#[async_trait]
impl<S: Records + ?Sized> Records for Arc<S> {
    async fn create(
        &self,
        record: &SessionRecord,
        forget_at: Timestamp,
    ) -> Result<CreateOutcome, StoreError> {
        (**self).create(record, forget_at).await
    }
    async fn load(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        (**self).load(id, now).await
    }
    async fn update(
        &self,
        record: &SessionRecord,
        expected: Revision,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        (**self).update(record, expected, forget_at, now).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        (**self).touch(id, last_seen_at, forget_at, now).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        (**self).delete(id).await
    }
    async fn find_legacy(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<SessionId>, StoreError> {
        (**self).find_legacy(key, now).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        (**self).ping().await
    }
}

#[async_trait]
impl<S: SubjectIndex + ?Sized> SubjectIndex for Arc<S> {
    async fn list_subject(
        &self,
        subject: &str,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        (**self).list_subject(subject, cursor, limit, now).await
    }
    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        (**self).delete_subject(subject, except, now).await
    }
}

#[async_trait]
impl<S: Epochs + ?Sized> Epochs for Arc<S> {
    fn durability(&self) -> Durability {
        (**self).durability()
    }
    async fn global_epoch(&self) -> Result<u64, StoreError> {
        (**self).global_epoch().await
    }
    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        (**self).bump_global_epoch().await
    }
    async fn raise_global_epoch(&self, epoch: u64) -> Result<u64, StoreError> {
        (**self).raise_global_epoch(epoch).await
    }
    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        (**self).subject_epoch(subject).await
    }
    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        (**self).bump_subject_epoch(subject).await
    }
    async fn raise_subject_epoch(&self, subject: &str, epoch: u64) -> Result<u64, StoreError> {
        (**self).raise_subject_epoch(subject, epoch).await
    }
}

#[async_trait]
impl<S: Maintenance + ?Sized> Maintenance for Arc<S> {
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        (**self).sweep_expired(now).await
    }
    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        (**self).export_page(cursor, limit, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_pages_cover_every_id_once_in_order() {
        let ids: Vec<SessionId> = (0u8..25)
            .map(|i| SessionId([i.wrapping_mul(37); 16]))
            .collect();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) =
                page_of_ids(ids.iter().copied(), cursor.as_deref(), 7).expect("page");
            seen.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(seen, expected);
        assert!(page_of_ids(ids.into_iter(), Some("zz"), 3).is_err());
    }
}
