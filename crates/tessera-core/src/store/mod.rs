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
//!
//! A type implementing all four is a [`SessionStore`]. None of the traits
//! has a default method, so a store or a wrapper that leaves one out does
//! not compile. Wrappers that do the same thing around every operation
//! (timing, counting, failing on purpose) implement [`Intercept`] instead
//! and wrap the store in [`Intercepted`].

mod intercept;
mod redact;
mod sweeper;

use std::sync::Arc;

use async_trait::async_trait;

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

/// Revocation epochs: counters shared by everyone using the store that
/// only ever grow. Sessions created before the global epoch moved on are
/// revoked; sealed sessions also die when their subject's epoch moves on.
#[async_trait]
pub trait Epochs: Send + Sync + 'static {
    /// The global revocation epoch (starts at 0).
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
/// type that implements the four parts.
pub trait SessionStore: Records + SubjectIndex + Epochs + Maintenance {}

impl<T: Records + SubjectIndex + Epochs + Maintenance> SessionStore for T {}

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
